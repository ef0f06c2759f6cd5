"""The node manager's workers: handing them out, noticing their exits, and the memory
monitor that stops the newest retriable one before the kernel's OOM killer picks at random
(a mixin of NodeManager)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from . import protocol as p
from ._types import JobID
from .memory_monitor import Candidate, MemoryUsage
from .worker_pool import WorkerRecord

if TYPE_CHECKING:
    from .node_manager import Client

log = logging.getLogger("ember.node_manager")


class WorkersMixin:
    # --- workers ---------------------------------------------------------------------

    def _worker_ready(self, record: WorkerRecord) -> None:
        if record.killed:
            return
        record.state = "idle"
        wants = self._wants.get(record.job_id)
        if wants:
            self._assign(wants.popleft(), record)
        else:
            self._idle[record.job_id].append(record)

    def _worker_gone(self, record: WorkerRecord) -> None:
        previous = record.state
        record.state = "dead"
        idle = self._idle.get(record.job_id)
        if idle and record in idle:
            idle.remove(record)
        if previous == "leased" and record.lease_id in self.leases:
            lease = self.leases.pop(record.lease_id)
            if lease.holder is not None:
                lease.holder.leases.discard(lease.lease_id)
            self._release(lease.alloc)
        if record.actor_id is not None:
            actor = self.control.actors.get(record.actor_id)
            if actor is not None and actor.worker_id in (record.worker_id, None) and actor.state != "dead":
                self._actor_worker_died(actor, record)
            elif record.lease_id in self.leases:  # e.g. its __init__ raised: the actor died first
                self._release(self.leases.pop(record.lease_id).alloc)
                self._schedule()

    def _on_worker_exit(self, pid: int, detail: str) -> None:
        with self.lock:
            record = self.pool.by_pid.pop(pid, None)
            if record is None:
                return
            record.exit_detail = detail
            self.memory_policy.worker_exited(record.worker_id)
            waiters, record.exit_waiters = record.exit_waiters, []
            for waiter in waiters:
                waiter(record)
            if record.state == "starting":
                # Died before registering: give its pending grant to a new worker.
                record.state = "dead"
                self._ensure_workers(record.job_id)

    def _on_get_worker_exit(self, client: Client, msg: p.GetWorkerExit) -> None:
        record = self.pool.workers.get(msg.worker_id)
        if record is None:
            self._reply(client, msg.rid, False, ValueError("unknown worker"))
            return

        def answer(r: WorkerRecord) -> None:
            self._reply(client, msg.rid, True, p.WorkerExit(r.pid, r.exit_detail, r.oom))

        if record.exit_detail:
            answer(record)
            return
        record.exit_waiters.append(answer)
        # Its submitter lost the connection to it, so it is of no use alive; killing it
        # makes sure the answer comes (the fork server reports every exit).
        self.pool.kill(record)

    # --- memory monitor --------------------------------------------------------------

    def _check_memory(self, usage: MemoryUsage) -> None:
        """Called by the monitor thread: kill one worker if memory is over the threshold."""
        if not self.memory_policy.over_threshold(usage):
            return
        with self.lock:
            if self.stopped.is_set():
                return
            victim = self.memory_policy.decide(usage, self._oom_candidates())
            if victim is None:
                return
            record = self.pool.workers[victim.worker_id]
            record.oom = (usage.used_bytes, usage.total_bytes, self.memory_policy.threshold)
            log.warning("memory monitor: node memory %.2f of %.2f GiB is over the threshold (%.0f%%); "
                        "killing worker pid %d (%s, lease %d)", usage.used_bytes / (1 << 30),
                        usage.total_bytes / (1 << 30), self.memory_policy.threshold * 100, victim.pid,
                        "actor" if victim.is_actor else "task", victim.lease_id)
            self.pool.kill(record)

    def _oom_candidates(self) -> list[Candidate]:
        candidates = []
        for lease in self.leases.values():
            worker = lease.worker
            if not worker.pid or worker.exit_detail or worker.state not in ("leased", "actor"):
                continue
            if worker.state == "actor":
                actor = self.control.actors.get(worker.actor_id)
                retriable = actor is not None and self._may_restart(actor)
                candidates.append(Candidate(worker.worker_id, worker.pid, lease.lease_id, True, retriable))
            else:
                candidates.append(Candidate(worker.worker_id, worker.pid, lease.lease_id, False,
                                            lease.retriable))
        return candidates

    def _on_mark_lease_non_retriable(self, client: Client, msg: p.MarkLeaseNonRetriable) -> None:
        lease = self.leases.get(msg.lease_id)
        if lease is not None:
            lease.retriable = False

    def _ensure_workers(self, job_id: JobID) -> None:
        starting = sum(1 for r in self.pool.workers.values()
                       if r.job_id == job_id and r.state == "starting")
        for _ in range(len(self._wants.get(job_id, ())) - starting):
            self._start_worker(job_id)

    def _start_worker(self, job_id: JobID) -> None:
        job = self.control.jobs[job_id]
        self.pool.start_worker(os.urandom(16), job_id, {
            "node_address": self.address, "cwd": job.cwd, "sys_path": job.sys_path,
            "env_vars": job.env_vars, "node_host": self.tcp_address.split(":")[1],
            "node_id": self.node_id.hex()})
