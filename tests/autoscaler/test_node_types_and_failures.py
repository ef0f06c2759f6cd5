"""End to end with the local provider: a placement group that no running node type can
hold gets a node of the type that can; a node whose start fails is retried and reported
(``ember status``, the monitor's report), and a type that never starts does not stop
the others; request_resources sizes the cluster ahead of work."""

from __future__ import annotations

from typing import Iterator

import pytest

import ember
from ember.autoscaler import AutoscalerNotRunningError
from ember.autoscaler.sdk import request_resources
from ember.util import placement_group, remove_placement_group
from conftest import wait_for

from .conftest import Autoscaled, autoscaled_cluster

pytestmark = pytest.mark.timeout(240)

STORE = 64 << 20
_START = ("{ember} start --address {head_address} --token-file {token_file} --port {port} "
          "--node-ip-address {node_ip} {resource_flags} --block")


def _config(marker: str) -> dict:
    def node_type(resources: dict, **extra: object) -> dict:
        return {"resources": {**resources, "object_store_memory": STORE}, "min_workers": 0, "max_workers": 1,
                **extra}
    return {
        "cluster_name": "types", "max_workers": 4, "idle_timeout_s": 2, "update_interval_s": 0.3,
        "provider": {"type": "local"}, "head": {"resources": {"CPU": 0, "object_store_memory": STORE}},
        "available_node_types": {
            "small": node_type({"CPU": 1}),
            "big": node_type({"CPU": 2}),
            # Fails its first start (no marker yet), starts on the retry.
            "flaky": node_type({"CPU": 1, "flaky": 1}, start_command=(
                f"if [ -e {marker} ]; then exec {_START}; else touch {marker}; "
                "echo 'flaky: the first start fails' >&2; exit 3; fi")),
            "broken": node_type({"CPU": 1, "broken": 1},
                                start_command="echo 'broken: this node type cannot start' >&2; exit 3"),
        }}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Autoscaled]:
    marker = str(tmp_path_factory.mktemp("flaky") / "started-once")
    with autoscaled_cluster(_config(marker)) as running:
        yield running


@ember.remote(num_cpus=1)
def where() -> str:
    return ember.get_runtime_context().get_node_id()


def _types(cluster: Autoscaled) -> list[str]:
    return sorted(n["type"] for n in cluster.report().get("nodes", []) if n["status"] == "running")


def test_a_placement_group_that_needs_a_new_node_type_gets_one(cluster: Autoscaled) -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_PACK")
    ember.get(pg.ready(), timeout=120)
    assert [n["Resources"]["CPU"] for n in cluster.workers()] == [2.0]
    wait_for(lambda: _types(cluster) == ["big"], timeout_s=30, what="the report to show the big node")
    remove_placement_group(pg)
    wait_for(lambda: not _types(cluster), timeout_s=60, what="the big node to go once idle")


def test_a_node_that_fails_to_start_is_retried_and_reported(cluster: Autoscaled) -> None:
    node = ember.get(where.options(resources={"flaky": 1}).remote(), timeout=120)
    assert node in {n["NodeID"] for n in ember.nodes() if "flaky" in n["Resources"]}
    failures = cluster.report()["launch_failures"]
    assert any(f["node_type"] == "flaky" and "the first start fails" in f["error"] for f in failures), failures


def test_a_type_that_never_starts_is_reported_and_others_still_scale(cluster: Autoscaled) -> None:
    stuck = where.options(resources={"broken": 1}).remote()
    wait_for(lambda: cluster.report()["failures_total"].get("broken", 0) >= 2, timeout_s=60,
             what="two failed starts of the broken node type")
    status = cluster.cli("status")
    assert "launch failed: broken" in status.stdout and "cannot start" in status.stdout, status.stdout
    assert ember.get(where.remote(), timeout=120)  # a small node still comes up and runs work
    ember.cancel(stuck)
    assert "broken" not in _types(cluster)


def test_request_resources_brings_capacity_before_any_work(cluster: Autoscaled) -> None:
    with pytest.raises(ValueError, match="num_cpus"):
        request_resources(num_cpus=-1)
    with pytest.raises(TypeError, match="bundle 0"):
        request_resources(bundles=[{}])
    request_resources(bundles=[{"CPU": 2}])
    wait_for(lambda: "big" in _types(cluster), timeout_s=120, what="a big node for the requested bundle")
    assert cluster.report()["requested"] == [{"CPU": 2.0}]
    request_resources()  # clears the request: the idle node may go
    wait_for(lambda: "big" not in _types(cluster), timeout_s=60, what="the big node to go after the request ends")


def test_infeasible_demand_is_reported_not_launched_for(cluster: Autoscaled) -> None:
    with pytest.warns(RuntimeWarning, match="cannot be scheduled"):
        ref = where.options(num_cpus=64).remote()
        wait_for(lambda: cluster.report()["infeasible"], timeout_s=60, what="the 64-CPU request reported")
    assert {"CPU": 64.0} in cluster.report()["infeasible"]
    assert "infeasible" in cluster.cli("status").stdout
    ember.cancel(ref)


def test_request_resources_without_an_autoscaler_says_how_to_start_one() -> None:
    if ember.is_initialized():
        ember.shutdown()
    ember.init(num_cpus=1, object_store_memory=64 << 20)
    try:
        with pytest.raises(AutoscalerNotRunningError, match="ember up"):
            request_resources(num_cpus=1)
    finally:
        ember.shutdown()
