"""``ember.train.torch``: TorchTrainer and the helpers a torch training loop calls.

::

    driver: TorchTrainer.fit() -> WorkerGroup placed -> TorchConfig.on_start:
        rank 0: open a TCPStore on a free port of its node's address (port 0: no race)
        every rank: join it, mark "joined/<rank>", init_process_group(gloo | nccl)
        rank 0 waits for every mark first, so a rank that never arrives is named
    then each rank runs train_loop_per_worker; prepare_model wraps the model in DDP,
    prepare_data_loader gives it a DistributedSampler and moves batches to the device.

This file is the module ``ember.train.torch``. Imports are absolute in Python 3, so
``import torch`` in here (and anywhere in ember.train) is the real torch; ember.train
itself refers to this module only by relative name.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import random
from typing import Any, Callable, Literal

import ember

from ._backend import BackendConfig
from ._checkpoint import Checkpoint
from ._config import RunConfig, ScalingConfig
from ._session import get_context, in_session
from ._trainer import DataParallelTrainer
from ._worker_group import GroupCallError, WorkerGroup
from .errors import RendezvousTimeoutError, TrainConfigError

__all__ = ["TorchConfig", "TorchTrainer", "enable_reproducibility", "get_device",
           "get_devices", "prepare_data_loader", "prepare_model"]

logger = logging.getLogger(__name__)

TorchBackend = Literal["gloo", "nccl"]
_JOINED_KEY = "ember/joined/{}"
#: Set in a worker of a GPU run (``get_devices`` falls back on it without GPU ids).
_USE_GPU_ENV = "EMBER_TRAIN_USE_GPU"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")

#: The rank-0 TCPStore of this worker process (kept alive for the process group's life).
_STORE: Any = None


@dataclasses.dataclass
class TorchConfig(BackendConfig):
    """How the torch.distributed process group is made (Ray's ``TorchConfig``).

    Args:
        backend: ``"gloo"`` or ``"nccl"``; default NCCL with ``use_gpu``, gloo otherwise.
        init_method: only ``"env"`` (rank 0's address and a free port, as torchrun does).
        timeout_s: how long the rendezvous and each collective may wait for a peer.
    """

    backend: TorchBackend | None = None
    init_method: str = "env"
    timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        if self.backend not in (None, "gloo", "nccl"):
            raise TrainConfigError(f"TorchConfig(backend={self.backend!r}): use 'gloo', "
                                   "'nccl' or None (NCCL with GPUs, gloo without)")
        if self.init_method != "env":
            raise TrainConfigError(f"TorchConfig(init_method={self.init_method!r}): ember "
                                   "sets up the process group from rank 0's address; use 'env'")
        if not isinstance(self.timeout_s, (int, float)) or self.timeout_s <= 0:
            raise TrainConfigError(f"TorchConfig(timeout_s={self.timeout_s!r}): use seconds > 0")

    @property
    def backend_name(self) -> str:
        return self.backend or "gloo"

    def on_start(self, group: WorkerGroup, scaling: ScalingConfig) -> None:
        backend = self.backend or ("nccl" if scaling.use_gpu else "gloo")
        world_size = len(group.workers)
        threads = max(1, int(scaling.worker_resources.get("CPU", 1)))
        # Every rank imports torch now, at the same time, instead of rank 0 first (for
        # the store) and the others after: the import is most of a cold start.
        for worker in group.workers[1:]:
            worker.actor.execute.remote(_import_torch, threads)
        master_addr = group.workers[0].node_ip or "127.0.0.1"
        port = _rank0_port(group, master_addr, world_size, self.timeout_s, threads)
        group.execute_each(_join_process_group, [
            (master_addr, port, w.rank, world_size, w.local_rank, w.local_world_size,
             w.node_rank, backend, self.timeout_s, scaling.num_gpus_per_worker > 0)
            for w in group.workers])

    def on_shutdown(self, group: WorkerGroup) -> None:
        """Nothing: the group's processes are killed, which ends their process group."""


def _rank0_port(group: WorkerGroup, master_addr: str, world_size: int, timeout_s: float,
                threads: int) -> int:
    try:
        return ember.get(group.workers[0].actor.execute.remote(
            _open_store, master_addr, world_size, timeout_s, threads))
    except ember.exceptions.EmberError as exc:
        raise GroupCallError(0, exc) from exc


def _import_torch(threads: int) -> None:
    """Import torch.distributed; size torch's thread pool to the worker's CPUs.

    Without it every rank would start one thread per core of the machine and the ranks
    of a node would oversubscribe it (``OMP_NUM_THREADS``, if set, wins, as in torch).
    """
    import torch
    import torch.distributed  # noqa: F401
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(threads)


def _open_store(master_addr: str, world_size: int, timeout_s: float, threads: int) -> int:
    """On rank 0: start the rendezvous store on a free port; return the port."""
    import torch.distributed as dist
    global _STORE
    _import_torch(threads)
    _STORE = dist.TCPStore(master_addr, 0, world_size, True,
                           timeout=datetime.timedelta(seconds=timeout_s),
                           wait_for_workers=False)
    return int(_STORE.port)


def _loopback_interface() -> str | None:
    import psutil
    for name, addresses in psutil.net_if_addrs().items():
        if any(a.address == "127.0.0.1" for a in addresses):
            return name
    return None


def _join_process_group(master_addr: str, port: int, rank: int, world_size: int,
                        local_rank: int, local_world_size: int, node_rank: int,
                        backend: str, timeout_s: float, use_gpu: bool) -> None:
    """On every rank: join rank 0's store and create the default process group."""
    import torch
    import torch.distributed as dist
    env = {"MASTER_ADDR": master_addr, "MASTER_PORT": str(port), "RANK": str(rank),
           "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(local_rank),
           "LOCAL_WORLD_SIZE": str(local_world_size), "NODE_RANK": str(node_rank),
           "GROUP_RANK": str(node_rank), _USE_GPU_ENV: "1" if use_gpu else "0"}
    os.environ.update(env)
    if use_gpu and torch.cuda.is_available():
        torch.cuda.set_device(get_device())  # NCCL's collectives run on this device
    if backend == "gloo" and master_addr in _LOOPBACK and "GLOO_SOCKET_IFNAME" not in os.environ:
        # One machine: keep gloo's sockets on loopback like the rest of ember.
        interface = _loopback_interface()
        if interface:
            os.environ["GLOO_SOCKET_IFNAME"] = interface
    timeout = datetime.timedelta(seconds=timeout_s)
    store = _STORE if rank == 0 and _STORE is not None else \
        dist.TCPStore(master_addr, port, world_size, False, timeout=timeout)
    store.set(_JOINED_KEY.format(rank), "1")
    if rank == 0:
        wait_for_ranks(store, world_size, timeout_s, f"{master_addr}:{port}")
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                            timeout=timeout)


def wait_for_ranks(store: Any, world_size: int, timeout_s: float, address: str) -> None:
    """Wait until every rank marked itself joined in ``store``.

    Raises:
        RendezvousTimeoutError: naming the ranks that never arrived.
    """
    keys = [_JOINED_KEY.format(r) for r in range(world_size)]
    try:
        store.wait(keys, datetime.timedelta(seconds=timeout_s))
    except RuntimeError:  # torch's DistStoreError on timeout
        missing = [r for r, key in enumerate(keys) if not store.check([key])]
        raise RendezvousTimeoutError(missing, world_size, address, timeout_s) from None


class TorchTrainer(DataParallelTrainer):
    """Data-parallel torch training on ember (Ray's ``TorchTrainer``).

    Args:
        train_loop_per_worker: ``fn()`` or ``fn(config)``; call ``prepare_model`` and
            ``prepare_data_loader`` in it and ``ember.train.report`` per epoch.
        train_loop_config: the dict passed to the loop.
        torch_config: process-group settings (backend, timeout).
        scaling_config, run_config, datasets, metadata, resume_from_checkpoint: as for
            ``DataParallelTrainer``.

    Example:
        >>> trainer = TorchTrainer(train_func, train_loop_config={"lr": 1e-3},
        ...                        scaling_config=ScalingConfig(num_workers=2))
        >>> result = trainer.fit()
        >>> result.metrics["loss"], result.checkpoint
    """

    _default_backend = TorchConfig

    def __init__(self, train_loop_per_worker: Callable[..., Any], *,
                 train_loop_config: dict[str, Any] | None = None,
                 torch_config: TorchConfig | None = None,
                 scaling_config: ScalingConfig | None = None,
                 run_config: RunConfig | None = None,
                 datasets: dict[str, Any] | None = None,
                 dataset_config: Any = None,
                 metadata: dict[str, Any] | None = None,
                 resume_from_checkpoint: Checkpoint | None = None) -> None:
        if torch_config is not None and not isinstance(torch_config, TorchConfig):
            raise TrainConfigError(f"torch_config={torch_config!r}: pass a TorchConfig")
        super().__init__(train_loop_per_worker, train_loop_config=train_loop_config,
                         backend_config=torch_config or TorchConfig(),
                         scaling_config=scaling_config, run_config=run_config,
                         datasets=datasets, dataset_config=dataset_config, metadata=metadata,
                         resume_from_checkpoint=resume_from_checkpoint)


# -- helpers called inside the training loop ----------------------------------------------

def get_devices() -> list[Any]:
    """The torch devices of this worker: its GPUs, or ``[cpu]``.

    ember sets ``CUDA_VISIBLE_DEVICES`` to exactly the worker's GPUs, so they are
    ``cuda:0..n-1``. Where more devices are visible than the worker was given, its GPU
    ids index them; a GPU worker that was told no ids uses ``cuda:<local_rank>``.
    """
    import torch
    if not torch.cuda.is_available():
        return [torch.device("cpu")]
    count = torch.cuda.device_count()
    gpu_ids = [int(g) for g in ember.get_gpu_ids()]
    if gpu_ids and len(gpu_ids) == count:
        return [torch.device("cuda", i) for i in range(count)]
    if gpu_ids:
        return [torch.device("cuda", g) for g in gpu_ids if g < count] or \
            [torch.device("cuda", 0)]
    if os.environ.get(_USE_GPU_ENV) == "1":
        return [torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % count)]
    return [torch.device("cpu")]


