"""The head's storage (SQLite, Redis) and what a restarted head rebuilds from it, by plain calls."""

from __future__ import annotations

import os
import pickle

import pytest

from ember._node.control_store import ControlStore, JobRecord
from ember._node.membership import ClusterView, NodeInfo
from ember._node.recovery import check_owner, head_meta, install_encoders, restore
from ember._node.storage import Persistence, StorageError, StorageWriter, open_backend
from ember._wire import protocol as p


def _spec(actor_id: bytes, name: str | None = None, detached: bool = False) -> p.ActorSpec:
    return p.ActorSpec(actor_id, b"class", "Keeper", b"args", [], p.SchedulingRequest({"CPU": 1.0}),
                       b"owner", b"job1", name=name, namespace="ops", detached=detached)


def _round_trip(url: str) -> None:
    """Records written through Persistence come back from a fresh backend, deletes included."""
    control, view, groups = ControlStore(), ClusterView(), {}
    persist = Persistence(StorageWriter(open_backend(url)))
    control.changed = persist.mark
    install_encoders(persist, control, groups, view)
    control.add_function(b"f1", b"blob")
    control.add_job(JobRecord(b"job1", b"", "ops", "/tmp", ["/tmp"]))
    kept, _ = control.register_actor(_spec(b"a1", name="keeper", detached=True))
    control.set_alive(kept, "unix:/x", b"w1")
    gone, _ = control.register_actor(_spec(b"a2"))
    view.upsert(NodeInfo(b"n1", "tcp:127.0.0.1:1", "unix:/n1", {}, {}))
    persist.mark("nodes", b"n1")
    persist.put_now("meta", b"head", head_meta(b"old-head", b"t" * 32, "0.1.0"))
    persist.flush()
    control.set_dead(gone, "killed")  # a dead actor is deleted from storage
    persist.flush()
    persist.writer.flush()
    persist.close()

    backend = open_backend(url)
    tables = backend.load()
    backend.close()
    assert set(tables["actors"]) == {b"a1"}
    check_owner(tables, b"t" * 32, "0.1.0", url)
    control2, view2 = ControlStore(), ClusterView()
    restored = restore(tables, control2, {}, view2, grace_s=5.0)
    assert restored.old_head_id == b"old-head" and restored.functions == 1 and restored.actors == 1
    assert control2.functions == {b"f1": b"blob"}
    actor = control2.lookup_named("keeper", "ops")
    assert actor is not None and actor.state == "alive" and actor.address == "unix:/x"
    assert view2.nodes[b"n1"].alive and restored.nodes == [b"n1"]
    assert control2.jobs[b"job1"].alive  # its driver was not attached to the head


def test_sqlite_storage_round_trips_the_control_store(tmp_path) -> None:
    _round_trip(f"sqlite://{tmp_path}/control.sqlite3")
    assert oct(os.stat(tmp_path / "control.sqlite3").st_mode & 0o777) == "0o600"


def test_redis_storage_round_trips_the_control_store(redis_server: str) -> None:
    _round_trip(redis_server)


def test_clearing_the_storage_on_a_clean_stop_leaves_nothing(redis_server: str) -> None:
    persist = Persistence(StorageWriter(open_backend(redis_server)))
    persist.put_now("functions", b"f", b"x")
    persist.close(clear=True)
    backend = open_backend(redis_server)
    assert all(not rows for rows in backend.load().values())
    backend.close()


def test_storage_of_another_cluster_or_version_is_refused(tmp_path) -> None:
    tables = {t: {} for t in ("meta", "functions", "jobs", "actors", "groups", "nodes")}
    tables["meta"][b"head"] = pickle.dumps(head_meta(b"h", b"a" * 32, "0.1.0"))
    with pytest.raises(StorageError, match="another token.*--token-file"):
        check_owner(tables, b"b" * 32, "0.1.0", "here")
    with pytest.raises(StorageError, match="written by ember 0.1.0, this is ember 9"):
        check_owner(tables, b"a" * 32, "9", "here")


@pytest.mark.parametrize("url, match", [
    ("postgres://db/ember", "unknown kind of storage.*sqlite:///PATH.*redis://HOST:PORT"),
    ("sqlite://", "names no file"),
    ("redis://127.0.0.1:notaport", "expected redis://HOST:PORT"),
    ("sqlite:///proc/no/such/dir/control.sqlite3", "cannot open the control store's SQLite file"),
])
def test_a_bad_storage_url_names_the_url_and_the_fix(url: str, match: str) -> None:
    with pytest.raises(StorageError, match=match):
        open_backend(url)


def test_redis_that_does_not_answer_is_named_with_the_fix() -> None:
    with pytest.raises(StorageError, match="cannot reach Redis at redis://127.0.0.1:1/0.*drop --storage"):
        open_backend("redis://127.0.0.1:1")


def test_a_restored_head_waits_for_its_nodes_then_buries_silent_ones() -> None:
    view = ClusterView()
    tables = {t: {} for t in ("meta", "functions", "jobs", "actors", "groups", "nodes")}
    tables["nodes"][b"n1"] = pickle.dumps((b"n1", "tcp:127.0.0.1:1", "unix:/n1", False))
    tables["nodes"][b"old"] = pickle.dumps((b"old", "tcp:127.0.0.1:2", "unix:/old", True))
    tables["meta"][b"head"] = pickle.dumps(head_meta(b"old", b"t", "0.1.0"))
    restore(tables, ControlStore(), {}, view, grace_s=5.0)
    assert not view.nodes[b"old"].alive
    assert view.expire(1.0, keep=b"new") == []  # within its grace
    view.nodes[b"n1"].last_seen -= 10
    assert view.expire(1.0, keep=b"new") == [b"n1"]
