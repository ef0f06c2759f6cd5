"""Every message that crosses a process boundary.

Requests carry ``rid`` and are answered by one ``Reply`` with the same ``rid``;
messages without ``rid`` are one-way. Connections:

    driver/worker  <-> node manager   Register, leases, objects, refs, actors, logs
    submitter      ->  worker         PushTask / CancelTask, answered by TaskReply
    node manager   ->  worker         StartActor (answered by Reply), Exit
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .._types import (ActorID, ActorState, Address, FunctionID, GeneratorMode, JobID, NodeID, ObjectID,
                      Owner, ResourceShape, TaskID, WorkerID)

# --- session -----------------------------------------------------------------------


@dataclass(slots=True)
class Register:
    """First message after the token handshake: who is connecting."""
    kind: Literal["driver", "worker"]
    worker_id: WorkerID
    pid: int
    address: Address | None = None
    namespace: str | None = None
    cwd: str | None = None
    sys_path: list[str] | None = None
    #: The job's runtime_env env_vars, applied to every worker of the job.
    env_vars: dict[str, str] | None = None
    #: Nodes joining the head: their Unix socket (``address`` is their TCP address).
    node_unix_address: str | None = None
    #: Workers: their TCP address, for submitters on other nodes.
    tcp_address: str | None = None
    #: Remote submitters: the job they submit for.
    job_id: JobID | None = None
    #: Drivers started by ``ember job submit``: the submission they run (links the two).
    submission_id: str | None = None


@dataclass(slots=True)
class Registered:
    """Node manager -> a process that registered: who and where it is now (ids, session, addresses)."""
    node_id: NodeID
    job_id: JobID
    namespace: str
    session_dir: str
    node_address: Address
    node_tcp_address: Address = ""
    #: The job's runtime_env env_vars (remote submitters pass them on).
    env_vars: dict[str, str] | None = None
    #: Where actor-handle references are counted (the head's TCP address).
    head_tcp_address: Address = ""


@dataclass(slots=True)
class Reply:
    """The answer to the request with the same ``rid``: ``ok`` and a value (or the error)."""
    rid: int
    ok: bool
    value: Any = None


# --- functions -----------------------------------------------------------------------


@dataclass(slots=True)
class RegisterFunction:
    """Store an exported function or class under its content id (once per runtime)."""
    rid: int
    function_id: FunctionID
    blob: bytes


@dataclass(slots=True)
class GetFunction:
    """A worker asks for an exported function or class by content id."""
    rid: int
    function_id: FunctionID


# --- leases --------------------------------------------------------------------------


@dataclass(slots=True)
class SchedulingRequest:
    """What a task or actor asks of the scheduler."""
    shape: ResourceShape
    strategy: Any = None
    #: Resources held for the lease's life, when they differ from ``shape`` (actors
    #: need 1 CPU to be placed but hold 0 CPUs while they run).
    hold: ResourceShape | None = None
    #: (group hex id, capture child tasks) when it runs in a placement group.
    placement_group: tuple[str, bool] | None = None
    #: The runtime_env part that needs workers of its own (working_dir, py_modules, pip),
    #: and its key: the node leases workers from that env's pool (None/"": the job's).
    runtime_env: dict[str, Any] | None = None
    env_key: str = ""


@dataclass(slots=True)
class RequestLease:
    """A submitter asks for a worker that fits ``request``; answered with a LeaseGrant or a Spillback."""
    rid: int
    request: SchedulingRequest
    name: str


@dataclass(slots=True)
class LeaseGrant:
    """A worker leased to a submitter: push tasks to ``address`` until the lease is returned."""
    lease_id: int
    worker_id: WorkerID
    address: Address
    gpu_ids: list[int]


@dataclass(slots=True)
class Spillback:
    """A lease request's answer when another node should run it: ask that node."""
    address: Address


@dataclass(slots=True)
class LeaseInfeasible:
    """Sent (once) for a queued lease request that no node can ever satisfy."""
    rid: int
    message: str


@dataclass(slots=True)
class LeaseWanted:
    """Node manager -> a lease's holder: another submitter waits for what it holds. The
    holder gives it back once it has had its turn (submitter.LEASE_TURN_S) and its tasks
    in flight are done, then asks again: leases rotate between submitters."""
    lease_id: int


@dataclass(slots=True)
class ReturnLease:
    """A submitter is done with a lease (``kill_worker``: its worker must not be reused)."""
    lease_id: int
    kill_worker: bool = False