def get_device() -> Any:
    """The torch device this worker trains on (its first GPU, else the CPU)."""
    return get_devices()[0]


def _world_size() -> int:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return get_context().get_world_size() if in_session() else 1


def prepare_model(model: Any, move_to_device: bool | Any = True,
                  parallel_strategy: Literal["ddp", "fsdp"] | None = "ddp",
                  parallel_strategy_kwargs: dict[str, Any] | None = None) -> Any:
    """Move ``model`` to this worker's device and wrap it for data-parallel training.

    Args:
        model: a ``torch.nn.Module``.
        move_to_device: True (this worker's device), False, or a device.
        parallel_strategy: ``"ddp"`` (DistributedDataParallel), ``"fsdp"`` or None.
        parallel_strategy_kwargs: passed to the wrapper.

    Returns:
        The wrapped model (the plain model with one worker).
    """
    import torch
    if parallel_strategy not in ("ddp", "fsdp", None):
        raise TrainConfigError(f"prepare_model(parallel_strategy={parallel_strategy!r}): use "
                               "'ddp', 'fsdp' or None")
    device = get_device() if move_to_device is True else move_to_device or None
    if device is not None:
        model = model.to(device)
    if _world_size() <= 1 or parallel_strategy is None:
        return model
    kwargs = dict(parallel_strategy_kwargs or {})
    on_gpu = device is not None and torch.device(device).type == "cuda"
    if parallel_strategy == "fsdp":
        from torch.distributed.fsdp import FullyShardedDataParallel
        if on_gpu:
            kwargs.setdefault("device_id", torch.device(device))
        return FullyShardedDataParallel(model, **kwargs)
    from torch.nn.parallel import DistributedDataParallel
    if on_gpu:
        kwargs.setdefault("device_ids", [torch.device(device)])
    return DistributedDataParallel(model, **kwargs)


