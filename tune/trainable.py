"""``Trainable``: the class API of a Tune trial (Ray's ``ray.tune.Trainable``).

A subclass writes ``setup``, ``step`` and, to be checkpointable, ``save_checkpoint`` /
``load_checkpoint``. The base class does the bookkeeping every result carries
(``training_iteration``, times, ids), so the same object can be driven by ember.tune's
trial runner, or by hand (``t.train()`` in a loop) as RLlib users drive an ``Algorithm``.
"""

from __future__ import annotations

import copy
import os
import socket
import tempfile
import time
import uuid
from typing import Any

import cloudpickle

from ember.train import Checkpoint

#: A dict returned by ``save_checkpoint`` is stored under this name in the directory.
DICT_CHECKPOINT_FILE = "dict_checkpoint.pkl"


class Trainable:
    """Base class for class trainables: override ``setup``, ``step`` and the checkpoint pair.

    Example:
        >>> class Quadratic(tune.Trainable):
        ...     def setup(self, config):
        ...         self.x = config["x"]
        ...     def step(self):
        ...         self.x *= 0.9
        ...         return {"loss": self.x ** 2}
    """

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self.trial_id: str = kwargs.get("trial_id") or uuid.uuid4().hex[:8]
        self.trial_name: str = kwargs.get("trial_name") or f"{type(self).__name__}_{self.trial_id}"
        self.logdir: str | None = kwargs.get("logdir")
        self._iteration = 0
        self._time_total_s = 0.0
        self._restored_at_iteration = 0
        self._time_since_restore_s = 0.0
        self.setup(copy.deepcopy(self.config))

    # -- to override -------------------------------------------------------------------
    def setup(self, config: dict[str, Any]) -> None:
        """Build state from ``config`` (called once, from ``__init__``)."""

    def step(self) -> dict[str, Any]:
        """One iteration of training; return the iteration's metrics."""
        raise NotImplementedError(f"{type(self).__name__} must define step() and return a "
                                  "dict of metrics")

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any] | None:
        """Write state into ``checkpoint_dir`` (or return a picklable dict); see ``save``."""
        raise NotImplementedError(f"{type(self).__name__} cannot be checkpointed: define "
                                  "save_checkpoint() and load_checkpoint()")

    def load_checkpoint(self, checkpoint: dict[str, Any] | str) -> None:
        """Restore state from what ``save_checkpoint`` wrote (a dict, or the directory)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be restored: define "
                                  "load_checkpoint()")

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Adopt ``new_config`` in place (for ``reuse_actors``); True if that worked."""
        return False

    def cleanup(self) -> None:
        """Release resources (called by ``stop``)."""

    @classmethod
    def default_resource_request(cls, config: dict[str, Any]) -> Any:
        """Resources a trial of this class needs (None: the Tuner's default)."""
        return None

    # -- driven by Tune, or by hand ------------------------------------------------------
    @property
    def iteration(self) -> int:
        return self._iteration

    training_iteration = iteration

    def train(self) -> dict[str, Any]:
        """Run one ``step`` and return its metrics with Tune's bookkeeping fields added."""
        start = time.monotonic()
        result = self.step()
        if not isinstance(result, dict):
            raise TypeError(f"{type(self).__name__}.step() returned {type(result).__name__}; "
                            "it must return a dict of metrics")
        elapsed = time.monotonic() - start
        self._iteration += 1
        self._time_total_s += elapsed
        self._time_since_restore_s += elapsed
        result = dict(result)
        result.setdefault("done", False)
        result.update(
            training_iteration=self._iteration,
            iterations_since_restore=self._iteration - self._restored_at_iteration,
            time_this_iter_s=elapsed,
            time_total_s=self._time_total_s,
            time_since_restore=self._time_since_restore_s,
            timestamp=int(time.time()),
            trial_id=self.trial_id,
            pid=os.getpid(),
            hostname=socket.gethostname(),
        )
        return result

    def save(self, checkpoint_dir: str | None = None) -> Checkpoint:
        """Checkpoint into ``checkpoint_dir`` (a new temporary directory by default)."""
        target = checkpoint_dir or tempfile.mkdtemp(prefix="ember_trainable_")
        os.makedirs(target, exist_ok=True)
        state = self.save_checkpoint(target)
        if isinstance(state, dict):
            with open(os.path.join(target, DICT_CHECKPOINT_FILE), "wb") as f:
                cloudpickle.dump(state, f)
        elif state is not None and not (isinstance(state, str) and os.path.isdir(state)):
            raise TypeError(f"{type(self).__name__}.save_checkpoint() returned "
                            f"{type(state).__name__}; return None (files written into the "
                            "directory) or a dict")
        checkpoint = Checkpoint.from_directory(target)
        checkpoint.update_metadata({"training_iteration": self._iteration,
                                    "time_total_s": self._time_total_s})
        return checkpoint

    def restore(self, checkpoint: Checkpoint | str) -> None:
        """Load state saved by ``save`` (a Checkpoint or its directory)."""
        if not isinstance(checkpoint, Checkpoint):
            checkpoint = Checkpoint.from_directory(checkpoint)
        metadata = checkpoint.get_metadata()
        with checkpoint.as_directory() as directory:
            dict_file = os.path.join(directory, DICT_CHECKPOINT_FILE)
            if os.path.exists(dict_file):
                with open(dict_file, "rb") as f:
                    self.load_checkpoint(cloudpickle.load(f))
            else:
                self.load_checkpoint(directory)
        self._iteration = int(metadata.get("training_iteration", self._iteration))
        self._time_total_s = float(metadata.get("time_total_s", self._time_total_s))
        self._restored_at_iteration = self._iteration
        self._time_since_restore_s = 0.0

    def reset(self, new_config: dict[str, Any]) -> bool:
        """Try to reuse this object for a new trial config (``reuse_actors``)."""
        if not self.reset_config(copy.deepcopy(new_config)):
            return False
        self.config = dict(new_config)
        self._iteration = self._restored_at_iteration = 0
        self._time_total_s = self._time_since_restore_s = 0.0
        return True

    def stop(self) -> None:
        """End the trainable: calls ``cleanup``."""
        self.cleanup()
