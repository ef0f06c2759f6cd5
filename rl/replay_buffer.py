"""A uniform FIFO replay buffer of transitions, in preallocated numpy arrays (DQN, SAC)."""

from __future__ import annotations

import numpy as np

Batch = dict[str, np.ndarray]


class ReplayBuffer:
    """Holds the last ``capacity`` transitions; ``sample`` draws uniformly with replacement."""

    def __init__(self, capacity: int, seed: int | None = None) -> None:
        self.capacity = int(capacity)
        self.storage: Batch = {}
        #: Next row to write; rows [0, size) are valid.
        self.cursor = 0
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, batch: Batch) -> None:
        """Appends every row of ``batch`` (overwriting the oldest once full)."""
        n = len(next(iter(batch.values())))
        if not self.storage:
            self.storage = {k: np.empty((self.capacity, *v.shape[1:]), dtype=v.dtype) for k, v in batch.items()}
        idx = (self.cursor + np.arange(n)) % self.capacity
        for k, v in batch.items():
            self.storage[k][idx] = v
        self.cursor = int((self.cursor + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)

    def sample(self, num_batches: int, batch_size: int) -> Batch:
        """``num_batches`` minibatches stacked: arrays of shape ``[num_batches, batch_size, ...]``."""
        idx = self.rng.integers(0, self.size, size=(num_batches, batch_size))
        return {k: v[idx] for k, v in self.storage.items()}
