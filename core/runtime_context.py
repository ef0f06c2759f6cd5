"""``ember.get_runtime_context()``: who and where the caller is."""

from __future__ import annotations

from ._client import context
from ._client.context import TaskContext
from ._client.runtime import Runtime


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
        task = self._task()
        return {"GPU": [str(g) for g in (task.gpu_ids if task is not None else [])]}

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
