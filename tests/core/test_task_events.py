"""Task events and state queries by plain calls: the per-process buffer, the head's table,
filters (issue 17). No processes: the decisions are tested apart from the I/O."""

from __future__ import annotations

import pytest

from ember._client.task_events import TaskEventBuffer
from ember._node.task_events import TaskEventStore
from ember._wire import protocol as p
from ember._wire.state_query import check_filters, check_id, check_limit, parse_filter
from ember.exceptions import InvalidStateQueryError, StateApiError

pytestmark = pytest.mark.timeout(60)

NODE, WORKER, OWNER, JOB = b"n" * 16, b"w" * 16, b"o" * 16, b"j" * 4


def _spec(i: int, actor_id: bytes | None = None) -> p.TaskSpec:
    return p.TaskSpec(i.to_bytes(12, "little"), f"f{i % 3}", b"fn", None, [], 1, OWNER, actor_id=actor_id)


def _batch(events: list[tuple], worker: bytes = WORKER, pid: int = 42, dropped: int = 0) -> p.TaskEvents:
    return p.TaskEvents(worker, NODE, pid, JOB, events, dropped)


def _buffer(sent: list, **kwargs: object) -> TaskEventBuffer:
    return TaskEventBuffer(sent.append, WORKER, NODE, JOB, **kwargs)


# --- filters -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, names", [
    (["state"], "triple"),
    ([("state", "RUNNING")], "triple"),
    ([("colour", "=", "red")], "colour"),
    ([("state", "~", "RUNNING")], "~"),
    ([("state", "=", "RUNING")], "RUNING"),
    ([("task_id", "=", "xyz")], "hex"),
    ([("state", "=", ["RUNNING"])], "single value"),
])
def test_a_malformed_filter_is_a_typed_error_that_names_it(bad: list, names: str) -> None:
    with pytest.raises(InvalidStateQueryError, match=names) as info:
        check_filters("tasks", bad)
    assert isinstance(info.value, ValueError) and isinstance(info.value, StateApiError)


def test_filters_compare_as_text_without_case() -> None:
    (f,) = check_filters("tasks", [("state", "=", "running")])
    assert f.value == "running" and f.matches("RUNNING") and not f.matches("FINISHED")
    (g,) = check_filters("workers", [("is_alive", "!=", True)])
    assert g.matches(False) and not g.matches(True)


def test_cli_filters_parse_and_bad_ones_say_how_to_write_them() -> None:
    assert parse_filter("state=RUNNING") == ("state", "=", "RUNNING")
    assert parse_filter("state!=FINISHED") == ("state", "!=", "FINISHED")
    with pytest.raises(InvalidStateQueryError, match="--filter state=RUNNING"):
        parse_filter("state")


def test_limits_and_ids_are_checked() -> None:
    for bad in (0, -1, 10_001, "5", True):
        with pytest.raises(InvalidStateQueryError, match="limit"):
            check_limit(bad)
    with pytest.raises(InvalidStateQueryError, match="offset"):
        check_limit(10, -1)
    assert check_id("task id", "0a0b") == b"\x0a\x0b"
    with pytest.raises(InvalidStateQueryError, match="not a hex id"):
        check_id("actor id", "not-hex")
    with pytest.raises(InvalidStateQueryError, match="resource kind"):
        check_filters("gadgets", [])


# --- the buffer in each process --------------------------------------------------------------


def test_a_short_task_costs_three_events_and_running_is_reported_only_if_it_outlives_a_flush() -> None:
    sent: list = []
    owner, worker = _buffer(sent), _buffer(sent)
    spec = _spec(1)
    owner.submitted(spec, None, {"CPU": 1.0}, False)
    owner.pushed(spec, 1)
    worker.started(spec)
    worker.ended(spec)
    owner.flush()
    worker.flush()
    codes = [e[0] for batch in sent for e in batch.events]
    assert codes == ["S", "P", "F"]
    long_running = _spec(2)
    worker.started(long_running)
    worker.flush()
    worker.flush()  # reported once, not once per flush
    assert [e[0] for e in sent[-1].events] == ["R"]
    worker.ended(long_running, "TASK_EXECUTION_EXCEPTION", "Traceback ...")
    worker.flush()
    assert sent[-1].events[0][0] == "F" and sent[-1].events[0][4] == "TASK_EXECUTION_EXCEPTION"


def test_a_full_buffer_drops_its_oldest_events_and_counts_them() -> None:
    sent: list = []
    buf = _buffer(sent, max_events=10)
    for i in range(25):
        buf.submitted(_spec(i), None, None, False)
    buf.flush()
    (batch,) = sent
    assert batch.dropped == 15
    assert [int.from_bytes(e[1], "little") for e in batch.events] == list(range(15, 25))
    buf.flush()
    assert len(sent) == 1  # nothing new: nothing sent


def test_recording_off_records_nothing() -> None:
    sent: list = []
    buf = _buffer(sent, enabled=False)
    spec = _spec(1)
    buf.submitted(spec, None, None, False)
    buf.started(spec)
    buf.ended(spec)
    buf.flush()
    assert sent == []


