"""The cluster YAML of ``ember up``: read, checked field by field, into typed records.

Every field is checked before anything starts, and each bad one raises
``ClusterConfigError`` naming the field and the fix: a typo in ``max_workers`` must not
surface an hour later as a cluster that never grows. The shape follows Ray's cluster
YAML (``available_node_types``, ``max_workers``, ``idle_timeout_minutes``, ``provider``)
so a Ray config needs few edits::

    cluster_name: demo
    max_workers: 4
    idle_timeout_s: 60
    provider: {type: local}
    head: {port: 6379, resources: {CPU: 0}}
    available_node_types:
      cpu2: {resources: {CPU: 2}, min_workers: 0, max_workers: 3}
"""

from __future__ import annotations

import ipaddress
import os
import string
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from .._types import ResourceShape
from .errors import ClusterConfigError

ProviderType = Literal["local", "ssh"]

#: Placeholders a start command may use; anything else in braces is a typo.
HEAD_PLACEHOLDERS = frozenset({"ember", "port", "head_ip", "resource_flags"})
WORKER_PLACEHOLDERS = frozenset({"ember", "head_address", "token_file", "port", "node_ip",
                                 "resource_flags", "node_type"})

DEFAULT_HEAD_COMMAND = "{ember} start --head --port {port} --node-ip-address {head_ip} {resource_flags}"
DEFAULT_WORKER_COMMAND = ("{ember} start --address {head_address} --token-file {token_file} "
                          "--port {port} --node-ip-address {node_ip} {resource_flags} --block")


@dataclass(frozen=True)
class NodeTypeConfig:
    """One kind of worker node the autoscaler may launch."""

    name: str
    resources: ResourceShape
    min_workers: int = 0
    max_workers: int = 1
    #: Overrides the cluster's ``worker_start_command`` for this type.
    start_command: str | None = None


@dataclass(frozen=True)
class ProviderConfig:
    """The ``provider:`` section of a cluster config: how nodes are started (local
    processes or SSH hosts) and where the head listens."""

    type: ProviderType
    head_ip: str = "127.0.0.1"
    #: ssh: the hosts worker nodes may run on (one node per host).
    worker_ips: tuple[str, ...] = ()
    ssh_user: str | None = None
    ssh_private_key: str | None = None


@dataclass(frozen=True)
class ClusterConfig:
    """A checked cluster YAML (see the module docstring for an example)."""

    cluster_name: str
    provider: ProviderConfig
    node_types: dict[str, NodeTypeConfig]
    max_workers: int
    idle_timeout_s: float = 60.0
    update_interval_s: float = 5.0
    #: A launched node that has not joined after this long counts as failed.
    launch_timeout_s: float = 60.0
    head_port: int = 6379
    head_resources: ResourceShape = field(default_factory=dict)
    head_start_command: str = DEFAULT_HEAD_COMMAND
    worker_start_command: str = DEFAULT_WORKER_COMMAND
    #: None: the head's session token (local head); ssh: a path valid on every host.
    token_file: str | None = None
    source: str = "<dict>"


_TOP_KEYS = {"cluster_name", "max_workers", "idle_timeout_s", "idle_timeout_minutes", "update_interval_s",
             "launch_timeout_s", "provider", "head", "available_node_types", "worker_start_command",
             "token_file"}
_NODE_TYPE_KEYS = {"resources", "min_workers", "max_workers", "start_command"}
_HEAD_KEYS = {"port", "resources", "start_command"}
_PROVIDER_KEYS = {"type", "head_ip", "worker_ips", "ssh_user", "ssh_private_key"}


def load_config(source: str | Mapping[str, Any]) -> ClusterConfig:
    """Read and check a cluster config from a YAML path (or an already-parsed mapping).

    Raises:
        ClusterConfigError: the file is unreadable or a field is wrong (it names which).

    Example:
        >>> load_config({"provider": {"type": "local"},
        ...              "available_node_types": {"w": {"resources": {"CPU": 1}}}}).max_workers
        1
    """
    path = source if isinstance(source, str) else "<dict>"
    if isinstance(source, str):
        import yaml
        try:
            with open(source) as f:
                raw = yaml.safe_load(f)
        except OSError as e:
            raise ClusterConfigError(path, "(file)", f"cannot be read ({e.strerror})",
                                     "pass the path of an existing cluster YAML") from e
        except yaml.YAMLError as e:
            raise ClusterConfigError(path, "(file)", f"is not valid YAML ({e})", "fix the syntax") from e
    else:
        raw = source
    return _Checker(path).config(raw)


