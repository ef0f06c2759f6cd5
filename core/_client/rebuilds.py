"""Bringing back an object whose every copy was lost with its node (lineage, across owners).

The process that owns an object (it made the ref: ``f.remote()``, ``ember.put``) rebuilds
it by running the call that made it again: ``Recovery.keep`` holds each finished call
whose result lives on another node (a task, or an actor call whose method has
``max_task_retries``) while the result is referenced, with the submitter's way to send it
again. Any other process reading the object (a borrower: the ref reached
it inside a value, and names its owner) asks the owner to:

    borrower: get(x) -> ObjectLostError from x's home
        --RebuildObject(x, owner, lost home)--> the owner's node manager --push--> owner
    owner, on a thread of its own: x is fine elsewhere -> where it is; else re-run its task
        --ObjectRebuilt(x, where it is now | why it cannot be)--> its node manager
        --Reply--> every borrower that asked: holds x at its new home, reads it there

The owner gone: ``OwnerDiedError`` naming it and the lost node. Not rebuildable (an
``ember.put``, no retries left, lineage no longer kept): ``ObjectLostError`` saying why.

An owner keeps a task's lineage while it refers to the result. Ray's owner also keeps it
while borrowers do (it tracks them); here the home node counts borrowers, so an owner that
dropped its refs to a result it shared keeps the lineage of the newest
``MAX_KEPT_LINEAGE`` such results (Ray bounds lineage too, by bytes).
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Protocol

from .._wire import protocol as p
from .._types import ObjectID
from .._wire.ids import PUT_INDEX
from ..exceptions import EmberSystemError, GetTimeoutError, ObjectLostError, OwnerDiedError
from .local_objects import LocalObjectTable
from .object_entry import Completion
from .remote_nodes import RemoteNodes


class CallRecord(Protocol):
    """What lineage needs of a submitter's record of a call (TaskRecord, actor CallRecord)."""

    spec: p.TaskSpec
    return_ids: list[ObjectID]
    #: Retries left: -1 forever; None for an actor call never sent.
    retries_left: int | None
    #: The refs its arguments use: kept while the call may run again.
    held: list[object]


#: How a submitter sends a finished call again (its result was lost).
Resend = Callable[[Any], None]

#: Results whose refs this process shared and then dropped: lineage kept for the newest N.
MAX_KEPT_LINEAGE = 1_000
#: How long an owner that no longer refers to an object keeps one it rebuilt for borrowers
#: (they take their own hold on it as soon as the answer arrives).
REBUILT_LINGER_S = 10.0

OnDone = Callable[[BaseException | None], None]


