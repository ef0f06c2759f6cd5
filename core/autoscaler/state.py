"""The autoscaler's mailbox on the cluster: a small detached actor on the head.

``request_resources`` writes standing requests into it from any driver, the monitor
reads them each round and writes back its report, which ``ember status`` shows. Keeping
both in the cluster (rather than a file) means any driver on any node reaches them.
"""

from __future__ import annotations

from typing import Any

import ember

from .._types import ResourceShape

#: Name and namespace of the actor (the namespace keeps it out of users' namespaces).
STATE_ACTOR_NAME = "ember_autoscaler"
STATE_NAMESPACE = "_ember_autoscaler"


class AutoscalerState:
    """Standing resource requests in, the monitor's latest report out."""

    def __init__(self) -> None:
        self._requested: list[ResourceShape] = []
        self._report: dict[str, Any] = {}

    def request_resources(self, bundles: list[ResourceShape]) -> None:
        self._requested = [dict(b) for b in bundles]  # each call replaces the last (Ray's rule)

    def requested(self) -> list[ResourceShape]:
        return list(self._requested)

    def set_report(self, report: dict[str, Any]) -> None:
        self._report = report

    def report(self) -> dict[str, Any]:
        return self._report


def create_state_actor() -> Any:
    """The monitor's handle (created once per cluster; a restarted monitor finds it)."""
    cls = ember.remote(num_cpus=0, lifetime="detached", name=STATE_ACTOR_NAME,
                       namespace=STATE_NAMESPACE, get_if_exists=True)(AutoscalerState)
    return cls.remote()


def find_state_actor() -> Any | None:
    """The running autoscaler's mailbox, or None when no autoscaler runs."""
    try:
        return ember.get_actor(STATE_ACTOR_NAME, namespace=STATE_NAMESPACE)
    except ValueError:
        return None