@dataclass(slots=True)
class SetBlocked:
    """A worker's task is blocked in get/wait: its CPUs may be lent to others meanwhile."""
    blocked: bool


# --- objects -------------------------------------------------------------------------


@dataclass(slots=True)
class MapStore:
    """Answered with the store's capacity and its arena's memfd: a process maps it once."""
    rid: int


@dataclass(slots=True)
class CreateObject:
    """Reserve a block of the store for an object about to be written.

    Answered with the block's offset; None when the object is sealed already (a retried
    task: ``holder`` now holds that copy); or ObjectStoreFullError. The answer may wait
    while the store spills to make room.
    """
    rid: int
    object_id: ObjectID
    size: int
    holder: WorkerID


@dataclass(slots=True)
class PutObject:
    """Seal an object the sender wrote into the block at ``offset`` (from CreateObject).
    ``rid`` None: no answer (the object is pending from CreateObject on, so readers wait)."""
    rid: int | None
    object_id: ObjectID
    size: int
    flags: int
    #: The process whose reference keeps the object alive initially.
    holder: WorkerID
    contained: list[bytes]
    offset: int


@dataclass(slots=True)
class GetObject:
    """Answered with (size, flags, offset) once the object is sealed (and, if ``fetch``,
    in memory: restored if it was spilled). With ``fetch`` the node pins the block for
    the sender until it sends Unpin (or disconnects); without, offset is -1.

    ``home`` names the node (TCP address) holding the object when it is not this one;
    the node manager then pulls a copy first.
    """
    rid: int
    object_id: ObjectID
    fetch: bool = True
    home: Address | None = None


@dataclass(slots=True)
class Unpin:
    """The sender no longer maps these blocks of the store: one offset per pin dropped."""
    offsets: list[int]


@dataclass(slots=True)
class PutChunk:
    """A driver reached over TCP -> its node: part of an object it puts, to be written into
    the block CreateObject reserved for it (no process on another machine maps the store);
    its PutObject follows the last chunk."""
    object_id: ObjectID
    #: The block's offset in the store, as CreateObject answered.
    block: int
    #: Where ``data`` goes in the object.
    offset: int
    #: None on the wire: the bytes follow as the next raw frame (never unpickled).
    data: bytes | None


@dataclass(slots=True)
class PullObject:
    """Node manager -> node manager: send me this object (ObjectChunks, then a Reply)."""
    rid: int
    object_id: ObjectID


@dataclass(slots=True)
class ObjectChunk:
    """Part of a pulled object (``total`` bytes in all). ``data`` None: the bytes follow as
    the next raw frame, received straight into the object's block."""
    rid: int
    offset: int
    total: int
    data: bytes | bytearray | None


@dataclass(slots=True)
class DeclareShared:
    """The owner announces pending objects that other processes may now wait for."""
    rid: int
    object_ids: list[ObjectID]


@dataclass(slots=True)
class AddRefs:
    """This process holds references to ``ids`` (borrowed refs, forwarded holds)."""
    rid: int | None
    ids: list[bytes]
    #: Node (TCP address) whose table holds these ids, when not the receiver's.
    home: Address | None = None
    #: Set when a node manager forwards a process's references to the ids' home.
    holder: bytes | None = None


@dataclass(slots=True)
class RemoveRefs:
    """This process no longer refers to ``ids``: the node may free them."""
    ids: list[bytes]
    home: Address | None = None
    holder: bytes | None = None


@dataclass(slots=True)
class RebuildObject:
    """A borrower -> the owner's node manager -> the owner: every copy of ``object_id`` was
    on ``lost_home``, which is gone; run the task that made it again. The node manager
    answers each borrower that asked with the object as it is now: ("stored", (size,
    flags, home)) or ("inline", payload); or with why it cannot be rebuilt. ``rid`` is
    None on the node manager's push to the owner."""
    rid: int | None
    object_id: ObjectID
    owner: Owner
    lost_home: Address


@dataclass(slots=True)
class ObjectRebuilt:
    """Owner -> its node manager: the answer to RebuildObject, for every borrower waiting."""
    object_id: ObjectID
    ok: bool
    value: Any


@dataclass(slots=True)
class ReleaseHolder:
    """Node -> an object's home node: this process exited; drop the references it held."""
    holder: bytes


@dataclass(slots=True)
class StoreStats:
    """Ask for the node's object store usage (``ember.object_store_stats``)."""
    rid: int


