"""Failures: worker kills during a DAG, actor restarts mid-call, a killed driver, the
memory monitor, and the errors each of them shows the user.

Everything here uses real processes and real kills by pid; waits poll with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Iterator

import psutil
import pytest

import ember
from ember.cli import format_memory
from ember.exceptions import ActorDiedError, OutOfMemoryError, WorkerCrashedError
from ember._node.memory_monitor import Candidate, MemoryPolicy, MemoryUsage

from conftest import assert_no_leaked_processes, process_gone, wait_for

pytestmark = pytest.mark.timeout(60)



def _read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    return int(text) if text.endswith("\n") else None


def _write_pid(path: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(path + ".tmp", path)



def _block_forever() -> None:
    while True:
        time.sleep(0.01)


def _workers() -> list[psutil.Process]:
    """This driver's worker processes: the children of its node's fork server."""
    workers = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "ember._worker.fork_server" in " ".join(child.cmdline()):
                workers += [w for w in child.children() if w.status() != psutil.STATUS_ZOMBIE]
        except psutil.Error:  # exited (or a zombie) while we looked
            pass
    return workers


# --- the memory monitor's decisions (plain calls) -----------------------------------------

_GB = 1 << 30


def _task(lease_id: int, retriable: bool = True) -> Candidate:
    return Candidate(b"t%d" % lease_id, 1000 + lease_id, lease_id, False, retriable)


def _actor(lease_id: int, retriable: bool = True) -> Candidate:
    return Candidate(b"a%d" % lease_id, 2000 + lease_id, lease_id, True, retriable)


def test_the_policy_kills_nothing_below_the_threshold() -> None:
    policy = MemoryPolicy(0.9)
    assert policy.decide(MemoryUsage(8 * _GB, 10 * _GB), [_task(1)]) is None
    assert policy.decide(MemoryUsage(9 * _GB, 10 * _GB), [_task(1)]) is None  # at, not over


def test_the_policy_kills_the_newest_retriable_task_first() -> None:
    policy = MemoryPolicy(0.9)
    over = MemoryUsage(95 * _GB, 100 * _GB)
    candidates = [_task(1), _task(5, retriable=False), _task(3), _actor(9), _actor(7, retriable=False)]
    assert policy.decide(over, candidates) == _task(3)


def test_the_policy_prefers_retriable_actors_to_tasks_without_retries() -> None:
    over = MemoryUsage(95 * _GB, 100 * _GB)
    assert MemoryPolicy(0.9).decide(over, [_task(8, retriable=False), _actor(2)]) == _actor(2)
    assert MemoryPolicy(0.9).decide(over, [_task(1, retriable=False), _actor(2, retriable=False)]) \
        == _task(1, retriable=False)


def test_the_policy_waits_for_its_victim_to_exit_before_choosing_another() -> None:
    policy = MemoryPolicy(0.9)
    over = MemoryUsage(95 * _GB, 100 * _GB)
    victim = policy.decide(over, [_task(1), _task(2)])
    assert victim == _task(2)
    assert policy.decide(over, [_task(1)]) is None
    policy.worker_exited(b"t1")  # some other worker: still waiting
    assert policy.decide(over, [_task(1)]) is None
    policy.worker_exited(victim.worker_id)
    assert policy.decide(over, [_task(1)]) == _task(1)


def test_the_policy_rejects_a_threshold_outside_zero_to_one() -> None:
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match="memory_usage_threshold"):
            MemoryPolicy(bad)


# --- worker deaths ---------------------------------------------------------------------


@ember.remote(max_retries=-1)
def leaf(i: int) -> int:
    return i


@ember.remote(max_retries=-1)
def combine(a: int, b: int) -> int:
    return a + b


def test_a_tree_reduce_of_2000_tasks_survives_random_worker_kills(fresh_ember) -> None:
    """1024 leaves and 1023 combines; a worker is SIGKILLed after every ~8% of the tasks
    finish, so kills land while the DAG is running, and the sum must still be exact."""
    refs = [leaf.remote(i) for i in range(1024)]
    every = list(refs)
    level = refs
    while len(level) > 1:
        level = [combine.remote(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        every += level
    root = level[0]
    assert len(every) == 2047
    rng = random.Random(5)
    killed = []
    for done in range(160, len(every), 160):
        ember.wait(every, num_returns=done, timeout=30)
        workers = _workers()
        if workers:
            victim = rng.choice(workers)
            try:
                os.kill(victim.pid, signal.SIGKILL)
                killed.append(victim.pid)
            except ProcessLookupError:
                pass
    assert ember.get(root, timeout=30) == sum(range(1024))
    assert len(killed) >= 8
    wait_for(lambda: all(process_gone(pid) for pid in killed), what="the killed workers to exit")


@ember.remote(max_retries=0)
def write_pid_then_block(path: str) -> None:
    _write_pid(path)
    _block_forever()


@ember.remote(max_retries=0)
def exit_with_code(code: int) -> None:
    os._exit(code)


def test_worker_crashed_error_names_the_task_and_the_signal(fresh_ember, tmp_path) -> None:
    marker = str(tmp_path / "pid")
    ref = write_pid_then_block.remote(marker)
    pid = wait_for(lambda: _read_pid(marker), what="the task to start")
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerCrashedError) as info:
        ember.get(ref, timeout=30)
    message = str(info.value)
    assert "write_pid_then_block" in message and "SIGKILL" in message and str(pid) in message
    assert info.value.task_name.endswith("write_pid_then_block")
    assert "killed by signal SIGKILL" in info.value.exit_detail


def test_worker_crashed_error_gives_the_exit_code_of_os_exit(fresh_ember) -> None:
    with pytest.raises(WorkerCrashedError, match=r"exit_with_code.*exit code 7"):
        ember.get(exit_with_code.remote(7), timeout=30)
    assert ember.get(leaf.remote(3), timeout=30) == 3


def test_shutdown_with_a_large_pending_dag_fails_it_without_thread_errors(tmp_path) -> None:
    """Failing queued tasks at shutdown enqueues their dependents, whose lease requests fail
    at once: that must loop, not recurse (it used to overflow the stack of the thread
    that answers every waiter)."""
    script = tmp_path / "pending_dag.py"
    script.write_text(textwrap.dedent("""
        import ember
        ember.init(num_cpus=2)

        @ember.remote
        def leaf(i):
            return i

        @ember.remote
        def combine(a, b):
            return a + b

        level = [leaf.remote(i) for i in range(1024)]
        while len(level) > 1:
            level = [combine.remote(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        ember.shutdown()
        print("done")
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         cwd=str(tmp_path))
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr
    assert "Traceback" not in out.stderr, out.stderr


# --- actors ----------------------------------------------------------------------------


@ember.remote(max_restarts=1, max_task_retries=1)
class Doubler:
    """Each call and each __init__ leaves a file, so the test sees attempts and restarts."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        n = len([f for f in os.listdir(directory) if f.startswith("init-")])
        _write_pid(os.path.join(directory, f"init-{n}"))

    def double(self, x: int) -> tuple[int, int]:
        n = len([f for f in os.listdir(self.directory) if f.startswith("call-")])
        _write_pid(os.path.join(self.directory, f"call-{n}"))
        if n == 0:
            _block_forever()
        return 2 * x, os.getpid()


def test_an_actor_killed_mid_call_restarts_and_the_call_is_replayed(fresh_ember, tmp_path) -> None:
    actor = Doubler.remote(str(tmp_path))
    ref = actor.double.remote(21)
    first = wait_for(lambda: _read_pid(str(tmp_path / "call-0")), what="the first call to start")
    os.kill(first, signal.SIGKILL)
    value, pid = ember.get(ref, timeout=30)
    assert value == 42 and pid != first
    assert _read_pid(str(tmp_path / "init-1")) == pid  # __init__ ran again in the new process
    assert ember.get(actor.double.remote(5), timeout=30) == (10, pid)
    # The one restart is spent: the next kill is final and says why.
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ActorDiedError, match="SIGKILL"):
        ember.get(actor.double.remote(1), timeout=30)


# --- a driver killed with SIGKILL --------------------------------------------------------

_DRIVER = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    import ember

    marks = sys.argv[1]
    info = ember.init(num_cpus=2, object_store_memory=64 << 20)

    @ember.remote
    def block(path):
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\\n")
        while True:
            time.sleep(0.01)

    @ember.remote
    class Holder:
        def pid(self):
            return os.getpid()

    holder = Holder.remote()
    actor_pid = ember.get(holder.pid.remote())
    running = [block.remote(os.path.join(marks, f"task-{i}")) for i in range(2)]
    big = [ember.put(np.ones(3 << 20)) for _ in range(4)]  # 96 MiB into 64: spills
    deadline = time.monotonic() + 30
    while len(os.listdir(marks)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = ember.object_store_stats()
    print(json.dumps({"session_dir": info["session_dir"], "spilled_bytes": stats["spilled_bytes"]}),
          flush=True)
    time.sleep(600)
""")


