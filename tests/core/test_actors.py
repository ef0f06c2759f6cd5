"""Actors: ordering, handles, names and namespaces, lifetimes, concurrency, death."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
from typing import Any

import pytest

import ember

from conftest import wait_for, process_gone
from ember.exceptions import ActorDiedError, RayActorError, TaskError

pytestmark = pytest.mark.timeout(30)




@ember.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.value = start
        self.log: list = []

    def incr(self, by: int = 1) -> int:
        self.value += by
        return self.value

    def record(self, item: Any) -> None:
        self.log.append(item)

    def get_log(self) -> list:
        return self.log

    def pid(self) -> int:
        return os.getpid()

    def fail(self, message: str) -> None:
        raise KeyError(message)

    def block(self) -> None:
        while True:
            time.sleep(0.01)

    @ember.method(num_returns=2)
    def pair(self) -> tuple:
        return self.value, -self.value


@ember.remote
def add(x: int, y: int = 0) -> int:
    return x + y


@ember.remote
def incr_from_task(counter: Any, times: int) -> int:
    last = 0
    for _ in range(times):
        last = ember.get(counter.incr.remote())
    return last


@ember.remote
def lookup_and_incr(name: str, namespace: str | None) -> int:
    return ember.get(ember.get_actor(name, namespace=namespace).incr.remote())


# --- calls ------------------------------------------------------------------------------


def test_an_actor_keeps_state_between_calls(ember_local) -> None:
    c = Counter.remote(10)
    assert ember.get([c.incr.remote(), c.incr.remote(5)]) == [11, 16]


def test_calls_from_one_caller_run_in_submission_order(ember_local) -> None:
    c = Counter.remote()
    for i in range(300):
        c.record.remote(i)
    assert ember.get(c.get_log.remote()) == list(range(300))


def test_calls_waiting_for_arguments_keep_their_order(ember_local) -> None:
    """A call whose argument is not ready yet holds back the calls behind it."""
    @ember.remote
    def slow_value(directory: str) -> str:
        deadline = time.monotonic() + 10
        while not os.path.exists(os.path.join(directory, "go")) and time.monotonic() < deadline:
            time.sleep(0.005)
        return "slow"

    import tempfile
    with tempfile.TemporaryDirectory() as directory:
        c = Counter.remote()
        c.record.remote("first")
        c.record.remote(slow_value.remote(directory))
        c.record.remote("third")
        open(os.path.join(directory, "go"), "w").close()
        assert ember.get(c.get_log.remote()) == ["first", "slow", "third"]


def test_method_num_returns_from_the_decorator_and_options(ember_local) -> None:
    c = Counter.remote(3)
    a, b = c.pair.remote()
    assert ember.get([a, b]) == [3, -3]
    x, y = c.get_log.options(num_returns=2).remote()  # the log is [] -> not two values
    with pytest.raises(ValueError, match="num_returns=2"):
        ember.get(x)


def test_an_exception_in_a_method_leaves_the_actor_alive(ember_local) -> None:
    c = Counter.remote()
    with pytest.raises(KeyError, match="no such key") as info:
        ember.get(c.fail.remote("no such key"))
    assert isinstance(info.value, TaskError)
    assert "Counter.fail" in str(info.value)
    assert ember.get(c.incr.remote()) == 1


def test_unknown_methods_are_reported_with_the_valid_ones(ember_local) -> None:
    c = Counter.remote()
    with pytest.raises(AttributeError, match="no method 'incrr'.*incr"):
        c.incrr.remote()


def test_actors_take_no_cpu_while_they_live(ember_local) -> None:
    """Ray's default: 1 CPU to place an actor, none held, so 4 actors fit on 2 CPUs."""
    counters = [Counter.remote(i) for i in range(4)]
    assert ember.get([c.incr.remote() for c in counters], timeout=20) == [1, 2, 3, 4]
    assert ember.get(add.remote(1, 1)) == 2
    wait_for(lambda: ember.available_resources().get("CPU") == 2, what="2 CPUs to be free")


def test_an_actor_with_num_cpus_holds_them_for_its_life(ember_local) -> None:
    c = Counter.options(num_cpus=1).remote()
    ember.get(c.incr.remote())
    wait_for(lambda: ember.available_resources().get("CPU") == 1, what="1 CPU to be held")
    ember.kill(c)
    wait_for(lambda: ember.available_resources().get("CPU") == 2, what="the CPU to come back")