# --- tasks ---------------------------------------------------------------------------


@dataclass(slots=True)
class TaskSpec:
    """Everything a worker needs to run one task or actor call, and where its results go."""
    task_id: TaskID
    name: str
    function_id: FunctionID
    #: Serialized (args, kwargs) with top-level refs replaced by placeholders; None = no args.
    payload: bytes | bytearray | None
    #: Values of the placeholders: ("inline", bytes) or ("stored", object id).
    deps: list[tuple[str, Any]]
    num_returns: int
    owner_id: WorkerID
    gpu_ids: list[int] | tuple = ()
    max_calls: int = 0
    actor_id: ActorID | None = None
    method: str | None = None
    #: runtime_env env_vars of this task, set around its call only.
    env_vars: dict[str, str] | None = None
    #: (group hex id, capture child tasks) when it runs in a placement group.
    placement_group: tuple[str, bool] | None = None
    #: Keep the function and resolved inputs on the head if it fails (replay).
    keep_inputs: bool = True
    #: False: the user asked for no task events for this call (``enable_task_events=False``
    #: on the function, actor, method or ``.options``); what records events skips it.
    enable_task_events: bool = True
    #: What the task asked for, in plain resource names (``get_assigned_resources``);
    #: None for the common ``{"CPU": 1}``, so most specs carry nothing extra.
    resources: dict[str, float] | None = None
    #: Set for a generator task (its values travel as GeneratorItems; num_returns is 1:
    #: the task's own completion).
    generator: GeneratorMode | None = None
    #: Unconsumed values at which a streaming generator pauses (-1: never).
    backpressure_num_objects: int = -1
    #: Values the caller already holds (a retry): run past them without sending them again.
    generator_resume: int = 0
    #: Values the caller has taken so far (back-pressure counts from there).
    generator_consumed: int = 0


@dataclass(slots=True)
class PushTask:
    """Submitter -> worker: run this task or actor call now (on a leased worker or an actor's)."""
    spec: TaskSpec


@dataclass(slots=True)
class TaskReply:
    """Per return: ("inline", payload) or ("stored", size). ``error`` marks system failures."""
    task_id: TaskID
    returns: list[tuple[str, Any]]
    #: Set when the worker will exit after this task (max_calls reached).
    worker_exiting: bool = False


@dataclass(slots=True)
class GeneratorItems:
    """Worker -> the caller of generator tasks: values yielded since the last batch, in
    order, each (task id, index from 1, ("inline", payload) or ("stored", details))."""
    items: list[tuple[TaskID, int, tuple[str, Any]]]


@dataclass(slots=True)
class GeneratorConsumed:
    """Caller -> the worker running a streaming generator: ``consumed`` of its values have
    been taken (back-pressure lets the generator run on)."""
    task_id: TaskID
    consumed: int


@dataclass(slots=True)
class CancelTask:
    """Submitter -> worker: interrupt this task if it is running (``recursive``: its children too)."""
    task_id: TaskID
    recursive: bool


# --- actors --------------------------------------------------------------------------


@dataclass(slots=True)
class ActorSpec:
    """Everything needed to create (and restart) an actor: its class, arguments, placement and policies."""
    actor_id: ActorID
    class_id: FunctionID
    class_name: str
    payload: bytes | bytearray | None
    deps: list[tuple[str, Any]]
    request: SchedulingRequest
    owner_id: WorkerID
    job_id: JobID
    name: str | None = None
    namespace: str | None = None
    detached: bool = False
    max_restarts: int = 0
    max_task_retries: int = 0
    max_concurrency: int = 1
    is_async: bool = False
    #: method name -> num_returns, so handles rebuilt by name know their methods.
    methods: dict[str, int | str] = field(default_factory=dict)
    get_if_exists: bool = False
    env_vars: dict[str, str] | None = None
    #: ``enable_task_events`` of the actor (its creation, and its methods' default).
    enable_task_events: bool = True
    #: cloudpickled {method: options set with @ember.method beyond num_returns}, so handles
    #: from get_actor call with them too; opaque to node managers (it may name user
    #: exception classes they cannot import).
    method_options: bytes | None = None


