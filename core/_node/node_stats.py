"""What a node's machine is doing now: CPU, memory, GPUs (psutil and NVML).

The object store and worker counts come from the node's own tables (telemetry.py); this
module reads only the machine. NVML is opened once and kept: a node without NVIDIA GPUs
(or without the driver) tries once and reports no GPUs.
"""

from __future__ import annotations

import logging
import threading

import psutil

from .._wire.protocol import GpuUsage

log = logging.getLogger("ember._node.stats")


class MachineSampler:
    """CPU percent since the previous sample, memory, and each GPU's use.

    ``cpu_percent`` is psutil's non-blocking form: the first call after start-up says 0.0,
    every later one the average since the call before (the telemetry loop calls it every
    few seconds).
    """

    def __init__(self, gpu_ids: list[int]) -> None:
        self._gpu_ids = gpu_ids
        self._nvml: object | None = None
        self._nvml_tried = False
        self._lock = threading.Lock()
        psutil.cpu_percent(interval=None)

    def cpu_percent(self) -> float:
        return psutil.cpu_percent(interval=None)

    def memory(self) -> tuple[int, int]:
        """(used bytes, total bytes) of the machine's memory."""
        vm = psutil.virtual_memory()
        return vm.total - vm.available, vm.total

    def gpus(self) -> list[GpuUsage]:
        if not self._gpu_ids:
            return []
        with self._lock:
            nvml = self._open_nvml()
            if nvml is None:
                return []
            out = []
            for index in self._gpu_ids:
                try:
                    handle = nvml.nvmlDeviceGetHandleByIndex(index)
                    util = nvml.nvmlDeviceGetUtilizationRates(handle)
                    mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                    name = nvml.nvmlDeviceGetName(handle)
                    out.append(GpuUsage(index, name.decode() if isinstance(name, bytes) else str(name),
                                        float(util.gpu), int(mem.used), int(mem.total)))
                except Exception as e:  # one GPU gone bad must not hide the others
                    log.debug("NVML cannot read GPU %d: %s", index, e)
            return out

    def _open_nvml(self) -> object | None:
        if not self._nvml_tried:
            self._nvml_tried = True
            try:
                # Imported here: optional, and only nodes that declare GPUs ask.
                import pynvml
                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception as e:  # no driver or no library: report no GPU use
                log.info("GPU use is not reported: NVML is unavailable (%s)", e)
        return self._nvml

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None:
                try:
                    self._nvml.nvmlShutdown()  # type: ignore[attr-defined]
                except Exception:
                    pass
                self._nvml = None
