"""Shared helpers for the serve tests: one ember + Serve per module on a free port."""

from __future__ import annotations

import os
import socket
from typing import Any, Iterator

import pytest

import ember
import ember.serve as serve
from conftest import assert_no_leaked_processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True if a server could listen on ``port`` now (as servers do, with SO_REUSEADDR, so
    connections the old server closed, in TIME_WAIT, do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
        except OSError:
            return False
        return True


@pytest.fixture(scope="module")
def serve_url() -> Iterator[str]:
    """ember.init(num_cpus=4) + serve.start on a free port; yields the base URL."""
    if ember.is_initialized():
        ember.shutdown()
    info = ember.init(num_cpus=4, object_store_memory=256 << 20)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ember.shutdown()
    assert not os.path.exists(info["session_dir"])
    assert_no_leaked_processes()


@pytest.fixture
def clean_apps(serve_url: str) -> Iterator[str]:
    """Deletes every application a test left behind."""
    yield serve_url
    for name in list(serve.status().applications):
        serve.delete(name)


def replica_pids(app: str, deployment: str) -> list[int]:
    """PIDs of a deployment's running replicas (asks each replica)."""
    from ember.serve.snapshot import get_controller
    from ember.exceptions import ActorDiedError
    actors = ember.get(get_controller().replica_actors.remote(app, deployment))
    pids = []
    for _, actor in actors:
        try:
            pids.append(ember.get(actor.stats.remote(), timeout=10)["pid"])
        except ActorDiedError:  # killed, and the controller has not noticed yet
            pass
    return pids


def count(items: Any) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


class Load:
    """Background HTTP load: ``concurrency`` clients loop on ``path`` until ``stop()``.

    Records every outcome: (status, body) for answers, ("error", repr) for transport
    failures, so a test can assert that nothing was lost.
    """

    def __init__(self, url: str, concurrency: int = 4) -> None:
        import threading
        self.url = url
        self.concurrency = concurrency
        self.results: list[tuple[Any, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="test-load")

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> list[tuple[Any, str]]:
        self._stop.set()
        self._thread.join(timeout=60)
        return self.results

    def _run(self) -> None:
        import asyncio

        import httpx

        async def worker(client: httpx.AsyncClient) -> None:
            while not self._stop.is_set():
                try:
                    r = await client.get(self.url)
                    self.results.append((r.status_code, r.text))
                except Exception as e:  # recorded: the test asserts there are none
                    self.results.append(("error", repr(e)))

        async def main() -> None:
            async with httpx.AsyncClient(timeout=30) as client:
                await asyncio.gather(*[worker(client) for _ in range(self.concurrency)])

        asyncio.run(main())
