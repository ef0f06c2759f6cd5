"""The state API on a real local cluster: tasks, actors, nodes, jobs, workers, objects,
summaries, logs and the timeline (issue 17)."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pytest

import ember
from ember._wire import protocol as p
from ember.exceptions import InvalidStateQueryError, StateNotFoundError
from ember.util import state
from conftest import wait_for

pytestmark = pytest.mark.timeout(120)


@ember.remote
def add(a: int, b: int) -> int:
    return a + b


@ember.remote(max_retries=0)
def explode(tag: str) -> None:
    raise ValueError(f"boom {tag}")


@ember.remote
def shout(word: str) -> str:
    print(f"shouting {word}")
    return word


@ember.remote
def wait_for_file(path: str) -> str:
    import time
    while not os.path.exists(path):
        time.sleep(0.02)
    return "released"


@ember.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n


def _task(task_id: str) -> dict | None:
    return state.get_task(task_id)


def test_finished_and_failed_tasks_are_listed_with_where_they_ran(ember_local: dict) -> None:
    ok = add.remote(1, 2)
    bad = explode.remote("x1")
    assert ember.get(ok) == 3
    with pytest.raises(ValueError):
        ember.get(bad)
    ok_id, bad_id = ok.task_id().hex(), bad.task_id().hex()
    row = wait_for(lambda: (r := _task(ok_id)) and r.state == "FINISHED" and r, what="add finished")
    assert row.name == "add" and row.type == "NORMAL_TASK" and row.job_id
    assert row.node_id == ember.get_runtime_context().get_node_id()
    assert row.worker_pid and row.worker_id and row.end_time_ms >= row.start_time_ms
    failed = wait_for(lambda: (r := _task(bad_id)) and r.state == "FAILED" and r, what="explode failed")
    assert failed.error_type == "TASK_EXECUTION_EXCEPTION"
    assert "ValueError: boom x1" in failed.error_message and "Traceback" in failed.error_message
    only_failed = state.list_tasks(filters=[("state", "=", "FAILED"), ("name", "=", "explode")])
    assert bad_id in [r.task_id for r in only_failed] and ok_id not in [r.task_id for r in only_failed]


def test_a_running_task_is_listed_as_running_until_it_ends(ember_local: dict, tmp_path: object) -> None:
    flag = os.path.join(str(tmp_path), "release")
    ref = wait_for_file.remote(flag)
    tid = ref.task_id().hex()
    wait_for(lambda: tid in [r.task_id for r in state.list_tasks(filters=[("state", "=", "RUNNING")])],
             what="the task listed as RUNNING")
    open(flag, "w").close()
    assert ember.get(ref) == "released"
    wait_for(lambda: (r := _task(tid)) and r.state == "FINISHED", what="the task FINISHED")


def test_actors_and_their_calls_are_listed(ember_local: dict) -> None:
    counter = Counter.remote()
    assert ember.get([counter.incr.remote() for _ in range(3)]) == [1, 2, 3]
    actor_id = counter._actor_id.hex()
    row = wait_for(lambda: (r := state.get_actor(actor_id)) and r.pid and r, what="the actor's pid")
    assert row.class_name == "Counter" and row.state == "ALIVE" and row.node_id
    calls = wait_for(lambda: (rows := state.list_tasks(filters=[("actor_id", "=", actor_id),
                                                                   ("state", "=", "FINISHED")],
                                                          detail=True)) and len(rows) >= 3 and rows,
                     what="three finished actor calls")
    assert {r.type for r in calls} >= {"ACTOR_TASK"} and all(r.worker_pid == row.pid for r in calls
                                                             if r.type == "ACTOR_TASK")
    ember.kill(counter)
    dead = wait_for(lambda: (r := state.get_actor(actor_id)) and r.state == "DEAD" and r, what="the actor DEAD")
    assert dead.pid == row.pid and dead.death_cause  # where it lived stays listed
    creation = state.get_task(actor_id)
    assert creation.type == "ACTOR_CREATION_TASK" and creation.name == "Counter.__init__"
    summary = state.summarize_actors()["cluster"]
    assert summary["summary"]["Counter"]["state_counts"].get("DEAD", 0) >= 1


@ember.remote
class Quitter:
    def quit(self) -> None:
        ember.exit_actor()


def test_a_call_that_ends_its_actor_is_not_left_running(ember_local: dict) -> None:
    quitter = Quitter.remote()
    call = quitter.quit.remote()
    with pytest.raises(ember.exceptions.ActorDiedError):
        ember.get(call)
    row = wait_for(lambda: (r := _task(call.task_id().hex())) and r.state == "FAILED" and r.worker_pid and r,
                   what="the call FAILED, with the worker it ran on")
    assert row.error_type == "ACTOR_DIED"


def test_nodes_jobs_workers_and_objects_are_listed(ember_local: dict) -> None:
    (node,) = state.list_nodes()
    assert node.state == "ALIVE" and node.is_head_node and node.resources_total["CPU"] == 2.0
    assert state.get_node(node.node_id).node_id == node.node_id
    job_id = ember.get_runtime_context().get_job_id()
    jobs = state.list_jobs(filters=[("job_id", "=", job_id)])
    assert [j.status for j in jobs] == ["RUNNING"] and jobs[0].driver_info["pid"] == str(os.getpid())
    assert jobs[0].start_time > 0 and jobs[0].end_time is None
    ember.get(add.remote(0, 0))
    workers = state.list_workers(detail=True)
    assert {"DRIVER", "WORKER"} <= {w.worker_type for w in workers}
    assert any(w.pid == os.getpid() for w in workers if w.worker_type == "DRIVER")
    big = ember.put(np.zeros(1 << 20, dtype=np.uint8))
    oid = big.hex()
    rows = state.list_objects(filters=[("object_id", "=", oid)])
    assert [r.object_size >= 1 << 20 for r in rows] == [True]
    assert state.get_objects(oid)[0].object_id == oid
    assert state.summarize_objects()["cluster"]["total_objects"] >= 1


def test_a_node_sends_only_the_objects_asked_for_and_counts_the_rest(ember_local: dict) -> None:
    """Filters and the limit apply on each node: a listing of a big store sends a page,
    and the total still counts every match (with Ray's truncation warning)."""
    refs = [ember.put(np.full(200_000, i, dtype=np.uint8)) for i in range(5)]
    with pytest.warns(UserWarning, match=r"objects match, 2 listed \(limit=2\)") as warned:
        page = state.list_objects(filters=[("reference_type", "!=", "nonsense")], limit=2)
    assert len(page) == 2 and int(str(warned[0].message).split()[0]) >= 5
    mine = {ref.hex() for ref in refs}
    assert len([r for r in state.list_objects(limit=1000) if r.object_id in mine]) == 5
    del refs


def test_summary_counts_tasks_by_function_and_state(ember_local: dict) -> None:
    ember.get([add.remote(i, i) for i in range(5)])
    summary = wait_for(lambda: (s := state.summarize_tasks()["cluster"]) and
                       s["summary"].get("add", {}).get("state_counts", {}).get("FINISHED", 0) >= 5 and s,
                       what="five finished `add` in the summary")
    assert summary["summary_by"] == "func_name" and summary["total_tasks"] >= 5


def test_bad_filters_and_ids_are_typed_errors_and_the_runtime_keeps_working(ember_local: dict) -> None:
    with pytest.raises(InvalidStateQueryError, match="colour"):
        state.list_tasks(filters=[("colour", "=", "red")])
    with pytest.raises(InvalidStateQueryError, match="RUNING"):
        state.list_tasks(filters=[("state", "=", "RUNING")])
    with pytest.raises(InvalidStateQueryError, match="triple"):
        state.list_actors(filters=["state=ALIVE"])
    with pytest.raises(InvalidStateQueryError, match="limit"):
        state.list_nodes(limit=0)
    with pytest.raises(InvalidStateQueryError, match="hex"):
        state.get_actor("no-such-actor")
    assert state.get_actor("ab" * 16) is None  # well formed, names nothing: None, as in Ray
    assert state.get_task("cd" * 12) is None
    with pytest.raises(StateNotFoundError, match="task"):
        list(state.get_log(task_id="cd" * 12))
    with pytest.raises(InvalidStateQueryError, match="not a file name"):
        list(state.get_log(filename="../token", node_id=state.list_nodes()[0].node_id))
    assert ember.get(add.remote(2, 2)) == 4


def test_a_task_log_holds_what_the_task_printed(ember_local: dict) -> None:
    ref = shout.remote("hello-log")
    assert ember.get(ref) == "hello-log"
    tid = ref.task_id().hex()
    wait_for(lambda: (r := _task(tid)) and r.worker_id, what="the task's worker")
    text = wait_for(lambda: "shouting hello-log" in (t := "".join(state.get_log(task_id=tid, tail=50))) and t,
                    what="the printed line in the task's log")
    assert "shouting hello-log" in text
    files = state.list_logs()
    (names,) = files.values()
    assert "node_manager.log" in names and any(n.startswith("worker-") for n in names)


@ember.remote
class Talker:
    def say(self, text: str) -> None:
        print(text, flush=True)


def test_following_an_actors_log_yields_lines_as_they_are_written(ember_local: dict) -> None:
    talker = Talker.remote()
    ember.get(talker.say.remote("said first"))
    actor_id = talker._actor_id.hex()
    wait_for(lambda: (r := state.get_actor(actor_id)) and r.worker_id, what="the actor's worker")
    follow = state.get_log(actor_id=actor_id, follow=True, tail=10, interval_s=0.05)
    try:
        text = next(follow)
        while "said first" not in text:
            text += next(follow)
        ember.get(talker.say.remote("said second"))
        while "said second" not in text:  # the pytest timeout bounds this
            text += next(follow)
    finally:
        follow.close()
    assert text.index("said first") < text.index("said second")


def test_the_timeline_is_a_chrome_trace(ember_local: dict) -> None:
    ember.get([add.remote(i, 1) for i in range(3)])
    path = os.path.join(tempfile.mkdtemp(), "trace.json")
    wait_for(lambda: len([e for e in ember.timeline() if e["ph"] == "X" and e["name"] == "add"]) >= 3,
             what="three `add` slices in the timeline")
    assert ember.timeline(path) is None
    with open(path) as f:
        events = json.load(f)
    slices = [e for e in events if e["ph"] == "X"]
    assert slices and all({"ts", "dur", "pid", "tid", "name"} <= set(e) for e in slices)
    os.remove(path)


def test_a_call_with_enable_task_events_false_is_not_recorded(ember_local: dict) -> None:
    if "enable_task_events" not in p.TaskSpec.__dataclass_fields__:
        pytest.skip("TaskSpec.enable_task_events comes with issue 14 (branch compat)")
    quiet = add.options(enable_task_events=False).remote(5, 5)
    loud = shout.remote("loud")
    assert ember.get([quiet, loud]) == [10, "loud"]
    quiet_actor = Counter.options(enable_task_events=False).remote()
    quiet_call = quiet_actor.incr.remote()
    assert ember.get(quiet_call) == 1
    loud = shout.remote("louder")
    ember.get(loud)
    wait_for(lambda: (r := _task(loud.task_id().hex())) and r.state == "FINISHED", what="the loud task")
    assert _task(quiet.task_id().hex()) is None
    assert _task(quiet_call.task_id().hex()) is None  # the actor's methods default to its setting
    assert _task(quiet_actor._actor_id.hex()) is None  # nor its creation
    ember.kill(quiet_actor)


def test_recording_can_be_turned_off_for_a_process(monkeypatch: pytest.MonkeyPatch) -> None:
    if ember.is_initialized():
        ember.shutdown()
    monkeypatch.setenv("EMBER_ENABLE_TASK_EVENTS", "0")
    ember.init(num_cpus=1)
    try:
        ember.get([add.remote(1, 1) for _ in range(3)])
        assert state.list_tasks() == []
    finally:
        ember.shutdown()
