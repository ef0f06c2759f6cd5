"""The public API: init, shutdown, remote, get, put, wait, kill, cancel, get_actor, ...

A process has at most one runtime. In a driver, ``init()`` with no address starts an
embedded one-node cluster (a node manager process plus its warm fork server); using
the API before ``init()`` does the same, as in Ray.
"""

from __future__ import annotations

import inspect
import logging
import math
import numbers
from typing import Any, Callable, Sequence

from ._client import context
from ._wire import protocol as p
from .actor import ActorClass, ActorHandle, handle_from_info
from .actor import method as _method
from .exceptions import EmberError, InvalidOptionError, NotInitializedError
from .object_ref import ObjectRef
from .object_ref_generator import ObjectRefGenerator
from ._client.options import validate
from .remote_function import RemoteFunction
from ._resources import is_positive
from ._client.runtime import Runtime
from ._node.launcher import read_http_urls
from .runtime_context import RuntimeContext
from ._client.function_export import register
from .runtime_env import setup_hook_export, validate_runtime_env

#: ``init`` keywords ember accepts from Ray scripts beyond its own. Each one works:
#: ``_node_ip_address`` (where the node binds), ``_system_config`` (its known keys),
#: ``logging_level`` (of the "ember" logger), ``configure_logging`` (ember configures no
#: handlers: true either way), ``dashboard_host`` and ``dashboard_port`` (where a new
#: local cluster's dashboard binds; default 127.0.0.1:8265, any free port when taken),
#: ``_metrics_export_port`` (the new node's Prometheus endpoint; default any free port).
_RAY_INIT_KWARGS = {"_node_ip_address", "logging_level", "configure_logging", "_system_config",
                    "dashboard_host", "dashboard_port", "_metrics_export_port"}
#: Accepted by Ray, refused here with the way to get the same effect.
_REFUSED_INIT_KWARGS = {
    "local_mode": "ember always runs tasks in worker processes; drop local_mode (debug with "
                  "num_cpus=1 instead)",
    "_temp_dir": "ember keeps its sessions under $TMPDIR/ember-sessions; set TMPDIR instead",
}


class _InitInfo(dict):
    """What ``init`` returns (Ray returns a context with the address and dashboard)."""

    @property
    def address_info(self) -> dict:
        return self

    @property
    def dashboard_url(self) -> str:
        """The head's dashboard ("" when the cluster serves none)."""
        return self.get("dashboard_url", "")


