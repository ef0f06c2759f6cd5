"""Search algorithms for ember.tune (Ray's ``ray.tune.search``)."""

from .basic_variant import BasicVariantGenerator
from .concurrency_limiter import ConcurrencyLimiter
from .repeater import Repeater
from .searcher import Searcher

__all__ = ["BasicVariantGenerator", "ConcurrencyLimiter", "Repeater", "Searcher"]
