"""The process's current runtime, and the task or actor call running now.

A process has at most one runtime. In a driver, ``start`` (from ``ember.init``) either
starts an embedded one-node cluster (a node manager process plus its warm fork server)
or attaches to a running one; using the API before ``init`` starts one, as in Ray. A
worker process attaches the runtime its worker built (``attach_worker``).

Everything that needs "the current runtime" asks this module: the public API
(``runtime()``), and every ``ObjectRef``/``ActorHandle`` (``objects``, the table they
count themselves in). ``current_task`` is the task or actor call running in this thread
or coroutine (None in a driver's own code).
"""

from __future__ import annotations

import atexit
import contextvars
import json
import os
import shutil
import signal
import subprocess
import threading
from typing import Any

from .._types import ActorID, TaskID
from .._node.launcher import find_by_tcp_address, find_current, node_resources, start_node
from .._wire.protocol import ActorSpec
from .._wire.tokens import ClusterToken, given_token
from ..exceptions import AuthenticationError, EmberError, InvalidOptionError
from .local_objects import LocalObjectTable
from ..runtime_env import process_env, validate_runtime_env
from .runtime import Runtime

#: The current runtime's object table, read by every ObjectRef and ActorHandle as it is
#: made (a plain module attribute: reading it costs one lookup per ref).
objects: LocalObjectTable | None = None

#: Held while the current runtime is started or shut down.
lock = threading.RLock()
_runtime: Runtime | None = None
_node_proc: subprocess.Popen | None = None
#: A session directory this process created (removed on shutdown).
_owned_session_dir: str | None = None
_in_worker = False
#: The spec of the actor this worker process hosts, once its ``__init__`` ran (None in
#: drivers and task workers): ``get_runtime_context().current_actor`` builds on it.
actor_spec: ActorSpec | None = None


class TaskContext:
    """What is known about the task or actor call running now (``current_task``)."""

    __slots__ = ("task_id", "name", "actor_id", "gpu_ids", "interruptible", "placement_group",
                 "resources", "cancelled", "is_async")

    def __init__(self, task_id: TaskID | None, name: str, actor_id: ActorID | None,
                 gpu_ids: list[int], placement_group: tuple[str, bool] | None = None,
                 resources: dict[str, float] | None = None, is_async: bool = False) -> None:
        self.task_id = task_id
        self.name = name
        self.actor_id = actor_id
        self.gpu_ids = gpu_ids
        #: (hex id, capture child tasks) of the placement group it runs in, if any.
        self.placement_group = placement_group
        #: True only while user code runs: a cancel's SIGINT outside it is ignored.
        self.interruptible = False
        #: What it was given, in plain resource names (``get_assigned_resources``).
        self.resources = resources if resources is not None else {}
        #: Set when ``ember.cancel`` reached this call (``is_canceled``); never unset.
        self.cancelled = False
        #: A call of an async actor (cancelled on its loop; ``is_canceled`` refuses).
        self.is_async = is_async

    def captured_group(self) -> tuple[str, bool] | None:
        """The group calls made from here run in by default (it captures child tasks)."""
        group = self.placement_group
        return group if group is not None and group[1] else None


current_task: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "ember_current_task", default=None)


class ExitActorSignal(SystemExit):
    """Raised by ``exit_actor()``: finish the current call, then leave cleanly."""


def runtime() -> Runtime:
    """The current runtime, starting a local cluster first if there is none (as Ray does)."""
    rt = _runtime
    if rt is None:
        with lock:
            if _runtime is None:
                start(None)
            rt = _runtime
    return rt


def runtime_or_none() -> Runtime | None:
    """The current runtime, or None before ``init`` (and after ``shutdown``)."""
    return _runtime


def in_worker() -> bool:
    """True in a worker process (its runtime lives as long as the process)."""
    return _in_worker


def _set(rt: Runtime | None) -> None:
    global _runtime, objects
    _runtime, objects = rt, (rt.objects if rt is not None else None)