def init(address: str | None = None, *, num_cpus: float | None = None, num_gpus: float | None = None,
         resources: dict[str, float] | None = None, object_store_memory: int | None = None,
         namespace: str | None = None, ignore_reinit_error: bool = False,
         include_dashboard: bool | None = None, log_to_driver: bool = True,
         runtime_env: dict | None = None, token_file: str | None = None, **kwargs: Any) -> _InitInfo:
    """Start (or connect to) ember.

    Args:
        address: None starts a new local cluster (or, when ``$EMBER_ADDRESS`` is set, as
            for a submitted job's driver, attaches to that one); "auto" or the head's
            "HOST:PORT" attaches to a running one; "ember://HOST:PORT" connects to a head
            from any machine, over TCP only (objects streamed in chunks). A "HOST:PORT"
            head that does not run on this machine is reached the same way.
        token_file: a file holding the cluster token, for a head reached over TCP
            (default: $EMBER_TOKEN).
        num_cpus, num_gpus, resources: what this node offers (defaults: the machine's
            CPUs, the GPUs NVML sees).
        object_store_memory: bytes of shared memory for objects (default 30% of RAM).
        namespace: namespace for named actors (default: a fresh one per job).
        ignore_reinit_error: make a second ``init`` a no-op instead of an error.
        log_to_driver: print what tasks and actors write (False: drop it here).
        include_dashboard: serve the dashboard on a new local cluster's head (None or True:
            yes, bound at once and served from the first request; False: none). Its URL is
            the result's ``dashboard_url`` and is logged by the "ember" logger.

    Returns:
        A dict-like with the node's address and session directory.

    Raises:
        EmberError: ember is already initialized (and ``ignore_reinit_error`` is False).
        InvalidOptionError: an unknown keyword, a bad value, or ``local_mode=True``; a
            remote head without a usable token.
        AuthenticationError: the head refused the token (the message names its source).
        ClusterConnectionError: no ember head answers at ``address``.
        VersionMismatchError: the head runs another ember or Python minor version.

    Example:
        >>> ember.init(num_cpus=4)
    """
    unknown = set(kwargs) - _RAY_INIT_KWARGS - set(_REFUSED_INIT_KWARGS)
    if unknown:
        raise InvalidOptionError(f"unknown argument(s) to ember.init: {', '.join(sorted(unknown))}")
    for name, why in _REFUSED_INIT_KWARGS.items():
        if kwargs.get(name):
            raise InvalidOptionError(f"ember.init({name}={kwargs[name]!r}) is not supported: {why}.")
    if include_dashboard not in (None, True, False):
        raise InvalidOptionError(f"include_dashboard must be True, False or None, got {include_dashboard!r}")
    dashboard_port = kwargs.get("dashboard_port")
    if dashboard_port is not None and (isinstance(dashboard_port, bool) or not isinstance(dashboard_port, int)
                                       or not 0 <= dashboard_port < 65536):
        raise InvalidOptionError(f"dashboard_port must be a TCP port number (0 for any free port), got "
                                 f"{dashboard_port!r}")
    metrics_port = kwargs.get("_metrics_export_port")
    if metrics_port is not None and (isinstance(metrics_port, bool) or not isinstance(metrics_port, int)
                                     or not 0 <= metrics_port < 65536):
        raise InvalidOptionError(f"_metrics_export_port must be a TCP port number (0 for any free port), "
                                 f"got {metrics_port!r}")
    dashboard = None if include_dashboard is False else (
        kwargs.get("dashboard_host") or "127.0.0.1", 8265 if dashboard_port is None else dashboard_port)
    if not isinstance(log_to_driver, bool):
        raise InvalidOptionError(f"log_to_driver must be True or False, got {log_to_driver!r}")
    if kwargs.get("logging_level") is not None:
        logging.getLogger("ember").setLevel(kwargs["logging_level"])
    with context.lock:
        rt = context.runtime_or_none()
        if rt is not None:
            if ignore_reinit_error:
                return _InitInfo(session_dir=rt.session_dir, node_id=rt.node_id.hex())
            raise EmberError("ember.init() was already called in this process. Call ember.shutdown() "
                             "first, or pass ignore_reinit_error=True.")
        for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus),
                            ("object_store_memory", object_store_memory)):
            if value is not None:
                validate({name: value}, {name}, "ember.init", unsupported={})
        if resources is not None:
            validate({"resources": resources}, {"resources"}, "ember.init", unsupported={})
        job_env = validate_runtime_env(runtime_env, "ember.init", job_wide=True)
        setup_hook = setup_hook_export(job_env)
        rt = context.start(address, num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                           object_store_memory=object_store_memory, namespace=namespace,
                           runtime_env=job_env, system_config=kwargs.get("_system_config"),
                           node_ip_address=kwargs.get("_node_ip_address"), log_to_driver=log_to_driver,
                           dashboard=dashboard, metrics_export_port=metrics_port or 0,
                           token_file=token_file)
        if setup_hook is not None:  # before any task: workers fetch it before their first one
            register(rt, setup_hook)
        info = _InitInfo(address=rt.link.address, session_dir=rt.session_dir, node_id=rt.node_id.hex())
        dashboard_url = read_http_urls(rt.session_dir).get("dashboard_url")
        if dashboard_url:
            info["dashboard_url"] = dashboard_url
            logging.getLogger("ember").info("View the dashboard at %s (log in with the cluster token, "
                                            "in %s/token)", dashboard_url, rt.session_dir)
        return info


def is_initialized() -> bool:
    """True once ``init`` (or the first API call) has started ember in this process."""
    return context.runtime_or_none() is not None


def shutdown() -> None:
    """Stop this driver's cluster (or disconnect from it). Safe to call twice."""
    context.shutdown()


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
    if isinstance(refs, ObjectRefGenerator):
        raise TypeError(f"{what} got an ObjectRefGenerator (what a generator task returns): iterate "
                        f"it and pass each ref, e.g. `for ref in gen: {what}(ref)`")
    if isinstance(refs, (RemoteFunction, ActorClass)) or callable(getattr(refs, "remote", None)):
        raise TypeError(f"{what} expects ObjectRefs, got a remote function or method. Did you mean "
                        f"`{what}(f.remote(...))`?")
    raise TypeError(f"{what} expects an ObjectRef or a list of ObjectRefs, got {type(refs).__name__}")


def _check_timeout(timeout: Any, what: str) -> None:
    """``timeout`` is None (wait forever) or a non-negative number of seconds.

    Raises:
        TypeError: not a number (``"10"``, ``True``).
        ValueError: negative or NaN.
    """
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"{what}(timeout={timeout!r}): the timeout is a number of seconds or None "
                        f"(wait forever), got {type(timeout).__name__}; e.g. timeout=10")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"{what}(timeout={timeout!r}): the timeout must be a non-negative number of "
                         "seconds, or None to wait forever")


