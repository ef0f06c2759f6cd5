"""Walking a ``param_space``: find its grids and domains, and resolve them into configs.

A *path* is the tuple of keys (dict keys and list indices) from the root to one entry, so
nested dicts and lists are handled uniformly. ``sample_from`` functions are resolved last,
in a loop, because they may read values drawn before them (``spec.config.a``).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import TuneConfigError
from .sample import Domain, Function

Path = tuple[Any, ...]

__all__ = ["count_grid_variants", "generate_variants", "parse_space", "resolve", "set_path"]


def _is_grid(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "grid_search" in value


def parse_space(space: Any, where: str = "param_space"
                ) -> tuple[list[tuple[Path, list[Any]]], list[tuple[Path, Domain]]]:
    """``(grids, domains)`` found in ``space``: each with its path, in a stable order.

    Raises:
        TuneConfigError: ``space`` is not a dict, or a grid is empty or not a list.
    """
    if space is None:
        return [], []
    if not isinstance(space, dict):
        raise TuneConfigError(f"{where}={space!r}: the search space must be a dict of "
                              "parameter names to values, tune.uniform(...), "
                              "tune.grid_search([...]), ...")
    grids: list[tuple[Path, list[Any]]] = []
    domains: list[tuple[Path, Domain]] = []

    def walk(value: Any, path: Path) -> None:
        if _is_grid(value):
            values = value["grid_search"]
            if not isinstance(values, (list, tuple)) or len(values) == 0:
                raise TuneConfigError(
                    f"{where}: grid_search at {'/'.join(map(str, path)) or 'the root'} is "
                    f"{values!r}; pass a non-empty list, e.g. tune.grid_search([1, 2, 3])")
            grids.append((path, list(values)))
        elif isinstance(value, Domain):
            domains.append((path, value))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, path + (key,))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, path + (index,))

    walk(space, ())
    return grids, domains


def set_path(config: Any, path: Path, value: Any) -> None:
    target = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def get_path(config: Any, path: Path) -> Any:
    for key in path:
        config = config[key]
    return config


class _AttrDict(dict):
    """A dict whose keys read as attributes too (``spec.config.lr``), as Ray's spec does."""

    def __getattr__(self, name: str) -> Any:
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return _AttrDict(value) if isinstance(value, dict) else value


class _Spec:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = _AttrDict(config)


def resolve(space: dict[str, Any], rng: np.random.Generator,
            grid_values: dict[Path, Any] | None = None) -> dict[str, Any]:
    """One config: grid entries set from ``grid_values``, every domain drawn with ``rng``."""
    config = copy.deepcopy(space) if space else {}
    grids, domains = parse_space(config)
    for path, _values in grids:
        set_path(config, path, (grid_values or {})[path])
    functions = []
    for path, domain in domains:
        if isinstance(domain, Function):
            functions.append((path, domain))
        else:
            set_path(config, path, domain.sample(rng))
    for path, function in functions:  # after the plain draws, which they may read
        set_path(config, path, function.sample(rng, _Spec(config)))
    return config


def count_grid_variants(space: dict[str, Any] | None) -> int:
    grids, _ = parse_space(space)
    total = 1
    for _path, values in grids:
        total *= len(values)
    return total


def generate_variants(space: dict[str, Any] | None, rng: np.random.Generator
                      ) -> Iterator[dict[str, Any]]:
    """Every grid combination once, each with fresh random draws (Ray's order)."""
    grids, _ = parse_space(space)
    paths = [path for path, _ in grids]
    for combo in itertools.product(*[values for _, values in grids]):
        yield resolve(space or {}, rng, dict(zip(paths, combo)))
