"""A three-node loopback cluster started with the real ``ember`` CLI.

The head (1 CPU) and two worker nodes (2 CPUs each, custom resources ``node_b`` and
``node_c``) are separate ``ember start`` processes, exactly as a user would start them.
Each cluster lives under a private ``$TMPDIR`` so that it never meets another cluster on
this machine: ``ember start --head`` refuses to start a second head per sessions root,
and another engineer's ``ember start`` must not become our "current" session.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import psutil
import pytest

import ember
from conftest import assert_no_leaked_processes, wait_for

#: Seconds of heartbeat silence before the head declares a node dead (default 3.0).
NODE_TIMEOUT_S = 1.5
_START_DEADLINE_S = 30.0


def ember_cli() -> list[str]:
    """The ``ember`` console script next to this interpreter, else ``python -m ember.cli``."""
    script = os.path.join(os.path.dirname(sys.executable), "ember")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "ember.cli"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    """What a test needs to know about a running CLI-started cluster."""

    port: int
    address: str                      #: "127.0.0.1:PORT" of the head
    tmpdir: str                       #: the private $TMPDIR every process of the cluster uses
    env: dict[str, str]               #: environment for further CLI calls or drivers
    node_ids: dict[str, str] = field(default_factory=dict)    #: role ("head", "b", "c") -> NodeID hex
    pids: dict[str, int] = field(default_factory=dict)        #: role -> node manager pid
    sessions: dict[str, str] = field(default_factory=dict)    #: role -> session directory
    tcp_addresses: dict[str, str] = field(default_factory=dict)  #: role -> "tcp:HOST:PORT"

    def role_of(self, node_id_hex: str) -> str:
        return {v: k for k, v in self.node_ids.items()}.get(node_id_hex, f"unknown node {node_id_hex}")


def _sessions_root(tmpdir: str) -> str:
    return os.path.join(tmpdir, "ember-sessions")


def _read_nodes(tmpdir: str) -> list[tuple[str, dict]]:
    out = []
    root = _sessions_root(tmpdir)
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(root, name, "node.json")) as f:
                out.append((os.path.join(root, name), json.load(f)))
    return out


def _run_cli(args: list[str], env: dict[str, str], timeout_s: float = _START_DEADLINE_S,
             fd_limit: int | None = None) -> None:
    """Run the ember CLI; ``fd_limit``: its (and so the node's) open-file limit, soft and hard."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    done = subprocess.run(ember_cli() + args, env=env, capture_output=True, text=True, timeout=timeout_s,
                          preexec_fn=limit if fd_limit is not None else None)
    if done.returncode != 0:
        raise RuntimeError(f"`ember {' '.join(args)}` exited {done.returncode}:\n{done.stdout}{done.stderr}")


def _alive_nodes() -> list[dict]:
    # A node appears on joining and reports its resources with its first heartbeat.
    return [n for n in ember.nodes() if n["Alive"] and n["Resources"]]


