"""GPU trials: ``with_resources({"gpu": 1})`` gets a GPU from ember's scheduler.

Runs only where ember sees a GPU (NVML); skipped on CPU-only machines.
"""

from __future__ import annotations

import pytest

import ember
from ember import tune

from _tune_trainables import reports_gpus


@pytest.mark.timeout(120)
def test_gpu_trials_see_their_gpu_and_queue_on_one_device(tmp_path) -> None:
    if ember.is_initialized():
        ember.shutdown()
    ember.init(num_cpus=2)
    try:
        gpus = ember.cluster_resources().get("GPU", 0)
        if not gpus:
            pytest.skip("no GPU on this machine")
        grid = tune.Tuner(tune.with_resources(reports_gpus, {"cpu": 0, "gpu": 1}),
                          param_space={"i": tune.grid_search(list(range(int(gpus) + 1)))},
                          run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)
                          ).fit()
        assert grid.num_errors == 0, grid.errors
        for result in grid:
            assert len(result.metrics["gpu_ids"]) == 1
            assert result.metrics["visible"] == result.metrics["gpu_ids"][0]
        # One more trial than GPUs: at least two ran one after the other on one device.
        spans = sorted((r.metrics["start"], r.metrics["end"], r.metrics["gpu_ids"][0])
                       for r in grid)
        by_gpu: dict[str, list] = {}
        for start, end, gpu in spans:
            by_gpu.setdefault(gpu, []).append((start, end))
        for runs in by_gpu.values():
            for (_, end), (start, _) in zip(runs, runs[1:]):
                assert start >= end - 0.01
    finally:
        ember.shutdown()
