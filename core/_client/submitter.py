"""Normal tasks: resolve arguments, lease workers by resource shape, push directly.

    submit() -> waits for top-level ref arguments -> queue per scheduling key
    queue    -> lease from the node manager -> WorkerChannel.push(PushTask)
    TaskReply on the channel's reader thread -> LocalObjectTable.complete() -> next task pipelined

A lease lingers briefly after its queue empties, so a loop of ``get(f.remote())``
reuses its worker instead of asking the node manager every time.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Union

from .._wire import protocol as p
from .._types import Address, ObjectID, TaskID
from ..exceptions import ObjectLostError, OutOfMemoryError, TaskCancelledError, WorkerCrashedError
from .._wire.ids import return_ids as make_return_ids
from .._wire.node_link import NodeLink
from .generators import GeneratorTable
from .local_objects import LocalObjectTable
from .remote_nodes import RemoteNodes
from .object_entry import Completion, error_returns
from .._wire.serialization import FLAG_ERROR, read_flags
from .task_events import TaskEventBuffer
from .worker_channel import WorkerChannel

#: Tasks pushed to one worker ahead of their turn: hides the round trip on short tasks.
PIPELINE_DEPTH = 4
#: How long an idle lease is kept in case more tasks of its shape come.
LEASE_LINGER_S = 0.05
#: Fair leases: a lease another submitter waits for (LeaseWanted) is kept this long at
#: least, then given back once its tasks in flight are done. Short enough that submitters
#: take turns several times a second; long enough that the turn's cost (a return, a grant,
#: the pipeline draining) stays around 1% of it.
LEASE_TURN_S = 0.1
#: Stored arguments at least this large pull a default-scheduled task to their node.
LOCALITY_MIN_BYTES = 1 << 20
#: Outstanding lease requests per scheduling key.
MAX_LEASE_REQUESTS = 16


#: ``retry_exceptions``: False, True (any exception) or the exception classes to retry.
RetryExceptions = Union[bool, tuple[type[BaseException], ...]]
#: What a task's key groups by: (resource shape items, strategy repr[, locality node]).
SchedulingKey = tuple


class TaskRecord:
    """One submitted task, from submission until its results are complete (and, while a
    result stored on another node is referenced, kept for lineage)."""

    __slots__ = ("spec", "key", "request", "return_ids", "retries_left", "retry_exceptions",
                 "held", "dep_ids", "waiting", "lease", "cancelled", "attempts", "parent", "submitter")

    def __init__(self, spec: p.TaskSpec, key: SchedulingKey, request: p.SchedulingRequest,
                 return_ids: list[ObjectID], max_retries: int, retry_exceptions: RetryExceptions,
                 held: list[object], dep_ids: list[ObjectID], parent: TaskID | None,
                 submitter: "TaskSubmitter") -> None:
        self.spec = spec
        self.key = key
        self.request = request
        self.return_ids = return_ids
        self.retries_left = max_retries
        self.retry_exceptions = retry_exceptions
        #: Refs (and handles) the task's arguments use: held until the task is done so
        #: the objects outlive the call.
        self.held = held
        self.dep_ids = dep_ids
        self.waiting = 0
        self.lease: Lease | None = None
        self.cancelled = False
        self.attempts = 0
        self.parent = parent
        self.submitter = submitter

    def __call__(self, _object_id: bytes) -> None:
        """An argument became ready (registered with Runtime.on_ready)."""
        self.submitter._dep_ready(self)


class Lease:
    """A worker leased from a node manager: tasks of one key are pushed to it until it is
    returned (idle for LEASE_LINGER_S) or its worker dies."""

    __slots__ = ("grant", "channel", "inflight", "idle_since", "dead", "key", "marked_non_retriable",
                 "nm", "granted_at", "wanted")

    def __init__(self, grant: p.LeaseGrant, channel: WorkerChannel, key: SchedulingKey,
                 nm: NodeLink) -> None:
        self.grant = grant
        #: The node manager that granted it (this node's, or another after a spillback).
        self.nm = nm
        self.channel = channel
        self.inflight = 0
        self.idle_since = time.monotonic()
        self.dead = False
        self.key = key
        #: The node manager was told a task without retries ran here (memory monitor).
        self.marked_non_retriable = False
        self.granted_at = self.idle_since
        #: Another submitter waits for it (LeaseWanted): given back after its turn.
        self.wanted = False

    def turn_over(self, now: float) -> bool:
        """Wanted by another submitter and held for its turn: push nothing more to it."""
        return self.wanted and now - self.granted_at >= LEASE_TURN_S


class KeyState:
    """The queue, leases and outstanding lease requests of one scheduling key."""

    __slots__ = ("queue", "leases", "requests", "failing", "home")

    def __init__(self, home: str | None = None) -> None:
        #: Node (TCP address) to lease from first: where the tasks' large arguments live.
        self.home = home
        self.queue: collections.deque[TaskRecord] = collections.deque()
        self.leases: list[Lease] = []
        self.requests = 0
        #: _fail_queue is draining this queue (see there).
        self.failing = False


class TaskSubmitter:
    """Runs this process's normal tasks: waits for their ref arguments, leases workers
    per scheduling key (following spillbacks to other nodes), pushes tasks straight to
    the workers, and completes their results in the object table. Retries on worker
    death and on listed exceptions, rebuilds lost results from lineage, and cancels.

    It shares the object table's lock: a dependency callback and a submission never
    interleave.
    """

    def __init__(self, objects: LocalObjectTable, link: NodeLink, token: bytes,
                 remote_nodes: RemoteNodes, generators: GeneratorTable) -> None:
        self.objects = objects
        #: Where the values of generator tasks go as they arrive (and back-pressure starts).
        self.generators = generators
        self.link = link
        self.token = token
        self.remote_nodes = remote_nodes
        self.lock = objects.lock
        self.keys: dict[SchedulingKey, KeyState] = {}
        self.channels: dict[Address, WorkerChannel] = {}
        #: return object id -> record, for cancel().
        self.by_return: dict[bytes, TaskRecord] = {}
        self.children: dict[bytes, list[TaskRecord]] = collections.defaultdict(list)
        self.closed = False
        #: Where this process records task events (the runtime sets its own; off until then).
        self.events = TaskEventBuffer.disabled()

    # --- submission -------------------------------------------------------------------

    def submit(self, spec: p.TaskSpec, request: p.SchedulingRequest, key: SchedulingKey,
               max_retries: int, retry_exceptions: RetryExceptions, held: list[object],
               dep_ids: list[ObjectID], parent: TaskID | None) -> list[ObjectID]:
        """Queue a task; ``key`` (shape and strategy) groups tasks that can share leases.

        Returns the ids of its results, owned (pending) in the object table.
        """
        return_ids = make_return_ids(spec.task_id, spec.num_returns)
        record = TaskRecord(spec, key, request, return_ids, max_retries, retry_exceptions,
                            held, dep_ids, parent, self)
        with self.lock:
            self.objects.add_owned(return_ids)
            for oid in return_ids:
                self.by_return[oid] = record
            if parent is not None:
                self.children[parent].append(record)
            record.waiting += self.objects.when_ready(dep_ids, record)  # its own dependency callback
            self.events.submitted(spec, parent, request.shape, record.waiting > 0)
            if record.waiting == 0:
                self._enqueue(record)
        return return_ids

    def _dep_ready(self, record: TaskRecord) -> None:
        with self.lock:
            record.waiting -= 1
            if record.waiting == 0 and not record.cancelled:
                self.events.args_ready(record.spec)
                self._enqueue(record)

    def _enqueue(self, record: TaskRecord) -> None:
        home = self._locality(record)
        base = record.key[:3]  # (shape, strategy, env key); a fourth item is the locality node
        key = base if home is None else base + (home,)
        state = self.keys.get(key)
        if state is None:
            state = self.keys[key] = KeyState(home)
        record.key = key
        state.queue.append(record)
        self._dispatch(state)

    def _locality(self, record: TaskRecord) -> str | None:
        """The other node holding most of a default-scheduled task's stored arguments (at
        least LOCALITY_MIN_BYTES of them), so the task runs where its data is."""
        if record.request.strategy is not None or not record.dep_ids:
            return None
        by_home = self.objects.home_bytes(record.dep_ids)
        if not by_home:
            return None
        home, size = max(by_home.items(), key=lambda kv: kv[1])
        return home if size >= LOCALITY_MIN_BYTES else None

    def _dispatch(self, state: KeyState) -> None:
        """Push queued tasks onto leases with room; ask for more leases if needed (lock held).

        Idle workers first; then lease requests for the rest; and only a backlog larger
        than the leases on their way is pipelined onto busy workers, so tasks submitted
        together never queue behind one worker while another CPU sits idle.
        """
        self._push_while(state, 1)
        want = min(len(state.queue), MAX_LEASE_REQUESTS) - state.requests
        for _ in range(max(0, want)):
            self._request_lease(state, state.queue[0], self._home_link(state))
        if len(state.queue) > state.requests:
            self._push_while(state, PIPELINE_DEPTH)

    def _push_while(self, state: KeyState, depth: int) -> None:
        now = time.monotonic()
        while state.queue:
            lease = min((l for l in state.leases if not l.dead and l.inflight < depth
                         and not l.turn_over(now)), key=lambda l: l.inflight, default=None)
            if lease is None:
                return
            record = state.queue.popleft()
            record.spec.deps, error = self.objects.resolve_deps(record.dep_ids)
            if error is not None:  # an argument failed: so does the task, without running
                self.events.failed_here(record.spec, "an argument of the task failed",
                                        "DEPENDENCY_RESOLUTION_FAILED")
                self._finish(record, [("inline", error)] * len(record.return_ids))
                continue
            record.lease = lease
            record.attempts += 1
            self.events.pushed(record.spec, record.attempts)
            lease.inflight += 1
            record.spec.gpu_ids = lease.grant.gpu_ids
            if record.spec.generator == "streaming":
                self.generators.before_push(record.spec, lease.channel)
            if record.retries_left == 0 and not lease.marked_non_retriable:
                lease.marked_non_retriable = True
                lease.nm.send(p.MarkLeaseNonRetriable(lease.grant.lease_id))
            if not lease.channel.push(record, p.PushTask(record.spec)):
                lease.dead = True

    def _ask_again_locally(self, state: KeyState, record: TaskRecord) -> None:
        """A remote node failed a lease request by going away: ask this node again, after
        a moment for the cluster view to learn of the death (else it may send us back)."""
        state.home = None
        timer = threading.Timer(0.1, self._request_lease, (state, record, None, True))
        timer.daemon = True
        timer.start()

    def _home_link(self, state: KeyState) -> NodeLink | None:
        if state.home is None:
            return None
        try:
            return self.remote_nodes.get(state.home)
        except OSError:  # the data's node is gone: schedule as usual
            state.home = None
            return None

    def _request_lease(self, state: KeyState, record: TaskRecord, nm: NodeLink | None = None,
                       spilled: bool = False) -> None:
        """Ask ``nm`` (default: this process's node manager) for a worker; follow spillbacks."""
        nm = nm or self.link
        if not spilled:
            state.requests += 1

        def on_reply(reply: p.Reply, _fds: list[int]) -> None:
            if reply.ok and isinstance(reply.value, p.Spillback):
                try:
                    remote = self.remote_nodes.get(reply.value.address)
                except OSError:
                    self._ask_again_locally(state, record)  # that node just went away
                else:
                    self._request_lease(state, record, remote, spilled=True)
                return
            if not reply.ok and nm is not self.link and not self.closed:
                self._ask_again_locally(state, record)  # the remote node died meanwhile
                return
            with self.lock:
                state.requests -= 1
                if not reply.ok or self.closed:
                    if not reply.ok:
                        self._fail_queue(state, reply.value)
                    return
            grant: p.LeaseGrant = reply.value
            try:
                channel = self._channel(grant.address)
            except OSError:
                nm.send(p.ReturnLease(grant.lease_id, kill_worker=True))
                return
            with self.lock:
                lease = Lease(grant, channel, record.key, nm)
                state.leases.append(lease)
                self._dispatch(state)

        nm.call_async(lambda rid: p.RequestLease(rid, record.request, record.spec.name), on_reply)

    def _channel(self, address: Address) -> WorkerChannel:
        channel = self.channels.get(address)
        if channel is None or channel.lost:
            channel = WorkerChannel(address, self.token, self._on_reply, self._on_lost,
                                    self.generators.on_items)
            self.channels[address] = channel
        return channel

    # --- results ----------------------------------------------------------------------

    def _on_reply(self, channel: WorkerChannel, msg: p.TaskReply) -> None:
        record = channel.inflight.pop(msg.task_id, None)
        if record is None:
            return
        lease = record.lease
        with self.lock:
            lease.inflight -= 1
            lease.idle_since = time.monotonic()
            if msg.worker_exiting:
                lease.dead = True
        if self._should_retry_exception(record, msg):
            if record.retries_left > 0:
                record.retries_left -= 1
            with self.lock:
                self._enqueue(record)
            return
        if not self._rebuild_lost_argument(record, msg):
            self._finish(record, msg.returns)
        with self.lock:
            if lease.dead:
                self._drop_lease(lease, kill=True)
            elif lease.inflight == 0 and lease.turn_over(time.monotonic()):
                self._drop_lease(lease)  # its turn is over: the node grants it to who waits
            state = self.keys.get(record.key)
            if state is not None:
                self._dispatch(state)

    def _rebuild_lost_argument(self, record: TaskRecord, msg: p.TaskReply) -> bool:
        """The task failed because an argument's only copy was lost with its node: rebuild
        it (lineage: re-run here if this process made it, recursively, else by the process
        that did) and run the task again once it is back."""
        kind, payload = msg.returns[0] if msg.returns else ("", b"")
        if kind != "inline" or not read_flags(payload) & FLAG_ERROR or record.cancelled:
            return False
        try:
            cause = getattr(self.objects.deserialize(payload), "cause", None)
        except Exception:  # an error we cannot read here is reported as it is
            return False
        if not isinstance(cause, ObjectLostError):
            return False
        lost = bytes.fromhex(cause.object_hex)
        if lost not in record.dep_ids and not (isinstance(record.spec.payload, tuple)
                                               and record.spec.payload[1][0] == lost):
            return False
        return self.objects.lineage.recover_async(lost, lambda error: self._argument_back(record, error))

    def _argument_back(self, record: TaskRecord, error: BaseException | None) -> None:
        """A lost argument was rebuilt (``error`` None: run the task again) or cannot be."""
        if error is not None:
            self._finish_error(record, error)
            return
        with self.lock:
            record.lease = None
            self._enqueue(record)

    def _should_retry_exception(self, record: TaskRecord, msg: p.TaskReply) -> bool:
        if record.retries_left == 0 or record.cancelled:
            return False
        return retriable_error(self.objects, record.retry_exceptions, msg.returns)

    def _finish(self, record: TaskRecord, returns: list[Completion]) -> None:
        with self.lock:
            for oid in record.return_ids:
                self.by_return.pop(oid, None)
            if record.parent is not None:
                siblings = self.children.get(record.parent)
                if siblings is not None and record in siblings:
                    siblings.remove(record)
                    if not siblings:
                        del self.children[record.parent]
        # Lineage: a result living on another node can be rebuilt by running the task
        # again if that node dies, so the task (and its arguments) stay while the result
        # is referenced.
        self.objects.lineage.keep(record, returns, self._resend)
        self.objects.complete_all(record.return_ids, returns)

    def _resend(self, record: TaskRecord) -> None:
        """Run a finished task again: a result of it was lost with its node (Recovery)."""
        with self.lock:
            for return_id in record.return_ids:
                self.by_return[return_id] = record
            record.lease = None
            self._enqueue(record)

    def _finish_error(self, record: TaskRecord, error: BaseException) -> None:
        self.events.failed_here(record.spec, error)
        self._finish(record, error_returns(error, len(record.return_ids)))

    def _fail_queue(self, state: KeyState, error: object) -> None:
        # Failing a task enqueues its dependents here, whose lease request fails at once
        # when the node manager is gone and calls us again: without the flag that
        # recursion grows with the queue (a 2,000-task DAG at shutdown overflowed the
        # stack in the node manager reader thread, leaving other waiters unanswered).
        # The outer call's loop takes the dependents instead.
        if state.failing:
            return
        state.failing = True
        try:
            while state.queue:
                record = state.queue.popleft()
                self._finish_error(record, error if isinstance(error, BaseException) else
                                   RuntimeError(str(error)))
        finally:
            state.failing = False

    def _on_lost(self, channel: WorkerChannel) -> None:
        """The worker died: retry what it was running, or fail it."""
        retry: list[TaskRecord] = []
        failed: list[TaskRecord] = []
        with self.lock:
            if self.channels.get(channel.address) is channel:
                del self.channels[channel.address]
            for record in channel.inflight.values():
                if record.cancelled or record.retries_left == 0:
                    failed.append(record)
                else:
                    if record.retries_left > 0:
                        record.retries_left -= 1
                    retry.append(record)
            channel.inflight.clear()
            for state in self.keys.values():
                for lease in list(state.leases):
                    if lease.channel is channel:
                        self._drop_lease(lease, kill=True)
        crashed = []
        for record in failed:
            if record.cancelled:
                self._finish_error(record, TaskCancelledError(record.spec.name))
            else:
                crashed.append(record)
        if crashed:
            self._fail_crashed(crashed[0].lease, crashed)
        with self.lock:
            for record in retry:
                self._enqueue(record)

    def _fail_crashed(self, lease: Lease, records: list[TaskRecord]) -> None:
        """Fail tasks whose worker died with the reason the node manager learnt from its exit.

        The connection drops before the fork server reaps the process, so the reason
        (signal, exit code, memory monitor) is asked for rather than known here.
        """
        def on_reply(reply: p.Reply, _fds: list[int]) -> None:
            exit_info: p.WorkerExit | None = reply.value if reply.ok else None
            for record in records:
                self._finish_error(record, _crash_error(record, exit_info))

        worker_id = lease.grant.worker_id
        lease.nm.call_async(lambda rid: p.GetWorkerExit(rid, worker_id), on_reply)

    def _drop_lease(self, lease: Lease, kill: bool = False) -> None:
        state = self.keys.get(lease.key)
        if state is not None and lease in state.leases:
            state.leases.remove(lease)
            lease.nm.send(p.ReturnLease(lease.grant.lease_id, kill_worker=kill))

    def lease_wanted(self, nm_address: Address, lease_id: int) -> None:
        """A node manager asks for a lease back: another submitter waits (fair leases)."""
        with self.lock:
            for state in self.keys.values():
                for lease in state.leases:
                    if lease.grant.lease_id == lease_id and lease.nm.address == nm_address:
                        lease.wanted = True
                        if lease.inflight == 0 and lease.turn_over(time.monotonic()):
                            self._drop_lease(lease)
                            self._dispatch(state)
                        return

    def node_dead(self, tcp_address: Address) -> None:
        """A node was declared dead: its workers' channels count as lost (their tasks are
        retried elsewhere), even if the machine is frozen and never closes them."""
        with self.lock:
            channels = [lease.channel for state in self.keys.values() for lease in state.leases
                        if lease.nm.address == tcp_address]
        for channel in channels:
            channel.close()  # the reader wakes up and runs _on_lost
        self.remote_nodes.drop(tcp_address)

    def return_idle_leases(self) -> None:
        now = time.monotonic()
        with self.lock:
            for state in self.keys.values():
                if state.queue:
                    continue
                for lease in list(state.leases):
                    if lease.inflight == 0 and now - lease.idle_since > LEASE_LINGER_S:
                        self._drop_lease(lease)
            for state in self.keys.values():  # turns that ended while nothing was in flight
                if state.queue and any(lease.inflight == 0 and lease.turn_over(now)
                                       for lease in state.leases):
                    for lease in [l for l in state.leases if l.inflight == 0 and l.turn_over(now)]:
                        self._drop_lease(lease)
                    self._dispatch(state)

    # --- cancellation -----------------------------------------------------------------

    def cancel(self, oid: ObjectID, force: bool, recursive: bool) -> bool:
        """Stop the task returning ``oid``; False if no task of this submitter returns it."""
        with self.lock:
            record = self.by_return.get(oid)
            if record is None:
                return False
            if record.cancelled:
                return True
            record.cancelled = True
            state = self.keys.get(record.key)
            queued = record.lease is None
            if state is not None and record in state.queue:
                state.queue.remove(record)
                queued = True
            lease = record.lease
        if queued:
            self._finish_error(record, TaskCancelledError(record.spec.name))
            return True
        if force:
            lease.nm.send(p.KillWorker(lease.grant.worker_id))
        else:
            lease.channel.send(p.CancelTask(record.spec.task_id, recursive))
        return True

    def cancel_children(self, task_id: TaskID) -> None:
        for record in list(self.children.get(task_id, ())):
            for oid in record.return_ids[:1]:
                self.cancel(oid, force=False, recursive=True)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            channels = list(self.channels.values())
            self.channels.clear()
        for channel in channels:
            channel.close()


def retriable_error(objects: LocalObjectTable, retry_exceptions: RetryExceptions,
                    returns: list[Completion]) -> bool:
    """Whether a reply carries an application error that ``retry_exceptions`` retries
    (True: any; a tuple: those classes). Shared by tasks and actor methods."""
    if not retry_exceptions or not returns:
        return False
    kind, payload = returns[0]
    if kind != "inline" or not read_flags(payload) & FLAG_ERROR:
        return False
    if retry_exceptions is True:
        return True
    try:
        err = objects.deserialize(payload)
    except Exception:  # an error we cannot read here is reported, not retried
        return False
    return isinstance(getattr(err, "cause", None), tuple(retry_exceptions))


def _crash_error(record: TaskRecord, exit_info: p.WorkerExit | None) -> Exception:
    if exit_info is None:
        return WorkerCrashedError(record.spec.name, "its worker process died", record.attempts)
    if exit_info.oom is not None:
        used, total, threshold = exit_info.oom
        return OutOfMemoryError(record.spec.name, used, total, threshold=threshold, pid=exit_info.pid,
                                attempts=record.attempts)
    return WorkerCrashedError(record.spec.name, f"pid {exit_info.pid}, {exit_info.detail}",
                              record.attempts)
