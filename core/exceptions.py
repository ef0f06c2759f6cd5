"""Every error ember raises to a user.

Each error carries its facts as fields and builds its message in ``__str__``: what
happened, to which task/actor/object, the likely cause, and the fix.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "EmberError",
    "TaskError",
    "WorkerCrashedError",
    "WorkerStartError",
    "ObjectLostError",
    "OwnerDiedError",
    "ObjectStoreFullError",
    "ActorDiedError",
    "ActorUnavailableError",
    "PendingCallsLimitExceededError",
    "InvalidOptionError",
    "GetTimeoutError",
    "TaskCancelledError",
    "NotInitializedError",
    "SerializationError",
    "OutOfMemoryError",
    "RuntimeEnvSetupError",
    "RaySystemError",
    "EmberSystemError",
    "RayTaskError",
    "RayActorError",
    "PendingCallsLimitExceeded",
    "StateApiError",
    "InvalidStateQueryError",
    "StateNotFoundError",
    "AuthenticationError",
    "VersionMismatchError",
    "ClusterConnectionError",
]


class EmberError(Exception):
    """Base class of every ember error."""


class EmberSystemError(EmberError):
    """The runtime itself failed (a bug or a lost connection to the node manager)."""


class TaskError(EmberError):
    """A task or actor method raised; ``get`` re-raises it.

    The instance raised by ``get`` is also an instance of the user's exception class,
    so ``except ValueError:`` keeps working. The original exception is ``__cause__``
    and ``cause``; the remote traceback is part of the message.
    """

    def __init__(self, function_name: str, traceback_str: str, cause: BaseException | None,
                 pid: int = 0) -> None:
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        # Not super(): in the class that also derives from the user's exception
        # (as_instanceof_cause) super() is the user's __init__, with its own signature.
        Exception.__init__(self, function_name, traceback_str, cause, pid)

    def __str__(self) -> str:
        return (f"task `{self.function_name}` (pid={self.pid}) raised "
                f"{type(self.cause).__name__ if self.cause is not None else 'an error'}:\n"
                f"{self.traceback_str.rstrip()}")

    def __reduce__(self) -> Any:
        return (TaskError, (self.function_name, self.traceback_str, self.cause, self.pid))

    def as_instanceof_cause(self) -> "TaskError":
        """This error re-typed so it is also an instance of the user's exception class.

        Falls back to the plain TaskError when the user's class cannot be mixed in
        (e.g. an extension type with an incompatible layout).
        """
        cause = self.cause
        if not isinstance(cause, Exception) or isinstance(cause, EmberError):
            return self
        try:
            dual = _dual_class(type(cause))
            err = dual.__new__(dual)
        except TypeError:
            return self
        TaskError.__init__(err, self.function_name, self.traceback_str, cause, self.pid)
        err.__dict__.update(getattr(cause, "__dict__", {}))
        err.__cause__ = cause
        return err


_dual_classes: dict[type, type] = {}


def _dual_class(cause_cls: type) -> type:
    dual = _dual_classes.get(cause_cls)
    if dual is None:
        def __reduce__(self: TaskError) -> Any:
            return (TaskError, (self.function_name, self.traceback_str, self.cause, self.pid))

        dual = type(f"TaskError({cause_cls.__name__})", (TaskError, cause_cls),
                    {"__str__": TaskError.__str__, "__reduce__": __reduce__,
                     "__init__": TaskError.__init__, "__module__": __name__})
        _dual_classes[cause_cls] = dual
    return dual


class TaskCancelledError(EmberError):
    """The task was cancelled with ``ember.cancel`` before it produced a result."""

    def __init__(self, task_name: str = "") -> None:
        self.task_name = task_name
        super().__init__(task_name)

    def __str__(self) -> str:
        return f"task `{self.task_name}` was cancelled with ember.cancel()"


class WorkerCrashedError(EmberError):
    """The worker process running a task died (killed, segfault, ``os._exit``)."""

    def __init__(self, task_name: str, exit_detail: str, attempts: int = 1) -> None:
        self.task_name = task_name
        self.exit_detail = exit_detail
        self.attempts = attempts
        super().__init__(task_name, exit_detail, attempts)

    def __str__(self) -> str:
        return (f"the worker running task `{self.task_name}` died ({self.exit_detail}) after "
                f"{self.attempts} attempt(s). If the crash is transient, raise max_retries on "
                f"`{self.task_name}`; if it runs out of memory, request memory= or run fewer at once.")


class WorkerStartError(EmberError):
    """Worker processes for a job exit before they can take work (a broken import, a bad
    ``sys.path`` or working directory, a crashing ``sitecustomize``): the calls waiting
    for them fail with this instead of waiting for a worker that never comes."""

    def __init__(self, failures: int, exit_detail: str, log_tail: str) -> None:
        self.failures = failures
        self.exit_detail = exit_detail
        self.log_tail = log_tail
        super().__init__(failures, exit_detail, log_tail)

    def __str__(self) -> str:
        return (f"{self.failures} worker processes in a row exited before registering "
                f"({self.exit_detail}). The last one wrote:\n{self.log_tail}\n"
                "Fix what it reports (often an import that fails in a fresh process, or the "
                "job's working_dir/py_modules), then call again.")


class ActorDiedError(EmberError):
    """The actor is dead: killed, its process died, or its owner went away."""

    def __init__(self, actor_name: str, cause: str) -> None:
        self.actor_name = actor_name
        self.cause = cause
        super().__init__(actor_name, cause)

    def __str__(self) -> str:
        return (f"actor `{self.actor_name}` is dead: {self.cause}. Create a new actor, or set "
                f"max_restarts (and max_task_retries) so ember restarts it after a crash.")


class ActorUnavailableError(ActorDiedError):
    """The actor restarted while a call was running and the call has no retries left.

    The actor is alive again (a new incarnation), so the call may be sent again; whether
    it ran on the old one is unknown. An ``ActorDiedError`` too (as in Ray), so code that
    catches that keeps working.
    """

    def __str__(self) -> str:
        return (f"actor `{self.actor_name}` is unavailable: {self.cause}. It restarted and can be "
                "called again; set max_task_retries so ember replays such calls itself.")


class PendingCallsLimitExceededError(EmberError):
    """More calls to an actor are waiting than its ``max_pending_calls`` allows."""

    def __init__(self, actor_name: str, limit: int) -> None:
        self.actor_name = actor_name
        self.limit = limit
        super().__init__(actor_name, limit)

    def __str__(self) -> str:
        return (f"actor `{self.actor_name}` already has {self.limit} calls from this process waiting "
                f"(max_pending_calls={self.limit}). Wait for some results (ember.get / ember.wait) "
                "before calling again, or create the actor with a larger max_pending_calls.")


class InvalidOptionError(EmberError, ValueError):
    """An option name or value is not valid, or not supported; the message names it and the
    fix (also a ``ValueError``)."""


class ObjectLostError(EmberError):
    """Every copy of an object is gone and it cannot be rebuilt."""

    def __init__(self, object_hex: str, detail: str = "") -> None:
        self.object_hex = object_hex
        self.detail = detail
        super().__init__(object_hex, detail)

    def __str__(self) -> str:
        return (f"object {self.object_hex[:12]}… is lost{': ' + self.detail if self.detail else ''}. "
                "Set max_retries>0 on the task that created it, or keep a copy with ember.put().")


class OwnerDiedError(ObjectLostError):
    """The process that owned an object died, so the object can no longer be reached."""

    def __str__(self) -> str:
        return (f"object {self.object_hex[:12]}… is unreachable because its owner died"
                f"{': ' + self.detail if self.detail else ''}. Keep refs in a process that outlives "
                "their consumers (e.g. the driver) or use a detached actor.")


class ObjectStoreFullError(EmberError):
    """The object does not fit in the node's store even after spilling what can be spilled."""

    def __init__(self, size_bytes: int, used_bytes: int, capacity_bytes: int,
                 pinned_bytes: int | None = None, spill_used_bytes: int | None = None,
                 spill_capacity_bytes: int | None = None, spill_full: bool = False) -> None:
        self.size_bytes = size_bytes
        self.used_bytes = used_bytes
        self.capacity_bytes = capacity_bytes
        #: Bytes of the store mapped by readers (numpy views from ``get``): not reusable yet.
        self.pinned_bytes = pinned_bytes
        self.spill_used_bytes = spill_used_bytes
        self.spill_capacity_bytes = spill_capacity_bytes
        #: The spill file had no room left (EMBER_MAX_SPILL_BYTES bounds it).
        self.spill_full = spill_full
        super().__init__(size_bytes, used_bytes, capacity_bytes, pinned_bytes, spill_used_bytes,
                         spill_capacity_bytes, spill_full)

    def __str__(self) -> str:
        mb = 1 << 20
        text = (f"cannot store an object of {self.size_bytes / mb:.1f} MiB: the object store holds "
                f"{self.used_bytes / mb:.1f} of {self.capacity_bytes / mb:.1f} MiB")
        if self.pinned_bytes:
            text += (f", {self.pinned_bytes / mb:.1f} MiB of it mapped by readers (values from "
                     "ember.get that are still alive)")
        if self.spill_full and self.spill_capacity_bytes is not None:
            text += (f"; the spill file is full ({self.spill_used_bytes / mb:.1f} of "
                     f"{self.spill_capacity_bytes / mb:.1f} MiB; raise EMBER_MAX_SPILL_BYTES)")
        return text + (". Drop refs and values you no longer need, or start ember with a larger "
                       "object_store_memory=.")


