"""Actor calls: one ordered queue per actor, pushed over a direct connection.

    handle.m.remote() -> submit: owned result ids, wait for ref arguments
    queue (in order) -> WorkerChannel.push(PushTask) -> the actor's worker
    TaskReply -> LocalObjectTable.complete_all; channel lost -> GetActorInfo: restarted
    (replay calls with retries left) or dead (fail them with the cause)
    a result lost with its node -> Recovery calls _resend: the call goes again (max_task_retries)

Calls from this process to one actor leave in submission order on one connection,
so the actor sees them in order.
"""

from __future__ import annotations

import collections

from .._wire import protocol as p
from .._types import ActorID, NodeID, ObjectID
from ..exceptions import (ActorDiedError, ActorUnavailableError, PendingCallsLimitExceededError,
                          TaskCancelledError)
from .._wire.ids import return_ids as make_return_ids
from .._wire.node_link import NodeLink
from .generators import GeneratorTable
from .local_objects import LocalObjectTable
from .object_entry import Completion, error_returns
from .submitter import RetryExceptions, retriable_error
from .task_events import TaskEventBuffer
from .worker_channel import WorkerChannel


class CallRecord:
    """One actor call from submission until its results are complete."""

    __slots__ = ("spec", "return_ids", "held", "dep_ids", "waiting", "retries_left",
                 "retry_exceptions", "actor")

    def __init__(self, spec: p.TaskSpec, return_ids: list[ObjectID], held: list[object],
                 dep_ids: list[ObjectID], actor: "ActorQueue", max_task_retries: int | None,
                 retry_exceptions: RetryExceptions) -> None:
        self.spec = spec
        self.return_ids = return_ids
        self.held = held
        self.dep_ids = dep_ids
        self.waiting = 0
        #: None until first sent: then the method's max_task_retries, else the actor's.
        self.retries_left = max_task_retries
        self.retry_exceptions = retry_exceptions
        self.actor = actor


class ActorQueue:
    """This process's calls to one actor: queued in order, in flight, and where it lives."""

    __slots__ = ("actor_id", "name", "queue", "channel", "info", "resolving", "incarnation",
                 "dead", "inflight")

    def __init__(self, actor_id: ActorID, name: str) -> None:
        self.actor_id = actor_id
        self.name = name
        self.queue: collections.deque[CallRecord] = collections.deque()
        self.channel: WorkerChannel | None = None
        self.info: p.ActorInfo | None = None
        self.resolving = False
        self.incarnation = 0
        self.dead: ActorDiedError | None = None
        self.inflight: dict[bytes, CallRecord] = {}