# --- handles ----------------------------------------------------------------------------


def test_handles_can_be_passed_to_tasks(ember_local) -> None:
    c = Counter.remote()
    lasts = ember.get([incr_from_task.remote(c, 5) for _ in range(2)])
    assert max(lasts) == 10 and min(lasts) >= 5
    assert ember.get(c.incr.remote(0)) == 10


def test_handles_can_be_passed_to_other_actors(ember_local) -> None:
    @ember.remote
    class Forwarder:
        def __init__(self, target: Any) -> None:
            self.target = target

        def forward(self, by: int) -> int:
            return ember.get(self.target.incr.remote(by))

        def forward_to(self, other: Any, by: int) -> int:
            return ember.get(other.incr.remote(by))

    c, d = Counter.remote(), Counter.remote(100)
    f = Forwarder.remote(c)
    assert ember.get(f.forward.remote(2)) == 2
    assert ember.get(f.forward_to.remote(d, 3)) == 103
    assert ember.get(c.incr.remote(0)) == 2


def test_a_handle_returned_from_a_task_works(ember_local) -> None:
    @ember.remote
    def make_counter(start: int) -> Any:
        c = Counter.remote(start)
        ember.get(c.incr.remote(0))
        return c

    c = ember.get(make_counter.remote(7))
    assert ember.get(c.incr.remote()) == 8


def test_an_actor_dies_when_its_last_handle_is_dropped(ember_local) -> None:
    c = Counter.remote()
    pid = ember.get(c.pid.remote())
    del c
    gc.collect()
    wait_for(lambda: process_gone(pid), what="the unreferenced actor to exit")


def test_a_handle_held_by_a_task_result_keeps_the_actor_alive(ember_local) -> None:
    c = Counter.remote()
    pid = ember.get(c.pid.remote())
    box = ember.put([c])
    del c
    gc.collect()
    assert ember.get(ember.get(box)[0].incr.remote()) == 1
    assert not process_gone(pid)


# --- names, namespaces, lifetimes -------------------------------------------------------


def test_named_actors_are_found_by_name(ember_local) -> None:
    c = Counter.options(name="named-counter").remote()
    ember.get(c.incr.remote())
    found = ember.get_actor("named-counter")
    assert found == c
    assert ember.get(found.incr.remote()) == 2
    assert ember.get(lookup_and_incr.remote("named-counter", None)) == 3


def test_a_name_already_taken_is_refused(ember_local) -> None:
    c = Counter.options(name="taken").remote()
    with pytest.raises(ValueError, match="taken"):
        Counter.options(name="taken").remote()
    assert ember.get(c.incr.remote()) == 1


def test_names_are_scoped_by_namespace(ember_local) -> None:
    a = Counter.options(name="shared-name", namespace="team-a").remote(0)
    b = Counter.options(name="shared-name", namespace="team-b").remote(100)
    assert ember.get(ember.get_actor("shared-name", namespace="team-a").incr.remote()) == 1
    assert ember.get(ember.get_actor("shared-name", namespace="team-b").incr.remote()) == 101
    with pytest.raises(ValueError, match="shared-name"):
        ember.get_actor("shared-name")  # not in this job's namespace
    assert ember.get(lookup_and_incr.remote("shared-name", "team-b")) == 102
    del a, b


def test_get_if_exists_returns_the_live_actor(ember_local) -> None:
    first = Counter.options(name="singleton", get_if_exists=True).remote(0)
    ember.get(first.incr.remote())
    second = Counter.options(name="singleton", get_if_exists=True).remote(50)
    assert second == first
    assert ember.get(second.incr.remote()) == 2


def test_a_killed_named_actor_frees_its_name(ember_local) -> None:
    c = Counter.options(name="reusable").remote()
    ember.get(c.incr.remote())
    ember.kill(c)
    with pytest.raises(ActorDiedError):
        ember.get(c.incr.remote(), timeout=10)
    wait_for(lambda: _name_free("reusable"), what="the name to be released")
    again = Counter.options(name="reusable").remote(5)
    assert ember.get(again.incr.remote()) == 6


