"""Tasks: arguments, nesting, num_returns, dynamic graphs, retries, max_calls, cancel."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import numpy as np
import psutil
import pytest

import ember

from conftest import wait_for, process_gone
from ember.exceptions import TaskCancelledError, TaskError, WorkerCrashedError

pytestmark = pytest.mark.timeout(30)




def _read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    return int(text) if text.endswith("\n") else None


def _block_forever() -> None:
    """A task body that only ends by being cancelled or killed (interruptible loop)."""
    while True:
        time.sleep(0.01)


@ember.remote
def add(x: int, y: int = 0) -> int:
    return x + y


@ember.remote
def identity(value: Any) -> Any:
    return value


@ember.remote
def getpid() -> int:
    return os.getpid()


@ember.remote
def describe(value: Any) -> str:
    return type(value).__name__


@ember.remote
def first_item_type(items: list) -> str:
    return type(items[0]).__name__


@ember.remote
def sum_nested(items: list) -> int:
    return sum(ember.get(items))


@ember.remote
def tree(depth: int) -> int:
    """Counts the tasks in a binary tree of nested tasks."""
    if depth == 0:
        return 1
    return 1 + sum(ember.get([tree.remote(depth - 1), tree.remote(depth - 1)]))


@ember.remote
def write_pid_then_block(path: str) -> None:
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")
    _block_forever()


@ember.remote
def die_once_then_return_pid(path: str) -> int:
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")
        _block_forever()
    return os.getpid()


# --- start-up ---------------------------------------------------------------------------


def test_the_first_remote_call_starts_ember_without_init(fresh_ember) -> None:
    ember.shutdown()
    assert not ember.is_initialized()
    assert ember.get(add.remote(1, 2)) == 3
    assert ember.is_initialized()


def test_shutdown_twice_is_safe_and_init_works_again(fresh_ember) -> None:
    ember.shutdown()
    ember.shutdown()
    assert not ember.is_initialized()
    ember.init(num_cpus=1)
    assert ember.get(add.remote(2, 2)) == 4


# --- arguments and results --------------------------------------------------------------


def test_a_task_returns_its_value(ember_local) -> None:
    assert ember.get(add.remote(1, y=2)) == 3


def test_get_of_a_list_keeps_the_order_and_accepts_duplicates(ember_local) -> None:
    refs = [add.remote(i) for i in range(20)]
    assert ember.get(refs) == list(range(20))
    assert ember.get([refs[3], refs[1], refs[3]]) == [3, 1, 3]


def test_top_level_ref_arguments_arrive_as_values(ember_local) -> None:
    ref = ember.put(41)
    assert ember.get(add.remote(ref, y=add.remote(1))) == 42
    assert ember.get(describe.remote(ref)) == "int"
    assert ember.get(describe.remote(value=ref)) == "int"


def test_refs_nested_in_arguments_arrive_as_refs(ember_local) -> None:
    refs = [ember.put(1), add.remote(2)]
    assert ember.get(first_item_type.remote(refs)) == "ObjectRef"
    assert ember.get(sum_nested.remote(refs)) == 3
    assert ember.get(describe.remote({"ref": refs[0]})) == "dict"


def test_a_task_waits_for_the_tasks_its_arguments_come_from(ember_local) -> None:
    ref = add.remote(0)
    for i in range(1, 10):
        ref = add.remote(ref, i)
    assert ember.get(ref) == sum(range(10))


def test_large_arguments_and_results_go_through_the_store(ember_local) -> None:
    arr = np.arange(1_000_000, dtype=np.float64)  # 8 MB: far above the inline limit

    @ember.remote
    def double(a: np.ndarray) -> np.ndarray:
        return a * 2

    out = ember.get(double.remote(arr))
    np.testing.assert_array_equal(out, arr * 2)


def test_zero_cpu_tasks_run(ember_local) -> None:
    assert ember.get(add.options(num_cpus=0).remote(5)) == 5


def test_closures_and_lambdas_defined_in_tests_travel_by_value(ember_local) -> None:
    scale = 3
    apply = ember.remote(lambda x: x * scale)
    assert ember.get(apply.remote(4)) == 12


@ember.remote
def rendezvous(directory: str, me: int, n: int, timeout_s: float) -> bool:
    """Arrive, then wait until ``n`` tasks arrived: True only if they ran at the same time."""
    open(os.path.join(directory, str(me)), "w").close()
    deadline = time.monotonic() + timeout_s
    while len(os.listdir(directory)) < n:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_tasks_submitted_together_run_in_parallel_on_free_cpus(ember_local, tmp_path) -> None:
    assert ember.get(add.remote(0)) == 0  # a warm worker is leased and lingers
    refs = [rendezvous.remote(str(tmp_path), i, 2, 3.0) for i in range(2)]
    assert ember.get(refs, timeout=20) == [True, True]


# --- nesting and dynamic graphs ---------------------------------------------------------


def test_nested_tasks_do_not_deadlock_a_small_cluster(ember_local) -> None:
    """A task blocked in get releases its CPU: 7 parents block at once on 2 CPUs."""
    assert ember.get(tree.remote(3), timeout=25) == 15


def test_a_task_can_return_refs_to_tasks_it_submitted(ember_local) -> None:
    @ember.remote
    def fan_out(n: int) -> list:
        return [add.remote(i, 100) for i in range(n)]

    refs = ember.get(fan_out.remote(4))
    assert all(isinstance(r, ember.ObjectRef) for r in refs)
    assert ember.get(refs) == [100, 101, 102, 103]


def test_a_dynamic_graph_grows_from_results(ember_local) -> None:
    """Each level's size depends on the previous level's results (not known upfront)."""
    @ember.remote
    def split(n: int) -> list[int]:
        return [n // 2, n - n // 2] if n > 1 else [n]

    frontier = [ember.put(10)]
    leaves = 0
    while frontier:
        parts = ember.get([split.remote(r) for r in frontier])
        frontier = []
        for part in parts:
            if len(part) == 1:
                leaves += part[0]
            else:
                frontier += [ember.put(p) for p in part]
    assert leaves == 10


def test_wait_drives_a_pipeline_as_results_arrive(ember_local) -> None:
    pending = [add.remote(i, 1) for i in range(8)]
    results = []
    while pending:
        ready, pending = ember.wait(pending, num_returns=1, timeout=10)
        assert ready, "wait returned nothing within its timeout"
        results += ember.get(ready)
    assert sorted(results) == list(range(1, 9))


# --- num_returns ------------------------------------------------------------------------


def test_num_returns_gives_one_ref_per_value(ember_local) -> None:
    @ember.remote(num_returns=3)
    def three() -> tuple:
        return 1, "two", [3]

    refs = three.remote()
    assert isinstance(refs, list) and len(refs) == 3
    assert ember.get(refs) == [1, "two", [3]]
    a, b = identity.options(num_returns=2).remote((1, 2))  # a tuple of two values
    assert ember.get([a, b]) == [1, 2]


def test_returning_the_wrong_number_of_values_is_an_error(ember_local) -> None:
    @ember.remote(num_returns=2)
    def one_too_many() -> tuple:
        return 1, 2, 3

    refs = one_too_many.remote()
    for ref in refs:
        with pytest.raises(ValueError, match="num_returns=2") as info:
            ember.get(ref)
        assert isinstance(info.value, TaskError)
    assert ember.get(add.remote(1)) == 1


# --- retries ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_task_is_retried_after_its_worker_is_killed(fresh_ember, tmp_path) -> None:
    marker = str(tmp_path / "pid")
    ref = die_once_then_return_pid.options(max_retries=1).remote(marker)
    killed = wait_for(lambda: _read_pid(marker), what="the first attempt to start")
    os.kill(killed, signal.SIGKILL)
    pid = ember.get(ref, timeout=30)
    assert pid != killed


@pytest.mark.timeout(60)
def test_a_killed_task_without_retries_fails_with_worker_crashed(fresh_ember, tmp_path) -> None:
    marker = str(tmp_path / "pid")
    ref = write_pid_then_block.options(max_retries=0).remote(marker)
    os.kill(wait_for(lambda: _read_pid(marker), what="the task to start"), signal.SIGKILL)
    with pytest.raises(WorkerCrashedError, match="write_pid_then_block"):
        ember.get(ref, timeout=30)
    assert ember.get(add.remote(2)) == 2


@pytest.mark.timeout(60)
def test_retries_run_out_after_max_retries_worker_deaths(fresh_ember, tmp_path) -> None:
    """max_retries=1 means two attempts: killing both fails the task."""
    @ember.remote(max_retries=1)
    def record_attempt(directory: str) -> None:
        n = len(os.listdir(directory))
        with open(os.path.join(directory, f"attempt-{n}"), "w") as f:
            f.write(f"{os.getpid()}\n")
        _block_forever()

    ref = record_attempt.remote(str(tmp_path))
    for n in range(2):
        path = str(tmp_path / f"attempt-{n}")
        os.kill(wait_for(lambda: _read_pid(path), what=f"attempt {n}"), signal.SIGKILL)
    with pytest.raises(WorkerCrashedError) as info:
        ember.get(ref, timeout=30)
    assert info.value.attempts == 2
    assert sorted(os.listdir(tmp_path)) == ["attempt-0", "attempt-1"]


def test_application_errors_are_not_retried_by_default(ember_local, tmp_path) -> None:
    @ember.remote(max_retries=3)
    def fail_and_count(path: str) -> None:
        with open(path, "a") as f:
            f.write("x")
        raise ValueError("application error")

    path = str(tmp_path / "count")
    with pytest.raises(ValueError):
        ember.get(fail_and_count.remote(path))
    assert open(path).read() == "x"


def test_retry_exceptions_retries_application_errors(ember_local, tmp_path) -> None:
    @ember.remote(max_retries=2, retry_exceptions=True)
    def flaky(path: str) -> int:
        with open(path, "a") as f:
            f.write("x")
        attempts = len(open(path).read())
        if attempts < 3:
            raise ConnectionError(f"transient failure {attempts}")
        return attempts

    assert ember.get(flaky.remote(str(tmp_path / "count"))) == 3


def test_retry_exceptions_gives_up_after_max_retries(ember_local, tmp_path) -> None:
    @ember.remote(max_retries=1, retry_exceptions=True)
    def always_fails(path: str) -> None:
        with open(path, "a") as f:
            f.write("x")
        raise ConnectionError("still failing")

    path = str(tmp_path / "count")
    with pytest.raises(ConnectionError, match="still failing"):
        ember.get(always_fails.remote(path))
    assert open(path).read() == "xx"


def test_retry_exceptions_list_retries_only_those_types(ember_local, tmp_path) -> None:
    @ember.remote(max_retries=3, retry_exceptions=[ConnectionError])
    def fail_with(path: str, error: type) -> None:
        with open(path, "a") as f:
            f.write("x")
        raise error("boom")

    retried, not_retried = str(tmp_path / "retried"), str(tmp_path / "not_retried")
    with pytest.raises(ConnectionError):
        ember.get(fail_with.remote(retried, ConnectionError))
    with pytest.raises(KeyError):
        ember.get(fail_with.remote(not_retried, KeyError))
    assert open(retried).read() == "xxxx"
    assert open(not_retried).read() == "x"


# --- max_calls --------------------------------------------------------------------------


def test_max_calls_one_runs_every_call_in_a_new_worker(ember_local) -> None:
    once = getpid.options(max_calls=1)
    pids = [ember.get(once.remote()) for _ in range(3)]
    assert len(set(pids)) == 3
    for pid in pids:
        wait_for(lambda: process_gone(pid), what=f"worker {pid} to exit")


def test_max_calls_makes_a_worker_exit_after_n_calls(ember_local) -> None:
    twice = getpid.options(max_calls=2)
    pids = [ember.get(twice.remote()) for _ in range(6)]
    counts = {pid: pids.count(pid) for pid in pids}
    assert max(counts.values()) <= 2, counts
    for pid, n in counts.items():
        if n == 2:
            wait_for(lambda: process_gone(pid), what=f"worker {pid} to exit")


# --- cancel -----------------------------------------------------------------------------


def test_cancelling_a_task_waiting_for_its_arguments(ember_local, tmp_path) -> None:
    blocker = write_pid_then_block.remote(str(tmp_path / "pid"))
    waiting = add.remote(blocker)
    ember.cancel(waiting)
    with pytest.raises(TaskCancelledError):
        ember.get(waiting, timeout=10)
    ember.cancel(blocker)
    with pytest.raises(TaskCancelledError):
        ember.get(blocker, timeout=10)
    assert ember.get(add.remote(3)) == 3


def test_cancelling_a_task_waiting_for_a_cpu(ember_local, tmp_path) -> None:
    """A 2-CPU task holds the node, so the next task is queued; cancelling it never runs it."""
    busy_marker = str(tmp_path / "busy")
    busy = write_pid_then_block.options(num_cpus=2).remote(busy_marker)
    wait_for(lambda: _read_pid(busy_marker), what="the CPUs to be busy")
    marker = str(tmp_path / "queued")
    queued = write_pid_then_block.remote(marker)
    ember.cancel(queued)
    with pytest.raises(TaskCancelledError):
        ember.get(queued, timeout=10)
    ember.cancel(busy)
    with pytest.raises(TaskCancelledError):
        ember.get(busy, timeout=10)
    assert ember.get(add.remote(4)) == 4
    assert not os.path.exists(marker)


def test_cancelling_a_running_task_interrupts_it(ember_local, tmp_path) -> None:
    marker = str(tmp_path / "pid")
    ref = write_pid_then_block.remote(marker)
    pid = wait_for(lambda: _read_pid(marker), what="the task to start")
    ember.cancel(ref)
    with pytest.raises(TaskCancelledError, match="write_pid_then_block"):
        ember.get(ref, timeout=10)
    assert psutil.pid_exists(pid) and not process_gone(pid)  # the worker survives
    assert ember.get(add.remote(5)) == 5


def test_cancelling_a_task_blocked_in_a_long_sleep(ember_local, tmp_path) -> None:
    """Ray's documented example: cancel interrupts ``time.sleep(10e6)``."""
    @ember.remote
    def sleep_long(path: str) -> None:
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(10e6)

    marker = str(tmp_path / "pid")
    ref = sleep_long.remote(marker)
    wait_for(lambda: _read_pid(marker), what="the task to start")
    ember.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ember.get(ref, timeout=10)


