"""GPU discovery: NVML (the nvidia-ml-py package), narrowed by CUDA_VISIBLE_DEVICES;
and the GPUs' model, offered as Ray's ``accelerator_type:<model>`` resource."""

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


#: Words of NVML device names that are brands, not the model Ray names the type by.
_BRAND_WORDS = {"NVIDIA", "TESLA", "GEFORCE", "QUADRO"}


def accelerator_type_of(device_name: str) -> str | None:
    """Ray's accelerator type for an NVML device name: its model, without brand words or
    the form factor (``"Tesla V100-SXM2-16GB"`` -> ``"V100"``, ``"NVIDIA H200"`` -> ``"H200"``).

    >>> accelerator_type_of("NVIDIA A100-SXM4-80GB")
    'A100'
    """
    words = [w for w in device_name.replace("-", " ").split() if w.upper() not in _BRAND_WORDS]
    return words[0] if words else None


def detect_accelerator_type() -> str | None:
    """The model of this node's first GPU as Ray names it; None without NVIDIA GPUs."""
    try:
        # Imported here: optional and slow, as in detect_gpu_ids.
        import pynvml
        pynvml.nvmlInit()
    except Exception:  # no driver, no library: a CPU-only node
        return None
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            return None
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
    except Exception:  # a device NVML cannot describe: no type, GPUs still usable
        return None
    finally:
        pynvml.nvmlShutdown()
    return accelerator_type_of(name.decode() if isinstance(name, bytes) else name)