def _stop_pids(pids: list[int], deadline_s: float = 10.0) -> list[int]:
    """SIGTERM each pid, poll until gone, SIGKILL what is left (returned)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + deadline_s
    while any(_running(pid) for pid in pids) and time.monotonic() < end:
        time.sleep(0.05)
    stuck = [pid for pid in pids if _running(pid)]
    for pid in stuck:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return stuck


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def cluster_processes(tmpdir: str) -> list[psutil.Process]:
    """Every live process of a cluster: node managers, fork servers, workers, drivers.

    They all inherit the cluster's private ``TMPDIR``, which finds them even after their
    node manager died and they were re-parented (CLI nodes are not children of pytest).
    """
    out = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("TMPDIR") == tmpdir and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
    return out


@contextlib.contextmanager
def reaped(tmpdir: str) -> Iterator[None]:
    """Whatever the block asserts about a cluster's exit, afterwards kill every process
    still running under its private ``TMPDIR`` and remove that directory."""
    try:
        yield
    finally:
        for proc in cluster_processes(tmpdir):
            with contextlib.suppress(psutil.Error):
                proc.kill()
        shutil.rmtree(tmpdir, ignore_errors=True)


def wait_for_exit(tmpdir: str, timeout_s: float, what: str) -> None:
    """Poll until no process of the cluster under ``tmpdir`` is left."""
    wait_for(lambda: not cluster_processes(tmpdir), timeout_s=timeout_s, what=what)


@contextlib.contextmanager
def start_cluster() -> Iterator[Cluster]:
    """Start head + node_b + node_c with the CLI, connect this process as a driver, and
    tear it all down afterwards, checking nothing is left behind."""
    if ember.is_initialized():
        ember.shutdown()
    tmpdir = tempfile.mkdtemp(prefix="ec-", dir="/tmp")  # short: Unix socket paths are capped at 107 bytes
    env = {**os.environ, "TMPDIR": tmpdir, "EMBER_NODE_TIMEOUT_S": str(NODE_TIMEOUT_S)}
    env.pop("EMBER_TOKEN", None)
    port = free_port()
    cluster = Cluster(port=port, address=f"127.0.0.1:{port}", tmpdir=tmpdir, env=env)
    saved_tempdir = tempfile.tempdir
    started: list[int] = []
    try:
        _run_cli(["start", "--head", "--port", str(port), "--num-cpus", "1"], env)
        started = [n["pid"] for _d, n in _read_nodes(tmpdir)]
        for marker in ("node_b", "node_c"):
            _run_cli(["start", "--address", cluster.address, "--num-cpus", "2",
                      "--resources", json.dumps({marker: 1})], env)
            started = [n["pid"] for _d, n in _read_nodes(tmpdir)]
        # The driver finds the head's session under $TMPDIR, like `ember start` did.
        tempfile.tempdir = tmpdir
        ember.init(address=cluster.address)
        nodes = wait_for(lambda: len(alive := _alive_nodes()) == 3 and alive, timeout_s=_START_DEADLINE_S,
                         what="3 alive nodes in ember.nodes()")
        for node in nodes:
            role = ("head" if node["IsHead"] else "b" if "node_b" in node["Resources"]
                    else "c" if "node_c" in node["Resources"] else "?")
            cluster.node_ids[role] = node["NodeID"]
            for session_dir, info in _read_nodes(tmpdir):
                if info["tcp_address"].endswith(f":{node['NodeManagerPort']}"):
                    cluster.pids[role], cluster.sessions[role] = info["pid"], session_dir
                    cluster.tcp_addresses[role] = info["tcp_address"]
        assert sorted(cluster.node_ids) == ["b", "c", "head"], json.dumps(nodes, indent=1)
        assert sorted(cluster.pids) == ["b", "c", "head"], _read_nodes(tmpdir)
        yield cluster
    finally:
        ember.shutdown()
        started = sorted(set(started) | {n["pid"] for _d, n in _read_nodes(tmpdir)})
        stuck = _stop_pids(started)
        if stuck:
            warnings.warn(f"node manager(s) {stuck} ignored SIGTERM for 10 s and were killed",
                          RuntimeWarning, stacklevel=1)
        # What `ember stop` does after stopping a node: its session directory goes, and
        # the head's "current" record with it.
        for session_dir, _info in _read_nodes(tmpdir):
            shutil.rmtree(session_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(_sessions_root(tmpdir), "current"))
        tempfile.tempdir = saved_tempdir
        with reaped(tmpdir):
            wait_for_exit(tmpdir, 10, "the cluster's node managers, fork servers and workers to exit")
            assert_no_leaked_processes()
            assert not _read_nodes(tmpdir)
            leftover = os.listdir(_sessions_root(tmpdir)) if os.path.isdir(_sessions_root(tmpdir)) else []
            assert not leftover, f"session files left behind: {leftover}"


@pytest.fixture(scope="module")
def three_nodes() -> Iterator[Cluster]:
    """A 3-node CLI cluster shared by a test module (see the module docstring)."""
    with start_cluster() as cluster:
        yield cluster


@pytest.fixture
def fresh_three_nodes() -> Iterator[Cluster]:
    """A 3-node CLI cluster of its own for one destructive test."""
    with start_cluster() as cluster:
        yield cluster


@dataclass
class Head:
    """A one-node cluster started with ``ember start --head`` for drivers in subprocesses."""

    address: str                      #: "127.0.0.1:PORT"
    tmpdir: str                       #: its private $TMPDIR
    env: dict[str, str]               #: environment for drivers (joins this head)
    pid: int                          #: the node manager's pid
    session_dir: str

    def log_text(self) -> str:
        """The node manager's log so far."""
        with open(os.path.join(self.session_dir, "logs", "node_manager.log"), errors="replace") as f:
            return f.read()

    def run_driver(self, source: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
        """Run ``source`` as a driver script that joins this head (``ADDRESS`` is predefined)."""
        return subprocess.run([sys.executable, "-c", f"ADDRESS = {self.address!r}\n{source}"],
                              env=self.env, capture_output=True, text=True, timeout=timeout_s)

    def start_driver(self, source: str, **popen: object) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", f"ADDRESS = {self.address!r}\n{source}"],
                                env=self.env, **popen)


