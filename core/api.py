"""The public API: init, shutdown, remote, get, put, wait, kill, cancel, get_actor, ...

A process has at most one runtime. In a driver, ``init()`` with no address starts an
embedded one-node cluster (a node manager process plus its warm fork server); using
the API before ``init()`` does the same, as in Ray.
"""

from __future__ import annotations

import atexit
import inspect
import shutil
import signal
import subprocess
import threading
from typing import Any, Callable, Sequence


from . import protocol as p
from .actor import ActorClass, ActorHandle
from .exceptions import (EmberError)
from .node_launcher import find_by_tcp_address, find_current, node_resources, start_node
from .object_ref import ObjectRef
from .options import InvalidOptionError, validate
from .remote_function import RemoteFunction
from .resources import is_positive
from .runtime import Runtime
from .runtime_env import validate_runtime_env
from .runtime_context import RuntimeContext

_lock = threading.RLock()
_rt: Runtime | None = None
_node_proc: subprocess.Popen | None = None
_session_dir: str | None = None
_is_worker = False


class _InitInfo(dict):
    """What ``init`` returns (Ray returns a context with the address and dashboard)."""

    @property
    def address_info(self) -> dict:
        return self


def init(address: str | None = None, *, num_cpus: float | None = None, num_gpus: float | None = None,
         resources: dict[str, float] | None = None, object_store_memory: int | None = None,
         namespace: str | None = None, ignore_reinit_error: bool = False,
         include_dashboard: bool | None = None, log_to_driver: bool = True,
         runtime_env: dict | None = None, **kwargs: Any) -> _InitInfo:
    """Start (or connect to) ember.

    Args:
        address: None starts a new local cluster.
        num_cpus, num_gpus, resources: what this node offers (defaults: the machine's
            CPUs, the GPUs NVML sees).
        object_store_memory: bytes of shared memory for objects (default 30% of RAM).
        namespace: namespace for named actors (default: a fresh one per job).
        ignore_reinit_error: make a second ``init`` a no-op instead of an error.

    Returns:
        A dict-like with the node's address and session directory.

    Raises:
        EmberError: ember is already initialized (and ``ignore_reinit_error`` is False).

    Example:
        >>> ember.init(num_cpus=4)
    """
    global _rt, _node_proc, _session_dir
    unknown = set(kwargs) - {"_node_ip_address", "logging_level", "log_to_driver", "configure_logging",
                             "_temp_dir", "_system_config", "local_mode", "dashboard_host"}
    if unknown:
        raise InvalidOptionError(f"unknown argument(s) to ember.init: {', '.join(sorted(unknown))}")
    with _lock:
        if _rt is not None:
            if ignore_reinit_error:
                return _InitInfo(session_dir=_rt.session_dir, node_id=_rt.node_id.hex())
            raise EmberError("ember.init() was already called in this process. Call ember.shutdown() "
                             "first, or pass ignore_reinit_error=True.")
        for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus),
                            ("object_store_memory", object_store_memory)):
            if value is not None:
                validate({name: value}, {name}, "ember.init")
        if resources is not None:
            validate({"resources": resources}, {"resources"}, "ember.init")
        job_env = validate_runtime_env(runtime_env, "ember.init", allow_working_dir=True)
        if address in (None, "local"):
            node = start_node(*node_resources(num_cpus, num_gpus, resources, object_store_memory),
                              exit_with_first_driver=True, system_config=kwargs.get("_system_config"))
            _node_proc, _session_dir = node.proc, node.session_dir
            node_address, token = node.address, node.token
        elif address == "auto":
            _session_dir, node_address, token, _pid = find_current()
            _session_dir = None  # not ours to remove on shutdown
        else:
            # HOST:PORT of the head; the driver attaches over its Unix socket, so it must run on
            # the head's machine (drivers on other nodes come with cross-node control routing).
            _session_dir, node_address, token, _pid = find_by_tcp_address(
                address.removeprefix("tcp:").removeprefix("ember://"))
            _session_dir = None
        _rt = Runtime(node_address, token, "driver", namespace=namespace, runtime_env=job_env)
        return _InitInfo(address=node_address, session_dir=_rt.session_dir, node_id=_rt.node_id.hex())


