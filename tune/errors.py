"""The errors ember.tune raises (Ray Tune's ``TuneError`` at the root)."""

from __future__ import annotations

from ember.exceptions import EmberError

__all__ = ["TuneConfigError", "TuneError", "TuneRestoreError", "TrialNeverReportedError"]


class TuneError(EmberError, RuntimeError):
    """Something went wrong in a sweep (Ray's ``ray.tune.TuneError``)."""


class TuneConfigError(TuneError, ValueError):
    """A sweep's configuration that cannot work; the message names the value and the fix.

    Also a ``ValueError``, so code written for Ray's ``ValueError`` checks keeps working.
    """


class TuneRestoreError(TuneError, ValueError):
    """``Tuner.restore`` was pointed at a folder that holds no experiment."""


class TrialNeverReportedError(TuneError):
    """A trainable finished without calling ``tune.report`` once."""
