"""A head that is SIGKILLed and started again finds its cluster back.

The cluster is started with the CLI (head + nodes b and c); the driver is attached to
node b, so that it outlives the head, as a driver on any machine but the head's does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import ember
from ember.exceptions import EmberError, EmberSystemError
from ember.job_submission import JobStatus, JobSubmissionClient
from ember.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ember.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ._driver_on_node import cluster_with_driver_on_a_node as _cluster
from .conftest import _read_nodes, _run_cli, _running, ember_cli, free_port, reaped, stop_cli_nodes, wait_for

_TIMEOUT_S = 60


@ember.remote
class Keeper:
    def __init__(self) -> None:
        self.count = 0

    def incr(self) -> int:
        self.count += 1
        return self.count

    def node(self) -> str:
        return ember.get_runtime_context().get_node_id()


@ember.remote(num_cpus=1)
def slow_square(x: int, delay_s: float) -> int:
    time.sleep(delay_s)
    return x * x


@ember.remote(num_cpus=1)
def where() -> str:
    return ember.get_runtime_context().get_node_id()


def _role(node_id: str) -> str:
    for node in ember.nodes():
        if node["NodeID"] == node_id:
            resources = node["Resources"]
            return "head" if node["IsHead"] else "b" if "node_b" in resources else "c"
    return "?"


def _kill_head(cluster: dict) -> None:
    os.kill(cluster["head_pid"], signal.SIGKILL)
    wait_for(lambda: not _alive_pid(cluster["head_pid"]), timeout_s=10, what="the head to die")


def _restart_head(cluster: dict) -> None:
    _run_cli(cluster["head_args"], cluster["env"])
    (head,) = [info for _d, info in _read_nodes(cluster["tmpdir"]) if info["head"]]
    cluster["head_pid"] = head["pid"]


def _alive_pid(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return True


@pytest.mark.timeout(180)
def test_the_head_killed_mid_job_restarts_and_the_job_finishes() -> None:
    with _cluster() as cluster:
        keeper = Keeper.options(name="keeper", namespace="ops", lifetime="detached",
                                resources={"node_c": 0.5}).remote()
        assert ember.get(keeper.incr.remote(), timeout=_TIMEOUT_S) == 1
        pg = placement_group([{"CPU": 1, "node_b": 0.1}, {"CPU": 1, "node_c": 0.1}],
                             strategy="STRICT_SPREAD", name="kept", lifetime="detached")
        assert pg.wait(_TIMEOUT_S)

        # The job: 12 tasks of 0.4 s on nodes b and c (one free CPU each beside the group).
        refs = [slow_square.options(resources={f"node_{'bc'[i % 2]}": 0.1}).remote(i, 0.4)
                for i in range(12)]
        ember.wait(refs, num_returns=1, timeout=_TIMEOUT_S)  # it is running
        _kill_head(cluster)

        # A control request made while the head is away waits for it instead of failing.
        found: list = []
        lookup = threading.Thread(target=lambda: found.append(ember.get_actor("keeper", namespace="ops")))
        lookup.start()
        _restart_head(cluster)

        assert ember.get(refs, timeout=_TIMEOUT_S) == [i * i for i in range(12)]
        lookup.join(_TIMEOUT_S)
        assert found, "get_actor made while the head was down never returned"
        # The same actor process, not a new one: its state survived.
        again = ember.get_actor("keeper", namespace="ops")
        assert ember.get(again.incr.remote(), timeout=_TIMEOUT_S) == 2
        assert ember.get(found[0].incr.remote(), timeout=_TIMEOUT_S) == 3
        assert placement_group_table(pg)["state"] == "CREATED"
        placed = [where.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote()
                  for i in range(2)]
        assert [_role(n) for n in ember.get(placed, timeout=_TIMEOUT_S)] == ["b", "c"]
        # New work is placed by the new head as before, and the nodes are all back.
        wait_for(lambda: sum(n["Alive"] for n in ember.nodes()) == 3, timeout_s=_TIMEOUT_S,
                 what="the new head and both nodes alive")
        ember.kill(again)


@pytest.mark.timeout(120)
def test_only_a_call_in_flight_to_the_killed_head_fails_and_the_driver_works_on() -> None:
    """A placement group's ready() waits at the head while the group cannot be placed:
    killing the head then fails that call (and only it) with the typed error, and the
    same driver, attached to node b, works on once the head is back."""
    with _cluster(roles=("b",)) as cluster:
        holder = placement_group([{"node_b": 1}], name="holder")
        assert holder.wait(_TIMEOUT_S)
        waiting = placement_group([{"node_b": 1}], name="waiting")  # node b's node_b is taken
        ready = waiting.ready()
        # Node b forwards both requests to the head on one link, and the head handles them
        # in order: once this answer is back, ready()'s WaitPlacementGroup waits at the head.
        # (RESERVING: the head tried node b on a stale view, and node b will refuse.)
        assert placement_group_table(waiting)["state"] in ("PENDING", "RESERVING")
        _kill_head(cluster)
        with pytest.raises(EmberSystemError, match="may or may not have taken effect") as lost:
            ember.get(ready, timeout=_TIMEOUT_S)
        assert "WaitPlacementGroup" in str(lost.value) and "retry" in str(lost.value)

        # Made while the head is away: it waits for the head instead of failing.
        later: list = []
        table = threading.Thread(target=lambda: later.append(placement_group_table(holder)))
        table.start()
        _restart_head(cluster)
        table.join(_TIMEOUT_S)
        assert later and later[0]["state"] == "CREATED"

        # The same driver: a task round trip, a new named actor, both groups still there.
        assert ember.get(slow_square.remote(7, 0), timeout=_TIMEOUT_S) == 49
        fresh = Keeper.options(name="after-restart", namespace="ops").remote()
        assert ember.get(ember.get_actor("after-restart", namespace="ops").incr.remote(),
                         timeout=_TIMEOUT_S) == 1
        remove_placement_group(holder)
        wait_for(lambda: placement_group_table(waiting)["state"] == "CREATED", timeout_s=_TIMEOUT_S,
                 what="the waiting group placed once the holder is removed")
        remove_placement_group(waiting)
        ember.kill(fresh)


_REMOTE_DRIVER = r"""
import sys
import ember

