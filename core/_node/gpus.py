"""GPU discovery: NVML (the nvidia-ml-py package), narrowed by CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import os


def detect_gpu_ids() -> list[int]:
    """Ids of the GPUs this node may hand out; [] on machines without NVIDIA GPUs."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(x) for x in visible.split(",") if x.strip().lstrip("-").isdigit() and int(x) >= 0]
    try:
        # Imported here: optional (nvidia-ml-py may be missing or broken on CPU-only
        # machines), and only a node starting up asks.
        import pynvml
        pynvml.nvmlInit()
    except Exception:  # no driver, no library: a CPU-only node
        return []
    try:
        return list(range(pynvml.nvmlDeviceGetCount()))
    finally:
        pynvml.nvmlShutdown()