class _DeviceDataLoader:
    """A DataLoader whose batches arrive on ``device``; other attributes are the loader's."""

    def __init__(self, loader: Any, device: Any) -> None:
        self._loader = loader
        self._device = device

    def _move(self, item: Any) -> Any:
        if hasattr(item, "to"):
            return item.to(self._device, non_blocking=True)
        if isinstance(item, dict):
            return {k: self._move(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            moved = [self._move(v) for v in item]
            return type(item)(*moved) if hasattr(item, "_fields") else type(item)(moved)
        return item

    def __iter__(self) -> Any:
        return (self._move(batch) for batch in self._loader)

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def prepare_data_loader(data_loader: Any, add_dist_sampler: bool = True,
                        move_to_device: bool = True, auto_transfer: bool = True) -> Any:
    """Give ``data_loader`` a DistributedSampler (one shard per rank) and device moves.

    The loader is rebuilt with the same batch size, workers, collate function and
    ``drop_last``; shuffling is kept (call ``loader.sampler.set_epoch(epoch)`` each epoch
    for a new order, as with any DistributedSampler).
    """
    import torch
    from torch.utils.data import (DataLoader, DistributedSampler, IterableDataset,
                                  RandomSampler)
    world_size = _world_size()
    if add_dist_sampler and world_size > 1 and not isinstance(data_loader.dataset,
                                                              IterableDataset) \
            and not isinstance(data_loader.sampler, DistributedSampler):
        import torch.distributed as dist
        rank = dist.get_rank() if dist.is_initialized() else get_context().get_world_rank()
        shuffle = isinstance(data_loader.sampler, RandomSampler)
        sampler = DistributedSampler(data_loader.dataset, num_replicas=world_size, rank=rank,
                                     shuffle=shuffle)
        data_loader = DataLoader(
            data_loader.dataset, batch_size=data_loader.batch_size, sampler=sampler,
            num_workers=data_loader.num_workers, collate_fn=data_loader.collate_fn,
            pin_memory=data_loader.pin_memory, drop_last=data_loader.drop_last,
            timeout=data_loader.timeout, worker_init_fn=data_loader.worker_init_fn,
            generator=data_loader.generator, prefetch_factor=data_loader.prefetch_factor,
            persistent_workers=data_loader.persistent_workers)
    device = get_device()
    if move_to_device and torch.device(device).type != "cpu":
        return _DeviceDataLoader(data_loader, device)
    return data_loader


def enable_reproducibility(seed: int = 0) -> None:
    """Seed python, numpy and torch, and make torch pick deterministic algorithms.

    Deterministic kernels can be slower; use it to debug or compare runs.
    """
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
