"""SSHNodeProvider: one worker node per host from a fixed list, started over ssh.

Each launch runs ``ssh user@host '<start command>'`` with ``ember start`` in the
foreground of the ssh session until the node has joined (no ``--block``), so the ssh
exit status says whether the start worked; terminating runs ``ember stop`` on the host.
The commands are built by plain methods (tested without a host); ``run`` carries them
out and is replaceable. ember and the token file must exist on every host at the
paths the config names, and the head must listen on an address the hosts can reach.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

from .._types import ResourceShape
from .errors import ClusterLaunchError
from .provider import TAG_LAUNCH_ERROR, TAG_NODE_STATUS, TAG_NODE_TYPE, NodeProvider, resource_flags

#: Start and stop commands run this way; a test passes a recorder instead.
Runner = Callable[[Sequence[str]], subprocess.Popen]


def _popen(argv: Sequence[str]) -> subprocess.Popen:
    return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


@dataclass
class _SSHNode:
    """A node this provider started on an SSH host."""

    node_id: str
    node_type: str
    host: str
    proc: subprocess.Popen | None
    error: str = ""


class SSHNodeProvider(NodeProvider):
    """Worker nodes on the hosts in ``worker_ips`` (see the module docstring)."""

    def __init__(self, cluster_name: str, head_address: str, token_file: str, worker_ips: Sequence[str],
                 ssh_user: str, start_commands: dict[str, str], ssh_private_key: str | None = None,
                 run: Runner = _popen) -> None:
        self.cluster_name, self.head_address, self.token_file = cluster_name, head_address, token_file
        self.worker_ips, self.ssh_user, self.ssh_private_key = list(worker_ips), ssh_user, ssh_private_key
        self.start_commands, self.run = start_commands, run
        self._nodes: dict[str, _SSHNode] = {}
        self._lock = threading.Lock()

    def ssh_argv(self, host: str, remote_command: str) -> list[str]:
        """``ssh`` argv that runs ``remote_command`` on ``host`` without prompting."""
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
                "-o", "ConnectTimeout=10"]
        if self.ssh_private_key:
            argv += ["-i", self.ssh_private_key]
        return argv + [f"{self.ssh_user}@{host}", remote_command]

    def start_command(self, node_type: str, resources: ResourceShape, host: str) -> str:
        template = self.start_commands[node_type]
        command = template.format(ember="ember", head_address=self.head_address,
                                  token_file=shlex.quote(self.token_file), port=0, node_ip=host,
                                  resource_flags=resource_flags(resources), node_type=node_type)
        # Over ssh the start must return once the node has joined: no --block.
        return command.replace(" --block", "")

    def stop_command(self) -> str:
        return "ember stop"

    def create_node(self, node_type: str, resources: ResourceShape, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            with self._lock:
                busy = {n.host for n in self._nodes.values()}
                host = next((h for h in self.worker_ips if h not in busy), None)
                if host is None:
                    raise ClusterLaunchError(
                        f"every host in provider.worker_ips ({', '.join(self.worker_ips)}) already runs a "
                        "node of this cluster: add hosts, or lower max_workers to their number")
                node_id = f"{self.cluster_name}-{node_type}-{host}"
                self._nodes[node_id] = _SSHNode(node_id, node_type, host, None)
            self._nodes[node_id].proc = self.run(self.ssh_argv(host, self.start_command(node_type, resources, host)))
            ids.append(node_id)
        return ids

    def terminate_node(self, node_id: str) -> None:
        with self._lock:
            node = self._nodes.pop(node_id, None)
        if node is None:
            return
        if node.proc is not None and node.proc.poll() is None:
            node.proc.terminate()
        self.run(self.ssh_argv(node.host, self.stop_command())).wait()

    def non_terminated_nodes(self) -> list[str]:
        with self._lock:
            return list(self._nodes)

    def node_tags(self, node_id: str) -> dict[str, str]:
        with self._lock:
            node = self._nodes[node_id]
        tags = {TAG_NODE_TYPE: node.node_type, TAG_NODE_STATUS: "launching"}
        code = node.proc.poll() if node.proc is not None else None
        if code not in (None, 0):
            if not node.error:
                output = node.proc.stdout.read().decode(errors="replace").strip() if node.proc.stdout else ""
                node.error = (output.splitlines() or [f"ssh exited {code}"])[-1][:500]
            tags[TAG_NODE_STATUS] = "failed"
            tags[TAG_LAUNCH_ERROR] = node.error
        return tags

    def internal_address(self, node_id: str) -> str:
        with self._lock:
            return self._nodes[node_id].host
