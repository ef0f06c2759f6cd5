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
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
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
    actors = ember.get(get_controller().replica_actors.remote(app, deployment))
    return [ember.get(a.stats.remote())["pid"] for _, a in actors]


def count(items: Any) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out
