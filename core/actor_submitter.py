"""Actor calls: one ordered queue per actor, pushed over a direct connection.

Calls from this process to one actor leave in submission order on one connection,
so the actor sees them in order. When the connection drops, the node manager says
whether the actor restarted (replay calls that have retries left) or died (fail them
with the cause).
"""

from __future__ import annotations

import collections
from typing import Any

from . import protocol as p
from .exceptions import ActorDiedError
from .object_ref import ObjectRef
from .submitter import WorkerChannel


class CallRecord:
    __slots__ = ("spec", "return_ids", "held", "dep_ids", "waiting", "retries_left", "actor")

    def __init__(self, spec: p.TaskSpec, return_ids: list[bytes], held: list[Any],
                 dep_ids: list[bytes], actor: "ActorQueue") -> None:
        self.spec = spec
        self.return_ids = return_ids
        self.held = held
        self.dep_ids = dep_ids
        self.waiting = 0
        self.retries_left = 0
        self.actor = actor


class ActorQueue:
    __slots__ = ("actor_id", "name", "queue", "channel", "info", "resolving", "incarnation",
                 "dead", "inflight")

    def __init__(self, actor_id: bytes, name: str) -> None:
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
    def __init__(self, runtime: Any) -> None:
        self.rt = runtime
        self.lock = runtime.lock
        self.actors: dict[bytes, ActorQueue] = {}

    def submit(self, actor_id: bytes, class_name: str, spec: p.TaskSpec, held: list[Any],
               dep_ids: list[bytes]) -> list[ObjectRef]:
        rt = self.rt
        return_ids = [spec.task_id + i.to_bytes(4, "little") for i in range(spec.num_returns)]
        from .runtime import LocalObject
        with self.lock:
            actor = self.actors.get(actor_id)
            if actor is None:
                actor = self.actors[actor_id] = ActorQueue(actor_id, class_name)
            record = CallRecord(spec, return_ids, held, dep_ids, actor)
            # The call holds the actor alive until it finishes (see Runtime.drain_releases).
            rt.counts[actor_id] = rt.counts.get(actor_id, 0) + 1
            refs = []
            for oid in return_ids:
                rt.objects[oid] = LocalObject(owned=True)
                refs.append(ObjectRef(oid))
            for oid in dep_ids:
                if rt.on_ready(oid, lambda _oid, r=record: self._dep_ready(r)):
                    record.waiting += 1
            actor.queue.append(record)
            self._pump(actor)
        return refs

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
            deps = []
            error = None
            for oid in record.dep_ids:
                error = self.rt.error_payload(oid)
                if error is not None:
                    break
                deps.append(self.rt.resolved_arg(oid))
            if error is not None:
                self._finish(record, [("inline", error)] * len(record.return_ids))
                continue
            record.spec.deps = deps
            if record.retries_left == 0 and actor.info is not None:
                record.retries_left = actor.info.max_task_retries
            actor.inflight[record.spec.task_id] = record
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
                    address = info.address if info.node_id in (None, self.rt.node_id) else info.tcp_address
                    channel = WorkerChannel(address, self.rt.token, self._on_reply, self._on_lost)
                    channel.actor = actor
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
                replay = [r for r in actor.inflight.values()]
                actor.inflight.clear()
                if actor.dead is None:
                    # Replay calls that were in flight when the old incarnation died.
                    keep, failed = [], []
                    for r in replay:
                        (keep if r.retries_left != 0 else failed).append(r)
                        if r.retries_left > 0:
                            r.retries_left -= 1
                    actor.queue.extendleft(reversed(keep))
                    for r in failed:
                        self._fail(r, ActorDiedError(actor.name, "it restarted while this call was "
                                                     "running; set max_task_retries to replay calls"))
                else:
                    actor.queue.extendleft(reversed(replay))
                self._pump(actor)

        self.rt.call_async(lambda rid: p.GetActorInfo(rid, actor.actor_id, True, min_incarnation), on_reply)

    def mark_killed(self, actor_id: bytes, class_name: str) -> None:
        """This process killed the actor: fail its queued and later calls now."""
        with self.lock:
            actor = self.actors.get(actor_id)
            if actor is None:
                actor = self.actors[actor_id] = ActorQueue(actor_id, class_name)
            if actor.dead is None:
                actor.dead = ActorDiedError(class_name, "it was killed with ember.kill()")
            self._pump(actor)

    def _on_reply(self, channel: WorkerChannel, msg: p.TaskReply) -> None:
        record = channel.inflight.pop(msg.task_id, None)
        if record is None:
            return
        with self.lock:
            record.actor.inflight.pop(msg.task_id, None)
        self._finish(record, msg.returns)

    def _on_lost(self, channel: WorkerChannel) -> None:
        actor: ActorQueue = channel.actor
        with self.lock:
            if actor.channel is not channel:
                return
            actor.channel = None
            actor.incarnation += 1
            self._resolve(actor)

    def _finish(self, record: CallRecord, returns: list[tuple[str, Any]]) -> None:
        for oid, (kind, value) in zip(record.return_ids, returns):
            self.rt.complete(oid, kind, value)
        record.held = []
        self.rt.releases.append(record.actor.actor_id)

    def _fail(self, record: CallRecord, error: BaseException) -> None:
        from .serialization import FLAG_ERROR, serialize
        payload = serialize(error, FLAG_ERROR).to_bytes()
        self._finish(record, [("inline", payload)] * len(record.return_ids))

    def close(self) -> None:
        with self.lock:
            channels = [a.channel for a in self.actors.values() if a.channel is not None]
        for channel in channels:
            channel.close()