def _attach_worker_runtime(rt: Runtime) -> None:
    global _rt, _is_worker
    _rt, _is_worker = rt, True


def _runtime() -> Runtime:
    rt = _rt
    if rt is None:
        with _lock:
            if _rt is None:
                init()
            rt = _rt
    return rt


def is_initialized() -> bool:
    """True once ``init`` (or the first API call) has started ember in this process."""
    return _rt is not None


def shutdown() -> None:
    """Stop this driver's cluster (or disconnect from it). Safe to call twice."""
    global _rt, _node_proc, _session_dir
    with _lock:
        if _is_worker:
            return
        rt, proc, session = _rt, _node_proc, _session_dir
        _rt = _node_proc = _session_dir = None
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


def remote(*args: Any, **options: Any) -> Any:
    """Make a function a task, or a class an actor: ``@ember.remote`` or ``@ember.remote(num_gpus=1)``.

    Raises:
        InvalidOptionError: an unknown option or invalid value.

    Example:
        >>> @ember.remote
        ... def f(x): return x + 1
        >>> ember.get(f.remote(1))
        2
    """
    if len(args) == 1 and not options and callable(args[0]):
        return _make_remote(args[0], {})
    if args:
        raise TypeError("use @ember.remote or @ember.remote(option=value, ...) with keyword options")
    return lambda target: _make_remote(target, options)


def _make_remote(target: Any, options: dict[str, Any]) -> Any:
    if inspect.isclass(target):
        return ActorClass(target, options)
    if callable(target):
        return RemoteFunction(target, options)
    raise TypeError(f"@ember.remote expects a function or a class, got {type(target).__name__}")


def _check_refs(refs: Any, what: str) -> None:
    if isinstance(refs, (RemoteFunction, ActorClass)) or callable(getattr(refs, "remote", None)):
        raise TypeError(f"{what} expects ObjectRefs, got a remote function or method. Did you mean "
                        f"`{what}(f.remote(...))`?")
    raise TypeError(f"{what} expects an ObjectRef or a list of ObjectRefs, got {type(refs).__name__}")


def get(object_refs: ObjectRef | Sequence[ObjectRef], *, timeout: float | None = None) -> Any:
    """Wait for and return the value(s) of ``object_refs``.

    Stored numpy arrays come back as read-only views of shared memory (copy to mutate).

    Raises:
        TaskError: the task raised (also an instance of the user's exception class).
        GetTimeoutError: ``timeout`` seconds passed first.
        TypeError: the argument is not a ref or a list of refs.
    """
    if isinstance(object_refs, ObjectRef):
        return _runtime().get_values([object_refs], timeout)[0]
    if isinstance(object_refs, (list, tuple)):
        for r in object_refs:
            if not isinstance(r, ObjectRef):
                _check_refs(r, "ember.get")
        return _runtime().get_values(list(object_refs), timeout)
    _check_refs(object_refs, "ember.get")


def put(value: Any, **_kwargs: Any) -> ObjectRef:
    """Store ``value`` once and return a ref to pass to many tasks without copying.

    Raises:
        SerializationError: the value cannot be pickled.
        ObjectStoreFullError: the object does not fit in the store.
    """
    if isinstance(value, ObjectRef):
        raise TypeError("ember.put() of an ObjectRef is not allowed; pass the ref itself instead")
    return _runtime().put(value)


