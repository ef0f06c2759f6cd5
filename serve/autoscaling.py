"""Autoscaling decisions: a pure function of the config, the load and the time.

The controller feeds it the total ongoing requests it measured on the deployment's
replicas; it answers how many replicas to run. A change in one direction has to be
asked for continuously for ``upscale_delay_s`` / ``downscale_delay_s`` before it is
made, so a short burst or lull does not churn replicas.
"""

from __future__ import annotations

import dataclasses
import math

from .config import AutoscalingConfig


@dataclasses.dataclass
class AutoscalingState:
    """What the policy remembers between decisions."""
    #: when the current run of "want more" / "want fewer" decisions started (None: no run)
    upscale_since_s: float | None = None
    downscale_since_s: float | None = None


def desired_replicas(config: AutoscalingConfig, current: int, total_ongoing: float,
                     state: AutoscalingState, now_s: float) -> int:
    """How many replicas to run now.

    Args:
        config: the deployment's bounds and delays.
        current: replicas running or starting.
        total_ongoing: requests running or queued on the deployment's replicas.
        state: updated in place.
        now_s: a monotonic time.

    Example:
        >>> cfg = AutoscalingConfig(min_replicas=1, max_replicas=4, target_ongoing_requests=2,
        ...                         upscale_delay_s=0, downscale_delay_s=0)
        >>> desired_replicas(cfg, 1, 7, AutoscalingState(), 0.0)
        4
    """
    wanted = math.ceil(total_ongoing / config.target_ongoing_requests) if total_ongoing > 0 else 0
    wanted = max(config.min_replicas, min(config.max_replicas, wanted))
    current_bounded = max(config.min_replicas, min(config.max_replicas, current))
    if current_bounded != current:
        state.upscale_since_s = state.downscale_since_s = None
        return current_bounded
    if wanted == current:
        state.upscale_since_s = state.downscale_since_s = None
        return current
    up = wanted > current
    # A wish counts from when it started; a wish the other way restarts the clock.
    since = state.upscale_since_s if up else state.downscale_since_s
    if since is None:
        since = now_s
    delay_s = config.upscale_delay_s if up else config.downscale_delay_s
    done = now_s - since >= delay_s
    state.upscale_since_s = None if done or not up else since
    state.downscale_since_s = None if done or up else since
    return wanted if done else current
