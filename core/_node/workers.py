"""The node's workers: starting them for waiting grants, noticing their exits, and the
memory monitor that stops the newest retriable one before the kernel's OOM killer picks
at random (a node service).

    fork server "exited pid" -> on_worker_exit -> exit waiters (GetWorkerExit answers)
    connection closed        -> worker_gone    -> its lease ends; its actor: on_actor_died
    grants waiting in a pool -> ensure_workers -> (pip env: built first, on a thread) -> fork

Workers come in pools of (job, process env key); a pool with a runtime_env that installs
packages waits for RuntimeEnvs to build its virtualenv, and fails its grants with the
build's RuntimeEnvSetupError (pip's output) if it cannot be built.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Callable

from .._wire import protocol as p
from .._types import ActorID, PoolKey
from ..exceptions import EmberError, RuntimeEnvSetupError, WorkerStartError
from .memory_monitor import Candidate, MemoryMonitor, MemoryPolicy, MemoryUsage
from .context import Client, Handlers, NodeContext
from .actors import may_restart
from .leases import LeaseService, pool_of
from .runtime_envs import RuntimeEnvs
from .worker_pool import WorkerRecord

log = logging.getLogger("ember._node.manager")

#: Workers of one job that may exit in a row before registering before the calls waiting
#: for them fail: one can die of a transient cause; three of the same job cannot start.
MAX_START_FAILURES = 3
#: How much of the last failed worker's log the error carries.
_LOG_TAIL_BYTES = 4096


class WorkerService:
    """Args:
        ctx: the shared node context.
        leases: the lease service (a dead worker's lease ends there).
        on_actor_worker_died: back-edge: the worker hosting a live actor is gone.
        on_actor_start_failed: back-edge: no worker of the actor's job can start.
        memory_policy: who the memory monitor kills.
    """

    def __init__(self, ctx: NodeContext, leases: LeaseService,
                 on_actor_worker_died: Callable[[WorkerRecord], None],
                 on_actor_start_failed: Callable[[ActorID, str], None],
                 memory_policy: MemoryPolicy) -> None:
        self.ctx = ctx
        self.leases = leases
        self._on_actor_worker_died = on_actor_worker_died
        self._on_actor_start_failed = on_actor_start_failed
        self.memory_policy = memory_policy
        self.memory_monitor: MemoryMonitor | None = None
        #: Workers started per pool and not yet registered: counted, not scanned, so a
        #: grant costs the same with 10 workers or 2,000 (actor creation stays linear).
        self._starting: dict[PoolKey, int] = defaultdict(int)
        #: Workers per pool that exited before registering since the pool's last one did.
        self._start_failures: dict[PoolKey, int] = defaultdict(int)
        #: The node's pip virtualenvs (built on their own threads).
        self.runtime_envs = RuntimeEnvs(ctx.session_dir, self._env_built)

    def handlers(self) -> Handlers:
        return {p.GetWorkerExit: self.on_get_worker_exit, p.KillWorker: self.on_kill_worker}

    # --- lifecycle --------------------------------------------------------------------

    def registered(self, record: WorkerRecord) -> None:
        """A started worker connected: it is no longer starting."""
        self._not_starting(record)
        self._start_failures.pop(pool_of(record), None)
        self.leases.worker_ready(record)

    def _not_starting(self, record: WorkerRecord) -> None:
        if record.extra.pop("starting", None) is not None:
            pool = pool_of(record)
            left = self._starting[pool] - 1
            if left > 0:
                self._starting[pool] = left
            else:
                self._starting.pop(pool, None)

    def worker_gone(self, record: WorkerRecord) -> None:
        """Its connection closed: nothing may be handed to it again; what it held returns."""
        previous = record.state
        record.state = "dead"
        self._not_starting(record)
        self.leases.forget_idle(record)
        if previous == "leased":
            self.leases.end_lease(record.lease_id)
        if record.actor_id is not None:
            actor = self.ctx.control.actors.get(record.actor_id)
            if actor is not None and actor.worker_id in (record.worker_id, None) and actor.state != "dead":
                self._on_actor_worker_died(record)
            elif self.leases.end_lease(record.lease_id) is not None:
                # e.g. its __init__ raised: the actor died first
                self.leases.schedule()
        if record.exit_detail:
            self.ctx.pool.retire(record)

    def on_worker_exit(self, pid: int, detail: str) -> None:
        """The fork server reaped ``pid`` (its thread; takes the lock)."""
        with self.ctx.lock:
            record = self.ctx.pool.by_pid.pop(pid, None)
            if record is None:
                return
            record.exit_detail = detail
            self.memory_policy.worker_exited(record.worker_id)
            waiters, record.exit_waiters = record.exit_waiters, []
            for waiter in waiters:
                waiter(record)
            if record.state == "starting":
                record.state = "dead"
                self._not_starting(record)
                self._start_failed(record, detail)
            if record.state == "dead":  # its connection is gone too
                self.ctx.pool.retire(record)

    def on_get_worker_exit(self, client: Client, msg: p.GetWorkerExit) -> None:
        record = self.ctx.pool.lookup(msg.worker_id)
        if record is None:
            self.ctx.reply(client, msg.rid, False, ValueError("unknown worker"))
            return

        def answer(r: WorkerRecord) -> None:
            self.ctx.reply(client, msg.rid, True, p.WorkerExit(r.pid, r.exit_detail, r.oom))

        if record.exit_detail:
            answer(record)
            return
        record.exit_waiters.append(answer)
        # Its submitter lost the connection to it, so it is of no use alive; killing it
        # makes sure the answer comes (the fork server reports every exit).
        self.ctx.pool.kill(record)

    def on_kill_worker(self, client: Client, msg: p.KillWorker) -> None:
        record = self.ctx.pool.workers.get(msg.worker_id)
        if record is not None:
            self.ctx.pool.kill(record)

    def _start_failed(self, record: WorkerRecord, detail: str) -> None:
        """A worker died before registering: give its grant to a new worker, unless the
        job's workers keep dying that way — then fail what waits for them (without this,
        a job whose workers cannot import their code restarted workers forever while its
        calls hung)."""
        pool = pool_of(record)
        if not record.killed:
            self._start_failures[pool] += 1
        if self._start_failures.get(pool, 0) < MAX_START_FAILURES:
            self.ensure_workers(pool)
            return
        self._start_failures.pop(pool, None)
        error = WorkerStartError(MAX_START_FAILURES, detail, self._log_tail(record))
        log.warning("job %s: %s", record.job_id.hex()[:12], error)
        self._fail_pool(pool, error)

    def _fail_pool(self, pool: PoolKey, error: EmberError) -> None:
        """Fail the grants waiting for a pool's workers (tasks get ``error``, actors die)."""
        for key in self.leases.fail_wants(pool, error):
            if key[0] == "actor":
                self._on_actor_start_failed(key[1], str(error))

    def _log_tail(self, record: WorkerRecord) -> str:
        path = os.path.join(self.ctx.session_dir, "logs", f"worker-{record.worker_id.hex()}.log")
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - _LOG_TAIL_BYTES))
                return f.read().decode(errors="replace").strip()
        except OSError as e:
            return f"(its log {path} could not be read: {e})"

    def ensure_workers(self, pool: PoolKey) -> None:
        """Start as many workers as the pool has grants waiting, minus those starting
        (once its env is built: a pip env still building starts them when it is done)."""
        missing = len(self.leases.wants.get(pool, ())) - self._starting.get(pool, 0)
        if missing <= 0:
            return
        env = self.leases.envs.get(pool[1]) if pool[1] else None
        site_dir = ""
        if env is not None:
            ready = self.runtime_envs.ensure(pool[1], env)
            if ready is None:
                return
            if isinstance(ready, RuntimeEnvSetupError):
                self._fail_pool(pool, ready)
                self.leases.schedule()  # the failed grants' resources are free again
                return
            site_dir = ready
        for _ in range(missing):
            self._start_worker(pool, env, site_dir)

    def _env_built(self, env_key: str, _error: RuntimeEnvSetupError | None) -> None:
        """A pip env's build ended (its thread): start (or fail) the grants waiting for it."""
        with self.ctx.lock:
            if self.ctx.stopped.is_set():
                return
            for pool in [pool for pool in self.leases.wants if pool[1] == env_key]:
                self.ensure_workers(pool)

    def _start_worker(self, pool: PoolKey, env: dict | None, site_dir: str) -> None:
        ctx = self.ctx
        job = ctx.control.jobs[pool[0]]
        record = ctx.pool.start_worker(os.urandom(16), pool[0], {
            "node_address": ctx.address, "cwd": job.cwd, "sys_path": job.sys_path,
            "env_vars": job.env_vars, "node_host": ctx.tcp_address.split(":")[1],
            "node_id": ctx.node_id.hex(), "process_env": env, "pip_site": site_dir}, env_key=pool[1])
        record.extra["starting"] = True
        self._starting[pool] += 1

    def stop_job_workers(self, job_id: bytes) -> None:
        """Kill the job's workers here, except those hosting detached actors."""
        detached = {r.worker_id for r in self.ctx.control.actors.values()
                    if r.spec.detached and r.state != "dead"}
        for record in list(self.ctx.pool.workers.values()):
            if record.job_id == job_id and record.state != "dead" and record.worker_id not in detached:
                self.ctx.pool.kill(record)

    # --- memory monitor ---------------------------------------------------------------

    def check_memory(self, usage: MemoryUsage) -> None:
        """Called by the monitor thread: kill one worker if memory is over the threshold."""
        if not self.memory_policy.over_threshold(usage):
            return
        with self.ctx.lock:
            if self.ctx.stopped.is_set():
                return
            victim = self.memory_policy.decide(usage, self._oom_candidates())
            if victim is None:
                return
            record = self.ctx.pool.workers[victim.worker_id]
            record.oom = (usage.used_bytes, usage.total_bytes, self.memory_policy.threshold)
            log.warning("memory monitor: node memory %.2f of %.2f GiB is over the threshold (%.0f%%); "
                        "killing worker pid %d (%s, lease %d)", usage.used_bytes / (1 << 30),
                        usage.total_bytes / (1 << 30), self.memory_policy.threshold * 100, victim.pid,
                        "actor" if victim.is_actor else "task", victim.lease_id)
            self.ctx.pool.kill(record)

    def _oom_candidates(self) -> list[Candidate]:
        candidates = []
        for lease in self.leases.leases.values():
            worker = lease.worker
            if not worker.pid or worker.exit_detail or worker.state not in ("leased", "actor"):
                continue
            if worker.state == "actor":
                actor = self.ctx.control.actors.get(worker.actor_id)
                retriable = actor is not None and may_restart(
                    actor, self.ctx.control.jobs.get(actor.spec.job_id))
                candidates.append(Candidate(worker.worker_id, worker.pid, lease.lease_id, True, retriable))
            else:
                candidates.append(Candidate(worker.worker_id, worker.pid, lease.lease_id, False,
                                            lease.retriable))
        return candidates
