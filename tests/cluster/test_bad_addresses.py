"""Bad input at connect time: each is a typed error naming the thing and the fix, and the
cluster that was there keeps working.

- the address of something that is not an ember head (a Redis-like server);
- an address that does not answer (a listener that never accepts: the error comes within
  the connect timeout, naming the address) or where nothing listens;
- two heads started on one port;
- a node of another ember version (a copy of the package with another version number);
- a driver of another Python minor version (its handshake says so: refused before any
  pickle crosses).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

import ember
from ember._wire import handshake
from ember.exceptions import ClusterConnectionError, VersionMismatchError

from .conftest import (OPERATOR_TOKEN, OperatorCluster, _read_nodes, ember_cli, free_port, operator_cluster,
                       wait_for)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorCluster]:
    """One operator-token cluster for the module: each test leaves it as it found it."""
    with operator_cluster(tmp_path_factory.mktemp("token")) as cluster:
        yield cluster


@pytest.fixture
def token_file(tmp_path: Path) -> str:
    path = tmp_path / "token"
    path.write_text(OPERATOR_TOKEN)
    return str(path)


@pytest.fixture
def redis_like() -> Iterator[int]:
    """A server that answers like Redis, which owns ember's default head port (6379)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"-ERR unknown command\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def test_connecting_to_something_that_is_not_an_ember_head_says_so(redis_like, token_file) -> None:
    with pytest.raises(ClusterConnectionError) as info:
        ember.init(f"ember://127.0.0.1:{redis_like}", token_file=token_file)
    message = str(info.value)
    assert f"127.0.0.1:{redis_like}" in message and "not an ember node" in message, message
    assert not ember.is_initialized()


def test_an_address_that_does_not_answer_fails_within_the_connect_timeout(token_file, monkeypatch) -> None:
    monkeypatch.setattr(handshake, "CONNECT_TIMEOUT_S", 1.0)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes connects; nobody ever accepts or answers
    try:
        port = silent.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(ClusterConnectionError) as info:
            ember.init(f"ember://127.0.0.1:{port}", token_file=token_file)
        elapsed_s = time.monotonic() - start
        assert f"127.0.0.1:{port}" in str(info.value) and "1 s" in str(info.value), str(info.value)
        assert elapsed_s < 30, elapsed_s  # the 1 s timeout, not a hang
    finally:
        silent.close()
    port = free_port()
    with pytest.raises(ClusterConnectionError) as info:
        ember.init(f"ember://127.0.0.1:{port}", token_file=token_file)
    assert f"127.0.0.1:{port}" in str(info.value) and "nothing listens" in str(info.value)
    assert not ember.is_initialized()


def test_a_second_head_on_the_same_port_is_refused_and_the_first_keeps_working(cluster, token_file) -> None:
    other_tmp = tempfile.mkdtemp(prefix="e2-", dir="/tmp")
    env = {**os.environ, "TMPDIR": other_tmp}
    env.pop("EMBER_TOKEN", None)
    port = cluster.address.rpartition(":")[2]
    try:
        done = subprocess.run(ember_cli() + ["start", "--head", "--port", port], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"port {port}" in done.stderr and "already in use" in done.stderr, done.stderr
        assert "--port" in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert not _read_nodes(other_tmp)
    finally:
        subprocess.run(ember_cli() + ["stop"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(other_tmp, ignore_errors=True)
    # HOST:PORT without ember://: the head's session is not visible here (another $TMPDIR),
    # so this driver reaches it over TCP, as one on another machine would.
    info = ember.init(cluster.address, token_file=token_file)
    try:
        assert info["address"] == f"tcp:{cluster.address}"
        assert ember.get(ember.put(41)) == 41
        assert sum(n["Alive"] for n in ember.nodes()) == 2
    finally:
        ember.shutdown()


def _package_with_version(root: Path, version: str) -> Path:
    """A copy of the ember package whose version is ``version`` (another installation)."""
    package = Path(ember.__file__).parent
    copy = root / "ember"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "_version.py").write_text(f'__version__ = "{version}"\n')
    return root


def test_a_node_of_another_ember_version_is_refused_naming_both_versions(cluster, tmp_path,
                                                                          token_file) -> None:
    other = _package_with_version(tmp_path / "other-install", "0.0.9")
    env = {**cluster.env, "PYTHONPATH": str(other)}
    done = subprocess.run([sys.executable, "-m", "ember.cli", "start", "--address", cluster.address,
                           "--token-file", token_file, "--num-cpus", "1"],
                          env=env, capture_output=True, text=True, timeout=60, cwd=str(other))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "0.0.9" in done.stderr and ember.__version__ in done.stderr, done.stderr
    assert "VersionMismatch" in done.stderr or "runs ember" in done.stderr, done.stderr
    assert len(_read_nodes(cluster.tmpdir)) == 2
    ember.init(f"ember://{cluster.address}", token_file=token_file)
    try:
        assert sum(n["Alive"] for n in ember.nodes()) == 2
    finally:
        ember.shutdown()


def test_a_driver_of_another_python_minor_version_is_refused_before_any_pickle(cluster, token_file,
                                                                              monkeypatch) -> None:
    here = handshake.LOCAL
    other_python = f"{sys.version_info[0]}.{sys.version_info[1] - 1}"
    monkeypatch.setattr(handshake, "LOCAL", handshake.Versions(here.ember, other_python))
    with pytest.raises(VersionMismatchError) as info:
        ember.init(f"ember://{cluster.address}", token_file=token_file)
    message = str(info.value)
    assert f"Python {other_python}" in message and f"Python {here.python}" in message, message
    assert not ember.is_initialized()
    monkeypatch.setattr(handshake, "LOCAL", here)
    # The head refused it as well, before reading (unpickling) anything it sent (it logs
    # that on its own thread, so the line may land just after the client gave up).
    log_path = os.path.join(cluster.head_session, "logs", "node_manager.log")

    def refusal_logged() -> bool:
        with open(log_path) as f:
            return f"Python {other_python}" in f.read()

    wait_for(refusal_logged, timeout_s=10, what="the head to log the refused Python version")
    ember.init(f"ember://{cluster.address}", token_file=token_file)
    try:
        assert ember.get(ember.put("still fine")) == "still fine"
    finally:
        ember.shutdown()
