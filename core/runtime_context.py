"""``ember.get_runtime_context()``: who and where the caller is."""

from __future__ import annotations

from typing import Any

import cloudpickle

from ._client import context
from ._client.context import TaskContext
from ._client.runtime import Runtime
from .actor import ActorHandle, _rebuild_handle


class RuntimeContext:
    """Ids of the current job, node, task and actor (Ray's RuntimeContext).

    A view of the runtime and of the task running in the calling thread, read when asked.
    """

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def _task(self) -> TaskContext | None:
        return context.current_task.get()

    def get_job_id(self) -> str:
        return self._rt.job_id.hex()

    def get_node_id(self) -> str:
        return self._rt.node_id.hex()

    def get_worker_id(self) -> str:
        return self._rt.worker_id.hex()

    def get_task_id(self) -> str | None:
        task = self._task()
        return task.task_id.hex() if task is not None and task.task_id else None

    def get_actor_id(self) -> str | None:
        task = self._task()
        return task.actor_id.hex() if task is not None and task.actor_id else None

    def get_task_name(self) -> str | None:
        task = self._task()
        return task.name if task is not None else None

    @property
    def namespace(self) -> str:
        return self._rt.namespace

    def get_placement_group_id(self) -> str | None:
        """Hex id of the placement group the current task or actor runs in, if any."""
        task = self._task()
        return task.placement_group[0] if task is not None and task.placement_group else None

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        """The accelerator ids given to the current task or actor, as strings by kind
        (``{"GPU": ["0"]}``); ``{"GPU": []}`` in the driver or without GPUs."""
        task = self._task()
        return {"GPU": [str(g) for g in (task.gpu_ids if task is not None else [])]}

    def get_assigned_resources(self) -> dict[str, float]:
        """What the current task or actor holds, by resource name (``{"CPU": 1.0}`` for a
        default task; ``{}`` for a default actor, which holds no CPU while it lives, and
        for the driver). Inside a placement group the names are the plain ones."""
        task = self._task()
        return dict(task.resources) if task is not None else {}

    def is_canceled(self) -> bool:
        """Whether ``ember.cancel`` was called on the running task or actor call.

        A sync or threaded actor's call is not interrupted by a cancel (the actor keeps
        its state): it can poll this and stop early.

        Raises:
            RuntimeError: called in the driver or in an async actor (whose calls are
                cancelled on their event loop instead).
        """
        task = self._task()
        if task is None or task.task_id is None:
            raise RuntimeError("is_canceled() works only inside a task or an actor method; the driver "
                               "and an actor's __init__ have nothing to cancel")
        if task.is_async:
            raise RuntimeError("is_canceled() is not available in an async actor: ember.cancel "
                               "cancels its call on the event loop (asyncio.CancelledError)")
        return task.cancelled

    @property
    def current_actor(self) -> ActorHandle:
        """A handle to the actor this method runs in (to pass to other tasks, say).

        Raises:
            RuntimeError: not called inside an actor.
        """
        spec = context.actor_spec
        task = self._task()
        if spec is None or task is None or task.actor_id != spec.actor_id:
            raise RuntimeError("current_actor is available only in an actor's methods; a task or the "
                               "driver has no actor of its own")
        options = cloudpickle.loads(spec.method_options) if spec.method_options else None
        return _rebuild_handle(spec.actor_id, spec.class_name, spec.methods, spec.is_async, options)

    def get_actor_name(self) -> str | None:
        """The name the current actor was registered under, if any."""
        spec = context.actor_spec
        return spec.name if spec is not None else None

    @property
    def should_capture_child_tasks_in_placement_group(self) -> bool:
        """Whether tasks and actors started here run in the current placement group."""
        task = self._task()
        return task is not None and task.captured_group() is not None

    @property
    def current_placement_group_id(self) -> str | None:
        return self.get_placement_group_id()

    def get(self) -> dict[str, Any]:
        """Job, node and namespace ids, plus the task's and actor's inside one (Ray's ``get``)."""
        out: dict[str, Any] = {"job_id": self.get_job_id(), "node_id": self.get_node_id(),
                               "namespace": self.namespace}
        if self.get_task_id() is not None:
            out["task_id"] = self.get_task_id()
        if self.get_actor_id() is not None:
            out["actor_id"] = self.get_actor_id()
        return out

    @property
    def job_id(self) -> str:
        return self.get_job_id()

    @property
    def node_id(self) -> str:
        return self.get_node_id()

    @property
    def worker_id(self) -> str:
        return self.get_worker_id()

    @property
    def task_id(self) -> str | None:
        return self.get_task_id()

    @property
    def actor_id(self) -> str | None:
        return self.get_actor_id()