class GetTimeoutError(EmberError, TimeoutError):
    """``get`` waited longer than its ``timeout``."""


class NotInitializedError(EmberError):
    """A ref or actor handle from an ember session that was shut down was used: its
    objects and actors are gone with that session."""


class SerializationError(EmberError, TypeError):
    """A value could not be pickled (or unpickled); the message names which one."""


class OutOfMemoryError(EmberError):
    """The memory monitor stopped a task's worker before the kernel's OOM killer did.

    Raised by ``get`` when the task had no retries left; with retries left the task
    simply runs again. ``used_bytes``/``total_bytes`` are the node's memory figures at
    the kill and ``threshold`` the fraction they were over.
    """

    def __init__(self, task_name: str, used_bytes: int, total_bytes: int, threshold: float = 0.0,
                 pid: int = 0, attempts: int = 1) -> None:
        self.task_name = task_name
        self.used_bytes = used_bytes
        self.total_bytes = total_bytes
        self.threshold = threshold
        self.pid = pid
        self.attempts = attempts
        super().__init__(task_name, used_bytes, total_bytes, threshold, pid, attempts)

    def __str__(self) -> str:
        gb = 1 << 30
        over = f", over the memory monitor's threshold of {self.threshold:.0%}" if self.threshold else ""
        pid = f" (pid {self.pid})" if self.pid else ""
        return (f"task `{self.task_name}` was stopped: the memory monitor killed its worker{pid} "
                f"after {self.attempts} attempt(s) because the node's memory use was "
                f"{self.used_bytes / gb:.2f} of {self.total_bytes / gb:.2f} GiB{over}. Run fewer "
                f"tasks at once, or request memory= (e.g. `{self.task_name}.options(memory=2 * 1024**3)`) "
                "so the scheduler packs fewer per node, or raise max_retries to run it again. The "
                "threshold is EMBER_MEMORY_USAGE_THRESHOLD (or init(_system_config="
                "{'memory_usage_threshold': ...})).")