@dataclass(slots=True)
class JobDetails:
    """One submitted job as the head keeps it and ``get_job_info`` reports it (Ray's fields;
    ``ember.job_submission`` turns ``status`` into its ``JobStatus`` enum)."""
    submission_id: str
    entrypoint: str
    status: str = "PENDING"
    message: str = ""
    error_type: str | None = None
    start_time: int = 0
    end_time: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    runtime_env: dict[str, Any] = field(default_factory=dict)
    driver_exit_code: int | None = None
    driver_pid: int | None = None
    #: The ember job id (hex) of the driver the entrypoint started, once it registered.
    job_id: str | None = None
    type: str = "SUBMISSION"


@dataclass(slots=True)
class ActorInfo:
    """Where an actor lives and in what state (answered to GetActorInfo and CreateActor)."""
    actor_id: ActorID
    state: ActorState
    address: Address | None
    class_name: str
    methods: dict[str, int | str]
    is_async: bool
    death_cause: str = ""
    num_restarts: int = 0
    max_task_retries: int = 0
    #: Increments on every restart, so callers can tell a new incarnation apart.
    incarnation: int = 0
    #: For callers on other nodes than the actor's (``node_id``).
    tcp_address: Address | None = None
    node_id: NodeID | None = None
    #: ActorSpec.method_options, for handles rebuilt by name.
    method_options: bytes | None = None


@dataclass(slots=True)
class PlaceActor:
    """Head -> node: start this actor here (the head chose the node)."""
    spec: Any
    #: The job's record (namespace, working directory, sys.path, env_vars) for its workers.
    job: Any


@dataclass(slots=True)
class ActorPlaced:
    """Node -> head: the actor's __init__ finished (``error``: why it is dead instead:
    its __init__ raised, or no worker of its job could start)."""
    actor_id: ActorID
    worker_id: WorkerID
    address: Address
    tcp_address: Address
    error: str | None = None


@dataclass(slots=True)
class ActorWorkerDied:
    """Node -> head: the process hosting an actor placed there exited (``cause`` says how)."""
    actor_id: ActorID
    cause: str


@dataclass(slots=True)
class CreateActor:
    """Register and place a new actor (or return the live one, with ``get_if_exists``)."""
    rid: int
    spec: ActorSpec


@dataclass(slots=True)
class GetActorInfo:
    """Answered at once, or (``wait_alive``) once the actor is alive or dead."""
    rid: int
    actor_id: ActorID
    wait_alive: bool
    min_incarnation: int = 0


@dataclass(slots=True)
class GetNamedActor:
    """Look up a live actor by name in a namespace (``ember.get_actor``)."""
    rid: int
    name: str
    namespace: str


@dataclass(slots=True)
class KillActor:
    """Stop an actor now (``no_restart``: for good, as ``ember.kill`` does by default)."""
    actor_id: ActorID
    no_restart: bool


@dataclass(slots=True)
class StartActor:
    """Node manager -> the worker dedicated to an actor: run ``__init__``."""
    rid: int
    spec: ActorSpec
    gpu_ids: list[int]


@dataclass(slots=True)
class ExitActor:
    """An actor called exit_actor() (or sys.exit(0)): a clean, final exit."""
    actor_id: ActorID
    #: What it called, for the death cause callers see.
    how: str = "exit_actor()"


@dataclass(slots=True)
class Exit:
    """Node manager -> worker: exit now (the node is stopping or the worker is no longer needed)."""


# --- placement groups ------------------------------------------------------------------


@dataclass(slots=True)
class CreatePlacementGroup:
    """Reserve a group's bundles (the head plans and reserves them two-phase)."""
    rid: int
    pg_id: bytes
    bundles: list[ResourceShape]
    strategy: str
    name: str
    #: The creating job: its groups are removed when it ends, unless detached.
    job_id: JobID | None = None
    detached: bool = False


@dataclass(slots=True)
class RemovePlacementGroup:
    """Release a group's bundles; what runs in them is stopped."""
    pg_id: bytes


@dataclass(slots=True)
class ReserveBundles:
    """Head -> node: reserve these (index, bundle) pairs of a group (all or none)."""
    pg_id: bytes
    bundles: list[tuple[int, ResourceShape]]


@dataclass(slots=True)
class BundlesReserved:
    """Node -> head: the answer to ReserveBundles."""
    pg_id: bytes
    ok: bool


@dataclass(slots=True)
class ReleaseBundles:
    """Head -> node: give a group's bundles back (removed, or another node failed)."""
    pg_id: bytes


@dataclass(slots=True)
class WaitPlacementGroup:
    """Answered once the group is placed (True), or with an error once it is removed."""
    rid: int
    pg_id: bytes