class _Checker:
    """Field checks that all raise ClusterConfigError for one config source."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, name: str, problem: str, fix: str) -> ClusterConfigError:
        return ClusterConfigError(self.path, name, problem, fix)

    def mapping(self, value: Any, name: str, allowed: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(name, f"must be a mapping, not {type(value).__name__}",
                            "write it as `key: value` lines")
        unknown = set(value) - allowed if allowed is not None else set()
        if unknown:
            raise self.fail(f"{name}.{sorted(unknown)[0]}" if name else sorted(unknown)[0],
                            "is not a known field", f"use one of {sorted(allowed)}")
        return dict(value)

    def count(self, value: Any, name: str, default: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(name, f"must be a whole number >= 0, not {value!r}", f"e.g. `{name.split('.')[-1]}: 2`")
        return value

    def seconds(self, value: Any, name: str, default: float, minimum: float = 0.0) -> float:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise self.fail(name, f"must be a number of seconds >= {minimum:g}, not {value!r}",
                            f"e.g. `{name.split('.')[-1]}: 60`")
        return float(value)

    def resources(self, value: Any, name: str) -> ResourceShape:
        shape = self.mapping(value if value is not None else {}, name)
        for key, amount in shape.items():
            if not isinstance(key, str) or isinstance(amount, bool) or not isinstance(amount, (int, float)) \
                    or amount < 0:
                raise self.fail(f"{name}.{key}", f"must be a resource name with a number >= 0, not {amount!r}",
                                "e.g. `resources: {CPU: 2, GPU: 1}`")
        return {k: float(v) for k, v in shape.items()}

    def command(self, value: Any, name: str, default: str, placeholders: frozenset[str]) -> str:
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, f"must be a shell command string, not {value!r}",
                            "e.g. `{ember} start --address {head_address} ...`, or leave it out for the default")
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as e:
            raise self.fail(name, f"has unbalanced braces ({e})", "write a literal brace as {{ or }}") from e
        unknown = names - placeholders
        if unknown:
            raise self.fail(name, f"uses the unknown placeholder {{{sorted(unknown)[0]}}}",
                            f"use only {', '.join('{' + p + '}' for p in sorted(placeholders))}")
        return value

    def provider(self, value: Any) -> ProviderConfig:
        if value is None:
            raise self.fail("provider", "is missing", "add `provider: {type: local}` (or type: ssh with worker_ips)")
        raw = self.mapping(value, "provider", _PROVIDER_KEYS)
        kind = raw.get("type")
        if kind not in ("local", "ssh"):
            raise self.fail("provider.type", f"must be `local` or `ssh`, not {kind!r}",
                            "local starts nodes on this machine; ssh on the hosts in worker_ips")
        head_ip = raw.get("head_ip", "127.0.0.1")
        self.ip(head_ip, "provider.head_ip")
        if kind == "local" and not ipaddress.ip_address(head_ip).is_loopback:
            raise self.fail("provider.head_ip", f"is {head_ip}, but the local provider binds to loopback only",
                            "use 127.0.0.1, or the ssh provider for other hosts")
        worker_ips = raw.get("worker_ips", [])
        if not isinstance(worker_ips, list):
            raise self.fail("provider.worker_ips", "must be a list of addresses", "e.g. `worker_ips: [10.0.0.2]`")
        for i, ip in enumerate(worker_ips):
            self.ip(ip, f"provider.worker_ips[{i}]")
        if kind == "ssh":
            if not worker_ips:
                raise self.fail("provider.worker_ips", "is empty", "list the hosts worker nodes may run on")
            if not isinstance(raw.get("ssh_user"), str):
                raise self.fail("provider.ssh_user", "is missing", "name the login user, e.g. `ssh_user: ubuntu`")
        elif worker_ips:
            raise self.fail("provider.worker_ips", "is only for the ssh provider",
                            "remove it, or use `type: ssh`")
        key = raw.get("ssh_private_key")
        if key is not None and not isinstance(key, str):
            raise self.fail("provider.ssh_private_key", "must be a file path", "e.g. `~/.ssh/id_ed25519`")
        return ProviderConfig(kind, head_ip, tuple(worker_ips), raw.get("ssh_user"),
                              os.path.expanduser(key) if key else None)

    def ip(self, value: Any, name: str) -> None:
        try:
            ipaddress.ip_address(value)
        except ValueError as e:
            raise self.fail(name, f"is not an IP address: {value!r}", "write it as e.g. 127.0.0.1") from e

    def node_type(self, name: str, value: Any) -> NodeTypeConfig:
        where = f"available_node_types.{name}"
        raw = self.mapping(value, where, _NODE_TYPE_KEYS)
        if "resources" not in raw:
            raise self.fail(f"{where}.resources", "is missing",
                            "say what one node of this type offers, e.g. `resources: {CPU: 2}`")
        resources = self.resources(raw["resources"], f"{where}.resources")
        if not any(v > 0 for k, v in resources.items() if k != "object_store_memory"):
            raise self.fail(f"{where}.resources", "offers nothing", "give it at least one resource, e.g. CPU: 1")
        min_workers = self.count(raw.get("min_workers"), f"{where}.min_workers", 0)
        max_workers = self.count(raw.get("max_workers"), f"{where}.max_workers", max(1, min_workers))
        if min_workers > max_workers:
            raise self.fail(f"{where}.min_workers", f"({min_workers}) is above max_workers ({max_workers})",
                            "lower min_workers or raise max_workers")
        command = self.command(raw.get("start_command"), f"{where}.start_command", "", WORKER_PLACEHOLDERS)
        return NodeTypeConfig(name, resources, min_workers, max_workers, command or None)

    def config(self, raw: Any) -> ClusterConfig:
        top = self.mapping(raw if raw is not None else {}, "", _TOP_KEYS)
        name = top.get("cluster_name", "default")
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise self.fail("cluster_name", f"must be letters, digits, - and _, not {name!r}",
                            "e.g. `cluster_name: demo`")
        types_raw = top.get("available_node_types")
        if not types_raw:
            raise self.fail("available_node_types", "is missing or empty",
                            "add at least one worker node type, e.g. `cpu2: {resources: {CPU: 2}, max_workers: 2}`")
        types = {str(n): self.node_type(str(n), v)
                 for n, v in self.mapping(types_raw, "available_node_types").items()}
        max_workers = self.count(top.get("max_workers"), "max_workers", sum(t.max_workers for t in types.values()))
        if sum(t.min_workers for t in types.values()) > max_workers:
            raise self.fail("max_workers", f"({max_workers}) is below the node types' min_workers together",
                            "raise max_workers or lower min_workers")
        if "idle_timeout_s" in top and "idle_timeout_minutes" in top:
            raise self.fail("idle_timeout_minutes", "is given together with idle_timeout_s", "keep one of them")
        idle_s = self.seconds(top.get("idle_timeout_s"), "idle_timeout_s", 300.0)
        if "idle_timeout_minutes" in top:
            idle_s = 60 * self.seconds(top["idle_timeout_minutes"], "idle_timeout_minutes", 5.0)
        head = self.mapping(top.get("head") or {}, "head", _HEAD_KEYS)
        port = head.get("port", 6379)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise self.fail("head.port", f"must be a TCP port (1-65535), not {port!r}", "e.g. `port: 6379`")
        token_file = top.get("token_file")
        if token_file is not None and not isinstance(token_file, str):
            raise self.fail("token_file", "must be a file path", "or leave it out to use the head's session token")
        return ClusterConfig(
            cluster_name=name, provider=self.provider(top.get("provider")), node_types=types,
            max_workers=max_workers, idle_timeout_s=idle_s,
            update_interval_s=self.seconds(top.get("update_interval_s"), "update_interval_s", 5.0, 0.05),
            launch_timeout_s=self.seconds(top.get("launch_timeout_s"), "launch_timeout_s", 60.0, 1.0),
            head_port=port, head_resources=self.resources(head.get("resources"), "head.resources"),
            head_start_command=self.command(head.get("start_command"), "head.start_command",
                                            DEFAULT_HEAD_COMMAND, HEAD_PLACEHOLDERS),
            worker_start_command=self.command(top.get("worker_start_command"), "worker_start_command",
                                              DEFAULT_WORKER_COMMAND, WORKER_PLACEHOLDERS),
            token_file=os.path.expanduser(token_file) if token_file else None, source=self.path)