class ActorSubmitter:
    """Sends this process's actor calls, in order per actor, straight to the actor's worker.

    It learns where an actor lives from the node manager (waiting while it starts or
    restarts), replays calls that were in flight when an actor restarted (as far as
    their retries allow), and fails every pending call once the actor is dead. A call
    holds its actor alive until it finishes. Shares the object table's lock.
    """

    def __init__(self, objects: LocalObjectTable, link: NodeLink, token: bytes, node_id: NodeID,
                 generators: GeneratorTable, local_sockets: bool = True) -> None:
        self.objects = objects
        #: Where the values of generator methods go as they arrive.
        self.generators = generators
        self.link = link
        self.token = token
        self.node_id = node_id
        #: Actors on this process's node are reached over their Unix socket, unless this
        #: process is not on the node (a driver connected over TCP).
        self._local_sockets = local_sockets
        self.lock = objects.lock
        self.actors: dict[ActorID, ActorQueue] = {}
        #: Where this process records task events (the runtime sets its own; off until then).
        self.events = TaskEventBuffer.disabled()

    def submit(self, actor_id: ActorID, class_name: str, spec: p.TaskSpec, held: list[object],
               dep_ids: list[ObjectID], *, max_task_retries: int | None = None,
               retry_exceptions: RetryExceptions = False,
               max_pending_calls: int = -1) -> list[ObjectID]:
        """Queue a call; returns the ids of its results (owned, pending).

        Raises:
            PendingCallsLimitExceededError: ``max_pending_calls`` calls of this process to
                the actor are already waiting for their results.
        """
        return_ids = make_return_ids(spec.task_id, spec.num_returns)
        with self.lock:
            actor = self.actors.get(actor_id)
            if actor is None:
                actor = self.actors[actor_id] = ActorQueue(actor_id, class_name)
            if max_pending_calls >= 0 and len(actor.queue) + len(actor.inflight) >= max_pending_calls:
                raise PendingCallsLimitExceededError(class_name, max_pending_calls)
            record = CallRecord(spec, return_ids, held, dep_ids, actor, max_task_retries,
                                retry_exceptions)
            # The call holds the actor alive until it finishes (see LocalObjectTable.drain_releases).
            self.objects.incref(actor_id)
            self.objects.add_owned(return_ids)
            record.waiting = self.objects.when_ready(dep_ids, lambda _oid, r=record: self._dep_ready(r))
            self.events.submitted(spec, None, None, record.waiting > 0)
            actor.queue.append(record)
            self._pump(actor)
        return return_ids

    def _dep_ready(self, record: CallRecord) -> None:
        with self.lock:
            record.waiting -= 1
            self._pump(record.actor)

    def _pump(self, actor: ActorQueue) -> None:
        """Send what can be sent, in order (lock held)."""
        if actor.dead is not None:
            failed = list(actor.queue)
            actor.queue.clear()
            for record in failed:
                self._fail(record, actor.dead)
            return
        if actor.channel is None:
            self._resolve(actor)
            return
        while actor.queue and actor.queue[0].waiting == 0:
            record = actor.queue.popleft()
            record.spec.deps, error = self.objects.resolve_deps(record.dep_ids)
            if error is not None:  # an argument failed: so does the call, without running
                self.events.failed_here(record.spec, "an argument of the call failed",
                                        "DEPENDENCY_RESOLUTION_FAILED")
                self._finish(record, [("inline", error)] * len(record.return_ids))
                continue
            if record.retries_left is None:
                record.retries_left = actor.info.max_task_retries if actor.info is not None else 0
            actor.inflight[record.spec.task_id] = record
            self.events.pushed(record.spec, 1)
            if record.spec.generator == "streaming":
                self.generators.before_push(record.spec, actor.channel)
            actor.channel.push(record, p.PushTask(record.spec))

    def _resolve(self, actor: ActorQueue) -> None:
        if actor.resolving:
            return
        actor.resolving = True
        min_incarnation = actor.incarnation

        def on_reply(reply: p.Reply, _fds: list[int]) -> None:
            channel = None
            info: p.ActorInfo | None = reply.value if reply.ok else None
            if info is not None and info.state == "alive":
                try:
                    local = self._local_sockets and info.node_id in (None, self.node_id)
                    address = info.address if local else info.tcp_address
                    channel = WorkerChannel(address, self.token, self._on_reply,
                                            lambda lost, a=actor: self._on_lost(a, lost),
                                            self.generators.on_items)
                except OSError:
                    channel = None
            with self.lock:
                actor.resolving = False
                if info is None:
                    actor.dead = ActorDiedError(actor.name, str(reply.value))
                elif info.state == "dead" or channel is None:
                    actor.dead = ActorDiedError(actor.name, info.death_cause or "its worker died")
                else:
                    actor.info, actor.channel, actor.incarnation = info, channel, info.incarnation
                replay = list(actor.inflight.values())
                actor.inflight.clear()
                if actor.dead is None:
                    # Replay calls that were in flight when the old incarnation died.
                    keep, failed = [], []
                    for r in replay:
                        (keep if r.retries_left != 0 else failed).append(r)
                        if r.retries_left is not None and r.retries_left > 0:
                            r.retries_left -= 1
                    actor.queue.extendleft(reversed(keep))
                    for r in failed:
                        self._fail(r, ActorUnavailableError(actor.name, "it restarted while this call "
                                                            "was running"))
                else:
                    actor.queue.extendleft(reversed(replay))
                self._pump(actor)

        self.link.call_async(lambda rid: p.GetActorInfo(rid, actor.actor_id, True, min_incarnation),
                             on_reply)

    def mark_killed(self, actor_id: ActorID, class_name: str) -> None:
        """This process killed the actor: fail its queued and later calls now."""
        with self.lock:
            actor = self.actors.get(actor_id)
            if actor is None:
                actor = self.actors[actor_id] = ActorQueue(actor_id, class_name)
            if actor.dead is None:
                actor.dead = ActorDiedError(class_name, "it was killed with ember.kill()")
            self._pump(actor)

    def cancel(self, oid: ObjectID, recursive: bool) -> bool:
        """Cancel the call returning ``oid``: a queued call fails now without running; one
        in flight is told to stop (the worker decides how: see Worker._cancel). False if
        no call of this process returns ``oid``."""
        with self.lock:
            for actor in self.actors.values():
                for record in actor.queue:
                    if oid in record.return_ids:
                        actor.queue.remove(record)
                        self._fail(record, TaskCancelledError(record.spec.name))
                        return True
                for record in actor.inflight.values():
                    if oid in record.return_ids:
                        channel = actor.channel
                        break
                else:
                    continue
                break
            else:
                return False
        if channel is not None:
            channel.send(p.CancelTask(record.spec.task_id, recursive))
        return True

    def _on_reply(self, channel: WorkerChannel, msg: p.TaskReply) -> None:
        record = channel.inflight.pop(msg.task_id, None)
        if record is None:
            return
        actor = record.actor
        if record.retries_left and retriable_error(self.objects, record.retry_exceptions, msg.returns):
            # An application error the method retries: send it again, ahead of later calls.
            with self.lock:
                actor.inflight.pop(msg.task_id, None)
                if record.retries_left > 0:
                    record.retries_left -= 1
                actor.queue.appendleft(record)
                self._pump(actor)
            return
        with self.lock:
            actor.inflight.pop(msg.task_id, None)
        self._finish(record, msg.returns)

    def _on_lost(self, actor: ActorQueue, channel: WorkerChannel) -> None:
        with self.lock:
            if actor.channel is not channel:
                return
            actor.channel = None
            actor.incarnation += 1
            self._resolve(actor)

    def _finish(self, record: CallRecord, returns: list[Completion]) -> None:
        # Lineage, as Ray keeps it for methods with max_task_retries.
        self.objects.lineage.keep(record, returns, self._resend)
        self.objects.complete_all(record.return_ids, returns)
        self.objects.release(record.actor.actor_id)

    def _resend(self, record: CallRecord) -> None:
        """Send a finished call again, to the actor as it is now (restarted elsewhere, say):
        a result of it was lost with its node (Recovery)."""
        with self.lock:
            self.objects.incref(record.actor.actor_id)  # the call holds its actor again
            record.actor.queue.append(record)
            self._pump(record.actor)

    def _fail(self, record: CallRecord, error: BaseException) -> None:
        self.events.failed_here(record.spec, error)
        self._finish(record, error_returns(error, len(record.return_ids)))

    def node_dead(self, node_id: NodeID) -> None:
        """A node was declared dead: channels to actors there count as lost (the callers
        wait for the restart the head decides), even if the machine never closes them."""
        with self.lock:
            channels = [actor.channel for actor in self.actors.values()
                        if actor.channel is not None and actor.info is not None
                        and actor.info.node_id == node_id]
        for channel in channels:
            channel.close()

    def close(self) -> None:
        with self.lock:
            channels = [a.channel for a in self.actors.values() if a.channel is not None]
        for channel in channels:
            channel.close()