@dataclass(slots=True)
class PlacementGroupTable:
    """Ask for one group's state (``pg_id``) or every group's (None)."""
    rid: int
    pg_id: bytes | None


# --- workers and the cluster ----------------------------------------------------------


@dataclass(slots=True)
class KillWorker:
    """Kill one worker process (``ember.cancel(force=True)``)."""
    worker_id: WorkerID


@dataclass(slots=True)
class GetWorkerExit:
    """Why a worker's process ended; answered with a WorkerExit once it has exited.

    A submitter asks when a connection to a worker drops and a task there has no
    retries left, so its error can say what happened (a signal, an exit code, the
    memory monitor). The node manager kills the worker if it is somehow still alive.
    """
    rid: int
    worker_id: WorkerID


@dataclass(slots=True)
class WorkerExit:
    """How a worker process ended (answer to GetWorkerExit)."""
    pid: int
    #: "killed by signal SIGKILL" or "exit code 3" (from the fork server's waitpid).
    detail: str
    #: Set when the memory monitor killed it: node memory (used_bytes, total_bytes) at
    #: the kill and the threshold fraction it was over.
    oom: tuple[int, int, float] | None = None


@dataclass(slots=True)
class MarkLeaseNonRetriable:
    """A task with no retries left was pushed on this lease: the memory monitor kills
    such workers only when no retriable work is running. Sent once per lease."""
    lease_id: int


@dataclass(slots=True)
class Heartbeat:
    """Node -> head: this node's resources, every membership.HEARTBEAT_S."""
    totals: ResourceShape
    available: ResourceShape
    #: Shapes of the requests queued here (for `ember status`).
    pending: list[ResourceShape] = field(default_factory=list)


# --- telemetry: node stats for the dashboard, users' metrics for Prometheus ------------

@dataclass(slots=True)
class GpuUsage:
    """One GPU's use as NVML reports it (in NodeStats)."""
    index: int
    name: str
    utilization_percent: float
    memory_used_bytes: int
    memory_total_bytes: int


@dataclass(slots=True)
class NodeStats:
    """Node -> head, every telemetry.STATS_PERIOD_S: the machine's and the node's use (the
    dashboard's overview; the node's /metrics shows the same)."""
    node_id: NodeID
    #: Wall clock (time.time()) of the sample.
    time_s: float
    cpu_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    gpus: list[GpuUsage]
    store_used_bytes: int
    store_capacity_bytes: int
    spilled_bytes: int
    num_objects: int
    workers_by_state: dict[str, int]
    num_leases: int
    resources_total: ResourceShape
    resources_available: ResourceShape
    tasks_by_state: dict[str, int]
    tcp_address: str
    #: The node's Prometheus endpoint ("" if it has none).
    metrics_url: str


#: A user metric's value for one tag-value tuple: counters and gauges a number; histograms
#: (count per bucket: len(boundaries) + 1, the last one +Inf; sum of observations).
MetricValue = float | tuple[tuple[int, ...], float]


@dataclass(slots=True)
class UserMetric:
    """One ember.util.metrics metric of a process and its current values."""
    name: str
    kind: Literal["counter", "gauge", "histogram"]
    description: str
    tag_keys: tuple[str, ...]
    #: Histograms: the upper bounds of the buckets; () otherwise.
    boundaries: tuple[float, ...]
    samples: list[tuple[tuple[str, ...], MetricValue]]


@dataclass(slots=True)
class MetricsReport:
    """Driver or worker -> its node manager: all its users' metrics, now (sent when they
    changed, every metrics_push.REPORT_PERIOD_S at most)."""
    metrics: list[UserMetric]


@dataclass(slots=True)
class NodeDead:
    """Node manager -> its drivers and workers: the head declared this node dead. A frozen
    or partitioned machine never closes its connections, so their channels to its workers
    and its node manager would wait forever: they drop them and retry elsewhere."""
    node_id: NodeID
    tcp_address: Address


@dataclass(slots=True)
class Forwarded:
    """Node -> head: a control request from one of the node's processes, handled at the
    head as if that process had sent it (its id holds any references it takes)."""
    holder: bytes
    job_id: JobID
    msg: Any
    #: With requests that start workers for the job elsewhere (CreateActor): the job's
    #: record on the forwarding node, so the head knows it (a driver attached to a worker
    #: node registers its job there only) and can hand it to the node the actor goes to.
    job: Any = None


@dataclass(slots=True)
class JobFinished:
    """Head -> nodes: a driver exited; stop its job's workers there."""
    job_id: JobID


