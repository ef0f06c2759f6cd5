"""Shared fixtures: a real local ember (node manager, fork server, workers) per module."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import socket
import subprocess
import sys
import time
import zipfile
from typing import Any, Callable, Iterator

import psutil
import pytest

import ember


def wait_for(predicate: Callable[[], Any], timeout_s: float = 20.0, what: str = "the condition",
             interval_s: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


class DriverOutput:
    """What this driver prints to sys.stdout / sys.stderr (the lines its workers forward),
    kept whole. capfd/capsys cannot be polled while another thread writes: readouterr
    reads and then truncates, so a line written in between is lost (a flaky test did)."""

    def __init__(self) -> None:
        self.out = io.StringIO()
        self.err = io.StringIO()

    def has(self, text: str, stream: str = "out") -> bool:
        return text in (self.out if stream == "out" else self.err).getvalue()


@contextlib.contextmanager
def driver_output() -> Iterator[DriverOutput]:
    """Collect the driver's output within the block. Set in the test's body: pytest puts its
    own sys.stdout back at the start of each test phase, over anything a fixture set."""
    output = DriverOutput()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = output.out, output.err
    try:
        yield output
    finally:
        sys.stdout, sys.stderr = saved


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts: only its parent can reap it)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _ember_children() -> list[psutil.Process]:
    return [c for c in psutil.Process().children(recursive=True) if c.is_running()
            and c.status() != psutil.STATUS_ZOMBIE]


def assert_no_leaked_processes(deadline_s: float = 10.0) -> None:
    """Every process ember started is gone (polls: exits are asynchronous)."""
    end = time.monotonic() + deadline_s
    while _ember_children():
        if time.monotonic() > end:
            raise AssertionError(f"leaked processes: {[c.cmdline() for c in _ember_children()]}")
        time.sleep(0.05)


@pytest.fixture(scope="session", autouse=True)
def _pytest_temp_root(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fix pytest's temp root before any test runs: cluster fixtures point
    ``tempfile.tempdir`` at a private directory they delete afterwards, and a root first
    made while one of them is up would vanish with it (and every later ``tmp_path``)."""
    tmp_path_factory.getbasetemp()


@pytest.fixture(scope="module")
def ember_local():
    """ember.init(num_cpus=2) for a test module; checks cleanup at the end."""
    if ember.is_initialized():
        ember.shutdown()
    info = ember.init(num_cpus=2, object_store_memory=512 << 20)
    yield info
    ember.shutdown()
    assert not os.path.exists(info["session_dir"])
    assert_no_leaked_processes()


@pytest.fixture
def fresh_ember():
    """A cluster of its own for one test (for tests that kill or exhaust things)."""
    if ember.is_initialized():
        ember.shutdown()
    info = ember.init(num_cpus=2, object_store_memory=256 << 20)
    yield info
    ember.shutdown()
    assert_no_leaked_processes()


def build_wheel(directory: str, name: str, version: str, source: str) -> str:
    """A minimal pure-Python wheel (what `pip wheel` would make for one module)."""
    path = os.path.join(directory, f"{name}-{version}-py3-none-any.whl")
    dist = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": source,
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: ember-tests\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    record = []
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in files.items():
            data = text.encode()
            zf.writestr(member, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{member},sha256={digest},{len(data)}")
        record.append(f"{dist}/RECORD,,")
        zf.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return path


#: Debian's Redis server (apt-get install redis-server), for the head's Redis storage.
REDIS_SERVER = "/usr/bin/redis-server"


@pytest.fixture
def redis_server():
    """A throwaway redis-server on a free loopback port (no persistence); yields its URL."""
    if not os.path.exists(REDIS_SERVER):
        pytest.skip(f"{REDIS_SERVER} is not installed (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--protected-mode", "yes"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
                c.sendall(b"PING\r\n")
                return c.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        wait_for(answers, timeout_s=10, what=f"redis-server on port {port}")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
