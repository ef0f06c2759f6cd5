"""The streaming executor: bounded memory, early stop, actor pool lifetime, progress bars.

This module runs its own cluster with a small (64 MiB) object store so that a pipeline
over four times that much data must stream, not spill, to finish.
"""

from __future__ import annotations

import re
import time
from typing import Iterator

import numpy as np
import pytest

import ember
import ember.data as ed
from ember.data.context import DataContext, ExecutionResources

_STORE_BYTES = 64 << 20


@pytest.fixture(scope="module", autouse=True)
def small_store() -> Iterator[None]:
    if ember.is_initialized():
        ember.shutdown()
    ember.init(num_cpus=2, object_store_memory=_STORE_BYTES)
    yield
    ember.shutdown()


@pytest.fixture(autouse=True)
def default_context() -> Iterator[DataContext]:
    context = DataContext()
    DataContext._set_current(context)
    yield context
    DataContext._set_current(DataContext())


def _tasks_executed(stats: str) -> int:
    return int(re.search(r"(\d+) tasks executed", stats).group(1))  # type: ignore[union-attr]


def test_pipeline_over_four_times_the_object_store_streams_within_the_budget() -> None:
    rows, row_bytes = 32_768, 8 * 1024  # 256 MiB of float64 tensors
    ds = ed.range_tensor(rows, shape=(1024,), override_num_blocks=64).map_batches(
        lambda b: {"data": b["data"] * 2.0}, batch_size=None)
    seen = 0
    for batch in ds.iter_batches(batch_size=2048):
        seen += len(batch["data"])
    assert seen == rows
    stats = ds._last_stats
    block_bytes = rows * row_bytes // 64
    assert stats.budget_bytes == _STORE_BYTES // 2
    # The executor never held more than its budget plus the block in flight.
    assert stats.peak_held_bytes <= stats.budget_bytes + 2 * block_bytes


def test_resource_limits_set_the_budget(default_context: DataContext) -> None:
    default_context.execution_options.resource_limits = ExecutionResources(object_store_memory=8 << 20)
    ds = ed.range_tensor(2048, shape=(1024,), override_num_blocks=16)
    assert sum(len(b["data"]) for b in ds.iter_batches()) == 2048
    assert ds._last_stats.budget_bytes == 8 << 20
    assert ds._last_stats.peak_held_bytes <= (8 << 20) + 2 * (1 << 20)


def test_a_satisfied_limit_stops_upstream_work() -> None:
    ds = ed.range(1_000_000, override_num_blocks=200).map_batches(lambda b: b).limit(10)
    assert [r["id"] for r in ds.take_all()] == list(range(10))
    assert _tasks_executed(ds.stats()) < 20


def test_actor_pool_releases_its_cpus_when_the_operator_finishes() -> None:
    class Identity:
        def __call__(self, batch: dict) -> dict:
            return batch

    ds = ed.range(100).map_batches(Identity, concurrency=2, batch_size=10)
    assert ds.count() == 100
    deadline = time.monotonic() + 10
    while ember.available_resources().get("CPU", 0) < 2:
        assert time.monotonic() < deadline, "the pool's actors still hold CPUs"
        time.sleep(0.05)


def test_operators_that_do_not_fuse_run_as_a_pipeline() -> None:
    ds = (ed.range(40, override_num_blocks=8)
          .map_batches(lambda b: {"id": b["id"] + 1}, num_cpus=0.5)
          .map_batches(lambda b: {"id": b["id"] * 2}, num_cpus=1))
    assert [r["id"] for r in ds.take_all()] == [(i + 1) * 2 for i in range(40)]
    stats = ds.stats()
    assert "Operator 1 ReadRange->MapBatches" in stats and "Operator 2 MapBatches" in stats


def test_out_of_order_emission_still_delivers_every_row(default_context: DataContext) -> None:
    default_context.execution_options.preserve_order = False
    rows = [r["id"] for r in ed.range(500, override_num_blocks=10).map(lambda r: r).take_all()]
    assert sorted(rows) == list(range(500))


def test_progress_bars_follow_the_data_context(default_context: DataContext,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    ed.range(10).map_batches(lambda b: b).take_all()
    assert "ReadRange" not in capfd.readouterr().err  # not a terminal: no bars by default
    default_context.enable_progress_bars = True
    ed.range(10).map_batches(lambda b: b).take_all()
    err = capfd.readouterr().err
    assert "ReadRange->MapBatches(<lambda>)" in err and "10/10" in err


def test_stats_report_time_rows_and_bytes_per_operator() -> None:
    ds = ed.range(1000).map_batches(lambda b: {"id": b["id"], "x": np.ones(len(b["id"]))})
    ds.materialize()
    stats = ds.stats()
    assert "Remote wall time" in stats and "Output num rows: 1000 total" in stats
    assert "Output size bytes: 16000 total" in stats
    assert "peak" in stats and "budget" in stats


def test_cpu_limit_caps_concurrent_tasks(default_context: DataContext) -> None:
    default_context.execution_options.resource_limits = ExecutionResources(cpu=1)
    ds = ed.range(20, override_num_blocks=10).map(lambda r: r)
    from ember.data._planner import build_physical

    root = build_physical(ds._plan, default_context)
    assert root._max_concurrency == 2  # one CPU's worth, plus one queued
    assert ds.count() == 20