def test_force_cancel_kills_the_worker(ember_local, tmp_path) -> None:
    @ember.remote
    def ignore_interrupts(path: str) -> None:
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")
        while True:
            try:
                _block_forever()
            except KeyboardInterrupt:
                pass

    marker = str(tmp_path / "pid")
    ref = ignore_interrupts.remote(marker)
    pid = wait_for(lambda: _read_pid(marker), what="the task to start")
    ember.cancel(ref, force=True)
    with pytest.raises(TaskCancelledError):
        ember.get(ref, timeout=10)
    wait_for(lambda: process_gone(pid), what="the worker to be killed")
    assert ember.get(add.remote(6)) == 6


def test_cancel_after_the_task_finished_keeps_its_value(ember_local) -> None:
    ref = add.remote(7)
    assert ember.get(ref) == 7
    ember.cancel(ref)
    assert ember.get(ref) == 7


def test_recursive_cancel_also_cancels_the_tasks_it_submitted(ember_local, tmp_path) -> None:
    @ember.remote
    def parent(path: str) -> None:
        ember.get(write_pid_then_block.remote(path))

    marker = str(tmp_path / "child")
    ref = parent.remote(marker)
    child_pid = wait_for(lambda: _read_pid(marker), what="the child task to start")
    ember.cancel(ref, recursive=True)
    with pytest.raises(TaskCancelledError):
        ember.get(ref, timeout=10)
    # The child was interrupted: its worker is free again for new tasks.
    wait_for(lambda: ember.available_resources().get("CPU", 0) == 2, what="both CPUs to be free")
    assert psutil.pid_exists(child_pid)
