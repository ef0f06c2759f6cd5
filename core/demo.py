"""``python -m ember.demo``: a one-minute tour on an embedded local cluster."""

from __future__ import annotations

import time

import numpy as np

import ember


@ember.remote
def square(x: int) -> int:
    return x * x


@ember.remote
def total(values: list[int]) -> int:
    return sum(values)


@ember.remote
class Counter:
    """A tiny actor for the demo: keeps a running total."""

    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n


@ember.remote
def column_means(matrix: np.ndarray) -> np.ndarray:
    return matrix.mean(axis=0)


def main() -> None:
    start = time.perf_counter()
    ember.init()
    first = ember.get(square.remote(3))
    print(f"init + first task: {first} in {(time.perf_counter() - start) * 1000:.0f} ms")

    refs = [square.remote(i) for i in range(1000)]
    print("sum of 1000 squares (a task graph):", ember.get(total.remote(ember.get(refs))))

    counter = Counter.remote()
    print("actor state after 10 calls:", ember.get([counter.add.remote(1) for _ in range(10)])[-1])

    matrix = np.random.default_rng(0).random((4096, 4096))  # 128 MiB
    ref = ember.put(matrix)
    t = time.perf_counter()
    view = ember.get(ref)
    print(f"get of a stored 128 MiB array: {(time.perf_counter() - t) * 1e3:.2f} ms, zero-copy "
          f"(read-only: {not view.flags.writeable})")
    means = ember.get([column_means.remote(ref) for _ in range(4)])
    print("4 tasks shared one copy of it; mean of means:", float(np.mean(means[0])))
    print("cluster:", {k: v for k, v in ember.cluster_resources().items() if k in ("CPU", "GPU")})
    ember.shutdown()


if __name__ == "__main__":
    main()
