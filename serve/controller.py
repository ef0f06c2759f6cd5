"""The Serve controller: one named actor that owns what should run and makes it so.

    serve.run --deploy_app--> controller --creates/kills--> replicas, proxy
                                  |  reconcile loop every LOOP_PERIOD_S:
                                  |    starts / drains replicas toward each target,
                                  |    rolls old versions, health checks, autoscaling
                                  v
    proxies, handles <--poll (long poll)-- Snapshot (routes + live replicas)

Decisions that need no I/O live in ``plan_rollout`` and autoscaling.py (plain-call
tests); this module carries them out. Every replica it starts is either in
``DeploymentRecord.replicas`` or being killed, so shutdown can always find them all.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import logging
import math
import os
import time
from typing import Any, Literal

import ember
from ember.exceptions import ActorDiedError

from .autoscaling import AutoscalingState, desired_replicas
from .config import DeploymentConfig
from .exceptions import RoutePrefixConflictError, ServeError
from .replica import Replica
from .snapshot import CONTROLLER_NAME, SERVE_NAMESPACE, DeploymentTargets, Snapshot

logger = logging.getLogger("ember.serve.controller")

LOOP_PERIOD_S = 0.05
PROXY_NAME = "SERVE_PROXY_ACTOR"
#: A replica that takes this long to start gets a "waiting for resources" message.
SLOW_START_S = 20.0

ReplicaState = Literal["starting", "running", "draining"]
_ReplicaActor = ember.remote(Replica)


@dataclasses.dataclass
class ReplicaRecord:
    replica_id: str
    actor: Any
    version: str
    state: ReplicaState
    started_at_s: float
    task: asyncio.Task | None = None
    health_task: asyncio.Task | None = None
    last_health_s: float = 0.0
    ongoing: int = 0


@dataclasses.dataclass
class DeploymentRecord:
    app: str
    name: str
    config: DeploymentConfig
    code: bytes
    version: str
    target: int
    replicas: dict[str, ReplicaRecord] = dataclasses.field(default_factory=dict)
    failed_message: str | None = None
    status_trigger: str = "CONFIG_UPDATE_STARTED"
    autoscaling: AutoscalingState = dataclasses.field(default_factory=AutoscalingState)
    last_metrics_s: float = 0.0
    metrics_task: asyncio.Task | None = None


@dataclasses.dataclass
class AppRecord:
    name: str
    route_prefix: str | None
    ingress: str
    deployments: dict[str, DeploymentRecord]
    deleting: bool = False
    reached_running: bool = False
    #: deployments dropped by a redeploy, still draining (not routed to, not in status)
    removed: list[DeploymentRecord] = dataclasses.field(default_factory=list)
    failed_message: str | None = None


def code_version(code: bytes, config: DeploymentConfig) -> str:
    """Replicas whose version differs from the deployment's are rolled to new ones.

    The user_config, replica count and autoscaling bounds are left out: changing them
    reconfigures or scales live replicas instead of replacing them.
    """
    relevant = (config.max_ongoing_requests, sorted(config.ray_actor_options.items(), key=str))
    return hashlib.sha1(code + repr(relevant).encode()).hexdigest()[:12]


def plan_rollout(target: int, current_running: int, current_starting: int, old_running: int,
                 old_starting: int, room_for_one_more: bool) -> tuple[int, int, int]:
    """One reconcile step for one deployment: (replicas to start, old to stop, current to stop).

    Old-version replicas are replaced one at a time: start a new one when the cluster has
    room (surge), else stop an old one first; an old one is stopped once enough new ones run.
    """
    current = current_running + current_starting
    if current > target:
        return 0, old_running + old_starting, current - target
    if old_running == 0 and old_starting == 0:
        return target - current, 0, 0
    stop_old = old_starting
    if current_running + old_running > target:
        return 0, stop_old + (current_running + old_running - target), 0
    if current_starting == 0 and current < target:
        if room_for_one_more or old_running == 0:
            return 1, stop_old, 0
        return 0, stop_old + 1, 0
    return 0, stop_old, 0


def _fits(total: dict[str, float], shape: dict[str, float]) -> int:
    """How many copies of ``shape`` fit in ``total``."""
    count = math.inf
    for key, amount in shape.items():
        if amount > 0:
            count = min(count, math.floor(total.get(key, 0.0) / amount + 1e-9))
    return int(count) if count != math.inf else 1 << 30


class ServeController:
    """The controller actor (async): see the module docstring."""

    def __init__(self, http_options: dict[str, Any] | None = None) -> None:
        self.apps: dict[str, AppRecord] = {}
        self.http_options = dict(http_options or {})
        self.proxy: Any = None
        self.proxy_port: int | None = None
        self.version = 0
        self.snapshot = Snapshot(0, {}, {})
        self._signature: Any = None
        self._changed: asyncio.Event | None = None
        self._loop_task: asyncio.Task | None = None
        self._stopping = False

    # --- setup ----------------------------------------------------------------------------

    def _ensure_loop(self) -> None:
        if self._loop_task is None:
            loop = asyncio.get_running_loop()
            loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(64, thread_name_prefix="serve-ctl"))
            self._changed = asyncio.Event()
            self._loop_task = loop.create_task(self._run())

    async def start_http(self, http_options: dict[str, Any]) -> int:
        """Start the HTTP proxy (once); returns the port it listens on.

        Raises:
            PortInUseError: the port is taken.
        """
        self._ensure_loop()
        if self.proxy is not None:
            return self.proxy_port
        from .proxy import HTTPProxy
        options = {**self.http_options, **(http_options or {})}
        self.http_options = options
        me = ember.get_actor(CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        proxy_cls = ember.remote(HTTPProxy)
        proxy = await asyncio.to_thread(lambda: proxy_cls.options(
            num_cpus=0, lifetime="detached", name=PROXY_NAME, namespace=SERVE_NAMESPACE,
            max_concurrency=100000).remote(me, options))
        try:
            self.proxy_port = await proxy.start.remote()
        except BaseException:
            ember.kill(proxy)
            raise
        self.proxy = proxy
        return self.proxy_port

    # --- applications ---------------------------------------------------------------------

    async def deploy_app(self, name: str, route_prefix: str | None,
                         deployments: list[tuple[str, DeploymentConfig, bytes, bool]]) -> None:
        """Create or update an application; replicas start in the background.

        Raises:
            RoutePrefixConflictError: another application serves ``route_prefix``.
        """
        self._ensure_loop()
        if route_prefix is not None:
            for other in self.apps.values():
                if other.name != name and other.route_prefix == route_prefix and not other.deleting:
                    raise RoutePrefixConflictError(
                        f"route prefix {route_prefix!r} of application {name!r} is already served by "
                        f"application {other.name!r}; give it another route_prefix, or "
                        f"serve.delete({other.name!r}) first")
        app = self.apps.get(name)
        if app is not None and app.deleting:
            raise ServeError(f"application {name!r} is being deleted; wait for serve.delete to "
                             "return, then deploy it again")
        ingress = next(d[0] for d in deployments if d[3])
        capacity = await asyncio.to_thread(_cluster_totals)
        new: dict[str, DeploymentRecord] = {}
        for dep_name, config, code, _ in deployments:
            old = app.deployments.get(dep_name) if app is not None else None
            rec = await self._update_deployment(name, dep_name, config, code, old)
            shape = config.resource_shape()
            fits = sum(_fits(total, shape) for total in capacity)
            if rec.target > fits:
                rec.failed_message = (
                    f"deployment {dep_name!r} asks for {rec.target} replicas of {shape}, but this "
                    f"cluster can place at most {fits} (nodes: {capacity}); lower num_replicas or "
                    "ray_actor_options['num_cpus'], or add nodes")
            new[dep_name] = rec
        removed = []
        if app is not None:
            removed = [rec for rec in app.removed if rec.replicas]
            for dep_name, rec in app.deployments.items():
                if dep_name not in new:
                    for r in list(rec.replicas.values()):
                        self._stop_replica(rec, r, drain=True)
                    removed.append(rec)
                    rec.target = 0
        self.apps[name] = AppRecord(name, route_prefix, ingress, new, removed=removed)
        self._publish()

    async def _update_deployment(self, app: str, name: str, config: DeploymentConfig, code: bytes,
                                 old: DeploymentRecord | None) -> DeploymentRecord:
        """The record a (re)deploy leaves: the old one updated in place when it was healthy,
        so its replicas roll (new code) or stay (same code: reconfigure, rescale)."""
        version = code_version(code, config)
        if old is None or old.failed_message is not None:
            for r in list(old.replicas.values()) if old is not None else ():
                self._stop_replica(old, r, drain=False)
            return DeploymentRecord(app, name, config, code, version, config.initial_replicas())
        user_config_changed = old.config.user_config != config.user_config
        old.code, old.version, old.config = code, version, config
        a = config.autoscaling_config
        old.target = config.num_replicas if a is None else max(a.min_replicas, min(a.max_replicas, old.target))
        old.status_trigger = "CONFIG_UPDATE_STARTED"
        if user_config_changed:
            for r in old.replicas.values():
                if r.state == "running" and r.version == version:
                    await r.actor.reconfigure.remote(config.user_config)
        return old

    async def delete_app(self, name: str) -> None:
        """Stop an application's replicas (draining them) and forget it."""
        self._ensure_loop()
        app = self.apps.get(name)
        if app is None:
            return
        app.deleting = True
        for rec in app.deployments.values():
            rec.target = 0
            for r in list(rec.replicas.values()):
                self._stop_replica(rec, r, drain=True)
        self._publish()
        while any(rec.replicas for rec in list(app.deployments.values()) + app.removed):
            await asyncio.sleep(0.02)
        self.apps.pop(name, None)
        self._publish()

    async def report_replica_failure(self, app: str, deployment: str, replica_id: str) -> None:
        """A router saw a call to this replica fail: check its health now."""
        rec = self.apps.get(app).deployments.get(deployment) if app in self.apps else None
        r = rec.replicas.get(replica_id) if rec is not None else None
        if r is not None and r.state == "running":
            r.last_health_s = 0.0

    async def poll(self, known_version: int, timeout_s: float) -> Snapshot | None:
        """The Snapshot once it is newer than ``known_version`` (None after ``timeout_s``)."""
        self._ensure_loop()
        if self.snapshot.version > known_version or timeout_s <= 0:
            return self.snapshot
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except asyncio.TimeoutError:
            return None
        return self.snapshot

    async def status(self) -> dict[str, Any]:
        """Plain-dict status of every application (serve.status() wraps it)."""
        self._ensure_loop()
        apps = {}
        for app in self.apps.values():
            deps = {}
            for rec in app.deployments.values():
                deps[rec.name] = {"status": self._deployment_status(rec), "message": self._message(rec),
                                  "status_trigger": rec.status_trigger,
                                  "replica_states": self._replica_counts(rec), "target": rec.target}
            apps[app.name] = {"status": self._app_status(app), "route_prefix": app.route_prefix,
                              "message": next((d["message"] for d in deps.values()
                                               if d["status"] == "DEPLOY_FAILED"), ""),
                              "deployments": deps, "ingress": app.ingress}
        return {"applications": apps, "http_port": self.proxy_port,
                "http_host": self.http_options.get("host", "127.0.0.1")}

    async def replica_actors(self, app: str, deployment: str) -> list[tuple[str, Any]]:
        """(id, handle) of each running replica (for tests and the CLI)."""
        rec = self.apps[app].deployments[deployment]
        return [(r.replica_id, r.actor) for r in rec.replicas.values() if r.state == "running"]

    async def shutdown(self) -> None:
        """Drain and stop everything: the proxy first (no new requests), then replicas."""
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
        timeout_s = max([rec.config.graceful_shutdown_timeout_s for app in self.apps.values()
                         for rec in app.deployments.values()] or [5.0])
        if self.proxy is not None:
            try:
                await asyncio.wait_for(self.proxy.shutdown.remote(timeout_s), timeout_s + 5)
            except Exception as e:  # a dead proxy has nothing to drain
                logger.warning("proxy shutdown: %s", e)
            ember.kill(self.proxy)
            self.proxy = None
        stops = []
        for app in self.apps.values():
            for rec in list(app.deployments.values()) + app.removed:
                for r in list(rec.replicas.values()):
                    stops.append(self._drain_and_kill(rec, r))
        await asyncio.gather(*stops, return_exceptions=True)
        self.apps.clear()
        self._publish()

    # --- the reconcile loop ---------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._reconcile()
            except Exception:  # keep reconciling; a bug here must not stop serving
                logger.exception("serve controller reconcile step failed")
            await asyncio.sleep(LOOP_PERIOD_S)

    async def _reconcile(self) -> None:
        now = time.monotonic()
        for app in list(self.apps.values()):
            for rec in list(app.deployments.values()):
                if rec.failed_message is None and not app.deleting:
                    await self._scale(rec, now)
                self._health(rec, now)
            if not app.deleting and self._app_status(app) == "RUNNING":
                app.reached_running = True
        self._publish()

    async def _scale(self, rec: DeploymentRecord, now: float) -> None:
        a = rec.config.autoscaling_config
        if a is not None and now - rec.last_metrics_s >= a.metrics_interval_s and rec.metrics_task is None:
            rec.last_metrics_s = now
            rec.metrics_task = asyncio.get_running_loop().create_task(self._autoscale(rec))
        cur = [r for r in rec.replicas.values() if r.version == rec.version and r.state != "draining"]
        old = [r for r in rec.replicas.values() if r.version != rec.version and r.state != "draining"]
        cur_running = [r for r in cur if r.state == "running"]
        cur_starting = [r for r in cur if r.state == "starting"]
        old_running = [r for r in old if r.state == "running"]
        old_starting = [r for r in old if r.state == "starting"]
        room = False
        if old_running and not cur_starting and len(cur) < rec.target:
            free = await asyncio.to_thread(ember.available_resources)
            room = _fits(free, rec.config.resource_shape()) >= 1
        start, stop_old, stop_cur = plan_rollout(rec.target, len(cur_running), len(cur_starting),
                                                 len(old_running), len(old_starting), room)
        victims = old_starting + sorted(old_running, key=lambda r: r.started_at_s)
        for r in victims[:stop_old]:
            self._stop_replica(rec, r, drain=r.state == "running")
        extra = cur_starting + sorted(cur_running, key=lambda r: -r.started_at_s)
        for r in extra[:stop_cur]:
            self._stop_replica(rec, r, drain=r.state == "running")
        for _ in range(start):
            await self._start_replica(rec)

    async def _autoscale(self, rec: DeploymentRecord) -> None:
        try:
            running = [r for r in rec.replicas.values() if r.state == "running"]
            counts = await asyncio.gather(*[asyncio.wait_for(r.actor.num_ongoing.remote(), 2.0)
                                            for r in running], return_exceptions=True)
            total = sum(c for c in counts if isinstance(c, int))
            if self.proxy is not None:
                try:
                    queued = await asyncio.wait_for(self.proxy.queued_requests.remote(), 2.0)
                    total += queued.get((rec.app, rec.name), 0)
                except Exception:  # the proxy is busy or restarting: decide on replicas alone
                    pass
            current = len([r for r in rec.replicas.values()
                           if r.state != "draining" and r.version == rec.version])
            before = rec.target
            rec.target = desired_replicas(rec.config.autoscaling_config, current, total, rec.autoscaling,
                                          time.monotonic())
            if rec.target != before:
                rec.status_trigger = "AUTOSCALING"
                logger.info("autoscaling %s/%s: %d -> %d replicas (%d ongoing)", rec.app, rec.name,
                            before, rec.target, total)
        finally:
            rec.metrics_task = None

    async def _start_replica(self, rec: DeploymentRecord) -> None:
        replica_id = f"{rec.name}#{os.urandom(3).hex()}"
        opts = rec.config.ray_actor_options
        shape = rec.config.resource_shape()
        actor_opts: dict[str, Any] = {"num_cpus": shape.get("CPU", 0.0), "lifetime": "detached",
                                      "max_concurrency": 100000}
        for key in ("num_gpus", "resources", "memory", "runtime_env", "scheduling_strategy"):
            if opts.get(key) is not None:
                actor_opts[key] = opts[key]
        actor = await asyncio.to_thread(lambda: _ReplicaActor.options(**actor_opts).remote(
            rec.app, rec.name, replica_id, rec.code, rec.config))
        r = ReplicaRecord(replica_id, actor, rec.version, "starting", time.monotonic())
        rec.replicas[replica_id] = r
        r.task = asyncio.get_running_loop().create_task(self._await_ready(rec, r))

    async def _await_ready(self, rec: DeploymentRecord, r: ReplicaRecord) -> None:
        try:
            await r.actor.ready.remote()
        except Exception as e:  # the constructor (or reconfigure) raised: the deploy failed
            if r.state == "starting" and rec.version == r.version:
                rec.failed_message = (f"a replica of deployment {rec.name!r} failed to start: "
                                      f"{_constructor_error(e)}")
                logger.error("deployment %s/%s failed: %s", rec.app, rec.name, e)
            rec.replicas.pop(r.replica_id, None)
            _kill(r.actor)
            return
        if r.state == "starting":
            r.state = "running"
            r.last_health_s = time.monotonic()
            self._publish()

    def _stop_replica(self, rec: DeploymentRecord, r: ReplicaRecord, drain: bool) -> None:
        if r.state == "draining":
            return
        was_starting = r.state == "starting"
        r.state = "draining"
        if r.task is not None and was_starting:
            r.task.cancel()
        r.task = asyncio.get_running_loop().create_task(
            self._drain_and_kill(rec, r) if drain else self._kill_now(rec, r))

    async def _kill_now(self, rec: DeploymentRecord, r: ReplicaRecord) -> None:
        _kill(r.actor)
        rec.replicas.pop(r.replica_id, None)

    async def _drain_and_kill(self, rec: DeploymentRecord, r: ReplicaRecord) -> None:
        """Wait until routers stopped sending here and in-flight requests finished, then kill."""
        self._publish()
        timeout_s = rec.config.graceful_shutdown_timeout_s
        try:
            await asyncio.wait_for(r.actor.drain.remote(timeout_s), timeout_s + 1.0)
        except Exception:  # dead, stuck or slow: it is killed either way
            pass
        _kill(r.actor)
        rec.replicas.pop(r.replica_id, None)

    def _health(self, rec: DeploymentRecord, now: float) -> None:
        for r in list(rec.replicas.values()):
            if r.state == "running" and r.health_task is None and \
                    now - r.last_health_s >= rec.config.health_check_period_s:
                r.health_task = asyncio.get_running_loop().create_task(self._check(rec, r))

    async def _check(self, rec: DeploymentRecord, r: ReplicaRecord) -> None:
        try:
            r.ongoing = await asyncio.wait_for(r.actor.check_health.remote(),
                                               rec.config.health_check_timeout_s)
            r.last_health_s = time.monotonic()
        except Exception as e:  # dead, stuck (timeout) or check_health raised: replace it
            if r.state == "running":
                why = "timed out" if isinstance(e, asyncio.TimeoutError) else \
                    ("died" if isinstance(e, ActorDiedError) else f"failed: {e}")
                logger.warning("replica %s of %s/%s is unhealthy (health check %s); replacing it",
                               r.replica_id, rec.app, rec.name, why)
                self._stop_replica(rec, r, drain=False)
                self._publish()
        finally:
            r.health_task = None

    # --- status and snapshot --------------------------------------------------------------

    def _replica_counts(self, rec: DeploymentRecord) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in rec.replicas.values():
            key = {"starting": "STARTING", "running": "RUNNING", "draining": "STOPPING"}[r.state]
            counts[key] = counts.get(key, 0) + 1
        return counts

    def _deployment_status(self, rec: DeploymentRecord) -> str:
        if rec.failed_message is not None:
            return "DEPLOY_FAILED"
        running = [r for r in rec.replicas.values() if r.state == "running" and r.version == rec.version]
        others = [r for r in rec.replicas.values() if r.state != "running" or r.version != rec.version]
        if len(running) == rec.target and not [r for r in others if r.state != "draining"]:
            return "HEALTHY"
        if rec.status_trigger == "AUTOSCALING":
            return "UPSCALING" if len(running) < rec.target else "DOWNSCALING"
        return "UPDATING"

    def _message(self, rec: DeploymentRecord) -> str:
        if rec.failed_message is not None:
            return rec.failed_message
        now = time.monotonic()
        slow = [r for r in rec.replicas.values() if r.state == "starting" and now - r.started_at_s > SLOW_START_S]
        if slow:
            return (f"{len(slow)} replica(s) have been starting for over {SLOW_START_S:.0f} s; they may be "
                    f"waiting for resources {rec.config.resource_shape()} (see `ember status`)")
        return ""

    def _app_status(self, app: AppRecord) -> str:
        if app.deleting:
            return "DELETING"
        statuses = [self._deployment_status(rec) for rec in app.deployments.values()]
        if "DEPLOY_FAILED" in statuses:
            return "DEPLOY_FAILED"
        if all(s == "HEALTHY" for s in statuses):
            return "RUNNING"
        if app.reached_running and all(
                any(r.state == "running" for r in rec.replicas.values()) for rec in app.deployments.values()) and \
                all(rec.status_trigger == "AUTOSCALING" for rec in app.deployments.values()):
            return "RUNNING"
        return "DEPLOYING"

    def _publish(self) -> None:
        routes = {app.route_prefix: (app.name, app.ingress) for app in self.apps.values()
                  if app.route_prefix is not None and not app.deleting}
        deployments = {}
        for app in self.apps.values():
            for rec in app.deployments.values():
                reps = [(r.replica_id, r.actor) for r in rec.replicas.values() if r.state == "running"]
                deployments[(app.name, rec.name)] = DeploymentTargets(
                    app.name, rec.name, reps, rec.config.max_ongoing_requests, rec.config.max_queued_requests)
        signature = (sorted(routes.items()), sorted((k, [r[0] for r in v.replicas], v.max_ongoing_requests,
                                                     v.max_queued_requests) for k, v in deployments.items()))
        if signature == self._signature:
            return
        self._signature = signature
        self.version += 1
        self.snapshot = Snapshot(self.version, routes, deployments,
                                 self.http_options.get("request_timeout_s"))
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()


def _constructor_error(e: BaseException) -> str:
    """The user's traceback from an ActorDiedError, without ember's advice about restarts."""
    text = str(e)
    marker = "its __init__ raised:"
    if marker in text:
        text = text.split(marker, 1)[1].strip()
        text = text.rsplit("\n. Create a new actor", 1)[0].rstrip()
    return text


def _cluster_totals() -> list[dict[str, float]]:
    return [dict(n.get("Resources") or {}) for n in ember.nodes() if n.get("Alive", True)]


def _kill(actor: Any) -> None:
    try:
        ember.kill(actor)
    except Exception:  # already gone
        pass

