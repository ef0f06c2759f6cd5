"""Search-space primitives: ``uniform``, ``choice``, ``grid_search``, ... (Ray's ``tune.search.sample``).

A *domain* describes where one hyperparameter may lie and how to draw from it. Domains
are plain, picklable values placed anywhere inside a ``param_space`` dict (nested dicts
and lists included); a search algorithm walks the space, finds them, and replaces each by
a value. ``grid_search`` is not a domain but a marker dict ``{"grid_search": [...]}``, as
in Ray, because users write that dict by hand too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import TuneConfigError

__all__ = ["Categorical", "Domain", "Float", "Function", "Integer", "choice", "grid_search",
           "lograndint", "loguniform", "qlograndint", "qloguniform", "qrandint", "qrandn",
           "quniform", "randint", "randn", "sample_from", "uniform"]


class Domain:
    """Where one hyperparameter lies; ``sample(rng)`` draws one value."""

    def sample(self, rng: np.random.Generator, spec: Any = None) -> Any:
        raise NotImplementedError

    def is_grid(self) -> bool:
        return False

    @property
    def domain_str(self) -> str:
        return repr(self)


def _quantize(value: float, q: float | None) -> float:
    return value if q is None else float(np.round(value / q) * q)


class Float(Domain):
    """A real number in ``[lower, upper)``, drawn uniformly, log-uniformly or normally."""

    def __init__(self, lower: float, upper: float, sampler: str = "uniform",
                 q: float | None = None, base: float = 10.0, mean: float = 0.0,
                 sd: float = 1.0) -> None:
        self.lower, self.upper, self.sampler, self.q = lower, upper, sampler, q
        self.base, self.mean, self.sd = base, mean, sd

    def sample(self, rng: np.random.Generator, spec: Any = None) -> float:
        if self.sampler == "normal":
            value = float(rng.normal(self.mean, self.sd))
        elif self.sampler == "loguniform":
            log = math.log(self.base)
            value = float(self.base ** rng.uniform(math.log(self.lower) / log,
                                                   math.log(self.upper) / log))
        else:
            value = float(rng.uniform(self.lower, self.upper))
        value = _quantize(value, self.q)
        if self.sampler != "normal":
            value = min(max(value, self.lower), self.upper)
        return value

    def __repr__(self) -> str:
        if self.sampler == "normal":
            return f"randn(mean={self.mean}, sd={self.sd})"
        return f"{self.sampler}({self.lower}, {self.upper}{', q=' + str(self.q) if self.q else ''})"


class Integer(Domain):
    """An integer in ``[lower, upper)`` (Ray's convention: ``upper`` excluded)."""

    def __init__(self, lower: int, upper: int, sampler: str = "uniform", q: int | None = None,
                 base: float = 10.0) -> None:
        self.lower, self.upper, self.sampler, self.q, self.base = lower, upper, sampler, q, base

    def sample(self, rng: np.random.Generator, spec: Any = None) -> int:
        if self.sampler == "loguniform":
            log = math.log(self.base)
            value = int(self.base ** rng.uniform(math.log(self.lower) / log,
                                                 math.log(self.upper) / log))
        else:
            value = int(rng.integers(self.lower, self.upper))
        if self.q is not None:
            value = int(round(value / self.q) * self.q)
        return int(min(max(value, self.lower), self.upper - (0 if self.q else 1)))

    def __repr__(self) -> str:
        return f"randint({self.lower}, {self.upper}{', q=' + str(self.q) if self.q else ''})"


class Categorical(Domain):
    """One of ``categories``, each equally likely."""

    def __init__(self, categories: Sequence[Any]) -> None:
        self.categories = list(categories)

    def sample(self, rng: np.random.Generator, spec: Any = None) -> Any:
        return self.categories[int(rng.integers(len(self.categories)))]

    def __repr__(self) -> str:
        return f"choice({self.categories!r})"


class Function(Domain):
    """A value computed by ``func(spec)`` from the rest of the config (``sample_from``)."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    def sample(self, rng: np.random.Generator, spec: Any = None) -> Any:
        try:
            return self.func(spec)
        except TypeError:
            return self.func()

    def __repr__(self) -> str:
        return f"sample_from({getattr(self.func, '__name__', self.func)!r})"


def _check_bounds(name: str, lower: float, upper: float, positive: bool = False) -> None:
    for value in (lower, upper):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise TuneConfigError(f"tune.{name}({lower!r}, {upper!r}): bounds must be numbers")
    if not lower < upper:
        raise TuneConfigError(f"tune.{name}({lower!r}, {upper!r}): lower must be smaller than "
                              "upper")
    if positive and lower <= 0:
        raise TuneConfigError(f"tune.{name}({lower!r}, {upper!r}): a log scale needs "
                              "lower > 0")


def _check_q(name: str, q: float) -> None:
    if isinstance(q, bool) or not isinstance(q, (int, float)) or q <= 0:
        raise TuneConfigError(f"tune.{name}(..., q={q!r}): q must be a positive number")


def uniform(lower: float, upper: float) -> Float:
    """A float drawn uniformly from ``[lower, upper)``.

    Example:
        >>> param_space = {"dropout": tune.uniform(0.0, 0.5)}
    """
    _check_bounds("uniform", lower, upper)
    return Float(lower, upper)


def quniform(lower: float, upper: float, q: float) -> Float:
    """``uniform`` rounded to a multiple of ``q``."""
    _check_bounds("quniform", lower, upper)
    _check_q("quniform", q)
    return Float(lower, upper, q=q)


def loguniform(lower: float, upper: float, base: float = 10) -> Float:
    """A float whose logarithm is uniform in ``[log lower, log upper)``; both > 0."""
    _check_bounds("loguniform", lower, upper, positive=True)
    return Float(lower, upper, sampler="loguniform", base=base)


def qloguniform(lower: float, upper: float, q: float, base: float = 10) -> Float:
    """``loguniform`` rounded to a multiple of ``q``."""
    _check_bounds("qloguniform", lower, upper, positive=True)
    _check_q("qloguniform", q)
    return Float(lower, upper, sampler="loguniform", q=q, base=base)


def randn(mean: float = 0.0, sd: float = 1.0) -> Float:
    """A float from the normal distribution ``N(mean, sd)``."""
    if not isinstance(sd, (int, float)) or sd <= 0:
        raise TuneConfigError(f"tune.randn(mean={mean!r}, sd={sd!r}): sd must be > 0")
    return Float(-math.inf, math.inf, sampler="normal", mean=mean, sd=sd)


def qrandn(mean: float, sd: float, q: float) -> Float:
    """``randn`` rounded to a multiple of ``q``."""
    domain = randn(mean, sd)
    _check_q("qrandn", q)
    domain.q = q
    return domain


def _check_ints(name: str, lower: Any, upper: Any) -> None:
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
               for v in (lower, upper)):
        raise TuneConfigError(f"tune.{name}({lower!r}, {upper!r}): bounds must be ints")


def randint(lower: int, upper: int) -> Integer:
    """An int drawn uniformly from ``[lower, upper)`` (``upper`` excluded, as in Ray)."""
    _check_ints("randint", lower, upper)
    _check_bounds("randint", lower, upper)
    return Integer(lower, upper)


def qrandint(lower: int, upper: int, q: int = 1) -> Integer:
    """An int from ``[lower, upper]`` rounded to a multiple of ``q`` (``upper`` included)."""
    _check_ints("qrandint", lower, upper)
    _check_bounds("qrandint", lower, upper)
    _check_q("qrandint", q)
    return Integer(lower, upper + 1, q=q)


def lograndint(lower: int, upper: int, base: float = 10) -> Integer:
    """An int whose logarithm is uniform in ``[log lower, log upper)``."""
    _check_ints("lograndint", lower, upper)
    _check_bounds("lograndint", lower, upper, positive=True)
    return Integer(lower, upper, sampler="loguniform", base=base)


def qlograndint(lower: int, upper: int, q: int, base: float = 10) -> Integer:
    """``lograndint`` rounded to a multiple of ``q`` (``upper`` included)."""
    _check_ints("qlograndint", lower, upper)
    _check_bounds("qlograndint", lower, upper, positive=True)
    _check_q("qlograndint", q)
    return Integer(lower, upper + 1, sampler="loguniform", q=q, base=base)


def choice(categories: Sequence[Any]) -> Categorical:
    """One of ``categories``, uniformly.

    Example:
        >>> param_space = {"activation": tune.choice(["relu", "tanh"])}
    """
    if isinstance(categories, (str, bytes, dict)) or not isinstance(categories, Sequence) \
            or len(categories) == 0:
        raise TuneConfigError(f"tune.choice({categories!r}): pass a non-empty list of options")
    return Categorical(categories)


def sample_from(func: Callable[..., Any]) -> Function:
    """A value computed by ``func(spec)``; ``spec.config`` is the config drawn so far.

    Example:
        >>> {"a": tune.uniform(0, 1), "b": tune.sample_from(lambda spec: 2 * spec.config.a)}
    """
    if not callable(func):
        raise TuneConfigError(f"tune.sample_from({func!r}): pass a function taking the spec")
    return Function(func)


def grid_search(values: Sequence[Any]) -> dict[str, list[Any]]:
    """Try every one of ``values`` (each combined with every other grid in the space).

    Example:
        >>> param_space = {"lr": tune.grid_search([0.1, 0.01, 0.001])}
    """
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Sequence) \
            or len(values) == 0:
        raise TuneConfigError(f"tune.grid_search({values!r}): pass a non-empty list of values")
    return {"grid_search": list(values)}
