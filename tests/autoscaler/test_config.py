"""The cluster YAML: a good one loads; each bad field raises ClusterConfigError naming it
and the fix, and the next load still works."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from ember.autoscaler import ClusterConfigError, load_config

pytestmark = pytest.mark.timeout(30)

GOOD = {"cluster_name": "demo", "max_workers": 3, "idle_timeout_s": 5,
        "provider": {"type": "local"}, "head": {"port": 6390, "resources": {"CPU": 0}},
        "available_node_types": {"cpu1": {"resources": {"CPU": 1}, "min_workers": 1, "max_workers": 2}}}


def test_a_good_config_loads_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text("cluster_name: demo\nidle_timeout_minutes: 0.5\nprovider: {type: local}\n"
                    "available_node_types:\n  cpu1: {resources: {CPU: 1}, max_workers: 2}\n")
    config = load_config(str(path))
    assert config.idle_timeout_s == 30.0 and config.max_workers == 2 and config.head_port == 6379
    assert config.node_types["cpu1"].resources == {"CPU": 1.0} and config.source == str(path)


def _with(change: dict) -> dict:
    raw = copy.deepcopy(GOOD)
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        node = raw
        for key in parents:
            node = node[key]
        if value is _DROP:
            node.pop(last)
        else:
            node[last] = value
    return raw


_DROP = object()
_T = "available_node_types.cpu1"


@pytest.mark.parametrize("change, field, words", [
    ({"max_wokers": 3}, "max_wokers", "not a known field"),
    ({"max_workers": -1}, "max_workers", ">= 0"),
    ({"max_workers": 0}, "max_workers", "min_workers together"),
    ({"idle_timeout_s": "soon"}, "idle_timeout_s", "seconds"),
    ({"idle_timeout_minutes": 1}, "idle_timeout_minutes", "keep one"),
    ({"update_interval_s": 0}, "update_interval_s", ">= 0.05"),
    ({"cluster_name": "my cluster!"}, "cluster_name", "letters"),
    ({"provider": _DROP}, "provider", "is missing"),
    ({"provider.type": "aws"}, "provider.type", "`local` or `ssh`"),
    ({"provider.head_ip": "10.0.0.1"}, "provider.head_ip", "loopback"),
    ({"provider.head_ip": "nope"}, "provider.head_ip", "not an IP"),
    ({"provider": {"type": "ssh", "ssh_user": "u"}}, "provider.worker_ips", "is empty"),
    ({"provider": {"type": "ssh", "worker_ips": ["10.0.0.2"]}}, "provider.ssh_user", "is missing"),
    ({"provider": {"type": "local", "worker_ips": ["10.0.0.2"]}}, "provider.worker_ips", "only for the ssh"),
    ({"head.port": 70000}, "head.port", "TCP port"),
    ({"head.resources": {"CPU": -1}}, "head.resources.CPU", ">= 0"),
    ({"head.start_command": "{ember} start --head --port {prot}"}, "head.start_command", "{prot}"),
    ({"available_node_types": {}}, "available_node_types", "missing or empty"),
    ({f"{_T}.resources": _DROP}, f"{_T}.resources", "is missing"),
    ({f"{_T}.resources": {"CPU": 0}}, f"{_T}.resources", "offers nothing"),
    ({f"{_T}.resources": [1]}, f"{_T}.resources", "mapping"),
    ({f"{_T}.min_workers": 3}, f"{_T}.min_workers", "above max_workers"),
    ({f"{_T}.max_workers": 1.5}, f"{_T}.max_workers", "whole number"),
    ({f"{_T}.cpus": 1}, f"{_T}.cpus", "not a known field"),
    ({f"{_T}.start_command": "ember start {"}, f"{_T}.start_command", "braces"),
    ({"worker_start_command": 5}, "worker_start_command", "shell command"),
    ({"token_file": 3}, "token_file", "file path"),
])
def test_each_bad_field_is_named_with_its_fix(change: dict, field: str, words: str) -> None:
    with pytest.raises(ClusterConfigError) as info:
        load_config(_with(change))
    assert info.value.field == field and words in str(info.value) and field in str(info.value)
    assert isinstance(info.value, ValueError)
    assert load_config(GOOD).max_workers == 3  # the next call still works


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ClusterConfigError, match="cannot be read"):
        load_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("provider: [unclosed\n")
    with pytest.raises(ClusterConfigError, match="not valid YAML"):
        load_config(str(bad))