def _name_free(name: str) -> bool:
    try:
        ember.get_actor(name)
    except ValueError:
        return True
    return False


def test_a_detached_actor_outlives_its_handles(ember_local) -> None:
    c = Counter.options(name="detached-counter", lifetime="detached").remote()
    pid = ember.get(c.pid.remote())
    ember.get(c.incr.remote())
    del c
    gc.collect()
    # Give the release a chance to reach the node manager before looking again.
    ember.get(add.remote(0))
    again = ember.get_actor("detached-counter")
    assert ember.get(again.incr.remote()) == 2
    assert ember.get(again.pid.remote()) == pid
    ember.kill(again)
    wait_for(lambda: process_gone(pid), what="the detached actor to be killed")


def test_init_namespace_is_used_for_named_actors(fresh_ember) -> None:
    ember.shutdown()
    ember.init(num_cpus=1, namespace="my-app")
    assert ember.get_runtime_context().namespace == "my-app"
    # Like Ray, a named (non-detached) actor is collected once no handle exists: keep one.
    created = Counter.options(name="in-app").remote()
    found = ember.get_actor("in-app", namespace="my-app")
    assert ember.get(found.incr.remote()) == 1
    assert found == created


# --- concurrency ------------------------------------------------------------------------


def test_threaded_actor_runs_calls_at_the_same_time(ember_local) -> None:
    """Three calls meet at a barrier: they only return if they run concurrently."""
    @ember.remote(max_concurrency=3)
    class Meeting:
        def __init__(self) -> None:
            self.barrier = threading.Barrier(3, timeout=10)

        def meet(self) -> int:
            return self.barrier.wait()

    m = Meeting.remote()
    assert sorted(ember.get([m.meet.remote() for _ in range(3)], timeout=20)) == [0, 1, 2]


def test_a_default_actor_runs_one_call_at_a_time(ember_local) -> None:
    @ember.remote
    class Serial:
        def __init__(self) -> None:
            self.running = 0
            self.peak = 0

        def work(self) -> None:
            self.running += 1
            self.peak = max(self.peak, self.running)
            time.sleep(0.02)
            self.running -= 1

        def peak_seen(self) -> int:
            return self.peak

    s = Serial.remote()
    ember.get([s.work.remote() for _ in range(5)])
    assert ember.get(s.peak_seen.remote()) == 1


def test_async_actor_runs_calls_concurrently_on_its_event_loop(ember_local) -> None:
    """Ten coroutines wait for each other: a serial actor would never finish one."""
    @ember.remote
    class AsyncMeeting:
        def __init__(self) -> None:
            self.arrived = 0
            self.all_here = asyncio.Event()

        async def meet(self, n: int) -> str:
            self.arrived += 1
            if self.arrived == n:
                self.all_here.set()
            await asyncio.wait_for(self.all_here.wait(), 10)
            return threading.current_thread().name

    m = AsyncMeeting.remote()
    threads = ember.get([m.meet.remote(10) for _ in range(10)], timeout=20)
    assert len(set(threads)) == 1  # one event loop thread ran them all


def test_async_actor_max_concurrency_limits_calls_in_flight(ember_local) -> None:
    @ember.remote(max_concurrency=2)
    class Limited:
        def __init__(self) -> None:
            self.running = 0
            self.peak = 0

        async def work(self) -> None:
            self.running += 1
            self.peak = max(self.peak, self.running)
            await asyncio.sleep(0.02)
            self.running -= 1

        async def peak_seen(self) -> int:
            return self.peak

    a = Limited.remote()
    ember.get([a.work.remote() for _ in range(8)])
    assert ember.get(a.peak_seen.remote()) == 2


# --- death ------------------------------------------------------------------------------


def test_kill_fails_pending_and_later_calls_with_actor_died(ember_local) -> None:
    c = Counter.remote()
    pid = ember.get(c.pid.remote())
    running = c.block.remote()
    queued = c.incr.remote()
    ember.kill(c)
    for ref in (running, queued, c.incr.remote()):
        with pytest.raises(ActorDiedError, match="kill") as info:
            ember.get(ref, timeout=10)
        assert isinstance(info.value, RayActorError)
    wait_for(lambda: process_gone(pid), what="the actor's process to exit")
    assert ember.get(add.remote(1)) == 1


