"""Tasks go where their large arguments are, unless they ask for resources that aren't there."""

from __future__ import annotations

import numpy as np
import pytest

import ember

from .conftest import Cluster


@ember.remote(resources={"node_b": 1})
def make_on_b() -> np.ndarray:
    return np.ones(4_000_000)  # 32 MB, stays in node b's store


@ember.remote(num_cpus=1)
def where(array: np.ndarray) -> str:
    return ember.get_runtime_context().get_node_id()


@pytest.mark.timeout(60)
def test_a_default_task_runs_on_the_node_holding_its_large_argument(three_nodes: Cluster) -> None:
    ref = make_on_b.remote()
    ember.wait([ref], fetch_local=False, timeout=30)
    nodes = ember.get([where.remote(ref) for _ in range(4)], timeout=30)
    assert {three_nodes.role_of(n) for n in nodes} == {"b"}


@pytest.mark.timeout(60)
def test_locality_yields_to_resources_the_data_node_lacks(three_nodes: Cluster) -> None:
    ref = make_on_b.remote()
    ember.wait([ref], fetch_local=False, timeout=30)
    node = ember.get(where.options(resources={"node_c": 1}).remote(ref), timeout=30)
    assert three_nodes.role_of(node) == "c"
