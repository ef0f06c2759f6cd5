"""``await ref``: values, errors, stored objects, many awaits at once, cancelled awaits."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

import ember

from conftest import wait_for

pytestmark = pytest.mark.timeout(60)


@ember.remote
class Gate:
    """Calls to ``passed`` finish once ``open`` is called: refs that are pending a while."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()

    async def passed(self, i: int) -> int:
        await self.opened.wait()
        return i

    async def open(self) -> None:
        self.opened.set()


@ember.remote
class Awaiter:
    def __init__(self) -> None:
        self.waiting = 0

    async def await_first(self, refs: list) -> Any:
        self.waiting += 1
        try:
            return await refs[0]
        finally:
            self.waiting -= 1

    async def waiting_now(self) -> int:
        return self.waiting

    async def timeout_then_value(self, refs: list) -> Any:
        try:
            await asyncio.wait_for(asyncio.shield(refs[0].future()), 0.05)
        except asyncio.TimeoutError:
            pass
        try:
            await asyncio.wait_for(refs[0], 0.05)  # cancels that await's future
        except asyncio.TimeoutError:
            pass
        return await refs[0]


@ember.remote
def fails() -> None:
    raise KeyError("missing")


@ember.remote
def big() -> np.ndarray:
    return np.arange(1_000_000, dtype=np.int64)  # stored in the node's store, not inline


def test_many_awaits_pending_at_once_all_resolve(ember_local: Any) -> None:
    gate = Gate.options(max_concurrency=100).remote()
    awaiter = Awaiter.options(max_concurrency=100).remote()
    n = 40  # far more than the default executor's threads
    results = [awaiter.await_first.remote([gate.passed.remote(i)]) for i in range(n)]
    wait_for(lambda: ember.get(awaiter.waiting_now.remote()) == n, what=f"{n} pending awaits")
    ember.get(gate.open.remote())
    assert ember.get(results, timeout=30) == list(range(n))


def test_await_raises_the_task_error(ember_local: Any) -> None:
    awaiter = Awaiter.remote()
    with pytest.raises(KeyError):
        ember.get(awaiter.await_first.remote([fails.remote()]), timeout=30)
    assert ember.get(awaiter.waiting_now.remote()) == 0  # the actor still works


def test_await_a_stored_value(ember_local: Any) -> None:
    awaiter = Awaiter.remote()
    value = ember.get(awaiter.await_first.remote([big.remote()]), timeout=30)
    assert value.shape == (1_000_000,) and int(value[-1]) == 999_999
    put = ember.put(np.ones(500_000))
    assert float(ember.get(awaiter.await_first.remote([put]), timeout=30).sum()) == 500_000.0


def test_cancelled_await_leaves_the_ref_usable(ember_local: Any) -> None:
    gate = Gate.options(max_concurrency=10).remote()
    awaiter = Awaiter.options(max_concurrency=10).remote()
    result = awaiter.timeout_then_value.remote([gate.passed.remote(7)])
    ember.get(gate.open.remote())
    assert ember.get(result, timeout=30) == 7


def test_await_in_the_driver(ember_local: Any) -> None:
    async def main() -> list:
        ready = ember.put("here")
        return await asyncio.gather(ready, big.remote(), *(ember.put(i) for i in range(20)))

    got = asyncio.run(main())
    assert got[0] == "here" and got[1].shape == (1_000_000,) and got[2:] == list(range(20))