class RuntimeEnvSetupError(EmberError):
    """A runtime_env could not be set up: a pip install failed, or a working_dir cannot be
    shipped. ``key`` names the runtime_env key, ``output`` holds pip's output when pip failed."""

    def __init__(self, key: str, detail: str, fix: str = "", output: str = "") -> None:
        self.key = key
        self.detail = detail
        self.fix = fix
        self.output = output
        super().__init__(key, detail, fix, output)

    def __str__(self) -> str:
        text = f"runtime_env[{self.key!r}] could not be set up: {self.detail}."
        if self.fix:
            text += f" {self.fix}."
        if self.output:
            text += f"\n--- pip's output ---\n{self.output.rstrip()}"
        return text
#: How to get the right cluster token, said by every error about a refused token.
_HOW_TO_GET_THE_TOKEN = (
    "Use the token the head was started with: the secret given to `ember start --head` "
    "(its $EMBER_TOKEN or --token-file), or the file <session>/token on the head's machine, "
    "whose path `ember start --head` prints. Pass it with EMBER_TOKEN=<token>, `--token-file "
    "PATH` (ember start) or ember.init(address, token_file=PATH)")


class AuthenticationError(EmberError, ConnectionError):
    """A node refused this process's cluster token.

    ``token_source`` says where the token came from (``$EMBER_TOKEN``, ``--token-file
    PATH``, ``token_file=PATH`` or the session file); the node itself answers every wrong
    token with the same fixed refusal, so nothing about the right one is revealed. Also a
    ``ConnectionError``: code that treats an unreachable node as one keeps working.
    """

    def __init__(self, address: str, token_source: str | None = None) -> None:
        self.address = address
        self.token_source = token_source
        super().__init__(address, token_source)

    def __str__(self) -> str:
        source = f" (from {self.token_source})" if self.token_source else ""
        return (f"the ember node at {self.address} refused this process's cluster token{source}: "
                f"it belongs to another cluster, or is mistyped. {_HOW_TO_GET_THE_TOKEN}.")


