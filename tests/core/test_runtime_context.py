"""get_runtime_context(): resources, accelerators, the current actor, the node, cancellation;
enable_task_events; ``__ray_ready__``; method options on handles from get_actor."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import ember
from ember.exceptions import InvalidOptionError, TaskCancelledError
from ember.util.placement_group import placement_group, remove_placement_group
from ember.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from conftest import wait_for

pytestmark = pytest.mark.timeout(60)


@ember.remote
def assigned() -> dict[str, float]:
    return ember.get_runtime_context().get_assigned_resources()


@ember.remote
def accelerators() -> dict[str, list[str]]:
    return ember.get_runtime_context().get_accelerator_ids()


@ember.remote
def node_id() -> str:
    return ember.get_runtime_context().get_node_id()


@ember.remote
def current_actor_in_a_task() -> str:
    try:
        ember.get_runtime_context().current_actor
    except RuntimeError as e:
        return str(e)
    return "no error"


@ember.remote
class Probe:
    def assigned(self) -> dict[str, float]:
        return ember.get_runtime_context().get_assigned_resources()

    def me(self) -> ember.ActorHandle:
        return ember.get_runtime_context().current_actor

    def name(self) -> str:
        return "probe"


def test_assigned_resources_are_what_the_task_or_actor_asked_for(ember_local) -> None:
    ctx = ember.get_runtime_context()
    assert ember.get(assigned.remote()) == {"CPU": 1.0}
    assert ember.get(assigned.options(num_cpus=0.5).remote()) == {"CPU": 0.5}
    assert ember.get(assigned.options(num_cpus=0).remote()) == {}
    assert ember.get(Probe.remote().assigned.remote()) == {}  # Ray's actor default holds no CPU
    assert ember.get(Probe.options(num_cpus=1).remote().assigned.remote()) == {"CPU": 1.0}
    assert ctx.get_assigned_resources() == {}  # the driver holds nothing


def test_assigned_resources_inside_a_placement_group_use_the_plain_names(ember_local) -> None:
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(30)
    in_group = assigned.options(num_cpus=0.5, scheduling_strategy=PlacementGroupSchedulingStrategy(pg))
    assert ember.get(in_group.remote()) == {"CPU": 0.5}
    remove_placement_group(pg)


def test_accelerator_ids_node_id_and_current_actor(ember_local) -> None:
    assert ember.get(accelerators.remote()) == {"GPU": []}
    assert ember.get(node_id.remote()) == ember.get_runtime_context().get_node_id() == ember.nodes()[0]["NodeID"]
    probe = Probe.remote()
    me = ember.get(probe.me.remote())
    assert me == probe
    assert ember.get(me.name.remote()) == "probe"
    assert "only in an actor" in ember.get(current_actor_in_a_task.remote())
    with pytest.raises(RuntimeError, match="only in an actor"):
        ember.get_runtime_context().current_actor


def test_should_capture_child_tasks_in_placement_group(ember_local) -> None:
    assert ember.get_runtime_context().should_capture_child_tasks_in_placement_group is False


# --- cancellation seen from inside ---------------------------------------------------------


@ember.remote(max_concurrency=2)
class Worker:
    def __init__(self) -> None:
        self.started = threading.Event()

    def loop_until_cancelled(self, notes: ember.ActorHandle | None = None) -> str:
        self.started.set()
        if notes is not None:
            ember.get(notes.add.remote("started"))
        while not ember.get_runtime_context().is_canceled():
            time.sleep(0.01)
        return "saw the cancel"

    def is_started(self) -> bool:
        return self.started.is_set()

    def canceled_now(self) -> bool:
        return ember.get_runtime_context().is_canceled()


@ember.remote
class AsyncWorker:
    def __init__(self) -> None:
        self.sleeping = False

    async def is_sleeping(self) -> bool:
        return self.sleeping

    async def sleep(self) -> str:
        self.sleeping = True
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return "cancelled"  # swallowed: the caller still sees the cancel
        return "slept"

    async def ping(self) -> str:
        return "pong"

    async def is_canceled(self) -> str:
        try:
            ember.get_runtime_context().is_canceled()
        except RuntimeError as e:
            return str(e)
        return "no error"


def test_a_running_sync_actor_call_sees_is_canceled_and_its_caller_gets_task_cancelled(ember_local) -> None:
    w = Worker.remote()
    ref = w.loop_until_cancelled.remote()
    wait_for(lambda: ember.get(w.is_started.remote()), what="the call to start")
    assert ember.get(w.canceled_now.remote()) is False
    ember.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ember.get(ref, timeout=30)
    assert ember.get(w.is_started.remote())  # the actor lives on


def test_a_queued_actor_call_is_cancelled_without_running(ember_local) -> None:
    """The call waits in the actor's worker behind one that runs until it is cancelled:
    its cancel is answered at once, not after the running call."""
    notes = Notes.remote()
    w = Worker.options(max_concurrency=1).remote()
    first = w.loop_until_cancelled.remote(notes)
    wait_for(lambda: ember.get(notes.read.remote()) == ["started"], what="the first call to start")
    queued = w.is_started.remote()
    ember.cancel(queued)
    with pytest.raises(TaskCancelledError):
        ember.get(queued, timeout=30)
    ember.cancel(first)
    with pytest.raises(TaskCancelledError):
        ember.get(first, timeout=30)


def test_an_async_actor_call_is_cancelled_on_its_loop(ember_local) -> None:
    a = AsyncWorker.remote()
    assert ember.get(a.ping.remote()) == "pong"
    ref = a.sleep.remote()
    wait_for(lambda: ember.get(a.is_sleeping.remote()), what="the call to reach its await")
    ember.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ember.get(ref, timeout=30)
    assert ember.get(a.ping.remote()) == "pong"
    assert "async actor" in ember.get(a.is_canceled.remote())


@ember.remote
class Notes:
    def __init__(self) -> None:
        self.notes: list[object] = []

    def add(self, note: object) -> None:
        self.notes.append(note)

    def read(self) -> list[object]:
        return self.notes


@ember.remote
def swallow_the_interrupt(notes: ember.ActorHandle) -> str:
    ember.get(notes.add.remote(ember.get_runtime_context().is_canceled()))
    try:
        threading.Event().wait(60)
    except KeyboardInterrupt:
        ember.get(notes.add.remote(ember.get_runtime_context().is_canceled()))
    return "finished anyway"


def test_a_task_that_catches_the_interrupt_sees_is_canceled_and_still_reports_the_cancel(ember_local) -> None:
    notes = Notes.remote()
    ref = swallow_the_interrupt.remote(notes)
    wait_for(lambda: ember.get(notes.read.remote()) == [False], what="the task to start")
    ember.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ember.get(ref, timeout=30)
    assert ember.get(notes.read.remote()) == [False, True]


def test_is_canceled_in_the_driver_is_a_runtime_error(ember_local) -> None:
    with pytest.raises(RuntimeError, match="inside a task"):
        ember.get_runtime_context().is_canceled()


# --- __ray_ready__ -------------------------------------------------------------------------


def test_ray_ready_resolves_once_the_actor_is_up(ember_local) -> None:
    assert ember.get(Probe.remote().__ray_ready__.remote(), timeout=30) is True
    assert ember.get(AsyncWorker.remote().__ray_ready__.remote(), timeout=30) is True


# --- enable_task_events ---------------------------------------------------------------------


@ember.remote(enable_task_events=False)
def quiet() -> int:
    return 1


@ember.remote(enable_task_events=False)
class QuietActor:
    def default(self) -> int:
        return 1

    @ember.method(enable_task_events=True)
    def loud(self) -> int:
        return 2


def _spec_of(submit_name: str, call) -> object:
    """The TaskSpec a call submits (the real submitter runs it; we only look at it)."""
    rt = ember._client.context.runtime()
    target = rt.submitter if submit_name == "task" else rt.actor_submitter
    seen = []
    original = target.submit

    def spy(*args, **kwargs):
        seen.append(args[0] if submit_name == "task" else args[2])
        return original(*args, **kwargs)

    target.submit = spy
    try:
        ember.get(call())
    finally:
        target.submit = original
    return seen[0]


def test_enable_task_events_travels_on_each_task_spec(ember_local) -> None:
    assert _spec_of("task", quiet.remote).enable_task_events is False
    assert _spec_of("task", quiet.options(enable_task_events=True).remote).enable_task_events is True
    a = QuietActor.remote()
    assert _spec_of("actor", a.default.remote).enable_task_events is False
    assert _spec_of("actor", a.loud.remote).enable_task_events is True
    assert _spec_of("actor", a.loud.options(enable_task_events=False).remote).enable_task_events is False


@pytest.mark.parametrize("make", [
    lambda: ember.remote(enable_task_events="no")(lambda: 1),
    lambda: quiet.options(enable_task_events=1),
    lambda: ember.method(enable_task_events=None or "x"),
])
def test_enable_task_events_must_be_a_bool(make, ember_local) -> None:
    with pytest.raises(InvalidOptionError, match="enable_task_events must be True or False"):
        make()


# --- options of @ember.method reach handles from get_actor -----------------------------------


@ember.remote
class Flaky:
    def __init__(self) -> None:
        self.calls = 0

    @ember.method(num_returns=2, max_task_retries=2, retry_exceptions=[ValueError])
    def twice(self) -> tuple[int, int]:
        self.calls += 1
        if self.calls % 2:
            raise ValueError("first try fails")
        return self.calls, 0


def test_method_options_hold_on_a_handle_from_get_actor(ember_local) -> None:
    Flaky.options(name="flaky").remote()
    handle = ember.get_actor("flaky")
    calls, zero = handle.twice.remote()  # num_returns=2
    assert ember.get([calls, zero], timeout=30) == [2, 0]  # retried once after the ValueError
    ember.kill(handle)