def wait(object_refs: Sequence[ObjectRef], *, num_returns: int = 1, timeout: float | None = None,
         fetch_local: bool = True) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Return ``(ready, not_ready)`` once ``num_returns`` refs are ready or ``timeout`` passes.

    Both lists keep the order of ``object_refs``.

    Raises:
        ValueError: ``num_returns`` exceeds the number of refs, or duplicates were passed.
    """
    if not isinstance(object_refs, (list, tuple)):
        _check_refs(object_refs, "ember.wait")
    for r in object_refs:
        if not isinstance(r, ObjectRef):
            _check_refs(r, "ember.wait")
    if isinstance(num_returns, bool) or not isinstance(num_returns, int) or num_returns < 0:
        raise ValueError(f"num_returns must be a non-negative integer, got {num_returns!r}")
    if num_returns > len(object_refs):
        raise ValueError(f"num_returns={num_returns} is larger than the number of refs "
                         f"({len(object_refs)}); pass num_returns<=len(refs)")
    if len({r.id for r in object_refs}) != len(object_refs):
        raise ValueError("ember.wait() got duplicate refs; pass each ref once")
    rt = _runtime()
    rt.drain_releases()
    ids = [r.id for r in object_refs]
    # Fast path: enough refs already ready (stop scanning at the num_returns-th).
    first = rt.first_ready(ids, num_returns)
    ready_ids = set(first) if first is not None else set(rt.wait_ready(ids, num_returns, timeout,
                                                                       fetch_local))
    if fetch_local:
        rt.fetch_local([oid for oid in ids if oid in ready_ids])
    ready, not_ready = [], []
    for r in object_refs:
        (ready if r.id in ready_ids and len(ready) < max(num_returns, 0) else not_ready).append(r)
    return ready, not_ready


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    """Stop an actor now; pending and future calls fail with ActorDiedError."""
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"ember.kill expects an actor handle, got {type(actor).__name__}; to stop a "
                        "task use ember.cancel(ref)")
    rt = _runtime()
    rt.send(p.KillActor(actor._actor_id, no_restart))
    if no_restart:
        # The kill travels to the node manager while our calls go straight to the
        # actor's worker: fail them here, or a call made right after kill could run.
        rt.actor_submitter.mark_killed(actor._actor_id, actor._class_name)


def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that produces ``object_ref``; ``get`` then raises TaskCancelledError."""
    if not isinstance(object_ref, ObjectRef):
        _check_refs(object_ref, "ember.cancel")
    _runtime().submitter.cancel(object_ref.id, force, recursive)


def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    """The handle of the live actor registered under ``name``.

    Raises:
        ValueError: no such actor in that namespace.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_actor needs a non-empty actor name, got {name!r}")
    rt = _runtime()
    ns = namespace or rt.namespace
    info, _ = rt.call(lambda rid: p.GetNamedActor(rid, name, ns))
    if info is None:
        raise ValueError(f"no actor named {name!r} in namespace {ns!r}. Create it with "
                         f"A.options(name={name!r}).remote(), or pass the namespace it was created in.")
    with rt.lock:
        rt.actor_ids.add(info.actor_id)
    return ActorHandle(info.actor_id, info.class_name, info.methods, info.is_async)


def get_gpu_ids() -> list[int]:
    """GPU ids assigned to the current task or actor (its CUDA_VISIBLE_DEVICES)."""
    from .worker import current_task
    task = current_task.get()
    return list(task.gpu_ids) if task is not None else []


def get_runtime_context() -> RuntimeContext:
    return RuntimeContext(_runtime())


def nodes() -> list[dict[str, Any]]:
    """One dict per node: NodeID, Alive, Resources (Ray's keys)."""
    state, _ = _runtime().call(lambda rid: p.ClusterState(rid))
    return [{k: v for k, v in n.items() if k != "Available"} for n in state]


def cluster_resources() -> dict[str, float]:
    """Total resources of the live nodes."""
    return _sum_nodes("Resources")


def available_resources() -> dict[str, float]:
    """Resources free right now on the live nodes."""
    return _sum_nodes("Available")


def _sum_nodes(key: str) -> dict[str, float]:
    state, _ = _runtime().call(lambda rid: p.ClusterState(rid))
    total: dict[str, float] = {}
    for node in state:
        if node["Alive"]:
            for name, amount in node[key].items():
                total[name] = total.get(name, 0.0) + amount
    return {k: v for k, v in total.items() if is_positive(v)}


def object_store_stats() -> dict[str, Any]:
    """Usage of this node's object store: capacity, used bytes, largest objects and holders."""
    stats, _ = _runtime().call(lambda rid: p.StoreStats(rid))
    return stats


def exit_actor() -> None:
    """End the current actor cleanly after this call returns."""
    from .worker import ExitActorSignal, current_task
    task = current_task.get()
    if task is None or task.actor_id is None:
        raise TypeError("exit_actor() can only be called inside an actor method")
    raise ExitActorSignal(0)


def method(*args: Any, **kwargs: Any) -> Callable:
    from .actor import method as _method
    return _method(*args, **kwargs)
