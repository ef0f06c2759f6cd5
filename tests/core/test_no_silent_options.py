"""Every option ember accepts works, or is refused with a typed error that says what to do.

Covers the Ray options that used to be accepted and ignored: ``max_pending_calls``,
method-level ``max_task_retries``/``retry_exceptions``, ``init(log_to_driver=False)``,
``get_current_placement_group()``, the ``node:<ip>`` resource, refs from a shut-down
session; and the refusals (``label_selector``, concurrency groups,
per-task ``object_store_memory``, ``init(local_mode=True)``...).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

import ember
from ember.exceptions import (ActorDiedError, InvalidOptionError, NotInitializedError,
                              PendingCallsLimitExceededError, TaskError)
from ember.util.placement_group import (get_current_placement_group, placement_group,
                                        remove_placement_group)
from ember.util.scheduling_strategies import PlacementGroupSchedulingStrategy

pytestmark = pytest.mark.timeout(60)


@ember.remote
def one() -> int:
    return 1


@ember.remote
class Plain:
    def ping(self) -> str:
        return "pong"


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("option, value, hint", [
    ("label_selector", {"zone": "a"}, "custom resource"),
    ("object_store_memory", 1 << 20, "object_store_memory"),
])
def test_a_task_option_ember_does_not_implement_is_refused_with_the_fix(
        ember_local, option: str, value: object, hint: str) -> None:
    with pytest.raises(InvalidOptionError, match=f"{option}=.*not supported.*{hint}"):
        one.options(**{option: value})
    with pytest.raises(InvalidOptionError, match=option):
        ember.remote(**{option: value})(lambda: 1)
    # None is Ray's default for each of them: accepted, and the next call works.
    assert ember.get(one.options(**{option: None}).remote(), timeout=30) == 1


def test_concurrency_groups_are_refused_on_actors_and_methods(ember_local) -> None:
    with pytest.raises(InvalidOptionError, match="concurrency_groups.*max_concurrency"):
        Plain.options(concurrency_groups={"io": 2})
    with pytest.raises(InvalidOptionError, match="concurrency_group"):
        ember.method(concurrency_group="io")
    a = Plain.remote()
    with pytest.raises(InvalidOptionError, match="concurrency_group"):
        a.ping.options(concurrency_group="io")
    assert ember.get(a.ping.remote(), timeout=30) == "pong"
    ember.kill(a)


def test_a_task_has_no_namespace_option(ember_local) -> None:
    with pytest.raises(InvalidOptionError, match="unknown option 'namespace'"):
        one.options(namespace="x")


@pytest.mark.parametrize("kwargs, match", [
    ({"local_mode": True}, "local_mode"),
    ({"_temp_dir": "/tmp/x"}, "TMPDIR"),
    ({"include_dashboard": "yes"}, "include_dashboard"),
    ({"dashboard_port": -1}, "dashboard_port"),
    ({"_metrics_export_port": "8080"}, "_metrics_export_port"),
    ({"log_to_driver": "no"}, "log_to_driver"),
])
def test_init_refuses_what_it_cannot_do_before_starting_anything(kwargs: dict, match: str) -> None:
    if ember.is_initialized():
        ember.shutdown()
    with pytest.raises(InvalidOptionError, match=match):
        ember.init(num_cpus=1, **kwargs)
    assert not ember.is_initialized()


def test_max_pending_calls_zero_is_refused(ember_local) -> None:
    with pytest.raises(InvalidOptionError, match="max_pending_calls"):
        Plain.options(max_pending_calls=0)


# --- max_pending_calls -------------------------------------------------------------------


@ember.remote
class Gate:
    def __init__(self) -> None:
        self.event = threading.Event()

    def wait(self) -> str:
        self.event.wait(30)
        return "waited"

    def open(self) -> None:
        self.event.set()


def test_max_pending_calls_refuses_a_call_beyond_the_limit(ember_local) -> None:
    gate = Gate.options(max_concurrency=2, max_pending_calls=2).remote()
    first = gate.wait.remote()
    opener = gate.open.remote()
    with pytest.raises(PendingCallsLimitExceededError, match="max_pending_calls=2"):
        gate.wait.remote()
    assert ember.get([first, opener], timeout=30) == ["waited", None]
    # Results are in: calls are accepted again.
    assert ember.get(gate.wait.remote(), timeout=30) == "waited"
    ember.kill(gate)


# --- method-level retries ----------------------------------------------------------------


@ember.remote
class Flaky:
    def __init__(self) -> None:
        self.calls = 0

    @ember.method(max_task_retries=2, retry_exceptions=[ValueError])
    def fails_twice(self) -> int:
        self.calls += 1
        if self.calls < 3:
            raise ValueError(f"attempt {self.calls}")
        return self.calls

    def fails_once(self) -> int:
        self.calls += 1
        if self.calls == 1:
            raise KeyError("first")
        return self.calls

    def count(self) -> int:
        return self.calls


def test_a_method_retries_the_exceptions_it_lists(ember_local) -> None:
    a = Flaky.remote()
    assert ember.get(a.fails_twice.remote(), timeout=30) == 3
    ember.kill(a)


def test_method_retries_set_per_call_and_off_by_default(ember_local) -> None:
    a = Flaky.remote()
    with pytest.raises(KeyError):
        ember.get(a.fails_once.remote(), timeout=30)
    b = Flaky.remote()
    assert ember.get(b.fails_once.options(max_task_retries=1, retry_exceptions=True).remote(),
                     timeout=30) == 2
    # A listed class that does not match is not retried.
    c = Flaky.remote()
    with pytest.raises(KeyError):
        ember.get(c.fails_once.options(max_task_retries=3, retry_exceptions=[ValueError]).remote(),
                  timeout=30)
    assert ember.get(c.count.remote(), timeout=30) == 1
    for h in (a, b, c):
        ember.kill(h)


# --- async actors: exit_actor with several returns ----------------------------------------


@ember.remote
class AsyncQuitter:
    @ember.method(num_returns=2)
    async def quit(self) -> tuple:
        ember.exit_actor()

    async def ping(self) -> str:
        return "pong"


def test_an_async_method_with_two_returns_that_calls_exit_actor_replies(ember_local) -> None:
    """The async path used to encode a single None for two returns, fail, and never reply.
    As in Ray, the call that ends the actor fails with ActorDiedError (both refs)."""
    a = AsyncQuitter.remote()
    assert ember.get(a.ping.remote(), timeout=30) == "pong"
    x, y = a.quit.remote()
    for ref in (x, y):
        with pytest.raises(ActorDiedError, match="exit_actor"):
            ember.get(ref, timeout=30)
    with pytest.raises(ActorDiedError, match="exit_actor"):
        ember.get(a.ping.remote(), timeout=30)


# --- placement groups: the current one, captured children ----------------------------------


@ember.remote(num_cpus=0.5)
def current_group() -> str | None:
    pg = get_current_placement_group()
    return pg.id.hex() if pg is not None else None


@ember.remote(num_cpus=0.5)
def child_group() -> str | None:
    return ember.get(current_group.remote(), timeout=30)


@ember.remote(num_cpus=0.5)
class InGroup:
    def group(self) -> tuple:
        pg = get_current_placement_group()
        return (pg.id.hex() if pg else None, ember.get_runtime_context().get_placement_group_id(),
                pg.bundle_specs if pg else None)


def test_get_current_placement_group_names_the_group_a_task_or_actor_runs_in(ember_local) -> None:
    assert get_current_placement_group() is None  # the driver runs in none
    assert ember.get(current_group.remote(), timeout=30) is None
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(30)
    strategy = PlacementGroupSchedulingStrategy(pg)
    assert ember.get(current_group.options(scheduling_strategy=strategy).remote(), timeout=30) == pg.id.hex()
    actor = InGroup.options(scheduling_strategy=strategy).remote()
    assert ember.get(actor.group.remote(), timeout=30) == (pg.id.hex(), pg.id.hex(), [{"CPU": 1.0}])
    ember.kill(actor)  # its 0.5 CPU of the group is needed below
    # Without capture, a child task runs outside the group; with it, inside.
    assert ember.get(child_group.options(scheduling_strategy=strategy).remote(), timeout=30) is None
    capture = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
    assert ember.get(child_group.options(scheduling_strategy=capture).remote(), timeout=30) == pg.id.hex()
    remove_placement_group(pg)


def test_placement_group_lifetime_is_validated(ember_local) -> None:
    with pytest.raises(InvalidOptionError, match="lifetime"):
        placement_group([{"CPU": 1}], lifetime="forever")
    with pytest.raises(InvalidOptionError, match="bundle_label_selector"):
        placement_group([{"CPU": 1}], bundle_label_selector=[{"zone": "a"}])


# --- node:<ip> ---------------------------------------------------------------------------


def test_the_node_resource_names_the_nodes_address(ember_local) -> None:
    node = ember.nodes()[0]
    assert node["Resources"].get(f"node:{node['NodeManagerAddress']}") == 1.0
    pinned = one.options(resources={f"node:{node['NodeManagerAddress']}": 0.01})
    assert ember.get(pinned.remote(), timeout=30) == 1


# --- refs from a shut-down session ---------------------------------------------------------


def test_a_ref_from_a_shut_down_session_raises_not_initialized(fresh_ember) -> None:
    ref = ember.put(1)
    actor = Plain.remote()
    ember.shutdown()
    ember.init(num_cpus=1)
    with pytest.raises(NotInitializedError, match="shut down"):
        ember.get(ref, timeout=5)
    with pytest.raises(NotInitializedError):
        ember.get([ref], timeout=5)
    with pytest.raises(NotInitializedError):
        ember.wait([ref], timeout=5)
    with pytest.raises(NotInitializedError):
        ember.kill(actor)
    assert ember.get(ember.put(2), timeout=30) == 2  # the new session works


# --- log_to_driver ------------------------------------------------------------------------

_DRIVER = textwrap.dedent("""
    import sys
    import ember

    ember.init(num_cpus=1, log_to_driver=sys.argv[1] == "1")

    @ember.remote
    def talk():
        print("hello from the task", flush=True)
        return 1

    assert ember.get(talk.remote(), timeout=30) == 1
    ember.shutdown()
""")


@pytest.mark.parametrize("forward", [True, False])
def test_log_to_driver_false_keeps_task_output_out_of_the_driver(forward: bool) -> None:
    done = subprocess.run([sys.executable, "-c", _DRIVER, "1" if forward else "0"], capture_output=True,
                          text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    assert ("hello from the task" in done.stdout) is forward


def test_a_task_error_still_reaches_the_caller_with_retries_set(ember_local) -> None:
    @ember.remote(max_retries=1, retry_exceptions=[KeyError])
    def bad() -> None:
        raise ValueError("not retried")

    with pytest.raises(TaskError, match="not retried"):
        ember.get(bad.remote(), timeout=30)
