"""``ember up`` / ``ember down``: start a cluster's head and its autoscaler from a YAML,
and stop everything it started.

``ember up`` runs on the head's machine: it starts the head with ``head.start_command``,
then the monitor (``python -m ember.autoscaler``) in its own session, which
launches worker nodes through the provider. What it started is recorded in
``$TMPDIR/ember-clusters/<cluster_name>/state.json``; ``ember down`` stops the monitor
(which terminates its worker nodes), any node a dead monitor left behind, then the head.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from ..exceptions import EmberError
from .._node.launcher import clear_current, find_by_tcp_address
from .config import ClusterConfig, load_config
from .errors import ClusterLaunchError
from .local_provider import LocalNodeProvider, _alive, _last_line, ember_command, stop_process_group
from .provider import NodeProvider, resource_flags
from .ssh_provider import SSHNodeProvider

#: How long ``ember up`` waits for the head and for the monitor's first round.
START_TIMEOUT_S = 60.0


def state_dir_for(config: ClusterConfig) -> str:
    return os.path.join(tempfile.gettempdir(), "ember-clusters", config.cluster_name)


def make_provider(config: ClusterConfig, head_address: str, token_file: str, state_dir: str) -> NodeProvider:
    """The configured provider, with each node type's start command."""
    commands = {name: t.start_command or config.worker_start_command for name, t in config.node_types.items()}
    if config.provider.type == "local":
        return LocalNodeProvider(config.cluster_name, head_address, token_file, state_dir, commands,
                                 host=config.provider.head_ip)
    return SSHNodeProvider(config.cluster_name, head_address, token_file, config.provider.worker_ips,
                           config.provider.ssh_user or "", commands, config.provider.ssh_private_key)


def up(config_path: str) -> dict[str, Any]:
    """Start the head and the autoscaler; returns the recorded state.

    Raises:
        ClusterConfigError: a field of the YAML is wrong.
        ClusterLaunchError: the cluster is already up, or the head or monitor did not start.
    """
    config = load_config(config_path)
    state_dir = state_dir_for(config)
    state_path = os.path.join(state_dir, "state.json")
    if os.path.exists(state_path):
        with open(state_path) as f:
            old = json.load(f)
        if _alive(old.get("monitor_pid", -1)) or _alive(old.get("head_pid", -1)):
            raise ClusterLaunchError(f"cluster {config.cluster_name!r} is already up (head at "
                                     f"{old['head_address']}): run `ember down {config_path}` first")
        shutil.rmtree(state_dir, ignore_errors=True)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    head_address = f"{config.provider.head_ip}:{config.head_port}"
    command = config.head_start_command.format(ember=ember_command(), port=config.head_port,
                                               head_ip=config.provider.head_ip,
                                               resource_flags=resource_flags(config.head_resources))
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=START_TIMEOUT_S)
    if done.returncode != 0:
        raise ClusterLaunchError(f"the head did not start: `{command}` exited {done.returncode}: "
                                 f"{(done.stderr or done.stdout).strip()[-500:]}")
    try:
        head_session, _address, _token, head_pid = find_by_tcp_address(head_address)
    except EmberError as e:
        raise ClusterLaunchError(f"the head start command ran, but no node listens on {head_address}: "
                                 "it must start `ember start --head --port {port}`") from e
    token_file = config.token_file or os.path.join(head_session, "token")
    state = {"head_address": head_address, "head_pid": head_pid, "head_session": head_session,
             "token_file": token_file, "config": os.path.abspath(config_path)}
    log_path = os.path.join(state_dir, "monitor.log")
    with open(log_path, "ab") as log:
        monitor = subprocess.Popen(
            [sys.executable, "-m", "ember.autoscaler", os.path.abspath(config_path),
             "--head-address", head_address, "--token-file", token_file, "--state-dir", state_dir],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    state["monitor_pid"] = monitor.pid
    with open(state_path, "w") as f:
        json.dump(state, f)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not os.path.exists(os.path.join(state_dir, "monitor.ready")):
        if monitor.poll() is not None or time.monotonic() > deadline:
            reason = _last_line(log_path) or f"exit code {monitor.poll()}"
            down(config_path)
            raise ClusterLaunchError(f"the autoscaler did not start ({reason}); its log: {log_path}")
        time.sleep(0.05)
    return state


def down(config_path: str) -> bool:
    """Stop the autoscaler, its worker nodes and the head. False if nothing was up.

    Raises:
        ClusterConfigError: a field of the YAML is wrong.
    """
    config = load_config(config_path)
    state_dir = state_dir_for(config)
    try:
        with open(os.path.join(state_dir, "state.json")) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return False
    # The monitor terminates the nodes it launched on SIGTERM; give it time to.
    stop_process_group(state["monitor_pid"], timeout_s=30.0)
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(state_dir, "nodes.json")) as f:
            for node in json.load(f).values():  # left behind by a monitor that died
                if _alive(node["pid"]):
                    stop_process_group(node["pid"])
    pid = state["head_pid"]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    clear_current(state["head_session"])
    shutil.rmtree(state["head_session"], ignore_errors=True)
    shutil.rmtree(state_dir, ignore_errors=True)
    return True
