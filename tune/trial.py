"""``Trial``: one configuration being evaluated, and the state the controller keeps for it.

A trial is plain data: the controller changes its status, schedulers read its results
and (PBT) rewrite its config and checkpoint. ``to_state``/``from_state`` are what the
experiment's state file holds, so a restored sweep rebuilds the same trials.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal

from ember.train import Checkpoint

TrialStatus = Literal["PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"]
FINISHED_STATUSES = ("TERMINATED", "ERROR")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.=,-]+")


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a/b": 1}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def lookup(result: dict[str, Any], key: str) -> Any:
    """``result[key]``, where ``"a/b"`` also finds ``result["a"]["b"]`` (Ray's metric paths)."""
    if key in result:
        return result[key]
    value: Any = result
    for part in key.split("/"):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


@dataclasses.dataclass(eq=False)
class Trial:
    """One configuration of a sweep.

    Attributes:
        status: where it is in its life; ``TERMINATED`` and ``ERROR`` are final.
        checkpoint: the latest persisted checkpoint, where a restart resumes.
        restore_from: a checkpoint to start from next time (PBT's exploit, restore).
        lineage: PBT's record of each exploit (whose checkpoint, old and new config).
    """

    trial_id: str
    config: dict[str, Any]
    trainable_name: str
    index: int = 0
    status: TrialStatus = "PENDING"
    dirname: str = ""
    last_result: dict[str, Any] = dataclasses.field(default_factory=dict)
    metric_history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    checkpoint: Checkpoint | None = None
    restore_from: Checkpoint | None = None
    error: BaseException | None = None
    error_text: str | None = None
    num_failures: int = 0
    resources: Any = None
    experiment_tag: str = ""
    lineage: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: A stop or pause to carry out at the next result (or the one just decided).
    pending_decision: str | None = None
    #: True once STOP/PAUSE was sent: a result after it is only a final checkpoint.
    decided: bool = False

    def __post_init__(self) -> None:
        if not self.dirname:
            self.dirname = self.make_dirname()

    def make_dirname(self) -> str:
        params = ",".join(f"{k.rsplit('/', 1)[-1]}={_short(v)}"
                          for k, v in flatten(self.config).items())
        name = f"{self.trainable_name}_{self.trial_id}"
        if params:
            name += "_" + params
        return _UNSAFE.sub("_", name)[:120]

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def iteration(self) -> int:
        return int(self.last_result.get("training_iteration", 0) or 0)

    def __str__(self) -> str:
        return f"{self.trainable_name}_{self.trial_id}"

    def __repr__(self) -> str:
        return f"Trial({self}, status={self.status})"

    def to_state(self) -> dict[str, Any]:
        """JSON-friendly state for the experiment's state file."""
        return {
            "trial_id": self.trial_id, "config": self.config, "index": self.index,
            "trainable_name": self.trainable_name, "status": self.status,
            "dirname": self.dirname, "last_result": self.last_result,
            "checkpoint": self.checkpoint.path if self.checkpoint else None,
            "restore_from": self.restore_from.path if self.restore_from else None,
            "error_text": self.error_text, "num_failures": self.num_failures,
            "experiment_tag": self.experiment_tag, "lineage": self.lineage,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Trial:
        trial = cls(trial_id=state["trial_id"], config=state["config"],
                    trainable_name=state["trainable_name"], index=state.get("index", 0),
                    status=state["status"], dirname=state["dirname"],
                    last_result=state.get("last_result") or {},
                    error_text=state.get("error_text"),
                    num_failures=state.get("num_failures", 0),
                    experiment_tag=state.get("experiment_tag", ""),
                    lineage=state.get("lineage") or [])
        if state.get("checkpoint"):
            trial.checkpoint = Checkpoint(state["checkpoint"])
        if state.get("restore_from"):
            trial.restore_from = Checkpoint(state["restore_from"])
        return trial


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 16 else text[:16]
