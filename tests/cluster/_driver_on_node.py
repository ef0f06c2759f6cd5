"""A CLI-started loopback cluster whose driver (this process) is attached to a worker node,
so that it outlives the head: for head restarts and membership tests."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Iterator

import ember

from .conftest import _read_nodes, _run_cli, _sessions_root, _stop_pids, free_port, reaped, wait_for, wait_for_exit

_TIMEOUT_S = 60


@contextlib.contextmanager
def cluster_with_driver_on_a_node(storage: str | None = None, roles: tuple[str, ...] = ("b", "c"),
                                  node_timeout_s: str = "2") -> Iterator[dict]:
    """Head (1 CPU) + nodes with custom resources node_<role>; the driver attaches to the first node."""
    if ember.is_initialized():
        ember.shutdown()
    tmpdir = tempfile.mkdtemp(prefix="er-", dir="/tmp")
    env = {**os.environ, "TMPDIR": tmpdir, "EMBER_NODE_TIMEOUT_S": node_timeout_s}
    env.pop("EMBER_TOKEN", None)
    port = free_port()
    head_args = ["start", "--head", "--port", str(port), "--num-cpus", "1"]
    if storage is not None:
        head_args += ["--storage", storage]
    saved_tempdir = tempfile.tempdir
    try:
        _run_cli(head_args, env)
        for role in roles:
            _run_cli(["start", "--address", f"127.0.0.1:{port}", "--num-cpus", "2",
                      "--resources", json.dumps({f"node_{role}": 1})], env)
        nodes = {("head" if info["head"] else None): (d, info) for d, info in _read_nodes(tmpdir)}
        workers = [info for _d, info in _read_nodes(tmpdir) if not info["head"]]
        tempfile.tempdir = tmpdir  # the driver finds node b's session under $TMPDIR
        first = workers[0]["tcp_address"].removeprefix("tcp:")
        ember.init(address=first)
        wait_for(lambda: sum(n["Alive"] and bool(n["Resources"]) for n in ember.nodes()) == 1 + len(roles),
                 timeout_s=_TIMEOUT_S, what="every node alive")
        yield {"port": port, "env": env, "tmpdir": tmpdir, "head_args": head_args,
               "head_pid": nodes["head"][1]["pid"]}
    finally:
        ember.shutdown()
        if os.environ.get("EMBER_KEEP_LOGS"):
            for d, _info in _read_nodes(tmpdir):
                shutil.copytree(os.path.join(d, "logs"), os.path.join(os.environ["EMBER_KEEP_LOGS"],
                                os.path.basename(d)), dirs_exist_ok=True)
        tempfile.tempdir = saved_tempdir
        pids = [n["pid"] for _d, n in _read_nodes(tmpdir)]
        with contextlib.suppress(Exception):
            _run_cli(["stop"], env)
        _stop_pids(pids)
        with reaped(tmpdir):
            wait_for_exit(tmpdir, 15, "the cluster's processes to exit")
            leftover = os.listdir(_sessions_root(tmpdir)) if os.path.isdir(_sessions_root(tmpdir)) else []
            assert not [x for x in leftover if x != "current"], f"sessions left behind: {leftover}"
