"""Cluster metadata: functions by content hash, jobs, and the actor directory.

Small metadata only; no object data and no per-task traffic. Not thread-safe: the
node manager that hosts it serializes access.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .._types import ActorID, ActorState, FunctionID, JobID, WorkerID
from .._wire.protocol import ActorInfo, ActorSpec

ActorWaiter = Callable[[ActorInfo], None]


@dataclass
class JobRecord:
    """One driver's job: its namespace and the environment its workers get."""
    job_id: JobID
    driver_id: WorkerID
    namespace: str
    cwd: str | None
    sys_path: list[str] | None
    env_vars: dict[str, str] | None = None
    alive: bool = True


@dataclass
class ActorRecord:
    """The head's record of one actor: its spec, state, where it lives and its restarts."""
    spec: ActorSpec
    state: ActorState = "pending"
    address: str | None = None
    tcp_address: str | None = None
    #: The node the actor was placed on.
    node_id: bytes | None = None
    worker_id: WorkerID | None = None
    death_cause: str = ""
    num_restarts: int = 0
    incarnation: int = 0
    #: Set by kill(no_restart=True) or exit_actor(): the next death is final.
    no_restart: bool = False
    waiters: list[tuple[int, ActorWaiter]] = field(default_factory=list)

    def info(self) -> ActorInfo:
        s = self.spec
        return ActorInfo(s.actor_id, self.state, self.address, s.class_name, s.methods, s.is_async,
                         self.death_cause, self.num_restarts, s.max_task_retries, self.incarnation,
                         self.tcp_address if self.state == "alive" else None, self.node_id,
                         s.method_options)


class NameTakenError(ValueError):
    """A named actor already exists in that namespace."""


#: Told which record changed: (table, key). The head persists it (storage.Persistence.mark).
ChangeHook = Callable[[str, bytes], None]


class ControlStore:
    """The head's metadata: exported functions, jobs, actors and actor names (plain tables, no I/O).

    Every change to a record is reported to ``changed`` (table, key), which on a head with
    storage queues the record to be written, so that a restarted head finds it.
    """

    def __init__(self, changed: ChangeHook | None = None) -> None:
        self.functions: dict[FunctionID, bytes] = {}
        self.jobs: dict[JobID, JobRecord] = {}
        self.actors: dict[ActorID, ActorRecord] = {}
        self.named: dict[tuple[str, str], ActorID] = {}
        self.changed: ChangeHook = changed or (lambda _table, _key: None)

    def add_function(self, function_id: FunctionID, blob: bytes) -> None:
        if self.functions.get(function_id) != blob:
            self.functions[function_id] = blob
            self.changed("functions", function_id)

    def add_job(self, job: JobRecord) -> JobRecord:
        self.jobs[job.job_id] = job
        self.changed("jobs", job.job_id)
        return job

    def end_job(self, job_id: JobID) -> JobRecord | None:
        job = self.jobs.get(job_id)
        if job is not None and job.alive:
            job.alive = False
            self.changed("jobs", job_id)
        return job

    def actor_changed(self, record: ActorRecord) -> None:
        """A field of ``record`` was set outside the methods below (placement, no_restart)."""
        self.changed("actors", record.spec.actor_id)

    # --- actors ----------------------------------------------------------------------

    def register_actor(self, spec: ActorSpec) -> tuple[ActorRecord, bool]:
        """Returns (record, created). With ``get_if_exists`` an existing live actor of
        that name is returned instead of raising.

        Raises:
            NameTakenError: the name is used by a live actor in that namespace.
        """
        if spec.name is not None:
            key = (spec.namespace or "", spec.name)
            existing = self.named.get(key)
            if existing is not None and self.actors[existing].state != "dead":
                if spec.get_if_exists:
                    return self.actors[existing], False
                raise NameTakenError(
                    f"an actor named {spec.name!r} already exists in namespace {key[0]!r}; pick "
                    "another name, use get_if_exists=True, or ember.get_actor() to reuse it")
            self.named[key] = spec.actor_id
        record = ActorRecord(spec)
        self.actors[spec.actor_id] = record
        self.changed("actors", spec.actor_id)
        return record, True

    def lookup_named(self, name: str, namespace: str) -> ActorRecord | None:
        actor_id = self.named.get((namespace, name))
        record = self.actors.get(actor_id) if actor_id else None
        return record if record is not None and record.state != "dead" else None

    def set_alive(self, record: ActorRecord, address: str, worker_id: WorkerID) -> list:
        record.state, record.address, record.worker_id = "alive", address, worker_id
        self.changed("actors", record.spec.actor_id)
        return self._settle(record)

    def set_dead(self, record: ActorRecord, cause: str) -> list:
        record.state, record.address, record.worker_id = "dead", None, None
        record.death_cause = record.death_cause or cause
        spec = record.spec
        if spec.name is not None and self.named.get((spec.namespace or "", spec.name)) == spec.actor_id:
            del self.named[(spec.namespace or "", spec.name)]
        self.changed("actors", spec.actor_id)
        return self._settle(record)

    def set_restarting(self, record: ActorRecord) -> None:
        record.state, record.address, record.worker_id = "restarting", None, None
        record.num_restarts += 1
        record.incarnation += 1
        self.changed("actors", record.spec.actor_id)

    def wait_actor(self, record: ActorRecord, min_incarnation: int, waiter: ActorWaiter) -> ActorInfo | None:
        """The info now if the actor is settled at ``min_incarnation`` or later, else queue."""
        if record.state == "dead" or (record.state == "alive" and record.incarnation >= min_incarnation):
            return record.info()
        record.waiters.append((min_incarnation, waiter))
        return None

    def _settle(self, record: ActorRecord) -> list[tuple[ActorWaiter, ActorInfo]]:
        info = record.info()
        ready = [(w, info) for inc, w in record.waiters
                 if record.state == "dead" or inc <= record.incarnation]
        record.waiters = [(inc, w) for inc, w in record.waiters
                          if not (record.state == "dead" or inc <= record.incarnation)]
        return ready
