"""What the controller tells routers: routes and live replicas, versioned.

Proxies and handles never ask the controller per request. Each process keeps the
latest Snapshot, refreshed by one long-poll loop (``SnapshotClient``), and routes from it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, Callable

import ember

logger = logging.getLogger("ember.serve")

CONTROLLER_NAME = "SERVE_CONTROLLER_ACTOR"
SERVE_NAMESPACE = "serve"


@dataclasses.dataclass
class DeploymentTargets:
    """The replicas a router may send a deployment's requests to."""
    app: str
    name: str
    #: (replica id, actor handle) of replicas that are started and not draining.
    replicas: list[tuple[str, Any]]
    max_ongoing_requests: int
    max_queued_requests: int


@dataclasses.dataclass
class Snapshot:
    version: int
    #: route prefix -> (application, ingress deployment)
    routes: dict[str, tuple[str, str]]
    deployments: dict[tuple[str, str], DeploymentTargets]
    request_timeout_s: float | None = None


class SnapshotClient:
    """This process's view of the controller's Snapshot, kept fresh by a long-poll thread.

    One per process (``client()``); routers read ``snapshot`` and register a listener to
    hear about changes. The thread is a daemon owned by this object; ``stop`` joins it.
    """

    def __init__(self, controller: Any) -> None:
        self.controller = controller
        self.snapshot: Snapshot = Snapshot(-1, {}, {})
        self.listeners: list[Callable[[Snapshot], None]] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self.lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, daemon=True, name="serve-long-poll")
            self._thread.start()

    def refresh(self, timeout_s: float = 10.0) -> Snapshot:
        """Ask the controller now (used on first use and after a replica failure)."""
        snap = ember.get(self.controller.poll.remote(-1, 0.0), timeout=timeout_s)
        self._apply(snap)
        return self.snapshot

    def wait_for_version(self, version: int, timeout_s: float) -> bool:
        """Block until the snapshot is at least ``version``."""
        with self.changed:
            return self.changed.wait_for(lambda: self.snapshot.version >= version, timeout_s)

    def _apply(self, snap: Snapshot | None) -> None:
        if snap is None:
            return
        with self.changed:
            if snap.version <= self.snapshot.version:
                return
            self.snapshot = snap
            listeners = list(self.listeners)
            self.changed.notify_all()
        for listener in listeners:
            listener(snap)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                snap = ember.get(self.controller.poll.remote(self.snapshot.version, 5.0), timeout=30.0)
            except Exception as e:  # controller gone (shutdown) or restarting: stop quietly
                if not self._stop.is_set():
                    logger.debug("serve long poll stopped: %s", e)
                return
            self._apply(snap)

    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=0.1)


_client: SnapshotClient | None = None
_client_lock = threading.Lock()


def get_controller() -> Any:
    """The controller's actor handle, or raise NotRunningError."""
    from .exceptions import NotRunningError
    try:
        return ember.get_actor(CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        raise NotRunningError("Serve is not running on this cluster; start it with serve.run(app) "
                              "or serve.start()") from None


def client(controller: Any = None) -> SnapshotClient:
    """This process's SnapshotClient, created (and its first snapshot fetched) on first use."""
    global _client
    c = _client
    if c is not None and c.alive():
        return c
    with _client_lock:
        if _client is not None and not _client.alive():
            # The long poll ended (the controller was replaced): start over with a fresh one.
            _client.stop()
            _client = None
        if _client is None:
            c = SnapshotClient(controller if controller is not None else get_controller())
            c.refresh()
            c.start()
            _client = c
        return _client


def reset_client() -> None:
    """Forget this process's client (after serve.shutdown, or when the controller changed)."""
    global _client
    with _client_lock:
        c, _client = _client, None
    if c is not None:
        c.stop()
