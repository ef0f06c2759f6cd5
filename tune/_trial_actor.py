"""The process a trial runs in: a reusable actor that drives one trainable at a time.

    driver (TuneController)                       TrialActor (one per concurrent trial)
      run(spec) ----------------------------->    starts the trial's thread; returns its
                                                  first event (a result, done, or error)
      resume("CONTINUE" | "STOP" | "PAUSE") -->   unblocks the waiting report(); returns
                                                  the next event
      stop() --------------------------------->   asks a trial that never reports to end

The user's code runs on a thread of its own, so the actor can answer while it computes.
``report()`` hands its result over and *waits* for the controller's decision on it, as
Ray's function trainables do: schedulers decide on every result before the trial goes on,
so a trial ASHA stops runs no extra iteration, and a trial is exactly one actor call per
result. The actor outlives its trials (``reuse_actors``): a new trial is one call, not a
process start.
"""

from __future__ import annotations

import collections
import copy
import inspect
import os
import socket
import threading
import time
import traceback
from typing import Any

import cloudpickle

from ember.train import Checkpoint
from ember.train._session import TrainContext, session_scope
from ember.train._storage import StorageContext

from .errors import TuneError
from .trainable import Trainable

#: An event: (kind, payload). Kinds: "result" ((metrics, checkpoint path or None, whether
#: the trial waits for a decision)), "done" (None), "error" (error info dict).
Event = tuple[str, Any]


class _StopTrial(BaseException):
    """Raised inside ``report()`` to end a trial the controller stopped.

    A ``BaseException`` so that the user's ``except Exception`` cannot swallow it.
    """


class _TrialSession:
    """The session ``tune.report`` / ``get_checkpoint`` / ``get_context`` use in a trial."""

    def __init__(self, runner: "_TrialRun", context: TrainContext,
                 checkpoint: Checkpoint | None) -> None:
        self.context = context
        self._runner = runner
        self._checkpoint = checkpoint

    def report(self, metrics: dict[str, Any], checkpoint: Checkpoint | None) -> None:
        self._runner.report(metrics, checkpoint)

    def get_checkpoint(self) -> Checkpoint | None:
        return self._checkpoint

    def get_dataset_shard(self, name: str) -> Any:
        raise TuneError(f"get_dataset_shard({name!r}) inside a Tune trial: a function "
                        "trainable has no datasets; pass data with tune.with_parameters, or "
                        "run an ember.train Trainer inside the trial")


def _error_info(exc: BaseException) -> dict[str, Any]:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        blob = cloudpickle.dumps(exc)
    except Exception:  # noqa: BLE001 - an unpicklable exception still reports its text
        blob = None
    return {"type": type(exc).__name__, "message": str(exc), "traceback": text, "pickled": blob}


class _TrialRun:
    """One trial's thread and the hand-over of its results to the controller."""

    def __init__(self, spec: dict[str, Any], trainable: Any) -> None:
        self.spec = spec
        self._trainable = trainable
        self._storage: StorageContext | None = None
        self._cond = threading.Condition()
        self._events: collections.deque[Event] = collections.deque()
        self._decision: str | None = None
        self._waiting_for_decision = False
        self.finished = False
        self._iteration = int(spec.get("start_iteration", 0))
        self._time_total_s = float(spec.get("start_time_total_s", 0.0))
        self._checkpoint_index = int(spec.get("checkpoint_index", 0))
        self._started = time.monotonic()
        self._last = self._started
        self._num_reports = 0
        self.thread = threading.Thread(target=self._main, name=f"trial-{spec['trial_id']}",
                                       daemon=True)

    # -- the trial's side -----------------------------------------------------------------
    def _persist(self, checkpoint: Checkpoint) -> str | None:
        if self._storage is None:
            # The trial's own folder: one StorageContext per trial, made on its first
            # checkpoint, because StorageContext probes writability with a fixed file
            # name that two processes must not share (trivial trials never pay for it).
            self._storage = StorageContext(self.spec["run_uri"], self.spec["dirname"])
        persisted = self._storage.persist_checkpoint(checkpoint, self._checkpoint_index)
        self._checkpoint_index += 1
        persisted.update_metadata({"training_iteration": self._iteration,
                                   "time_total_s": self._time_total_s})
        return persisted.path

    def report(self, metrics: dict[str, Any], checkpoint: Checkpoint | None,
               final: bool = False, enrich: bool = True) -> None:
        now = time.monotonic()
        result = dict(metrics)
        if enrich:
            self._iteration += 1
            elapsed = now - self._last
            self._time_total_s += elapsed
            result.setdefault("done", False)
            result.update(training_iteration=self._iteration,
                          iterations_since_restore=self._num_reports + 1,
                          time_this_iter_s=elapsed, time_total_s=self._time_total_s,
                          time_since_restore=now - self._started, timestamp=int(time.time()),
                          trial_id=self.spec["trial_id"], pid=os.getpid(),
                          hostname=socket.gethostname())
        else:
            self._iteration = int(result.get("training_iteration", self._iteration))
            self._time_total_s = float(result.get("time_total_s", self._time_total_s))
        self._num_reports += 1
        path = self._persist(checkpoint) if checkpoint is not None else None
        with self._cond:
            self._events.append(("result", (result, path, not final)))
            self._cond.notify_all()
            if final:
                return
            self._waiting_for_decision = True
            while self._decision is None:
                self._cond.wait()
            decision, self._decision = self._decision, None
            self._waiting_for_decision = False
        self._last = time.monotonic()
        if decision != "CONTINUE":
            raise _StopTrial(decision)

    def _main(self) -> None:
        last: Event = ("done", None)
        try:
            if self.spec["kind"] == "class":
                self._run_class()
            else:
                self._run_function()
        except _StopTrial:
            pass
        except BaseException as exc:  # noqa: BLE001 - every failure is the trial's result
            last = ("error", _error_info(exc))
        with self._cond:
            # The last event and ``finished`` change together: the moment the controller
            # sees this trial end it may start the next trial on this actor, and run()
            # must then find this one finished.
            self.finished = True
            self._events.append(last)
            self._cond.notify_all()

    def _context(self) -> TrainContext:
        spec = self.spec
        return TrainContext(experiment_name=spec["experiment_name"],
                            trial_name=spec["trial_name"], trial_id=spec["trial_id"],
                            trial_dir=spec.get("trial_dir"), trial_resources=spec.get("resources"),
                            storage_path=spec.get("storage_path"))

    def _run_function(self) -> None:
        restore = Checkpoint(self.spec["restore_path"]) if self.spec.get("restore_path") else None
        session = _TrialSession(self, self._context(), restore)
        with session_scope(session):
            returned = self._trainable(copy.deepcopy(self.spec["config"]))
            if isinstance(returned, dict):
                self.report(returned, None, final=True)

    def _run_class(self) -> None:
        spec = self.spec
        trainable: Trainable = self._trainable
        if spec.get("restore_path"):
            trainable.restore(spec["restore_path"])
        frequency = int(spec.get("checkpoint_frequency") or 0)
        session = _TrialSession(self, self._context(), None)
        with session_scope(session):
            try:
                while True:
                    result = trainable.train()
                    checkpoint = None
                    if frequency and result["training_iteration"] % frequency == 0:
                        checkpoint = trainable.save()
                    try:
                        self.report(result, checkpoint, final=bool(result.get("done")),
                                    enrich=False)
                    except _StopTrial as stop:
                        if str(stop) == "PAUSE" or spec.get("checkpoint_at_end"):
                            self.report(result, trainable.save(), final=True, enrich=False)
                        raise
                    if result.get("done"):
                        if spec.get("checkpoint_at_end"):
                            self.report(result, trainable.save(), final=True, enrich=False)
                        return
            finally:
                trainable.stop()

    # -- the controller's side ------------------------------------------------------------
    def next_events(self) -> list[Event]:
        """Block until at least one event is there; return all that are."""
        with self._cond:
            while not self._events:
                self._cond.wait()
            events = list(self._events)
            self._events.clear()
            return events

    def decide(self, decision: str) -> None:
        with self._cond:
            self._decision = decision
            self._cond.notify_all()