def test_a_call_made_right_after_kill_fails(ember_local) -> None:
    """The kill goes to the node manager, the call straight to the actor: no race."""
    counters = [Counter.remote() for _ in range(5)]
    ember.get([c.incr.remote() for c in counters])
    for c in counters:
        ember.kill(c)
        with pytest.raises(ActorDiedError, match="kill"):
            ember.get(c.incr.remote(), timeout=10)


def test_exit_actor_ends_the_actor_cleanly(ember_local) -> None:
    @ember.remote
    class Quitter:
        def pid(self) -> int:
            return os.getpid()

        def quit(self) -> None:
            ember.exit_actor()

    q = Quitter.remote()
    pid = ember.get(q.pid.remote())
    q.quit.remote()
    with pytest.raises(ActorDiedError, match="exit_actor"):
        ember.get(q.pid.remote(), timeout=10)
    wait_for(lambda: process_gone(pid), what="the actor's process to exit")


def test_exit_actor_outside_an_actor_is_an_error(ember_local) -> None:
    with pytest.raises(TypeError, match="actor"):
        ember.exit_actor()


def test_an_actor_whose_init_raises_reports_it_on_every_call(ember_local) -> None:
    @ember.remote
    class Broken:
        def __init__(self) -> None:
            raise RuntimeError("bad config")

        def ping(self) -> str:
            return "pong"

    b = Broken.remote()
    with pytest.raises(ActorDiedError, match="bad config"):
        ember.get(b.ping.remote(), timeout=10)
    assert ember.get(add.remote(1)) == 1


@pytest.mark.timeout(60)
def test_an_actor_restarts_after_its_worker_is_killed(fresh_ember) -> None:
    """max_restarts=1: the first crash re-runs __init__ (state resets); the second is final."""
    c = Counter.options(max_restarts=1).remote(100)
    assert ember.get(c.incr.remote()) == 101
    first = ember.get(c.pid.remote())
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: _pid_after_restart(c), timeout_s=20, what="the actor to restart")
    assert second != first
    assert ember.get(c.incr.remote()) == 101
    os.kill(second, signal.SIGKILL)
    with pytest.raises(ActorDiedError):
        wait_for(lambda: _pid_after_restart(c), timeout_s=20, what="the final death")


def _pid_after_restart(c: Any) -> int | None:
    """The actor's pid, or None while calls fail because it is restarting."""
    try:
        return ember.get(c.pid.remote(), timeout=10)
    except ActorDiedError as e:
        if "restarted while this call was running" in str(e):
            return None
        raise


@pytest.mark.timeout(60)
def test_max_task_retries_replays_the_call_that_was_running(fresh_ember, tmp_path) -> None:
    @ember.remote(max_restarts=1, max_task_retries=1)
    class Fragile:
        def crash_first_time(self, path: str) -> int:
            if not os.path.exists(path):
                open(path, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            return os.getpid()

    a = Fragile.remote()
    assert ember.get(a.crash_first_time.remote(str(tmp_path / "crashed")), timeout=30) > 0


@pytest.mark.timeout(60)
def test_an_actor_without_restarts_dies_with_its_worker(fresh_ember) -> None:
    c = Counter.remote()
    pid = ember.get(c.pid.remote())
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ActorDiedError, match=f"pid {pid}"):
        ember.get(c.incr.remote(), timeout=20)
    assert ember.get(add.remote(2)) == 2


@pytest.mark.timeout(60)
def test_an_actor_whose_init_raises_gives_back_its_cpus(fresh_ember) -> None:
    """Two failed 1-CPU actors on a 2-CPU node must not leave later tasks waiting forever."""
    @ember.remote(num_cpus=1)
    class Failing:
        def __init__(self) -> None:
            raise RuntimeError("boom")

        def f(self) -> int:
            return 1

    @ember.remote
    def g() -> int:
        return 1

    for _ in range(2):
        actor = Failing.remote()
        with pytest.raises(ember.exceptions.ActorDiedError, match="boom"):
            ember.get(actor.f.remote(), timeout=20)
    assert ember.get(g.remote(), timeout=20) == 1