@dataclass(slots=True)
class ClusterViewUpdate:
    """Head -> nodes: every node's addresses, resources and liveness."""
    nodes: list[Any]


@dataclass(slots=True)
class ClusterState:
    """Ask for every node's resources and liveness (``ember.nodes()`` and friends)."""
    rid: int


#: A worker output line that starts with this carries a progress bar's state (JSON) for
#: the driver to draw (ember.experimental.tqdm_ray), not text to print.
PROGRESS_LINE_PREFIX = "\x1b]ember-progress;"


@dataclass(slots=True)
class LogLines:
    """Worker output lines, forwarded by the node manager to the job's driver."""
    prefix: str
    lines: list[str]
    is_err: bool
    #: Set when a node forwards lines to the head, where the job's driver is.
    job_id: JobID | None = None


# --- jobs ------------------------------------------------------------------------------


@dataclass(slots=True)
class SubmitJob:
    """JobSubmissionClient -> head: run ``entrypoint`` as a driver under a supervisor."""
    rid: int
    submission_id: str
    entrypoint: str
    #: The zipped working_dir (None: the entrypoint starts in an empty job directory).
    package: bytes | None
    runtime_env: dict[str, Any]
    metadata: dict[str, str]


@dataclass(slots=True)
class GetJobInfo:
    """One job's details (a dict), or every job's (``submission_id`` None)."""
    rid: int
    submission_id: str | None


@dataclass(slots=True)
class StopJob:
    """Stop a job's entrypoint and its process group; answered True, or False if it had ended."""
    rid: int
    submission_id: str


@dataclass(slots=True)
class DeleteJob:
    """Forget an ended job and its log."""
    rid: int
    submission_id: str


@dataclass(slots=True)
class GetJobLogs:
    """A job's log from ``offset``: answered with (bytes, next offset, job status)."""
    rid: int
    submission_id: str
    offset: int
    max_bytes: int = 1 << 20


# --- debugging -------------------------------------------------------------------------


@dataclass(slots=True)
class RecordFailedTask:
    """Worker -> head: a task raised; keep what replaying it needs (bounded on the head)."""
    task_hex: str
    name: str
    function_id: FunctionID
    #: cloudpickle of (args, kwargs) as the function received them.
    inputs: bytes
    #: The worker's sys.path, so the replaying process can import what the function does.
    sys_path: list[str]
    error: str


@dataclass(slots=True)
class GetFailedTask:
    """A kept failed task by task id (hex, or an unambiguous prefix); None: list them all."""
    rid: int
    task_hex: str | None


@dataclass(slots=True)
class RegisterBreakpoint:
    """Worker -> head: a task waits at ``breakpoint()`` for a pdb client on host:port."""
    task_hex: str
    name: str
    host: str
    port: int
    pid: int


@dataclass(slots=True)
class ClearBreakpoint:
    """Worker -> head: the task at that breakpoint got its client (or stopped waiting)."""
    task_hex: str


@dataclass(slots=True)
class GetBreakpoint:
    """Where the task stopped at ``breakpoint()`` listens (by id or prefix); None: list them."""
    rid: int
    task_hex: str | None


# --- observability (the state API) -----------------------------------------------------


@dataclass(slots=True)
class TaskEvents:
    """A process's task events since its last batch (one-way, about once a second; a
    worker node forwards them to the head). The tuples are described in
    _client/task_events.py; who recorded them is said once per batch."""
    worker_id: WorkerID
    node_id: NodeID
    pid: int
    job_id: JobID
    events: list[tuple]
    #: Events the process dropped since its last batch (its buffer was full).
    dropped: int = 0


@dataclass(slots=True)
class StateQuery:
    """Ask the head for one page of a state table (``kind``: tasks, actors, nodes, jobs,
    placement_groups), or its summary; answered with {"rows", "total", "offset", ...}."""
    rid: int
    kind: str
    #: Checked (column, "=" | "!=", value) triples (_wire/state_query.py).
    filters: list[tuple[str, str, Any]] = field(default_factory=list)
    offset: int = 0
    limit: int = 100
    detail: bool = False
    newest_first: bool = False
    summary: bool = False


@dataclass(slots=True)
class NodeQuery:
    """Ask one node about itself (``kind``: workers, objects, logs, log); never forwarded."""
    rid: int
    kind: str
    args: dict[str, Any] = field(default_factory=dict)