class VersionMismatchError(EmberError, ConnectionError):
    """This process and the node it connects to run different ember versions, or different
    Python minor versions (pickles of functions do not cross those); refused before any
    pickle crossed the connection."""

    def __init__(self, address: str, what: str, here: str, there: str) -> None:
        self.address = address
        #: "ember" or "Python".
        self.what = what
        self.here = here
        self.there = there
        super().__init__(address, what, here, there)

    def __str__(self) -> str:
        return (f"this process runs {self.what} {self.here} but the ember node at {self.address} "
                f"runs {self.what} {self.there}: every process of a cluster needs the same ember "
                f"version and the same Python minor version. Install {self.what} {self.there} here "
                f"(or run the cluster with {self.what} {self.here}).")


class ClusterConnectionError(EmberError, ConnectionError):
    """No ember node could be reached at an address: nothing listens there, it does not
    answer within the connect timeout, or what answers is not ember."""

    def __init__(self, address: str, problem: str, fix: str) -> None:
        self.address = address
        self.problem = problem
        self.fix = fix
        super().__init__(address, problem, fix)

    def __str__(self) -> str:
        return f"cannot connect to an ember node at {self.address}: {self.problem}. {self.fix}"


# Ray's names, so `except ray.exceptions.RayTaskError` ports with the import.
RaySystemError = EmberSystemError
RayTaskError = TaskError
RayActorError = ActorDiedError
PendingCallsLimitExceeded = PendingCallsLimitExceededError


class StateApiError(EmberError):
    """The state API (``ember.util.state``, ``ember list/get/summary/logs/timeline``) could
    not answer: no cluster to ask, a node that did not answer in time. Ray's name for it
    is ``RayStateApiException`` (in ``ember.util.state``)."""


class InvalidStateQueryError(StateApiError, ValueError):
    """A malformed state query: an unknown kind or column, a filter that is not a
    (column, "=" | "!=", value) triple, a task state that does not exist, a non-hex id, a
    limit out of range. Nothing was sent; the message says what is allowed."""

    def __init__(self, what: str, problem: str, fix: str) -> None:
        self.what, self.problem, self.fix = what, problem, fix
        Exception.__init__(self, what, problem, fix)

    def __str__(self) -> str:
        return f"{self.what} {self.problem}: {self.fix}"


class StateNotFoundError(StateApiError, LookupError):
    """Nothing of that id (or no such log file) exists where the state API looked, e.g.
    ``ember get actors ID`` or ``ember logs --task-id ID`` for an id the cluster never saw."""

    def __init__(self, what: str, where: str, fix: str) -> None:
        self.what, self.where, self.fix = what, where, fix
        Exception.__init__(self, what, where, fix)

    def __str__(self) -> str:
        return f"no {self.what} in {self.where}: {self.fix}"