class TrialActor:
    """Runs trials one after another in one warm process (see the module docstring)."""

    def __init__(self) -> None:
        self._trainables: dict[str, Any] = {}
        self._run: _TrialRun | None = None
        #: Guards _run and _stopped: stop() may run on another thread before run() starts.
        self._lock = threading.Lock()
        self._stopped: set[str] = set()
        self._class_instance: Trainable | None = None

    def ping(self) -> int:
        return os.getpid()

    def _build_class(self, cls: type, spec: dict[str, Any]) -> Trainable:
        kwargs = {"trial_id": spec["trial_id"], "trial_name": spec["trial_name"],
                  "logdir": spec.get("trial_dir")}
        reused = self._class_instance
        if reused is not None and type(reused) is cls and spec.get("reuse_actors"):
            reused.trial_id, reused.trial_name = spec["trial_id"], spec["trial_name"]
            if reused.reset(spec["config"]):
                return reused
        if reused is not None:
            self._class_instance = None
        instance = cls(copy.deepcopy(spec["config"]), **kwargs)
        self._class_instance = instance
        return instance

    def run(self, spec: dict[str, Any], trainable: Any = None) -> list[Event]:
        """Start the trial ``spec``; return its first events.

        ``trainable`` comes with an actor's first trial of a sweep only; it travels as an
        ordinary argument so that object refs inside it (``with_parameters``) stay owned.
        """
        key = spec["trainable_key"]
        if trainable is not None:
            self._trainables[key] = trainable
        if key not in self._trainables:
            raise TuneError(f"trial actor has no trainable {key!r}; the controller must send "
                            "it with the first trial")
        trainable = self._trainables[key]
        if self._run is not None and not self._run.finished:
            raise TuneError("trial actor asked to run a trial while another still runs")
        try:
            if spec["kind"] == "class":
                trainable = self._build_class(trainable, spec)
        except BaseException as exc:  # noqa: BLE001 - a failing setup() is the trial's error
            return [("error", _error_info(exc))]
        with self._lock:
            if spec["trial_id"] in self._stopped:  # stopped before it could start
                self._stopped.discard(spec["trial_id"])
                return [("done", None)]
            self._run = run = _TrialRun(spec, trainable)
            run.thread.start()
        return run.next_events()

    def resume(self, decision: str) -> list[Event]:
        """Hand ``decision`` to the waiting report; return the trial's next events."""
        run = self._run
        if run is None:
            return [("done", None)]
        run.decide(decision)
        return run.next_events()

    def stop(self, trial_id: str, grace_s: float = 2.0) -> bool:
        """End trial ``trial_id``; False if its thread did not end within ``grace_s``."""
        with self._lock:
            run = self._run
            if run is None or run.spec["trial_id"] != trial_id:
                self._stopped.add(trial_id)  # run() has not started it yet
                return True
        if run.finished:
            return True
        run.decide("STOP")
        run.thread.join(grace_s)
        return not run.thread.is_alive()


def trainable_kind(trainable: Any) -> str:
    """"class" for a ``Trainable`` subclass, "function" for a function trainable."""
    if inspect.isclass(trainable) and issubclass(trainable, Trainable):
        return "class"
    return "function"
