"""Providers by plain calls: the ssh provider's commands are built and checked without a
host (a recorder runs instead of ssh); start flags for each resource kind."""

from __future__ import annotations

import shlex
import subprocess
from typing import Sequence

import pytest

from ember.autoscaler import ClusterLaunchError, SSHNodeProvider, load_config
from ember.autoscaler.config import DEFAULT_WORKER_COMMAND
from ember.autoscaler.provider import TAG_LAUNCH_ERROR, TAG_NODE_STATUS, TAG_NODE_TYPE, resource_flags

pytestmark = pytest.mark.timeout(30)


def test_resource_flags_declare_cpus_gpus_store_and_custom_resources() -> None:
    flags = shlex.split(resource_flags({"CPU": 2, "GPU": 1, "object_store_memory": 1 << 26, "accel": 1}))
    assert flags == ["--num-cpus", "2", "--num-gpus", "1", "--object-store-memory", str(1 << 26),
                     "--resources", '{"accel": 1}']
    assert shlex.split(resource_flags({"accel": 2})) == ["--num-cpus", "0", "--resources", '{"accel": 2}']


class Recorder:
    """Stands in for ssh: remembers argv, runs a local command with the chosen exit code."""

    def __init__(self, exit_code: int = 0, output: str = "") -> None:
        self.calls: list[list[str]] = []
        self.exit_code, self.output = exit_code, output

    def __call__(self, argv: Sequence[str]) -> subprocess.Popen:
        self.calls.append(list(argv))
        return subprocess.Popen(["/bin/sh", "-c", f"echo {shlex.quote(self.output)}; exit {self.exit_code}"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _provider(run: Recorder, ips: tuple = ("10.0.0.2", "10.0.0.3")) -> SSHNodeProvider:
    return SSHNodeProvider("demo", "10.0.0.1:6379", "/etc/ember/token", ips, "ubuntu",
                           {"cpu4": DEFAULT_WORKER_COMMAND}, ssh_private_key="/keys/id", run=run)


def test_ssh_start_command_joins_the_head_without_blocking() -> None:
    run = Recorder()
    provider = _provider(run)
    ids = provider.create_node("cpu4", {"CPU": 4}, 2)
    assert ids == ["demo-cpu4-10.0.0.2", "demo-cpu4-10.0.0.3"]
    argv = run.calls[0]
    assert argv[:7] == ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-o",
                        "ConnectTimeout=10"]
    assert argv[7:10] == ["-i", "/keys/id", "ubuntu@10.0.0.2"]
    remote = shlex.split(argv[10])
    assert remote[:6] == ["ember", "start", "--address", "10.0.0.1:6379", "--token-file", "/etc/ember/token"]
    assert "--block" not in remote and remote[remote.index("--node-ip-address") + 1] == "10.0.0.2"
    assert remote[remote.index("--num-cpus") + 1] == "4"
    assert provider.internal_address(ids[1]) == "10.0.0.3"
    assert provider.node_tags(ids[0])[TAG_NODE_TYPE] == "cpu4"


def test_ssh_one_node_per_host_and_terminate_runs_ember_stop() -> None:
    run = Recorder()
    provider = _provider(run, ips=("10.0.0.2",))
    [node_id] = provider.create_node("cpu4", {"CPU": 4}, 1)
    with pytest.raises(ClusterLaunchError, match="already runs a node"):
        provider.create_node("cpu4", {"CPU": 4}, 1)
    provider.terminate_node(node_id)
    assert run.calls[-1][-2:] == ["ubuntu@10.0.0.2", "ember stop"]
    assert provider.non_terminated_nodes() == []
    provider.create_node("cpu4", {"CPU": 4}, 1)  # the host is free again


def test_a_failed_ssh_start_is_tagged_with_its_last_output_line() -> None:
    provider = _provider(Recorder(exit_code=255, output="ssh: connect to host 10.0.0.2: No route to host"))
    [node_id] = provider.create_node("cpu4", {"CPU": 4}, 1)
    provider._nodes[node_id].proc.wait()
    tags = provider.node_tags(node_id)
    assert tags[TAG_NODE_STATUS] == "failed" and "No route to host" in tags[TAG_LAUNCH_ERROR]
    assert provider.node_tags(node_id)[TAG_LAUNCH_ERROR] == tags[TAG_LAUNCH_ERROR]  # read once, kept


def test_an_ssh_config_builds_the_ssh_provider() -> None:
    from ember.autoscaler.launcher import make_provider
    config = load_config({"provider": {"type": "ssh", "head_ip": "10.0.0.1", "worker_ips": ["10.0.0.2"],
                                       "ssh_user": "ubuntu"},
                          "available_node_types": {"cpu4": {"resources": {"CPU": 4}}}})
    provider = make_provider(config, "10.0.0.1:6379", "/etc/ember/token", "/tmp/unused")
    assert isinstance(provider, SSHNodeProvider) and provider.worker_ips == ["10.0.0.2"]