def get(object_refs: ObjectRef | Sequence[ObjectRef], *, timeout: float | None = None) -> Any:
    """Wait for and return the value(s) of ``object_refs``.

    Stored numpy arrays come back as read-only views of shared memory (copy to mutate).

    Raises:
        TaskError: the task raised (also an instance of the user's exception class).
        GetTimeoutError: ``timeout`` seconds passed first.
        TypeError: the argument is not a ref or a list of refs, or ``timeout`` is no number.
        ValueError: ``timeout`` is negative or NaN.
    """
    _check_timeout(timeout, "ember.get")
    if isinstance(object_refs, ObjectRef):
        rt = _current_for(object_refs._table)
        return rt.objects.values([object_refs.id], timeout)[0]
    if isinstance(object_refs, (list, tuple)):
        rt = context.runtime()
        table = rt.objects
        for r in object_refs:
            if not isinstance(r, ObjectRef):
                _check_refs(r, "ember.get")
            if r._table is not table and r._table is not None:
                _stale(r)
        return table.values([r.id for r in object_refs], timeout)
    _check_refs(object_refs, "ember.get")


def _current_for(table: object) -> Runtime:
    """The current runtime, checking that a ref or handle was made under it."""
    rt = context.runtime()
    if table is not rt.objects and table is not None:
        raise NotInitializedError(_STALE)
    return rt


_STALE = ("this ref or actor handle belongs to an ember session that was shut down; its objects "
          "and actors went with it. Create them again after ember.init()")


def _stale(thing: object) -> None:
    raise NotInitializedError(f"{thing!r}: {_STALE}")


def put(value: Any, **_kwargs: Any) -> ObjectRef:
    """Store ``value`` once and return a ref to pass to many tasks without copying.

    Raises:
        SerializationError: the value cannot be pickled.
        ObjectStoreFullError: the object does not fit in the store.
    """
    if isinstance(value, ObjectRef):
        raise TypeError("ember.put() of an ObjectRef is not allowed; pass the ref itself instead")
    return ObjectRef(context.runtime().put(value), _counted=True)


def wait(object_refs: Sequence[ObjectRef | ObjectRefGenerator], *, num_returns: int = 1,
         timeout: float | None = None, fetch_local: bool = True
         ) -> tuple[list[ObjectRef | ObjectRefGenerator], list[ObjectRef | ObjectRefGenerator]]:
    """Return ``(ready, not_ready)`` once ``num_returns`` refs are ready or ``timeout`` passes.

    Both lists keep the order of ``object_refs``. An ObjectRefGenerator counts as ready
    when ``next`` would not block: its next ref (or its end) is there.

    Raises:
        ValueError: ``num_returns`` exceeds the number of refs, duplicates were passed, or
            ``timeout`` is negative or NaN.
        TypeError: ``timeout`` is not a number.
    """
    _check_timeout(timeout, "ember.wait")
    if not isinstance(object_refs, (list, tuple)):
        _check_refs(object_refs, "ember.wait")
    rt = context.runtime()
    ids = []
    for r in object_refs:
        if isinstance(r, ObjectRefGenerator):
            if r._stream.table is not rt.generators:
                _stale(r)
            ids.append(r._next_id())
            continue
        if not isinstance(r, ObjectRef):
            _check_refs(r, "ember.wait")
        if r._table is not rt.objects and r._table is not None:
            _stale(r)
        ids.append(r.id)
    if isinstance(num_returns, bool) or not isinstance(num_returns, int) or num_returns < 0:
        raise ValueError(f"num_returns must be a non-negative integer, got {num_returns!r}")
    if num_returns > len(object_refs):
        raise ValueError(f"num_returns={num_returns} is larger than the number of refs "
                         f"({len(object_refs)}); pass num_returns<=len(refs)")
    if len(set(ids)) != len(object_refs):
        raise ValueError("ember.wait() got duplicate refs; pass each ref once")
    objects = rt.objects
    objects.drain_releases()
    # Fast path: enough refs already ready (stop scanning at the num_returns-th).
    first = objects.first_ready(ids, num_returns)
    ready_ids = set(first) if first is not None else set(objects.wait_ready(ids, num_returns, timeout,
                                                                            fetch_local))
    if fetch_local:
        objects.fetch_local([oid for oid in ids if oid in ready_ids])
    ready, not_ready = [], []
    for r, oid in zip(object_refs, ids):
        (ready if oid in ready_ids and len(ready) < max(num_returns, 0) else not_ready).append(r)
    return ready, not_ready


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    """Stop an actor now; pending and future calls fail with ActorDiedError."""
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"ember.kill expects an actor handle, got {type(actor).__name__}; to stop a "
                        "task use ember.cancel(ref)")
    rt = _current_for(actor._table)
    rt.send(p.KillActor(actor._actor_id, no_restart))
    if no_restart:
        # The kill travels to the node manager while our calls go straight to the
        # actor's worker: fail them here, or a call made right after kill could run.
        rt.actor_submitter.mark_killed(actor._actor_id, actor._class_name)