class Recovery:
    """This process's side of lineage: rebuild what it owns, ask owners for what it
    borrowed, and answer borrowers' requests (the ``Lineage`` of its object table).

    Args:
        objects: this process's object table.
        remote_nodes: links to other node managers (where owners on other nodes are asked).
        me: how this process is named in errors ("driver pid 12 on node tcp:...").
    """

    def __init__(self, objects: LocalObjectTable, remote_nodes: RemoteNodes, me: str) -> None:
        self.objects = objects
        self.remote_nodes = remote_nodes
        self.me = me
        self._lock = threading.Lock()
        #: Results stored on other nodes -> the call that made them, and how to send it again.
        self.records: dict[ObjectID, tuple[CallRecord, Resend]] = {}
        #: Shared results this process no longer refers to whose lineage is kept, oldest first.
        self._kept: collections.OrderedDict[ObjectID, None] = collections.OrderedDict()

    # --- lineage kept and dropped -------------------------------------------------------

    def keep(self, record: CallRecord, returns: list[Completion], resend: Resend) -> None:
        here = self.objects.node_tcp_address
        if record.retries_left not in (0, None) and record.spec.generator is None and any(
                kind == "stored" and value[2] != here for kind, value in returns):
            with self._lock:
                for oid in record.return_ids:
                    self.records[oid] = (record, resend)
        else:
            record.held = []

    def forget(self, oid: ObjectID, shared: bool) -> None:
        if oid not in self.records:
            return
        if not shared:
            self._drop(oid)
            return
        with self._lock:
            self._kept[oid] = None
            evicted = []
            while len(self._kept) > MAX_KEPT_LINEAGE:
                evicted.append(self._kept.popitem(last=False)[0])
        for old in evicted:
            self._drop(old)

    def _drop(self, oid: ObjectID) -> None:
        with self._lock:
            kept = self.records.pop(oid, None)
            if kept is None or any(r in self.records for r in kept[0].return_ids):
                return
        kept[0].held = []  # its arguments may go

    def _rerun(self, oid: ObjectID) -> bool:
        """Send the call that made ``oid`` again (one of its retries); False if it cannot be.
        Its results come back pending; those this process had dropped are dropped again
        once they arrive, except ``oid``."""
        with self._lock:
            kept = self.records.get(oid)
            if kept is None or kept[0].retries_left == 0:
                return False
            record, resend = kept
            if record.retries_left is not None and record.retries_left > 0:
                record.retries_left -= 1
            for return_id in record.return_ids:  # referred to again, until dropped again
                self.records.pop(return_id, None)
                self._kept.pop(return_id, None)
        # Not under self._lock: the table's lock is taken before it elsewhere (forget).
        with self.objects.lock:
            for return_id in record.return_ids:
                self.objects.reset_pending(return_id, keep=return_id == oid)
        resend(record)
        return True

    def _why_not(self, oid: ObjectID) -> str:
        if int.from_bytes(oid[-4:], "little") == PUT_INDEX:
            return "it was made by ember.put, which keeps no lineage (make it in a task to have it rebuilt)"
        kept = self.records.get(oid)
        record = kept[0] if kept is not None else None
        if record is not None and record.retries_left == 0:
            return "the call that made it has no retries left (raise its max_retries or max_task_retries)"
        return ("no call that made it is kept: results of tasks with max_retries=0, of actor calls "
                "without max_task_retries, values streamed by generators, and shared results dropped "
                f"by their owner beyond the newest {MAX_KEPT_LINEAGE} cannot be rebuilt")

    def _not_rebuildable(self, oid: ObjectID, where: str) -> ObjectLostError:
        return ObjectLostError(oid.hex(), f"{where}; its owner ({self.me}) cannot rebuild it: "
                                          f"{self._why_not(oid)}")

    # --- a get (or a task's argument) found the object lost ---------------------------

    def recover(self, oid: ObjectID, lost: ObjectLostError, timeout_s: float | None = None) -> None:
        entry = self.objects.objects.get(oid)
        if entry is None:
            raise lost
        if entry.owned:
            if not self._rerun(oid):
                raise self._not_rebuildable(oid, lost.detail or "its only copy was lost")
            if not self.objects.wait_ready([oid], 1, timeout_s, True):
                raise _still_rebuilding(oid, timeout_s)
            return
        done = threading.Event()
        outcome: list[BaseException | None] = []

        def finished(error: BaseException | None) -> None:
            outcome.append(error)
            done.set()

        if not self.recover_async(oid, finished):
            raise lost
        if not done.wait(timeout_s):
            raise _still_rebuilding(oid, timeout_s)
        if outcome[0] is not None:
            raise outcome[0]

    def recover_async(self, oid: ObjectID, on_done: OnDone) -> bool:
        objects = self.objects
        entry = objects.objects.get(oid)
        if entry is None:
            return False
        if entry.owned:
            if not self._rerun(oid):
                on_done(self._not_rebuildable(oid, f"its only copy was on node {entry.home}, which is gone"))
            elif not objects.on_ready(oid, lambda _oid: on_done(None)):
                on_done(None)
            return True
        owner = entry.owner
        if owner is None:
            return False
        node, _owner_id, pid = owner
        lost_home = entry.home or objects.node_tcp_address
        here = node == objects.node_tcp_address

        def answered(reply: p.Reply, _fds: list[int]) -> None:
            if reply.ok:
                objects.relocate(oid, reply.value)
                on_done(None)
                return
            error = reply.value
            if not here and reply.rid == 0:  # the link to its node broke (NodeLink's own answer)
                error = OwnerDiedError(oid.hex(), f"its only copy was on node {lost_home}, which is "
                                       f"gone, and so is its owner's node {node} (owner pid {pid})")
            elif not isinstance(error, BaseException):
                error = EmberSystemError(f"rebuilding object {oid.hex()} failed: {error!r}")
            on_done(error)

        try:
            link = objects.link if here else self.remote_nodes.get(node)
        except OSError as e:
            on_done(OwnerDiedError(oid.hex(), f"its only copy was on node {lost_home}, which is gone, "
                                   f"and its owner's node {node} (owner pid {pid}) cannot be reached: {e}"))
            return True
        link.call_async(lambda rid: p.RebuildObject(rid, oid, owner, lost_home), answered)
        return True

    # --- a borrower asks this process, the owner --------------------------------------

    def serve(self, msg: p.RebuildObject) -> None:
        """Answer a borrower's RebuildObject (pushed by the node manager; its reader thread
        must not wait, and re-running a task waits for leases: a thread of its own)."""
        threading.Thread(target=self._serve, args=(msg.object_id, msg.lost_home), daemon=True,
                         name="ember-rebuild").start()

    def _serve(self, oid: ObjectID, lost_home: str) -> None:
        objects = self.objects
        here = objects.node_tcp_address
        try:
            with objects.lock:
                entry = objects.objects.get(oid)
                lost = entry is None or (entry.ready and entry.error is None and entry.inline is None
                                         and (entry.home or here) == lost_home)
            if entry is not None and not entry.owned:
                raise ObjectLostError(oid.hex(), f"{self.me} was asked to rebuild it but does not own it")
            if lost and not self._rerun(oid):
                raise self._not_rebuildable(oid, f"its only copy was on node {lost_home}, which is gone")
        except ObjectLostError as e:
            objects.link.send(p.ObjectRebuilt(oid, False, e))
            return
        except Exception as e:  # the borrowers wait on this answer: never leave them without one
            objects.link.send(p.ObjectRebuilt(oid, False, EmberSystemError(
                f"{self.me} failed while rebuilding object {oid.hex()}: {e!r}")))
            return
        if not objects.on_ready(oid, lambda _oid: self._answer(oid)):
            self._answer(oid)

    def _answer(self, oid: ObjectID) -> None:
        """Tell the borrowers where ``oid`` is now (it is ready)."""
        objects = self.objects
        entry = objects.objects.get(oid)
        ok: bool = True
        where: Completion | BaseException
        if entry is None or entry.error is not None:
            ok, where = False, entry.error if entry is not None else ObjectLostError(oid.hex())
        elif entry.inline is not None:
            where = ("inline", bytes(entry.inline))
        else:
            where = ("stored", (entry.size, entry.flags, entry.home or objects.node_tcp_address))
        objects.link.send(p.ObjectRebuilt(oid, ok, where))
        objects.linger(oid, REBUILT_LINGER_S)


def _still_rebuilding(oid: ObjectID, timeout_s: float | None) -> GetTimeoutError:
    return GetTimeoutError(f"ember.get timed out after {timeout_s} s: object {oid.hex()} was lost "
                           "with its node and is still being rebuilt (its task runs again); "
                           "get it again to wait for it")
