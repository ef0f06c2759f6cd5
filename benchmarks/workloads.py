"""Workload bodies shared by ember and Ray: every function takes the runtime module.

`rt` is the imported runtime (`ember` or `ray`); the bodies use only the API the two
share (`remote`, `get`, `put`, `wait`, `kill`, `util.placement_group`), so the same
lines of code are timed on both. This module never imports a runtime itself: ember's
interpreter must not see Ray, and Ray's interpreter has no ember.

```
 benchmarks/core.py  --(in-process)-->  _runner.run_round("ember", ...)  --> workloads.*(ember, cfg)
        |           --(subprocess, Ray's python)--> _runner.py --runtime ray --> workloads.*(ray, cfg)
        |           --(subprocess)-->   _runner.py --runtime baseline   --> workloads.baseline_*(cfg)
        `-- alternates rounds, takes medians, prints the table
```

Remote functions and classes are defined inside `_define(rt)` on purpose: nested
definitions are pickled by value, so workers never need to import this module.

Every workload returns a dict with `value` (in the workload's unit) and optional extra
fields that end up in the raw JSON; a workload that cannot run returns `skipped`.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, wait as wait_futures
from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Any, Literal

import numpy as np

Result = dict[str, Any]
Better = Literal["higher", "lower"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class Config:
    """Sizes and time budgets of one round; `--quick` shrinks them for a smoke run."""

    #: Timed seconds per workload per round (after one untimed warm-up call).
    budget_s: float = 1.5
    #: Tasks queued behind an unresolved dependency for the driver-memory workload.
    queued_tasks: int = 100_000
    #: Bytes of the large array for put bandwidth and large get.
    big_array_bytes: int = 256 * MIB
    #: No-op tasks in one fan-out.
    fanout_tasks: int = 10_000
    #: Calls per batch in the *_async workloads (Ray's microbenchmark uses 1000).
    batch: int = 1000
    #: Calls each client submits in multi_client / 1:n / n:n (Ray uses 5000-10000).
    client_calls: int = 1000
    #: Refs inside the object for the "object containing refs" workload.
    contained_refs: int = 10_000
    #: Placement groups created (then removed) per batch, as in Ray's microbenchmark.
    placement_groups: int = 100
    #: Small values one streaming generator task yields (issue 14: 100k).
    generator_items: int = 100_000
    #: 1 MB values one streaming generator task yields.
    generator_mb_items: int = 500

    @classmethod
    def quick(cls) -> Config:
        return cls(
            budget_s=0.3,
            queued_tasks=10_000,
            big_array_bytes=32 * MIB,
            fanout_tasks=2_000,
            batch=200,
            client_calls=200,
            contained_refs=1_000,
            placement_groups=10,
            generator_items=10_000,
            generator_mb_items=50,
        )


@dataclass(frozen=True)
class Workload:
    """One row of the table."""

    name: str
    unit: str
    better: Better
    description: str
    #: Runs one round on a runtime; None for init_to_first_result (a fresh process each time).
    run: Callable[[ModuleType, Config], Result] | None
    #: Plain-Python (ProcessPoolExecutor / memcpy) figure in the same unit, where one maps.
    baseline: Callable[[Config], Result] | None = None
    #: Seconds after which a stuck workload is abandoned (the runner dumps stacks and exits).
    timeout_s: float = 60.0
    #: Targets from issue 3 besides ratio >= 2 (checked by core.py).
    targets: tuple[str, ...] = field(default_factory=tuple)
    #: Runs in a fresh interpreter of its own (both runtimes): a driver heap that earlier
    #: workloads grew would hand back freed memory and hide part of the RSS growth.
    isolated: bool = False


# --------------------------------------------------------------------------- helpers


def _rate(
    call: Callable[[], object], budget_s: float, ops_per_call: int = 1, warm_up_s: float = 0.0
) -> Result:
    """Warms up (one call, or calls for `warm_up_s`), then calls `call` for `budget_s`.

    Returns ops per second over the timed part.
    """
    warm_up_end = time.perf_counter() + warm_up_s
    call()
    while time.perf_counter() < warm_up_end:
        call()
    n_calls = 0
    start = time.perf_counter()
    while True:
        call()
        n_calls += 1
        elapsed_s = time.perf_counter() - start
        if elapsed_s >= budget_s:
            break
    return {"value": n_calls * ops_per_call / elapsed_s, "calls": n_calls, "elapsed_s": elapsed_s}


def _samples_ms(
    call: Callable[[], float], budget_s: float, min_samples: int = 3, warm_up: bool = True
) -> Result:
    """Collects per-call times in ms (the call times its own critical section)."""
    if warm_up:
        call()
    samples_ms: list[float] = []
    start = time.perf_counter()
    while len(samples_ms) < min_samples or time.perf_counter() - start < budget_s:
        samples_ms.append(call() * 1e3)
    samples_ms.sort()
    return {
        "value": samples_ms[len(samples_ms) // 2],
        "min_ms": samples_ms[0],
        "max_ms": samples_ms[-1],
        "samples": len(samples_ms),
    }


def _util(rt: ModuleType) -> ModuleType:
    return importlib.import_module(rt.__name__ + ".util")


def _kill_all(rt: ModuleType, actors: list[Any]) -> None:
    for actor in actors:
        try:
            rt.kill(actor)
        except Exception:  # noqa: BLE001 - cleanup must not hide the measured result
            pass


def driver_rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


_DEFS: dict[str, SimpleNamespace] = {}


def _define(rt: ModuleType) -> SimpleNamespace:
    """Remote functions and actor classes for `rt`, defined once per runtime module.

    Mirrors Ray's own `ray_perf.py` so the figures are comparable with Ray's published
    microbenchmarks. Actors ask for num_cpus=0 (Ray's default for a running actor) so
    they never starve the tasks they call on a 2-CPU node.
    """
    if rt.__name__ in _DEFS:
        return _DEFS[rt.__name__]

    @rt.remote
    def small_value() -> bytes:
        return b"ok"

    @rt.remote
    def small_value_batch(n: int) -> int:
        rt.get([small_value.remote() for _ in range(n)])
        return 0

    @rt.remote
    def create_object_containing_refs(n: int) -> list[Any]:
        return [rt.put(1) for _ in range(n)]

    @rt.remote
    def consume(array: Any) -> bytes:
        return b"ok"

    @rt.remote
    def make_array(nbytes: int) -> Any:
        return np.zeros(nbytes, dtype=np.uint8)

    @rt.remote
    def noop_after(dependency: Any) -> None:
        return None

    @rt.remote
    def call_actors(actors: list[Any], n: int) -> int:
        rt.get([actors[i % len(actors)].small_value.remote() for i in range(n)])
        return 0

    @rt.remote(num_cpus=0)
    class Actor:
        def small_value(self) -> bytes:
            return b"ok"

        def small_value_batch(self, n: int) -> int:
            rt.get([small_value.remote() for _ in range(n)])
            return 0

    @rt.remote(num_cpus=0)
    class AsyncActor:
        async def small_value(self) -> bytes:
            return b"ok"

    @rt.remote(num_cpus=0)
    class Client:
        def __init__(self, servers: list[Any]) -> None:
            self.servers = servers

        def small_value_batch(self, n: int) -> int:
            refs = []
            for server in self.servers:
                refs.extend(server.small_value.remote() for _ in range(n))
            rt.get(refs)
            return 0

    @rt.remote
    def yield_ints(n: int) -> Any:
        for i in range(n):
            yield i

    @rt.remote
    def yield_arrays(n: int, nbytes: int) -> Any:
        array = np.zeros(nbytes, dtype=np.uint8)
        for _ in range(n):
            yield array

    @rt.remote(num_cpus=0)
    class Signal:
        """Ray's SignalActor: `wait()` returns once `send()` was called."""

        def __init__(self) -> None:
            self.event = asyncio.Event()

        async def wait(self) -> None:
            await self.event.wait()

        async def send(self) -> None:
            self.event.set()

    defs = SimpleNamespace(**{k: v for k, v in locals().items() if k not in ("rt",)})
    _DEFS[rt.__name__] = defs
    return defs


# --------------------------------------------------------------------------- workloads


def single_client_tasks_sync(rt: ModuleType, cfg: Config) -> Result:
    d = _define(rt)
    return _rate(lambda: rt.get(d.small_value.remote()), cfg.budget_s)


def single_client_tasks_async(rt: ModuleType, cfg: Config) -> Result:
    d = _define(rt)
    return _rate(
        lambda: rt.get([d.small_value.remote() for _ in range(cfg.batch)]),
        cfg.budget_s,
        cfg.batch,
    )


def multi_client_tasks_async(rt: ModuleType, cfg: Config) -> Result:
    d = _define(rt)
    clients = [d.Actor.remote() for _ in range(4)]
    try:
        return _rate(
            lambda: rt.get([c.small_value_batch.remote(cfg.client_calls) for c in clients]),
            cfg.budget_s,
            cfg.client_calls * len(clients),
        )
    finally:
        _kill_all(rt, clients)


def actor_calls_sync(rt: ModuleType, cfg: Config) -> Result:
    d = _define(rt)
    actor = d.Actor.remote()
    try:
        return _rate(lambda: rt.get(actor.small_value.remote()), cfg.budget_s)
    finally:
        _kill_all(rt, [actor])


def _actor_batch(rt: ModuleType, cfg: Config, actor: Any) -> Result:
    try:
        return _rate(
            lambda: rt.get([actor.small_value.remote() for _ in range(cfg.batch)]),
            cfg.budget_s,
            cfg.batch,
        )
    finally:
        _kill_all(rt, [actor])


def actor_calls_async(rt: ModuleType, cfg: Config) -> Result:
    return _actor_batch(rt, cfg, _define(rt).Actor.remote())


def actor_calls_concurrent(rt: ModuleType, cfg: Config) -> Result:
    return _actor_batch(rt, cfg, _define(rt).Actor.options(max_concurrency=16).remote())


def _half_the_cpus() -> int:
    # Ray's microbenchmark sizes the 1:n and n:n groups as cpu_count // 2.
    return max(1, (os.cpu_count() or 2) // 2)


def one_to_n_actor_calls_async(rt: ModuleType, cfg: Config) -> Result:
    d = _define(rt)
    servers = [d.Actor.remote() for _ in range(_half_the_cpus())]
    client = d.Client.remote(servers)
    try:
        return _rate(
            lambda: rt.get(client.small_value_batch.remote(cfg.client_calls)),
            cfg.budget_s,
            cfg.client_calls * len(servers),
        )
    finally:
        _kill_all(rt, [client, *servers])


def n_to_n_actor_calls_async(rt: ModuleType, cfg: Config) -> Result:
    d = _define(rt)
    actors = [d.Actor.remote() for _ in range(_half_the_cpus())]
    callers = 4
    try:
        return _rate(
            lambda: rt.get([d.call_actors.remote(actors, cfg.client_calls) for _ in range(callers)]),
            cfg.budget_s,
            cfg.client_calls * callers,
        )
    finally:
        _kill_all(rt, actors)


def async_actor_calls_sync(rt: ModuleType, cfg: Config) -> Result:
    d = _define(rt)
    actor = d.AsyncActor.remote()
    try:
        return _rate(lambda: rt.get(actor.small_value.remote()), cfg.budget_s)
    finally:
        _kill_all(rt, [actor])


def async_actor_calls_async(rt: ModuleType, cfg: Config) -> Result:
    return _actor_batch(rt, cfg, _define(rt).AsyncActor.remote())


def single_client_put_calls(rt: ModuleType, cfg: Config) -> Result:
    return _rate(lambda: rt.put(0), cfg.budget_s)


def single_client_get_calls(rt: ModuleType, cfg: Config) -> Result:
    ref = rt.put(0)
    return _rate(lambda: rt.get(ref), cfg.budget_s)


def single_client_put_gigabytes(rt: ModuleType, cfg: Config) -> Result:
    array = np.ones(cfg.big_array_bytes, dtype=np.uint8)  # pages faulted in before timing

    def put_and_drop() -> None:
        ref = rt.put(array)
        del ref

    # A store reaches steady state only once its memory has been touched (Ray's plasma
    # speeds up several-fold over the first puts), so warm up as long as we time.
    result = _rate(put_and_drop, cfg.budget_s, warm_up_s=cfg.budget_s)
    result["puts_per_s"] = result["value"]
    result["value"] = result["value"] * cfg.big_array_bytes / 1e9
    return result


def _stream_rate(run: Callable[[], int], warm_up: Callable[[], int], budget_s: float) -> Result:
    """Runs ``warm_up`` once, then ``run`` (a whole generator task) until ``budget_s`` has
    passed (at least once); returns the units ``run`` reports per second."""
    warm_up()
    units, runs = 0, 0
    start = time.perf_counter()
    while True:
        units += run()
        runs += 1
        elapsed_s = time.perf_counter() - start
        if elapsed_s >= budget_s:
            break
    return {"value": units / elapsed_s, "runs": runs, "elapsed_s": elapsed_s}


def streaming_generator_small_items(rt: ModuleType, cfg: Config) -> Result:
    """items/s: one generator task yields `generator_items` small ints; the driver iterates
    the ObjectRefGenerator and gets each value as it comes."""
    d = _define(rt)

    def consume(n: int) -> int:
        count = 0
        for ref in d.yield_ints.remote(n):
            rt.get(ref)
            count += 1
        if count != n:
            raise RuntimeError(f"got {count} values, expected {n}")
        return count

    return _stream_rate(lambda: consume(cfg.generator_items), lambda: consume(1000), cfg.budget_s)


def streaming_generator_1mb_items(rt: ModuleType, cfg: Config) -> Result:
    """GB/s: one generator task yields `generator_mb_items` 1 MB numpy arrays; the driver
    gets each (mapped from the store) and drops it."""
    d = _define(rt)

    def consume(n: int) -> int:
        total = 0
        for ref in d.yield_arrays.remote(n, MIB):
            value = rt.get(ref)
            total += value.nbytes
            del value, ref
        if total != n * MIB:
            raise RuntimeError(f"got {total} bytes, expected {n * MIB}")
        return total

    result = _stream_rate(lambda: consume(cfg.generator_mb_items), lambda: consume(10), cfg.budget_s)
    result["value"] /= 1e9
    return result


def get_big_stored_array(rt: ModuleType, cfg: Config) -> Result:
    """ms for the first `get` of a 256 MB array a worker returned (already stored).

    Each sample is a fresh object produced by a task and awaited with `wait`, so the
    timed `get` is the store-to-driver path (mapping + deserializing), not a driver-side
    cache of an array the driver itself put. `repeat_get_ms` is a second `get` of it.
    """
    d = _define(rt)
    repeat_ms: list[float] = []

    def one_sample() -> float:
        ref = d.make_array.remote(cfg.big_array_bytes)
        rt.wait([ref])
        start = time.perf_counter()
        value = rt.get(ref)
        elapsed_s = time.perf_counter() - start
        if value.nbytes != cfg.big_array_bytes:
            raise RuntimeError(f"got {value.nbytes} bytes, expected {cfg.big_array_bytes}")
        start = time.perf_counter()
        rt.get(ref)
        repeat_ms.append((time.perf_counter() - start) * 1e3)
        del value, ref
        return elapsed_s

    result = _samples_ms(one_sample, cfg.budget_s)
    repeat_ms.sort()
    result["repeat_get_ms"] = repeat_ms[len(repeat_ms) // 2]
    return result


def single_client_wait_1k_refs(rt: ModuleType, cfg: Config) -> Result:
    """Rounds per second of: submit 1k tasks, then `wait` them out one at a time."""
    d = _define(rt)

    def wait_one_by_one() -> None:
        not_ready = [d.small_value.remote() for _ in range(1000)]
        while not_ready:
            _ready, not_ready = rt.wait(not_ready)

    return _rate(wait_one_by_one, cfg.budget_s)


def get_object_containing_10k_refs(rt: ModuleType, cfg: Config) -> Result:
    d = _define(rt)
    ref = d.create_object_containing_refs.remote(cfg.contained_refs)
    return _rate(lambda: rt.get(ref), cfg.budget_s)


def tasks_with_1mb_arg_by_ref(rt: ModuleType, cfg: Config) -> Result:
    d = _define(rt)
    arg = rt.put(np.zeros(MIB, dtype=np.uint8))
    per_batch = 100
    return _rate(
        lambda: rt.get([d.consume.remote(arg) for _ in range(per_batch)]),
        cfg.budget_s,
        per_batch,
    )


def fanout_noop_tasks(rt: ModuleType, cfg: Config) -> Result:
    """ms to submit `fanout_tasks` no-op tasks and get every result."""
    d = _define(rt)

    def fan_out() -> float:
        start = time.perf_counter()
        rt.get([d.small_value.remote() for _ in range(cfg.fanout_tasks)])
        return time.perf_counter() - start

    # Workers are warm from earlier workloads; one 10k fan-out can take seconds on Ray.
    return _samples_ms(fan_out, cfg.budget_s, min_samples=1, warm_up=False)


def placement_group_create_remove(rt: ModuleType, cfg: Config) -> Result:
    """Placement groups created, waited ready and removed per second.

    As in Ray's microbenchmark, a batch of groups is created at once (one {"CPU": 0.01}
    bundle each, so a batch of 100 fits on one CPU), waited for, then removed.
    """
    util = _util(rt)
    create = getattr(util, "placement_group", None)
    remove = getattr(util, "remove_placement_group", None)
    if create is None or remove is None:
        return {"skipped": f"{rt.__name__}.util has no placement_group/remove_placement_group"}

    def cycle() -> None:
        pgs = [create([{"CPU": 0.01}]) for _ in range(cfg.placement_groups)]
        for pg in pgs:
            if hasattr(pg, "wait"):
                if not pg.wait(timeout_seconds=30):
                    raise TimeoutError("placement group not ready after 30 s")
            else:
                rt.get(pg.ready())
        for pg in pgs:
            remove(pg)

    return _rate(cycle, cfg.budget_s, cfg.placement_groups)


def queued_tasks_driver_memory(rt: ModuleType, cfg: Config) -> Result:
    """Driver RSS growth per task while `queued_tasks` tasks wait on one unresolved ref.

    The tasks depend on `Signal.wait()`, which never returns, so none can start:
    everything measured is the submitter's bookkeeping (task specs, refs, dependency
    tracking). The tasks are never drained (on Ray that alone takes a minute on two
    cores): the workload runs in a process of its own, whose `shutdown()` discards them.
    """
    d = _define(rt)
    signal = d.Signal.remote()
    rt.get(d.small_value.remote())  # a warm worker and a registered function
    gate = signal.wait.remote()
    gc.collect()
    rss_before = driver_rss_bytes()
    start = time.perf_counter()
    refs = [d.noop_after.remote(gate) for _ in range(cfg.queued_tasks)]
    submit_s = time.perf_counter() - start
    gc.collect()
    rss_queued = driver_rss_bytes()
    ready, _ = rt.wait(refs[:1], timeout=0)
    if ready:
        try:
            detail = f"it returned {rt.get(ready[0])!r}"
        except Exception as exc:  # noqa: BLE001 - the error is what we report
            detail = f"it failed with {type(exc).__name__}: {exc}"
        raise RuntimeError(f"a queued task finished before its dependency was ready; {detail}")
    return {
        "value": (rss_queued - rss_before) / cfg.queued_tasks,
        "rss_growth_mb": (rss_queued - rss_before) / MIB,
        "submit_per_s": cfg.queued_tasks / submit_s,
        "tasks": cfg.queued_tasks,
    }


# --------------------------------------------------------------------------- baselines
# Plain Python with a 2-process ProcessPoolExecutor: what the workload costs without a
# distributed runtime. Functions are module-level so the pool can pickle them.


def _noop() -> bytes:
    return b"ok"


def _consume(array: Any) -> bytes:
    return b"ok"


def _pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=2)


def baseline_cold_start(cfg: Config) -> Result:
    start = time.perf_counter()
    with _pool() as pool:
        pool.submit(_noop).result()
        elapsed_s = time.perf_counter() - start
    return {"value": elapsed_s * 1e3}


def baseline_tasks_sync(cfg: Config) -> Result:
    with _pool() as pool:
        return _rate(lambda: pool.submit(_noop).result(), cfg.budget_s)


def baseline_tasks_async(cfg: Config) -> Result:
    with _pool() as pool:
        return _rate(
            lambda: [f.result() for f in [pool.submit(_noop) for _ in range(cfg.batch)]],
            cfg.budget_s,
            cfg.batch,
        )


def baseline_fanout(cfg: Config) -> Result:
    with _pool() as pool:
        pool.submit(_noop).result()  # both processes started before timing

        def fan_out() -> float:
            start = time.perf_counter()
            futures = [pool.submit(_noop) for _ in range(cfg.fanout_tasks)]
            wait_futures(futures)
            return time.perf_counter() - start

        return _samples_ms(fan_out, cfg.budget_s, min_samples=1, warm_up=False)


def baseline_1mb_arg(cfg: Config) -> Result:
    """The array is pickled into every task: a pool has no object store to pass refs."""
    arg = np.zeros(MIB, dtype=np.uint8)
    per_batch = 100
    with _pool() as pool:
        return _rate(
            lambda: [f.result() for f in [pool.submit(_consume, arg) for _ in range(per_batch)]],
            cfg.budget_s,
            per_batch,
        )


def baseline_memcpy(cfg: Config) -> Result:
    """In-process memcpy bandwidth (GB/s) into an already-faulted buffer of the same size.

    `fresh_dst_gb_s` copies into newly allocated memory instead: the page faults a store
    pays when every object gets fresh pages.
    """
    src = np.ones(cfg.big_array_bytes, dtype=np.uint8)
    dst = np.empty_like(src)
    result = _rate(lambda: np.copyto(dst, src), cfg.budget_s)
    result["value"] = result["value"] * cfg.big_array_bytes / 1e9
    fresh = _rate(lambda: np.copyto(np.empty_like(src), src), cfg.budget_s / 2)
    result["fresh_dst_gb_s"] = fresh["value"] * cfg.big_array_bytes / 1e9
    return result


# --------------------------------------------------------------------------- registry

RATIO_2X = "ratio>=2"

WORKLOADS: tuple[Workload, ...] = (
    Workload("init_to_first_result", "ms", "lower",
             "cold init() in a fresh process until a trivial task's result is back",
             None, baseline_cold_start, timeout_s=120, targets=("ratio>=5",)),
    Workload("single_client_tasks_sync", "tasks/s", "higher",
             "get(f.remote()) one at a time", single_client_tasks_sync, baseline_tasks_sync),
    Workload("single_client_tasks_async", "tasks/s", "higher",
             "batches of 1000 f.remote(), then get all", single_client_tasks_async,
             baseline_tasks_async),
    Workload("multi_client_tasks_async", "tasks/s", "higher",
             "4 actors each submit a batch of tasks", multi_client_tasks_async),
    Workload("1_1_actor_calls_sync", "calls/s", "higher",
             "get(a.m.remote()) one at a time", actor_calls_sync),
    Workload("1_1_actor_calls_async", "calls/s", "higher",
             "batches of 1000 calls on one actor", actor_calls_async),
    Workload("1_1_actor_calls_concurrent", "calls/s", "higher",
             "batches of 1000 calls, max_concurrency=16", actor_calls_concurrent),
    Workload("1_n_actor_calls_async", "calls/s", "higher",
             "one client actor calls cpu_count//2 actors", one_to_n_actor_calls_async),
    Workload("n_n_actor_calls_async", "calls/s", "higher",
             "4 tasks call cpu_count//2 actors", n_to_n_actor_calls_async),
    Workload("1_1_async_actor_calls_sync", "calls/s", "higher",
             "async actor, one call at a time", async_actor_calls_sync),
    Workload("1_1_async_actor_calls_async", "calls/s", "higher",
             "async actor, batches of 1000", async_actor_calls_async),
    Workload("single_client_put_calls", "puts/s", "higher",
             "put(0) one at a time", single_client_put_calls),
    Workload("single_client_get_calls", "gets/s", "higher",
             "get of one small stored object", single_client_get_calls),
    Workload("single_client_put_gigabytes", "GB/s", "higher",
             "put of a 256 MB numpy array; baseline column = in-process memcpy",
             single_client_put_gigabytes, baseline_memcpy, targets=(">=70% memcpy",)),
    Workload("get_256mb_stored_array", "ms", "lower",
             "first get of a 256 MB array a task returned", get_big_stored_array,
             targets=("<1 ms",)),
    Workload("single_client_wait_1k_refs", "rounds/s", "higher",
             "1k tasks, wait() them out one by one", single_client_wait_1k_refs),
    Workload("get_object_containing_10k_refs", "gets/s", "higher",
             "get of a list of 10k refs a task returned", get_object_containing_10k_refs),
    Workload("tasks_with_1mb_arg_by_ref", "tasks/s", "higher",
             "tasks taking a put 1 MB array (baseline pickles it per task)",
             tasks_with_1mb_arg_by_ref, baseline_1mb_arg),
    Workload("fanout_10k_noop_tasks", "ms", "lower",
             "submit 10k no-op tasks and get them all", fanout_noop_tasks, baseline_fanout),
    Workload("placement_group_create_remove", "PGs/s", "higher",
             "100 placement groups ({CPU: 0.01}) created, ready, removed", placement_group_create_remove),
    Workload("streaming_generator_100k_small_items", "items/s", "higher",
             "a generator task yields 100k small ints; iterate and get each",
             streaming_generator_small_items, timeout_s=180, targets=("ratio>=3",)),
    Workload("streaming_generator_1mb_items", "GB/s", "higher",
             "a generator task yields 500 1 MB arrays; iterate and get each",
             streaming_generator_1mb_items, timeout_s=180, targets=("ratio>=3",)),
    Workload("queued_100k_tasks_driver_memory", "B/task", "lower",
             "driver RSS growth per task while 100k tasks wait on a dependency",
             queued_tasks_driver_memory, timeout_s=300, targets=("<2 KB/task",),
             isolated=True),
)

BY_NAME: dict[str, Workload] = {w.name: w for w in WORKLOADS}