def start(address: str | None, *, num_cpus: float | None = None, num_gpus: float | None = None,
          resources: dict[str, float] | None = None, object_store_memory: int | None = None,
          namespace: str | None = None, runtime_env: dict[str, Any] | None = None,
          system_config: dict[str, Any] | None = None, node_ip_address: str | None = None,
          log_to_driver: bool = True, token_file: str | None = None,
          dashboard: tuple[str, int] | None = ("127.0.0.1", 8265),
          metrics_export_port: int = 0) -> Runtime:
    """Start a local cluster (``address`` None or "local") or attach to a running one
    ("auto", the head's HOST:PORT, or "ember://HOST:PORT" from any machine), and make its
    runtime current. Arguments are validated by ``ember.init``.

    HOST:PORT of a head on this machine attaches over its Unix socket (objects in shared
    memory); "ember://HOST:PORT", or a head that does not run here, connects over TCP
    with the token from ``token_file`` or $EMBER_TOKEN (objects streamed in chunks).

    Raises:
        InvalidOptionError: a malformed address, or no usable token for a remote head.
        AuthenticationError: the head refused the token (the error names its source).
        ClusterConnectionError, VersionMismatchError: no ember head of this version there.
    """
    global _node_proc, _owned_session_dir
    if address is None:
        # Set for a submitted job's driver (and by users, as RAY_ADDRESS is): attach to
        # that cluster rather than start a new one.
        address = os.environ.get("EMBER_ADDRESS") or None
    if os.environ.get("EMBER_JOB_RUNTIME_ENV"):
        # A submitted job's pip (and py_modules): its tasks and actors run in that env.
        job_env = validate_runtime_env(json.loads(os.environ["EMBER_JOB_RUNTIME_ENV"]), "the submitted job")
        runtime_env = dict(runtime_env or {})
        for key in ("pip", "py_modules"):
            runtime_env[key] = runtime_env.get(key) or job_env[key]
    with lock:
        if address in (None, "local"):
            node = start_node(*node_resources(num_cpus, num_gpus, resources, object_store_memory),
                              exit_with_first_driver=True, system_config=system_config,
                              host=node_ip_address or "127.0.0.1", dashboard=dashboard,
                              metrics_export_port=metrics_export_port)
            _node_proc, _owned_session_dir = node.proc, node.session_dir
            node_address, token = node.address, ClusterToken(node.token, "the token this node made")
        elif address == "auto":
            _session_dir, node_address, token, _pid = find_current()
        else:
            node_address, token = _head(address, token_file)
        try:
            rt = Runtime(node_address, token.secret, "driver", namespace=namespace,
                         runtime_env=runtime_env, log_to_driver=log_to_driver)
        except AuthenticationError as e:  # only we know where the token came from
            raise AuthenticationError(e.address, token.source) from None
        rt.default_process_env = process_env(
            {k: v for k, v in (runtime_env or {}).items() if k in ("py_modules", "pip")})
        _set(rt)
        return rt


def _head(address: str, token_file: str | None) -> tuple[str, ClusterToken]:
    """(node address, token) for a head given as HOST:PORT or ember://HOST:PORT."""
    remote = address.startswith("ember://")
    host_port = address.removeprefix("ember://").removeprefix("tcp:")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidOptionError(f"ember.init(address={address!r}): expected HOST:PORT, "
                                 "ember://HOST:PORT, 'auto' or None")
    if not remote:
        try:
            # A head on this machine: attach over its Unix socket, objects in shared memory.
            _session_dir, node_address, token, _pid = find_by_tcp_address(host_port)
            return node_address, token
        except EmberError:
            pass  # not here: reach it over TCP, like a driver on another machine
    token = given_token(token_file, "token_file")
    if token is None:
        raise InvalidOptionError(
            f"ember.init({address!r}) needs the cluster's token to connect over TCP: set EMBER_TOKEN "
            "or pass token_file=PATH (the secret the head was started with, or its <session>/token "
            "file, whose path `ember start --head` prints)")
    return f"tcp:{host_port}", token


def attach_worker(rt: Runtime) -> None:
    """A worker process's runtime becomes current for its whole life."""
    global _in_worker
    _set(rt)
    _in_worker = True


def shutdown() -> None:
    """Close the current runtime and stop the cluster this process started. Safe to call
    twice; a no-op in a worker."""
    global _node_proc, _owned_session_dir
    with lock:
        if _in_worker:
            return
        rt, proc, session = _runtime, _node_proc, _owned_session_dir
        _set(None)
        _node_proc = _owned_session_dir = None
        if rt is not None:
            rt.close()
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if session is not None:
            shutil.rmtree(session, ignore_errors=True)


atexit.register(shutdown)
