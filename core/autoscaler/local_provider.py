"""LocalNodeProvider: worker nodes as ``ember start --address ... --block`` processes on
this machine, each with its own port and session (object store), on loopback only.

For tests and for elastic use of one big machine. Each node is a child process this
provider owns: terminating it sends SIGTERM to its process group, and the blocking
``ember start`` stops its node manager and removes its session on the way out. (Not
``ember stop``: that stops every CLI node on the machine, other clusters' too.) The
ids, pids and ports are also written to ``nodes.json`` in the state directory so
that ``ember down`` can stop them when the monitor that owned them is gone.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .._types import ResourceShape
from .provider import TAG_LAUNCH_ERROR, TAG_NODE_STATUS, TAG_NODE_TYPE, NodeProvider, resource_flags

log = logging.getLogger("ember.autoscaler")

#: How long a node gets to stop after SIGTERM before its process group is killed.
STOP_TIMEOUT_S = 10.0


def ember_command() -> str:
    """The ``ember`` console script next to this interpreter, else ``python -m ember.cli``."""
    script = os.path.join(os.path.dirname(sys.executable), "ember")
    return script if os.path.exists(script) else f"{sys.executable} -m ember.cli"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class _LocalNode:
    """A node this provider started as a local node-manager process."""

    node_id: str
    node_type: str
    port: int
    proc: subprocess.Popen
    log_path: str
    error: str = ""


class LocalNodeProvider(NodeProvider):
    """Worker nodes as local processes (see the module docstring).

    Args:
        head_address: ``127.0.0.1:PORT`` of the head.
        token_file: file holding the cluster token (the head's ``<session>/token``).
        state_dir: where node logs and ``nodes.json`` go.
        start_commands: node type -> command template (config.WORKER_PLACEHOLDERS).
    """

    def __init__(self, cluster_name: str, head_address: str, token_file: str, state_dir: str,
                 start_commands: dict[str, str], host: str = "127.0.0.1") -> None:
        self.cluster_name, self.head_address, self.token_file = cluster_name, head_address, token_file
        self.state_dir, self.start_commands, self.host = state_dir, start_commands, host
        os.makedirs(os.path.join(state_dir, "logs"), exist_ok=True)
        self._nodes: dict[str, _LocalNode] = {}
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def command_for(self, node_type: str, resources: ResourceShape, port: int) -> str:
        """The shell command that starts one node of ``node_type`` listening on ``port``."""
        return self.start_commands[node_type].format(
            ember=ember_command(), head_address=self.head_address, token_file=self.token_file,
            port=port, node_ip=self.host, resource_flags=resource_flags(resources), node_type=node_type)

    def create_node(self, node_type: str, resources: ResourceShape, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            port = free_port(self.host)
            node_id = f"{self.cluster_name}-{node_type}-{next(self._seq)}"
            log_path = os.path.join(self.state_dir, "logs", f"{node_id}.log")
            with open(log_path, "ab") as out:
                # PYTHONUNBUFFERED: the node's "ember joined" line and errors reach the log now.
                proc = subprocess.Popen(["/bin/sh", "-c", self.command_for(node_type, resources, port)],
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            with self._lock:
                self._nodes[node_id] = _LocalNode(node_id, node_type, port, proc, log_path)
            ids.append(node_id)
        self._save()
        return ids

    def terminate_node(self, node_id: str) -> None:
        with self._lock:
            node = self._nodes.pop(node_id, None)
        if node is None:
            return
        stop_process_group(node.proc.pid, lambda: node.proc.poll() is not None)
        self._save()

    def non_terminated_nodes(self) -> list[str]:
        with self._lock:
            return list(self._nodes)

    def node_tags(self, node_id: str) -> dict[str, str]:
        with self._lock:
            node = self._nodes[node_id]
        tags = {TAG_NODE_TYPE: node.node_type, TAG_NODE_STATUS: "launching"}
        if node.proc.poll() is not None:
            tags[TAG_NODE_STATUS] = "failed"
            tags[TAG_LAUNCH_ERROR] = _last_line(node.log_path) or f"exit code {node.proc.returncode}"
        return tags

    def internal_address(self, node_id: str) -> str:
        with self._lock:
            return f"{self.host}:{self._nodes[node_id].port}"

    def _save(self) -> None:
        with self._lock:
            record = {n.node_id: {"pid": n.proc.pid, "port": n.port, "node_type": n.node_type}
                      for n in self._nodes.values()}
        tmp = os.path.join(self.state_dir, "nodes.json.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.replace(tmp, os.path.join(self.state_dir, "nodes.json"))


def stop_process_group(pid: int, gone: Callable[[], bool] | None = None,
                       timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM the process group led by ``pid``, poll until it is gone, SIGKILL after
    ``timeout_s``. Returns True if it stopped on SIGTERM."""
    is_gone = gone if gone is not None else (lambda: not _alive(pid))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if is_gone():
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return False


def _alive(pid: int) -> bool:
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _last_line(path: str) -> str:
    with contextlib.suppress(OSError):
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f.read().splitlines() if line.strip()]
        return lines[-1][:500] if lines else ""
    return ""