# --- the head's table ----------------------------------------------------------------------------


def test_events_from_owner_and_worker_merge_in_any_order() -> None:
    store = TaskEventStore()
    tid = _spec(7).task_id
    # The worker's batch arrives before the owner's.
    store.add_batch(_batch([("F", tid, 10.0, 12.5, "TASK_EXECUTION_EXCEPTION", "Traceback: boom")]))
    store.add_batch(_batch([("S", tid, 9.0, "load", "NORMAL_TASK", None, None, {"CPU": 1.0}, False, None),
                            ("P", tid, 9.5, 1)], worker=OWNER, pid=7))
    (row,) = store.query([], detail=True)["rows"]
    assert row["state"] == "FAILED" and row["name"] == "load"
    assert row["worker_id"] == WORKER.hex() and row["worker_pid"] == 42 and row["node_id"] == NODE.hex()
    assert row["error_type"] == "TASK_EXECUTION_EXCEPTION" and "boom" in row["error_message"]
    assert (row["creation_time_ms"], row["start_time_ms"], row["end_time_ms"]) == (9000, 10000, 12500)
    assert [e["state"] for e in row["events"]] == ["PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER",
                                                   "RUNNING", "FAILED"]


def test_a_retry_starts_the_row_over() -> None:
    store = TaskEventStore()
    tid = _spec(3).task_id
    store.add_batch(_batch([("S", tid, 1.0, "f", "NORMAL_TASK", None, None, None, False, None),
                            ("P", tid, 1.1, 1)], worker=OWNER))
    store.add_batch(_batch([("F", tid, 1.2, 1.3, "TASK_EXECUTION_EXCEPTION", "first try")]))
    store.add_batch(_batch([("P", tid, 1.4, 2)], worker=OWNER))
    (row,) = store.query([])["rows"]
    assert row["state"] == "SUBMITTED_TO_WORKER" and row["attempt_number"] == 1 and row["error_type"] is None


def test_the_table_is_bounded_oldest_first_with_a_counter() -> None:
    store = TaskEventStore(max_tasks=100)
    store.add_batch(_batch([("S", _spec(i).task_id, float(i), "f", "NORMAL_TASK", None, None, None, False, None)
                            for i in range(250)], dropped=3))
    answer = store.query([], limit=1)
    assert answer["num_tasks"] == 100 and answer["dropped_tasks"] == 150 and answer["dropped_events"] == 3
    assert answer["rows"][0]["task_id"] == _spec(150).task_id.hex()


def test_a_page_of_100000_tasks_is_filtered_and_cut_on_the_head() -> None:
    """The dashboard's and `ember list`'s query: filter, count all matches, return one page."""
    store = TaskEventStore(max_tasks=100_000)
    events = []
    for i in range(100_000):
        tid = _spec(i).task_id
        events.append(("S", tid, float(i), f"f{i % 3}", "NORMAL_TASK", None, None, None, False, None))
        if i % 10 == 0:
            events.append(("R", tid, float(i) + 0.5))
    store.add_batch(_batch(events))
    running = check_filters("tasks", [("state", "=", "RUNNING")])
    answer = store.query(running, offset=100, limit=50)
    assert answer["total"] == 10_000 and len(answer["rows"]) == 50
    assert answer["rows"][0]["task_id"] == _spec(1000).task_id.hex()
    newest = store.query(running, limit=1, newest_first=True)["rows"][0]
    assert newest["task_id"] == _spec(99_990).task_id.hex()
    both = check_filters("tasks", [("state", "!=", "RUNNING"), ("name", "=", "F1")])
    assert store.query(both, limit=1)["total"] == sum(1 for i in range(100_000) if i % 10 and i % 3 == 1)
    by_id = check_filters("tasks", [("task_id", "=", _spec(77).task_id.hex())])
    assert [r["task_id"] for r in store.query(by_id)["rows"]] == [_spec(77).task_id.hex()]
    answer = store.summary()
    summary = answer["cluster"]
    assert summary["total_tasks"] == 100_000
    assert answer["state_counts"] == {"RUNNING": 10_000, "PENDING_NODE_ASSIGNMENT": 90_000}
    assert summary["summary"]["f0"]["state_counts"]["RUNNING"] == sum(1 for i in range(0, 100_000, 10) if i % 3 == 0)


def test_a_finished_job_fails_its_unfinished_tasks() -> None:
    store = TaskEventStore()
    done, pending = _spec(1).task_id, _spec(2).task_id
    store.add_batch(_batch([("S", done, 1.0, "f", "NORMAL_TASK", None, None, None, False, None),
                            ("S", pending, 1.0, "f", "NORMAL_TASK", None, None, None, False, None)], worker=OWNER))
    store.add_batch(_batch([("F", done, 1.0, 2.0, None, None)]))
    assert store.mark_job_finished(JOB, 3.0) == 1
    states = {r["task_id"]: r["state"] for r in store.query([])["rows"]}
    assert states == {done.hex(): "FINISHED", pending.hex(): "FAILED"}
