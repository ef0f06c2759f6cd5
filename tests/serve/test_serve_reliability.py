"""Replica death, health checks, rolling updates, autoscaling and shutdown, under real load."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import httpx
import pytest

import ember
import ember.serve as serve
from _serve_util import Load, clean_apps, count, free_port, port_is_free, replica_pids, serve_url  # noqa: F401
from conftest import wait_for


@serve.deployment(num_replicas=2, num_cpus=0)
class Sleepy:
    def __init__(self, tag: str = "v1") -> None:
        self.tag = tag

    async def __call__(self, request):
        await asyncio.sleep(0.02)
        return self.tag


@serve.deployment(num_cpus=0, health_check_period_s=0.1, health_check_timeout_s=0.5)
class Hangs:
    def __init__(self) -> None:
        self.fail = False

    def hang(self) -> None:
        time.sleep(30)  # blocks the replica's event loop: health checks time out

    def break_health(self) -> None:
        self.fail = True

    def check_health(self) -> None:
        if self.fail:
            raise RuntimeError("unhealthy on purpose")

    async def pid(self) -> int:
        return os.getpid()


@serve.deployment(num_cpus=0, max_ongoing_requests=2,
                  autoscaling_config={"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 1,
                                      "upscale_delay_s": 0, "downscale_delay_s": 0.5,
                                      "metrics_interval_s": 0.1})
class Scales:
    async def __call__(self, request):
        await asyncio.sleep(0.1)
        return "ok"


@serve.deployment(num_cpus=0, graceful_shutdown_timeout_s=10)
class SlowOne:
    async def __call__(self, request):
        await asyncio.sleep(float(request.query_params.get("s", "1")))
        return "slow"


def _ongoing(app: str, deployment: str) -> int:
    from ember.serve.snapshot import get_controller
    actors = ember.get(get_controller().replica_actors.remote(app, deployment))
    return sum(ember.get(a.stats.remote())["ongoing"] for _, a in actors)


def _running(app: str, deployment: str) -> int:
    st = serve.status().applications.get(app)
    return st.deployments[deployment].replica_states.get("RUNNING", 0) if st else 0


@pytest.mark.timeout(90)
def test_sigkilled_replica_loses_no_request(clean_apps: str) -> None:
    """Requests in flight on a killed replica are sent again to the other one; none fails
    silently, and the controller starts a replacement."""
    serve.run(Sleepy.bind(), name="kill", route_prefix="/kill")
    before = replica_pids("kill", "Sleepy")
    with Load(f"{clean_apps}/kill", concurrency=6) as load:
        wait_for(lambda: len(load.results) > 30, what="load to start")
        os.kill(before[0], signal.SIGKILL)
        wait_for(lambda: _running("kill", "Sleepy") == 2 and before[0] not in replica_pids("kill", "Sleepy"),
                 timeout_s=30, what="a replacement replica")
        n = len(load.results)
        wait_for(lambda: len(load.results) > n + 30, what="load after the replacement")
    outcomes = count(status for status, _ in load.results)
    # Every request got an answer; none was dropped as a transport error.
    assert "error" not in outcomes, outcomes
    assert set(outcomes) <= {200, 500}, outcomes
    failures = [text for status, text in load.results if status == 500]
    assert all("died" in text for text in failures), failures[:3]


@pytest.mark.timeout(90)
def test_stuck_or_unhealthy_replica_is_replaced(clean_apps: str) -> None:
    handle = serve.run(Hangs.bind(), name="hang", route_prefix=None)
    first = handle.pid.remote().result()
    handle.hang.remote()  # never answers: the loop is blocked
    wait_for(lambda: replica_pids("hang", "Hangs") and first not in replica_pids("hang", "Hangs"),
             timeout_s=30, what="the stuck replica to be replaced")
    second = handle.pid.remote().result(timeout_s=30)
    assert second != first
    handle.break_health.remote().result()
    wait_for(lambda: replica_pids("hang", "Hangs") and second not in replica_pids("hang", "Hangs"),
             timeout_s=30, what="the unhealthy replica to be replaced")
    assert handle.pid.remote().result(timeout_s=30) not in (first, second)


@pytest.mark.timeout(90)
def test_rolling_redeploy_under_load_drops_nothing(clean_apps: str) -> None:
    serve.run(Sleepy.bind("v1"), name="roll", route_prefix="/roll")
    old = set(replica_pids("roll", "Sleepy"))
    with Load(f"{clean_apps}/roll", concurrency=6) as load:
        wait_for(lambda: len(load.results) > 20, what="load to start")
        serve.run(Sleepy.bind("v2"), name="roll", route_prefix="/roll")
        assert not old & set(replica_pids("roll", "Sleepy"))
        n = len(load.results)
        wait_for(lambda: len(load.results) > n + 20, what="load after the update")
    outcomes = count(load.results)
    assert set(outcomes) <= {(200, "v1"), (200, "v2")}, outcomes
    assert load.results[-1] == (200, "v2")


@pytest.mark.timeout(90)
def test_autoscaling_up_under_load_and_down_after(clean_apps: str) -> None:
    serve.run(Scales.bind(), name="auto", route_prefix="/auto")
    assert _running("auto", "Scales") == 1
    with Load(f"{clean_apps}/auto", concurrency=8) as load:
        wait_for(lambda: _running("auto", "Scales") >= 2, timeout_s=30, what="scale up")
    assert all(status == 200 for status, _ in load.results)
    wait_for(lambda: _running("auto", "Scales") == 1 and
             serve.status().applications["auto"].deployments["Scales"].replica_states == {"RUNNING": 1},
             timeout_s=30, what="scale back down to min_replicas")
    assert serve.status().applications["auto"].status == "RUNNING"


@pytest.mark.timeout(120)
def test_shutdown_drains_in_flight_requests_and_frees_the_port(serve_url: str) -> None:
    port = free_port()
    serve.shutdown()
    serve.start(http_options={"port": port, "request_timeout_s": 3})
    try:
        serve.run(SlowOne.bind(), name="drain", route_prefix="/drain")
        # request_timeout_s: a request running longer gets 408
        r = httpx.get(f"http://127.0.0.1:{port}/drain?s=10", timeout=30)
        assert r.status_code == 408 and "request_timeout_s=3" in r.text
        wait_for(lambda: _ongoing("drain", "SlowOne") == 0, timeout_s=30, what="the timed-out request to end")
        results: list[int] = []

        def slow_call() -> None:
            results.append(httpx.get(f"http://127.0.0.1:{port}/drain", timeout=30).status_code)

        callers = [threading.Thread(target=slow_call) for _ in range(4)]
        for t in callers:
            t.start()
        wait_for(lambda: _ongoing("drain", "SlowOne") == 4, what="4 requests in flight")
        serve.shutdown()
        for t in callers:
            t.join(30)
        assert results and all(code == 200 for code in results), results
        assert port_is_free(port)
        assert serve.status().applications == {}
    finally:
        serve.shutdown()
        serve.start(http_options={"port": int(serve_url.rsplit(":", 1)[1])})