@pytest.mark.timeout(90)
def test_a_driver_killed_with_sigkill_leaves_no_processes_or_files(tmp_path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    proc = subprocess.Popen([sys.executable, str(script), str(marks)], stdout=subprocess.PIPE,
                            cwd=str(tmp_path))
    try:
        state = json.loads(proc.stdout.readline())
        session_dir = state["session_dir"]
        assert state["spilled_bytes"] > 0
        assert len(os.listdir(marks)) == 2
        started = psutil.Process(proc.pid).children(recursive=True)
        # node manager, fork server, the actor's worker and two task workers at least
        assert len(started) >= 5
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: all(process_gone(p.pid) for p in started), timeout_s=20,
                  what=f"the killed driver's processes to exit: {[p.pid for p in started]}")
        wait_for(lambda: not os.path.exists(session_dir), timeout_s=20,
                  what=f"{session_dir} (sockets, logs, spilled objects) to be removed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


_DRIVER_THAT_NEVER_CONNECTS = textwrap.dedent("""
    import json, os
    from ember._node.launcher import node_resources, start_node
    node = start_node(*node_resources(1, None, None, 64 << 20), exit_with_first_driver=True)
    print(json.dumps({"pid": node.proc.pid, "session_dir": node.session_dir}), flush=True)
    os._exit(0)  # gone before registering: no disconnect will ever reach the node manager
""")


@pytest.mark.timeout(60)
def test_a_node_manager_whose_driver_died_before_registering_exits(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-c", _DRIVER_THAT_NEVER_CONNECTS], capture_output=True,
                         text=True, timeout=30, cwd=str(tmp_path), check=True)
    state = json.loads(out.stdout.splitlines()[-1])
    wait_for(lambda: process_gone(state["pid"]), timeout_s=20,
              what=f"the orphaned node manager (pid {state['pid']}) to exit")
    wait_for(lambda: not os.path.exists(state["session_dir"]), timeout_s=20,
              what=f"{state['session_dir']} to be removed")


# --- the memory monitor ----------------------------------------------------------------

#: Room above the memory in use when the test starts. Other processes on the machine
#: (tests run in parallel) may free up to the cap minus this meanwhile and the hog
#: still crosses it; if they cross it instead, the hog is still the only candidate.
_HEADROOM_BYTES = 400 << 20
#: The hog never holds more than this, so it cannot hurt the machine if the monitor fails.
_HOG_CAP_BYTES = 1400 << 20


@contextlib.contextmanager
def _low_memory_threshold_ember() -> Iterator[float]:
    """A cluster whose memory monitor fires a little above the memory in use now."""
    if ember.is_initialized():
        ember.shutdown()
    vm = psutil.virtual_memory()
    threshold = (vm.total - vm.available + _HEADROOM_BYTES) / vm.total
    info = ember.init(num_cpus=2, object_store_memory=128 << 20,
                      _system_config={"memory_usage_threshold": threshold,
                                      "memory_monitor_refresh_ms": 100})
    try:
        yield threshold
    finally:
        ember.shutdown()
    assert not os.path.exists(info["session_dir"])
    assert_no_leaked_processes()


@ember.remote
def allocate_without_bound(path: str) -> str:
    """Grows by 20 MiB steps (touched pages) until killed, up to _HOG_CAP_BYTES."""
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    chunks = []
    while len(chunks) * (20 << 20) < _HOG_CAP_BYTES:
        chunks.append(b"\x01" * (20 << 20))
        time.sleep(0.01)
    return "reached the cap"


@pytest.mark.timeout(180)
def test_the_memory_monitor_stops_a_task_that_allocates_without_bound(tmp_path) -> None:
    """The hog gets one retry, both attempts are killed, and get raises OutOfMemoryError.

    The threshold is set from the machine's memory in use at the start, and other test
    runs share this machine: if they free more than the hog's cap minus the headroom
    meanwhile, the hog reaches its cap unharmed. That round says nothing; try again.
    """
    for round_ in range(3):
        attempts = str(tmp_path / f"attempts-{round_}")
        with _low_memory_threshold_ember() as threshold:
            ref = allocate_without_bound.options(max_retries=1).remote(attempts)
            try:
                ember.get(ref, timeout=60)
                continue
            except OutOfMemoryError as e:
                err = e
            # The memory is back, and the next task runs.
            assert ember.get(leaf.remote(11), timeout=30) == 11
        break
    else:
        pytest.fail("the machine's memory kept falling faster than the hog grew; no round counted")
    pids = []
    if os.path.exists(attempts):
        with open(attempts) as f:
            pids = [int(line) for line in f]
    assert err.attempts == 2  # one retry, then the error
    # An attempt may be stopped before it writes its pid when other processes on this
    # shared machine push memory over the low threshold: still the monitor's doing.
    assert len(pids) <= 2 and err.pid > 0
    if len(pids) == 2:
        assert err.pid == pids[-1]
    assert err.used_bytes > err.threshold * err.total_bytes
    assert err.threshold == pytest.approx(threshold)
    message = str(err)
    assert "allocate_without_bound" in message and "memory monitor" in message
    assert "memory=" in message and "GiB" in message
    wait_for(lambda: all(process_gone(pid) for pid in pids), what="the killed workers to exit")


# --- ember memory ------------------------------------------------------------------------


def test_ember_memory_lists_the_largest_objects_and_who_holds_them(fresh_ember) -> None:
    import numpy as np
    refs = [ember.put(np.ones(4 << 20)) for _ in range(3)]  # 32 MiB each
    text = format_memory(ember.object_store_stats())
    assert "object store:" in text and "spilled:" in text and "node memory:" in text
    for ref in refs:
        assert ref.hex()[:26] in text
    assert f"driver pid {os.getpid()}" in text
    assert "32.0 MiB" in text


@pytest.mark.timeout(90)
def test_the_ember_memory_command_reports_a_running_cluster() -> None:
    # A private sessions root, so `ember start` cannot collide with another test's cluster.
    root = tempfile.mkdtemp(prefix="em-")
    env = {**os.environ, "TMPDIR": root}
    cli = [sys.executable, "-m", "ember.cli"]
    try:
        subprocess.run(cli + ["start", "--head", "--num-cpus", "1", "--object-store-memory",
                              str(64 << 20)], env=env, check=True, capture_output=True, timeout=60)
        out = subprocess.run(cli + ["memory"], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "object store: 0.0 / 64.0 MiB" in out.stdout
        assert "spilled: 0.0 MiB" in out.stdout
    finally:
        subprocess.run(cli + ["stop"], env=env, capture_output=True, timeout=60)
        import shutil
        shutil.rmtree(root, ignore_errors=True)
