"""What a head writes to its storage, and what a restarted head rebuilds from it.

    record changed -> Persistence.mark(table, key) -> flush: encode_*(key) -> storage
    head start     -> storage.load() -> restore(): functions, jobs, actors (and names),
                      placement groups, the node table -> the head serves again
                      (submitted jobs: JobService.stored and .restore, in jobs.py)

A restarted head is a new node (its old workers died with it) on the same address. What
lived on other nodes lives on: their node managers reconnect (membership.HeadLink), so
their actors keep their addresses and placement groups their bundles. Until a node is
back, the head counts it alive for ``grace_s``; one that does not come back is declared
dead then, and its actors restart elsewhere as after any node loss.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from .control_store import ActorRecord, ControlStore, JobRecord
from .membership import ClusterView, NodeInfo
from .placement import PlacementGroupRecord
from .storage import Persistence, StorageError, Table, decode

#: Holds a restored actor that is not detached: the handles its users held before the
#: restart were counted by the dead head, so only its job's end (or kill) removes it.
RESTORED_HOLDER = b"ember:restored-handles"


@dataclass
class Restored:
    """What ``restore`` found, for the head's log and for what it does next."""
    old_head_id: bytes | None = None
    functions: int = 0
    actors: int = 0
    groups: int = 0
    nodes: list[bytes] = field(default_factory=list)
    #: Jobs whose driver was attached to the old head: they ended with it.
    ended_jobs: list[bytes] = field(default_factory=list)
    #: Placement groups with a share on the old head, to reserve again here.
    head_shares: list[tuple[PlacementGroupRecord, list[tuple[int, dict]]]] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.functions} function(s), {self.actors} actor(s), {self.groups} placement "
                f"group(s), {len(self.nodes)} node(s) to wait for, {len(self.ended_jobs)} job(s) that "
                "ended with the old head")


def token_fingerprint(token: bytes) -> str:
    """Stored instead of the token: enough to tell that a storage belongs to another cluster."""
    return hashlib.sha256(b"ember-control-store:" + token).hexdigest()


def install_encoders(persist: Persistence, control: ControlStore,
                     groups: dict[bytes, PlacementGroupRecord], view: ClusterView) -> None:
    """Teach ``persist`` how to encode each table's records (None: delete the record)."""
    persist.encoder("functions", control.functions.get)
    persist.encoder("jobs", lambda key: _encode_job(control.jobs.get(key)))
    persist.encoder("actors", lambda key: _encode_actor(control.actors.get(key)))
    persist.encoder("groups", lambda key: _encode_group(groups.get(key)))
    persist.encoder("nodes", lambda key: _encode_node(view.nodes.get(key)))


def _encode_job(job: JobRecord | None) -> tuple | None:
    if job is None:
        return None
    return (job.job_id, job.driver_id, job.namespace, job.cwd, job.sys_path, job.env_vars, job.alive)


def _encode_actor(actor: ActorRecord | None) -> tuple | None:
    # A dead actor can never be reached again: dropping it keeps the storage bounded.
    if actor is None or actor.state == "dead":
        return None
    return (actor.spec, actor.state, actor.address, actor.tcp_address, actor.node_id, actor.worker_id,
            actor.death_cause, actor.num_restarts, actor.incarnation, actor.no_restart)


def _encode_group(pg: PlacementGroupRecord | None) -> tuple | None:
    if pg is None or pg.state == "REMOVED":
        return None
    return (pg.pg_id, pg.bundles, pg.strategy, pg.name, pg.job_id, pg.detached, pg.state,
            pg.placement)


def _encode_node(node: NodeInfo | None) -> tuple | None:
    if node is None or not node.alive:
        return None
    return (node.node_id, node.tcp_address, node.unix_address, node.is_head)


def check_owner(tables: dict[Table, dict[bytes, bytes]], token: bytes, version: str,
                description: str) -> None:
    """Refuse storage written by another cluster (another token) or another ember version.

    Raises:
        StorageError: naming the storage and what to do.
    """
    head = tables["meta"].get(b"head")
    if head is None:
        return
    meta = decode(head)
    if meta.get("token") != token_fingerprint(token):
        raise StorageError(
            f"the control store in {description} belongs to a cluster with another token: start "
            "the head with that cluster's token (--token-file PATH or $EMBER_TOKEN), or give "
            "another --storage")
    if meta.get("version") != version:
        raise StorageError(
            f"the control store in {description} was written by ember {meta.get('version')}, this "
            f"is ember {version}: restart the head with ember {meta.get('version')}, or give "
            "another --storage to start an empty cluster")


def restore(tables: dict[Table, dict[bytes, bytes]], control: ControlStore,
            groups: dict[bytes, PlacementGroupRecord], view: ClusterView, grace_s: float) -> Restored:
    """Fill the head's empty tables from storage (plain tables: no I/O, no messages).

    Nodes come back alive with no free resources until their first heartbeat, and are
    declared dead if silent ``grace_s`` from now. The caller then buries what lived on the
    old head (``Restored.old_head_id``) and ends the jobs whose driver was attached to it.
    """
    out = Restored()
    head = tables["meta"].get(b"head")
    if head is not None:
        out.old_head_id = decode(head).get("node_id")
    for function_id, blob in tables["functions"].items():
        control.functions[function_id] = decode(blob)
        out.functions += 1
    for blob in tables["jobs"].values():
        job_id, driver_id, namespace, cwd, sys_path, env_vars, alive = decode(blob)
        job = control.jobs[job_id] = JobRecord(job_id, driver_id, namespace, cwd, sys_path, env_vars, alive)
        if alive and driver_id:
            # Only drivers attached to the head register a job with a driver id here;
            # remote submitters' jobs come with b"" and their drivers live elsewhere.
            job.alive = False
            out.ended_jobs.append(job_id)
    for blob in tables["actors"].values():
        (spec, state, address, tcp_address, node_id, worker_id, death_cause, num_restarts,
         incarnation, no_restart) = decode(blob)
        record = ActorRecord(spec, state, address, tcp_address, node_id, worker_id, death_cause,
                             num_restarts, incarnation, no_restart)
        control.actors[spec.actor_id] = record
        if spec.name is not None:
            control.named[(spec.namespace or "", spec.name)] = spec.actor_id
        out.actors += 1
    now = time.monotonic()
    for blob in tables["nodes"].values():
        node_id, tcp_address, unix_address, is_head = decode(blob)
        if node_id == out.old_head_id or is_head:
            view.nodes[node_id] = NodeInfo(node_id, tcp_address, unix_address, {}, {}, alive=False,
                                           is_head=True)
            continue
        # last_seen in the future: the node has grace_s (not the heartbeat timeout) to reconnect.
        view.nodes[node_id] = NodeInfo(node_id, tcp_address, unix_address, {}, {},
                                       last_seen=now + grace_s)
        out.nodes.append(node_id)
    for blob in tables["groups"].values():
        pg_id, bundles, strategy, name, job_id, detached, state, placement = decode(blob)
        pg = PlacementGroupRecord(pg_id, bundles, strategy, name, job_id, detached)
        if state == "CREATED":
            pg.state, pg.placement = "CREATED", dict(placement)
            share = pg.placement.pop(out.old_head_id, None) if out.old_head_id else None
            if share:
                out.head_shares.append((pg, share))
        # PENDING, or RESERVING when the head died: planned again from scratch.
        groups[pg_id] = pg
        out.groups += 1
    return out


def head_meta(node_id: bytes, token: bytes, version: str) -> dict[str, Any]:
    """The ``meta/head`` record: who wrote this storage last."""
    return {"node_id": node_id, "token": token_fingerprint(token), "version": version}