def cancel(object_ref: ObjectRef | ObjectRefGenerator, *, force: bool = False,
           recursive: bool = True) -> None:
    """Cancel the task or actor call that produces ``object_ref``; ``get`` then raises
    TaskCancelledError.

    A task is interrupted (KeyboardInterrupt in it; ``force=True`` kills its worker). An
    actor call that has not started never runs; a running one on an async actor is
    cancelled on its event loop, and on a sync or threaded actor it runs on, seeing
    ``get_runtime_context().is_canceled()`` turn True (actors keep their state, so they
    are not interrupted), as in Ray. An ObjectRefGenerator's task or actor method stops
    at its next value (a generator is cancelled on any actor): the refs it already
    yielded stay valid, and the next one raises TaskCancelledError.

    Raises:
        ValueError: ``force=True`` for an actor method's generator (it would kill the actor).
    """
    if isinstance(object_ref, ObjectRefGenerator):
        _cancel_generator(object_ref, force, recursive)
        return
    if not isinstance(object_ref, ObjectRef):
        _check_refs(object_ref, "ember.cancel")
    rt = _current_for(object_ref._table)
    if not rt.submitter.cancel(object_ref.id, force, recursive):
        rt.actor_submitter.cancel(object_ref.id, recursive)


def _cancel_generator(gen: ObjectRefGenerator, force: bool, recursive: bool) -> None:
    stream = gen._stream
    rt = context.runtime()
    if stream.table is not rt.generators:
        _stale(gen)
    if stream.actor_id is None:
        rt.submitter.cancel(stream.completion_id, force, recursive)
        return
    if force:
        raise InvalidOptionError(f"ember.cancel(force=True) would kill the actor running `{stream.name}`; "
                                 "cancel its generator without force=, or ember.kill() the actor")
    rt.actor_submitter.cancel(stream.completion_id, recursive)


def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    """The handle of the live actor registered under ``name``.

    Raises:
        ValueError: no such actor in that namespace.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_actor needs a non-empty actor name, got {name!r}")
    rt = context.runtime()
    ns = namespace or rt.namespace
    info, _ = rt.call(lambda rid: p.GetNamedActor(rid, name, ns))
    if info is None:
        raise ValueError(f"no actor named {name!r} in namespace {ns!r}. Create it with "
                         f"A.options(name={name!r}).remote(), or pass the namespace it was created in.")
    rt.objects.add_actor(info.actor_id)
    return handle_from_info(info)


def get_gpu_ids() -> list[int]:
    """GPU ids assigned to the current task or actor (its CUDA_VISIBLE_DEVICES)."""
    task = context.current_task.get()
    return list(task.gpu_ids) if task is not None else []


def get_runtime_context() -> RuntimeContext:
    """Who and where the caller is: job, node, worker, task and actor ids."""
    return RuntimeContext(context.runtime())


def nodes() -> list[dict[str, Any]]:
    """One dict per node: NodeID, Alive, Resources (Ray's keys)."""
    state, _ = context.runtime().call(lambda rid: p.ClusterState(rid))
    return [{k: v for k, v in n.items() if k != "Available"} for n in state]


def cluster_resources() -> dict[str, float]:
    """Total resources of the live nodes."""
    return _sum_nodes("Resources")


def available_resources() -> dict[str, float]:
    """Resources free right now on the live nodes."""
    return _sum_nodes("Available")


def _sum_nodes(key: str) -> dict[str, float]:
    state, _ = context.runtime().call(lambda rid: p.ClusterState(rid))
    total: dict[str, float] = {}
    for node in state:
        if node["Alive"]:
            for name, amount in node[key].items():
                total[name] = total.get(name, 0.0) + amount
    return {k: v for k, v in total.items() if is_positive(v)}


def object_store_stats() -> dict[str, Any]:
    """Usage of this node's object store: capacity, used bytes, largest objects and holders."""
    stats, _ = context.runtime().call(lambda rid: p.StoreStats(rid))
    return stats


def exit_actor() -> None:
    """End the current actor cleanly after this call returns."""
    task = context.current_task.get()
    if task is None or task.actor_id is None:
        raise TypeError("exit_actor() can only be called inside an actor method")
    raise context.ExitActorSignal(0)


def method(*args: Any, **kwargs: Any) -> Callable:
    """Options of one actor method: ``@ember.method(num_returns=2)``, ``max_task_retries``,
    ``retry_exceptions``."""
    return _method(*args, **kwargs)