ember.init(f"ember://{sys.argv[1]}")


@ember.remote
def add(a, b):
    return a + b


keeper = ember.get_actor("keeper", namespace="ops")
print("before", ember.get(add.remote(1, 2)), ember.get(keeper.incr.remote()), flush=True)
sys.stdin.readline()  # the head is killed and started again meanwhile
print("after", ember.get(add.remote(2, 3)), ember.get(keeper.incr.remote()), flush=True)
ember.shutdown()
"""


@pytest.mark.timeout(120)
def test_a_remote_driver_attached_to_a_worker_node_outlives_a_head_restart() -> None:
    """A driver on another machine (its own $TMPDIR, TCP only) given a worker node's
    address keeps its session and its actor handles across a head restart."""
    with _cluster() as cluster, tempfile.TemporaryDirectory(prefix="laptop-") as laptop:
        keeper = Keeper.options(name="keeper", namespace="ops", lifetime="detached",
                                resources={"node_c": 0.5}).remote()
        ember.get(keeper.incr.remote(), timeout=_TIMEOUT_S)
        nodes = _read_nodes(cluster["tmpdir"])
        (head_session,) = [d for d, info in nodes if info["head"]]
        with open(os.path.join(head_session, "token")) as f:
            token = f.read().strip()
        worker_node = next(info for _d, info in nodes if not info["head"])
        driver = subprocess.Popen(
            [sys.executable, "-c", _REMOTE_DRIVER, worker_node["tcp_address"].removeprefix("tcp:")],
            env={**os.environ, "TMPDIR": laptop, "EMBER_TOKEN": token}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        try:
            assert driver.stdout.readline().split() == ["before", "3", "2"]
            _kill_head(cluster)
            _restart_head(cluster)
            driver.stdin.write("go\n")
            driver.stdin.flush()
            assert driver.stdout.readline().split() == ["after", "5", "3"]
            assert driver.wait(_TIMEOUT_S) == 0
        finally:
            driver.kill()
            driver.wait()
        ember.kill(keeper)


@pytest.mark.timeout(120)
def test_a_head_on_redis_storage_restarts_with_its_detached_actor(redis_server: str) -> None:
    with _cluster(storage=redis_server, roles=("b",)) as cluster:
        keeper = Keeper.options(name="keeper", lifetime="detached", namespace="ops",
                                resources={"node_b": 0.5}).remote()
        assert ember.get(keeper.incr.remote(), timeout=_TIMEOUT_S) == 1
        _kill_head(cluster)
        _restart_head(cluster)
        found = ember.get_actor("keeper", namespace="ops")
        assert ember.get(found.incr.remote(), timeout=_TIMEOUT_S) == 2
        assert _role(ember.get(found.node.remote(), timeout=_TIMEOUT_S)) == "b"
        ember.kill(found)
    # `ember stop` ended the cluster on purpose: nothing is left for a next head to restore.
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(redis_server)
    assert not [k for k in client.keys("ember:*") if client.hlen(k)]
    client.close()


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(ember_cli() + args, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(60)
def test_storage_that_cannot_be_used_is_refused_with_the_fix() -> None:
    tmpdir = tempfile.mkdtemp(prefix="es-", dir="/tmp")
    env = {**os.environ, "TMPDIR": tmpdir}
    with reaped(tmpdir):
        done = _cli(["start", "--head", "--port", str(free_port()), "--storage", "redis://127.0.0.1:1"], env)
        assert done.returncode == 1
        assert "cannot reach Redis at redis://127.0.0.1:1/0" in done.stderr, done.stderr
        done = _cli(["start", "--address", "127.0.0.1:1", "--storage", "sqlite:///tmp/x.sqlite3"], env)
        assert done.returncode == 2 and "--storage is for the head" in done.stderr
        assert not _read_nodes(tmpdir)


@pytest.mark.timeout(60)
def test_submitted_jobs_outlive_a_head_restart_and_the_running_one_is_failed() -> None:
    """A head on its default SQLite storage: after a SIGKILL and a restart on the same port
    (the same session), ``ember job list`` shows every job; the one that was running died
    with the old head's supervisor and is FAILED, saying so; the finished one kept its
    status and its log."""
    tmpdir = tempfile.mkdtemp(prefix="ej-", dir="/tmp")
    env = {**os.environ, "TMPDIR": tmpdir}
    env.pop("EMBER_TOKEN", None)
    port = free_port()
    address = f"127.0.0.1:{port}"
    head_args = ["start", "--head", "--port", str(port), "--num-cpus", "1"]
    try:
        _run_cli(head_args, env)
        ((session_dir, head),) = _read_nodes(tmpdir)
        token_file = os.path.join(session_dir, "token")
        with JobSubmissionClient(address, token_file=token_file) as client:
            done = client.submit_job(entrypoint="echo finished before the restart", metadata={"n": "1"})
            assert client.wait_until_finished(done, timeout_s=30) == JobStatus.SUCCEEDED
            running = client.submit_job(
                entrypoint="python -c \"import time; print('up', flush=True); time.sleep(300)\"")
            wait_for(lambda: "up" in client.get_job_logs(running), timeout_s=30, what="the job to run")
            entrypoint_pid = client.get_job_info(running).driver_pid
        os.kill(head["pid"], signal.SIGKILL)
        # The supervisor sees the head's end of its stdin close and stops the entrypoint.
        wait_for(lambda: not _running(entrypoint_pid), timeout_s=15, what="the entrypoint to stop")
        _run_cli(head_args, env)

        with JobSubmissionClient(address, token_file=token_file) as client:
            jobs = {job.submission_id: job for job in client.list_jobs()}
            assert sorted(jobs) == sorted([done, running])
            assert jobs[done].status == JobStatus.SUCCEEDED and jobs[done].metadata == {"n": "1"}
            assert "finished before the restart" in client.get_job_logs(done)
            failed = jobs[running]
            assert failed.status == JobStatus.FAILED and failed.end_time, failed
            assert "the head restarted while this job was RUNNING" in failed.message
            assert failed.error_type == "JOB_SUPERVISOR_ERROR"
            assert "up" in client.get_job_logs(running)  # what it wrote before the restart
            out = _cli(["job", "list", "--address", address], env)
            assert out.returncode == 0 and done in out.stdout and running in out.stdout, out.stdout + out.stderr
            # A log whose file is gone (the old session removed) is a typed error naming it.
            os.remove(os.path.join(session_dir, "logs", f"job-driver-{done}.log"))
            with pytest.raises(EmberError, match="written by an earlier head to .*cannot be read now"):
                client.get_job_logs(done)
            # The restarted head runs new jobs, and a deleted job is gone for good.
            client.delete_job(done)
            again = client.submit_job(entrypoint="echo after the restart", submission_id=done)
            assert client.wait_until_finished(again, timeout_s=30) == JobStatus.SUCCEEDED
            assert "after the restart" in client.get_job_logs(again)
    finally:
        stop_cli_nodes(tmpdir, env, "the restarted head and its jobs to exit")
