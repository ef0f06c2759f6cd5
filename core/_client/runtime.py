"""The per-process core: one per driver and per worker, composed of its collaborators.

    NodeLink ------------ the registered connection to this node's manager
    LocalObjectTable --------- objects and actor handles this process refers to; get/wait
    TaskSubmitter ------- normal tasks: lease workers, push, retry, lineage
    GeneratorTable ------ values of generator tasks, arriving while they run
    ActorSubmitter ------ actor calls, in order per actor
    RemoteNodes --------- links to other nodes' managers (spillbacks, owners asked to rebuild)
    Recovery ------------ lost objects back: re-run what it owns, ask owners for the rest

    f.remote(x) -> TaskSubmitter: lease a worker, push the task ----> worker runs it
    get(ref)    <- LocalObjectTable <- TaskReply (inline value, or "stored": map the memfd)

The process's current runtime is held by ``context`` (one module), not here.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from typing import Any, Callable, Literal

from .._wire import protocol as p
from .._types import NodeID, ObjectID, TaskID
from .actor_submitter import ActorSubmitter
from .generators import GeneratorTable
from .._wire.ids import PUT_INDEX, REQUEST_INDEX, TaskIds, object_id
from .._wire.node_link import NodeLink
from .local_objects import LocalObjectTable
from .metrics_push import MetricsPusher
from .rebuilds import Recovery
from .._wire.serialization import serialize
from ..exceptions import InvalidOptionError
from .remote_nodes import RemoteNodes
from .submitter import TaskSubmitter
from .task_events import TaskEventBuffer, events_enabled_by_default

#: What kind of process a runtime serves.
RuntimeKind = Literal["driver", "worker"]

#: How often the housekeeping thread drains releases and returns idle leases while there
#: is anything to do, and at most how long it sleeps while the process is idle.
HOUSEKEEPING_S = 0.02
HOUSEKEEPING_IDLE_S = 0.5


class Runtime:
    """The core of one driver or worker process: it registers with the node manager and
    composes the object table and the two submitters around that link.

    It owns their lifetimes (``close``) and a housekeeping thread that drains released
    refs, returns idle leases and lets lingering borrowed refs go. Everything the public
    API does goes through one of its collaborators; none of them reaches into another's
    state.
    """

    def __init__(self, node_address: str, token: bytes, kind: RuntimeKind, worker_id: bytes | None = None,
                 address: str | None = None, namespace: str | None = None,
                 on_message: Callable[[Any, list[int]], None] | None = None,
                 runtime_env: dict[str, Any] | None = None, tcp_address: str | None = None,
                 log_to_driver: bool = True) -> None:
        self.kind = kind
        self.token = token
        self.worker_id = worker_id or os.urandom(16)
        self._task_ids = TaskIds()
        self._on_message = on_message
        #: Print the lines workers of this job write (``init(log_to_driver=False)``: drop them).
        self._log_to_driver = log_to_driver
        self.registered_functions: set[bytes] = set()
        #: The process env (py_modules, pip) every task and actor of this process runs in
        #: unless it names its own: the job's from init, or, in a worker, the worker's own.
        #: (A job's working_dir is its workers' cwd and sys.path, not a pool of its own.)
        #: Set by context.start (a driver) or the worker's main.
        self.default_process_env: dict[str, Any] | None = None
        #: Reached over TCP (a driver on another machine): no shared memory, no Unix sockets;
        #: its paths mean nothing to the cluster's workers, so none are shipped.
        self.remote = node_address.startswith("tcp:")
        working_dir = (runtime_env or {}).get("working_dir")
        if self.remote and working_dir is not None:
            raise InvalidOptionError(f"runtime_env working_dir={working_dir!r} is a directory on this "
                                     "machine, and a driver connected over TCP (ember://) cannot ship it "
                                     "to the cluster: install the code on the cluster's machines instead")
        ships_paths = kind == "driver" and not self.remote
        sys_path = _shippable_sys_path() if ships_paths else None
        if working_dir is not None and sys_path is not None:
            sys_path.insert(0, working_dir)
        self.register_msg = p.Register(kind, self.worker_id, os.getpid(), address, namespace,
                                       (working_dir or os.getcwd()) if ships_paths else None,
                                       sys_path, (runtime_env or {}).get("env_vars") or None,
                                       tcp_address=tcp_address,
                                       submission_id=os.environ.get("EMBER_JOB_SUBMISSION_ID")
                                       if kind == "driver" else None)
        self.link = NodeLink(node_address, token, self.register_msg, on_message=self._on_node_message,
                             on_lost=self._connection_lost, name="ember-nm-reader")
        reg = self.link.registered
        self.node_id: NodeID = reg.node_id
        self.job_id: bytes = reg.job_id
        self.namespace: str = reg.namespace
        self.session_dir: str = reg.session_dir
        self.node_tcp_address: str = reg.node_tcp_address
        self.head_tcp_address: str = reg.head_tcp_address
        self.job_env_vars: dict[str, str] | None = reg.env_vars
        self.objects = LocalObjectTable(self.link, self.worker_id, self.node_tcp_address,
                                   self.head_tcp_address, is_worker=kind == "worker")
        self.lock = self.objects.lock
        self.remote_nodes = RemoteNodes(token, self.worker_id, self.job_id, self.namespace,
                                        self.job_env_vars,
                                        (lambda: None) if self.remote else
                                        _shippable_sys_path if kind == "driver" else lambda: list(sys.path))
        self.generators = GeneratorTable(self.objects)
        self.submitter = TaskSubmitter(self.objects, self.link, token, self.remote_nodes, self.generators)
        self.remote_nodes.on_message = lambda address, msg: (
            self.submitter.lease_wanted(address, msg.lease_id) if isinstance(msg, p.LeaseWanted) else None)
        self.actor_submitter = ActorSubmitter(self.objects, self.link, token, self.node_id,
                                              self.generators, local_sockets=not self.remote)
        #: This process's task events, sent to the node about once a second (housekeeping).
        self.task_events = TaskEventBuffer(self.link.send, self.worker_id, self.node_id, self.job_id,
                                           enabled=events_enabled_by_default())
        self.submitter.events = self.actor_submitter.events = self.task_events
        self.objects.lineage = self.recovery = Recovery(
            self.objects, self.remote_nodes,
            f"{kind} pid {os.getpid()} on node {self.node_tcp_address}")
        #: Users' metrics (ember.util.metrics) to the node, from the housekeeping thread.
        self.metrics = MetricsPusher(self.link.send)
        self._stop = threading.Event()
        self._housekeeper = threading.Thread(target=self._housekeeping, daemon=True,
                                             name="ember-housekeeping")
        self._housekeeper.start()

    @property
    def closed(self) -> bool:
        return self.objects.closed

    # --- talking to the node manager --------------------------------------------------

    def _on_node_message(self, msg: Any, fds: list[int]) -> None:
        if isinstance(msg, p.LogLines):
            if self._log_to_driver:
                _print_remote_lines(msg)
        elif isinstance(msg, p.LeaseWanted):
            self.submitter.lease_wanted(self.link.address, msg.lease_id)
        elif isinstance(msg, p.NodeDead):
            self.submitter.node_dead(msg.tcp_address)
            self.actor_submitter.node_dead(msg.node_id)
        elif isinstance(msg, p.RebuildObject):
            self.recovery.serve(msg)
        elif isinstance(msg, p.LeaseInfeasible):
            warnings.warn(msg.message, RuntimeWarning, stacklevel=1)
        elif self._on_message is not None:
            self._on_message(msg, fds)

    def _connection_lost(self) -> None:
        self.objects.connection_lost()
        if self.kind == "worker":
            os._exit(1)

    def call(self, make: Callable[[int], Any], timeout_s: float | None = None,
             fds: tuple[int, ...] = ()) -> tuple[Any, list[int]]:
        """Send a request to this process's node manager and wait for its reply."""
        return self.link.call(make, timeout_s, fds)

    def call_async(self, make: Callable[[int], Any], on_reply: Callable[[p.Reply, list[int]], None]) -> None:
        self.link.call_async(make, on_reply)

    def send(self, msg: Any) -> None:
        self.link.send(msg)

    # --- ids and objects --------------------------------------------------------------

    def next_task_id(self) -> TaskID:
        return self._task_ids.next()

    def put(self, value: Any) -> ObjectID:
        """Store ``value`` as an object this process owns; its id, already counted once:
        wrap it in ``ObjectRef(oid, _counted=True)``."""
        ser = serialize(value, what="the value passed to ember.put")
        oid = object_id(self._task_ids.next(), PUT_INDEX)
        self.objects.put_serialized(oid, ser, counted=True)
        return oid

    def request_object(self, make: Callable[[int], Any]) -> ObjectID:
        """An object resolved by the node manager's reply to a request (its value, or its
        error raised by ``get``), e.g. a placement group's ``ready()``."""
        oid = object_id(self.next_task_id(), REQUEST_INDEX)
        self.objects.complete_from_request(oid, make)
        return oid

    # --- housekeeping -----------------------------------------------------------------

    def _housekeeping(self) -> None:
        # Every 20 ms while there is anything to do; an idle process (an idle actor, say)
        # backs off to 0.5 s: 2,000 idle actors waking 50 times a second each saturated
        # the machine's CPUs (issue 19). Work seen again resets the interval.
        interval_s = HOUSEKEEPING_S
        while not self._stop.wait(interval_s):
            try:
                objects = self.objects
                busy = objects.has_releases() or bool(objects._lingering) or any(
                    state.leases or state.queue for state in self.submitter.keys.values())
                self.generators.drain_drops()
                objects.drain_releases()
                self.submitter.return_idle_leases()
                objects.flush_lingering()
                self.task_events.flush_if_due()
                self.metrics.tick()
                interval_s = HOUSEKEEPING_S if busy else min(interval_s * 2, HOUSEKEEPING_IDLE_S)
            except Exception:  # a bug here must not kill the process's housekeeping
                if self.closed:
                    return
                raise

    def _drain_log_lines(self) -> None:
        """One round trip to the node manager before leaving: a task's printed lines go
        worker -> node manager -> driver while its result comes straight back, so a short
        script could end before the last lines arrived. The answer comes after the lines
        the node manager had already read (its one event loop), and they are printed."""
        try:
            self.link.call(lambda rid: p.StoreStats(rid), timeout_s=2.0)
        except Exception:  # a node manager that is gone has nothing more to print
            pass

    def close(self) -> None:
        """Stop housekeeping, close every worker channel and node link. Safe to call twice."""
        if not self.objects.closed:
            self.task_events.flush()  # the last events of a driver that leaves
            if self.kind == "driver" and self._log_to_driver:
                self._drain_log_lines()
        self._stop.set()
        if not self.objects.closed:
            try:
                self.metrics.flush()  # a worker's last counts reach its node
            except Exception:  # the link may be gone already; metrics must not fail a close
                pass
        self.objects.closed = True
        self.submitter.close()
        self.actor_submitter.close()
        self.remote_nodes.close()
        self.link.close()
        if threading.current_thread() is not self._housekeeper:
            self._housekeeper.join(5)


def _shippable_sys_path() -> list[str]:
    return [os.path.abspath(x) if x else os.getcwd() for x in sys.path]


#: The driver's progress-bar display, once a worker sent a bar (ember.experimental.tqdm_ray):
#: other output is then printed above the bars instead of through them.
_progress_bars: Any = None


def _print_remote_lines(msg: p.LogLines) -> None:
    global _progress_bars
    stream = sys.stderr if msg.is_err else sys.stdout
    lines = msg.lines
    if any(line.startswith(p.PROGRESS_LINE_PREFIX) for line in lines):
        # Imported here: tqdm costs ~40 ms, paid only by a driver that is sent a bar.
        from ..experimental import tqdm_ray
        _progress_bars = tqdm_ray.manager()
        for line in lines:
            if line.startswith(p.PROGRESS_LINE_PREFIX):
                _progress_bars.apply_line(msg.prefix, line)
        lines = [line for line in lines if not line.startswith(p.PROGRESS_LINE_PREFIX)]
        if not lines:
            return
    text = "".join(f"{msg.prefix} {line}\n" for line in lines)
    try:
        if _progress_bars is not None:
            _progress_bars.write(text, stream)
        else:
            stream.write(text)
            stream.flush()
    except (ValueError, OSError):
        pass
