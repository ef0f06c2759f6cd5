"""A cluster started with the real ``ember up`` from a YAML written by the test, on
loopback, under a private ``$TMPDIR`` (so it never meets another cluster on this
machine), torn down with ``ember down`` and checked to leave no process behind."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any, Iterator

import yaml

import ember
from cluster.conftest import ember_cli, free_port, reaped, wait_for_exit


@dataclass
class Autoscaled:
    config_path: str
    address: str
    tmpdir: str
    env: dict[str, str]

    def cli(self, *args: str, timeout_s: float = 90.0) -> subprocess.CompletedProcess:
        return subprocess.run(ember_cli() + list(args), env=self.env, capture_output=True, text=True,
                              timeout=timeout_s)

    def report(self) -> dict[str, Any]:
        from ember.autoscaler.state import find_state_actor
        actor = find_state_actor()
        return ember.get(actor.report.remote(), timeout=30) if actor is not None else {}

    def workers(self) -> list[dict]:
        return [n for n in ember.nodes() if n["Alive"] and not n["IsHead"] and n["Resources"]]

    def monitor_log(self) -> str:
        name = yaml.safe_load(open(self.config_path))["cluster_name"]
        with contextlib.suppress(OSError):
            with open(os.path.join(self.tmpdir, "ember-clusters", name, "monitor.log")) as f:
                return f.read()[-3000:]
        return ""


@contextlib.contextmanager
def autoscaled_cluster(config: dict) -> Iterator[Autoscaled]:
    """``ember up`` the config (its head port is filled in), connect as a driver, and
    ``ember down`` afterwards."""
    if ember.is_initialized():
        ember.shutdown()
    tmpdir = tempfile.mkdtemp(prefix="ea-", dir="/tmp")  # short: Unix socket paths are capped
    env = {**os.environ, "TMPDIR": tmpdir, "EMBER_NODE_TIMEOUT_S": "1.5"}
    env.pop("EMBER_TOKEN", None)
    port = free_port()
    config = {**config, "head": {**config.get("head", {}), "port": port}}
    path = os.path.join(tmpdir, "cluster.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    cluster = Autoscaled(path, f"127.0.0.1:{port}", tmpdir, env)
    saved_tempdir = tempfile.tempdir
    try:
        done = cluster.cli("up", path)
        assert done.returncode == 0, f"ember up failed:\n{done.stdout}{done.stderr}"
        tempfile.tempdir = tmpdir  # the driver finds the head's session under $TMPDIR
        ember.init(address=cluster.address)
        yield cluster
    finally:
        ember.shutdown()
        tempfile.tempdir = saved_tempdir
        done = cluster.cli("down", path)
        with reaped(tmpdir):
            assert done.returncode == 0, f"ember down failed:\n{done.stdout}{done.stderr}"
            wait_for_exit(tmpdir, 20, "the cluster's head, nodes, workers and monitor to exit")
