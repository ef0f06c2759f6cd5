"""Choosing a replica for each request: power of two choices on local queue lengths.

Each process routes on its own: it counts the requests it has in flight per replica
and, for each request, samples two replicas and sends to the less busy one. A replica
at ``max_ongoing_requests`` (by this router's count) is skipped; when every replica is
full, async callers queue here (up to ``max_queued_requests``, else BackPressureError)
and sync callers send to the least busy one, whose own semaphore queues the request.
"""

from __future__ import annotations

import asyncio
import collections
import random
import threading
import time
import zlib
from typing import Any

from .exceptions import BackPressureError, DeploymentUnavailableError
from .snapshot import DeploymentTargets, client

#: How long a call waits for a deployment to have any replica before failing.
NO_REPLICA_TIMEOUT_S = 30.0


class Router:
    """Routes one deployment's requests from this process."""

    def __init__(self, app: str, name: str) -> None:
        self.app = app
        self.name = name
        self.lock = threading.Lock()
        #: requests this process sent to each replica and has not seen finish.
        self.inflight: dict[str, int] = collections.defaultdict(int)
        #: replicas a call here saw die; skipped until the controller's snapshot drops them.
        self.dead: set[str] = set()
        self.queued = 0
        self.waiters: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = collections.deque()

    def targets(self) -> DeploymentTargets:
        snap = client().snapshot
        targets = snap.deployments.get((self.app, self.name))
        if targets is None:
            snap = client().refresh()
            targets = snap.deployments.get((self.app, self.name))
            if targets is None:
                raise DeploymentUnavailableError(
                    f"no deployment {self.name!r} in application {self.app!r}; running: "
                    f"{sorted(f'{a}/{d}' for a, d in snap.deployments) or 'none'}. Check the names, or "
                    "deploy it with serve.run")
        return targets

    def _live(self, targets: DeploymentTargets, exclude: tuple[str, ...]) -> list[tuple[str, Any]]:
        reps = targets.replicas
        if self.dead or exclude:
            reps = [r for r in reps if r[0] not in self.dead and r[0] not in exclude]
        return reps

    def try_pick(self, exclude: tuple[str, ...] = (), force: bool = False,
                 model_id: str = "") -> tuple[str, Any] | None:
        """A replica with room (by power of two choices), or None; ``force`` ignores room.

        A multiplexed ``model_id`` prefers the same replica every time (rendezvous hashing
        over the live replicas), so its model stays loaded in one place, unless that
        replica is full (a stable hash, so every process agrees). The caller owns one
        in-flight slot on the result (``release`` it).
        """
        targets = self.targets()
        reps = self._live(targets, exclude)
        if not reps:
            return None
        limit = targets.max_ongoing_requests
        with self.lock:
            inflight = self.inflight
            if model_id:
                for rep in sorted(reps, key=lambda r: zlib.crc32(f"{model_id}|{r[0]}".encode())):
                    if inflight[rep[0]] < limit:
                        inflight[rep[0]] += 1
                        return rep
            if len(reps) == 1:
                choice = reps[0]
            else:
                a, b = random.sample(reps, 2)
                choice = a if inflight[a[0]] <= inflight[b[0]] else b
            if inflight[choice[0]] >= limit:
                choice = min(reps, key=lambda r: inflight[r[0]])
                if inflight[choice[0]] >= limit and not force:
                    return None
            inflight[choice[0]] += 1
            return choice

    def pick_sync(self, exclude: tuple[str, ...] = (), model_id: str = "") -> tuple[str, Any]:
        """A replica now (sync callers never queue here), waiting for one to exist."""
        deadline = time.monotonic() + NO_REPLICA_TIMEOUT_S
        while True:
            choice = self.try_pick(exclude, force=True, model_id=model_id)
            if choice is not None:
                return choice
            if time.monotonic() > deadline:
                raise self._unavailable()
            c = client()
            c.wait_for_version(c.snapshot.version + 1, 0.5)

    async def pick_async(self, exclude: tuple[str, ...] = (), model_id: str = "") -> tuple[str, Any]:
        """A replica with room, queueing here while all are full (BackPressureError past the cap)."""
        deadline = time.monotonic() + NO_REPLICA_TIMEOUT_S
        counted = False
        try:
            while True:
                choice = self.try_pick(exclude, model_id=model_id)
                if choice is not None:
                    return choice
                targets = self.targets()
                has_replicas = bool(self._live(targets, exclude))
                if not has_replicas and time.monotonic() > deadline:
                    raise self._unavailable()
                if not counted:
                    cap = targets.max_queued_requests
                    if cap != -1 and self.queued >= cap:
                        raise BackPressureError(self.name, cap)
                    self.queued += 1
                    counted = True
                loop = asyncio.get_running_loop()
                fut = loop.create_future()
                with self.lock:
                    self.waiters.append((loop, fut))
                # A bounded wait: a snapshot change (new replicas) also frees room.
                try:
                    await asyncio.wait_for(fut, 0.05 if not has_replicas else 1.0)
                except asyncio.TimeoutError:
                    pass
        finally:
            if counted:
                self.queued -= 1

    def release(self, replica_id: str) -> None:
        with self.lock:
            self.inflight[replica_id] -= 1
            waiter = self.waiters.popleft() if self.waiters else None
        if waiter is not None:
            loop, fut = waiter
            try:
                loop.call_soon_threadsafe(_wake, fut)
            except RuntimeError:  # that loop is closed
                pass

    def mark_dead(self, replica_id: str) -> None:
        """A call saw this replica die: stop sending to it and tell the controller."""
        with self.lock:
            if replica_id in self.dead:
                return
            self.dead.add(replica_id)
        try:
            client().controller.report_replica_failure.remote(self.app, self.name, replica_id)
        except Exception:  # the controller is going away; its health checks cover this
            pass

    def _unavailable(self) -> DeploymentUnavailableError:
        return DeploymentUnavailableError(
            f"deployment {self.name!r} of application {self.app!r} has no live replica after "
            f"{NO_REPLICA_TIMEOUT_S:.0f} s; see serve.status() for why")


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


_routers: dict[tuple[str, str], Router] = {}
_routers_lock = threading.Lock()


def get_router(app: str, name: str) -> Router:
    """The process-wide router of one deployment."""
    key = (app, name)
    router = _routers.get(key)
    if router is None:
        with _routers_lock:
            router = _routers.get(key)
            if router is None:
                router = _routers[key] = Router(app, name)
    return router


def queued_requests() -> dict[tuple[str, str], int]:
    """Requests waiting in this process's routers for a replica with room (for autoscaling)."""
    return {key: r.queued for key, r in list(_routers.items()) if r.queued}


def reset_routers() -> None:
    with _routers_lock:
        _routers.clear()