@contextlib.contextmanager
def start_head(num_cpus: int = 2, extra_env: dict[str, str] | None = None,
               fd_limit: int | None = None) -> Iterator[Head]:
    """``ember start --head`` under a private $TMPDIR with the ledger's debug check on
    (EMBER_DEBUG_LEDGER=1); stopped with ``ember stop`` and checked for leftovers.
    ``fd_limit`` caps the node's open files (soft and hard, so start cannot raise it)."""
    tmpdir = tempfile.mkdtemp(prefix="eh-", dir="/tmp")
    env = {**os.environ, "TMPDIR": tmpdir, "EMBER_DEBUG_LEDGER": "1", **(extra_env or {})}
    env.pop("EMBER_TOKEN", None)
    port = free_port()
    try:
        _run_cli(["start", "--head", "--port", str(port), "--num-cpus", str(num_cpus)], env,
                 fd_limit=fd_limit)
        (session_dir, info), = _read_nodes(tmpdir)
        yield Head(f"127.0.0.1:{port}", tmpdir, env, info["pid"], session_dir)
    finally:
        stop_cli_nodes(tmpdir, env, "the head's node manager, fork server, workers and drivers to exit")


def stop_cli_nodes(tmpdir: str, env: dict[str, str], what: str) -> None:
    """``ember stop`` the nodes under ``tmpdir`` (SIGTERM, then SIGKILL, what ignores it) and
    check that every process of theirs is gone."""
    pids = [n["pid"] for _d, n in _read_nodes(tmpdir)]
    with contextlib.suppress(Exception):
        _run_cli(["stop"], env)
    _stop_pids(pids)
    with reaped(tmpdir):
        wait_for_exit(tmpdir, 15, what)


#: The secret an operator hands every node and driver of a cluster (a CI variable, say).
OPERATOR_TOKEN = "ops-secret-0123456789abcdef"


@dataclass
class OperatorCluster:
    """A head and one worker node (custom resource ``node_b``) started with the CLI, both
    given one operator token: the head by $EMBER_TOKEN, the node by --token-file."""

    address: str                      #: "127.0.0.1:PORT" of the head
    tmpdir: str                       #: the cluster's private $TMPDIR
    env: dict[str, str]               #: the cluster's environment (no token in it)
    token_file: str                   #: a file holding OPERATOR_TOKEN
    head_session: str                 #: the head's session directory

    def run_driver(self, source: str, tmpdir: str, extra_env: dict[str, str] | None = None,
                   timeout_s: float = 120.0) -> subprocess.CompletedProcess:
        """Run ``source`` as a driver on "another machine": its own $TMPDIR, the token in
        $EMBER_TOKEN, ``ADDRESS`` predefined."""
        env = {**os.environ, "TMPDIR": tmpdir, "EMBER_TOKEN": OPERATOR_TOKEN, **(extra_env or {})}
        return subprocess.run([sys.executable, "-c", f"ADDRESS = {self.address!r}\n{source}"],
                              env=env, capture_output=True, text=True, timeout=timeout_s)


@contextlib.contextmanager
def operator_cluster(token_dir: Path, node_cpus: int = 2) -> Iterator[OperatorCluster]:
    """Start the head (1 CPU) and one node with OPERATOR_TOKEN; stop both and check that
    nothing is left behind."""
    if ember.is_initialized():
        ember.shutdown()
    tmpdir = tempfile.mkdtemp(prefix="eo-", dir="/tmp")
    env = {**os.environ, "TMPDIR": tmpdir}
    env.pop("EMBER_TOKEN", None)
    token_file = token_dir / "cluster-token"
    token_file.write_text(OPERATOR_TOKEN + "\n")
    port = free_port()
    try:
        _run_cli(["start", "--head", "--port", str(port), "--num-cpus", "1"],
                 {**env, "EMBER_TOKEN": OPERATOR_TOKEN})
        (head_session, _info), = _read_nodes(tmpdir)
        _run_cli(["start", "--address", f"127.0.0.1:{port}", "--token-file", str(token_file),
                  "--num-cpus", str(node_cpus), "--resources", json.dumps({"node_b": 1})], env)
        yield OperatorCluster(f"127.0.0.1:{port}", tmpdir, env, str(token_file), head_session)
    finally:
        stop_cli_nodes(tmpdir, env, "the operator cluster's processes to exit")
