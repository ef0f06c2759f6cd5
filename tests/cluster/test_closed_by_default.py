"""Closed by default: only token holders get in, garbage is dropped, ports stay on loopback."""

from __future__ import annotations

import os
import socket
import struct
import subprocess

import psutil
import pytest

import ember

from .conftest import Cluster, cluster_processes, ember_cli, free_port

_TIMEOUT_S = 30

_GARBAGE = {
    "random bytes": os.urandom(4096),
    "an HTTP request": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "a frame header announcing 4 GB": struct.pack("<IB", 0xFFFFFFFF, 0) + b"x" * 64,
    "a hello with a wrong token": struct.pack("<IB", 40, 0) + b"EMBER/1 " + b"\0" * 32,
}


@ember.remote(num_cpus=1)
def where() -> str:
    return ember.get_runtime_context().get_node_id()


def _listening_ports(proc: psutil.Process) -> list[tuple[str, int]]:
    try:
        conns = proc.net_connections(kind="tcp")
    except psutil.Error:
        return []
    return [(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]


def _is_dropped(port: int, payload: bytes) -> bool:
    """Send ``payload`` and report whether the server hangs up on us (within 5 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(payload)
            while sock.recv(4096):
                pass  # whatever it says, it must end with a close
        except (ConnectionResetError, BrokenPipeError):
            pass
        except (TimeoutError, socket.timeout):
            return False
    return True


def _assert_cluster_works(cluster: Cluster) -> None:
    assert sum(n["Alive"] for n in ember.nodes()) == 3
    refs = [where.options(resources={"node_b": 1}).remote(), where.options(resources={"node_c": 1}).remote(),
            where.remote()]
    assert [cluster.role_of(n) for n in ember.get(refs, timeout=_TIMEOUT_S)][:2] == ["b", "c"]


@pytest.mark.parametrize("garbage", list(_GARBAGE), ids=list(_GARBAGE))
def test_garbage_on_the_heads_port_is_dropped_and_the_cluster_keeps_working(three_nodes, garbage) -> None:
    assert _is_dropped(three_nodes.port, _GARBAGE[garbage])
    _assert_cluster_works(three_nodes)


def test_garbage_on_every_listening_port_of_the_cluster_is_dropped(three_nodes) -> None:
    """Node managers, workers and object transfer: every TCP port any of them opened."""
    # Run a task on each worker node first, so that they have workers listening too.
    ember.get([where.options(resources={name: 1}).remote() for name in ("node_b", "node_c")],
              timeout=_TIMEOUT_S)
    ports = sorted({port for proc in cluster_processes(three_nodes.tmpdir)
                    for _ip, port in _listening_ports(proc)})
    assert three_nodes.port in ports and len(ports) > 3, ports  # the node managers and some workers
    not_dropped = [(port, name) for port in ports for name, payload in _GARBAGE.items()
                   if not _is_dropped(port, payload)]
    assert not not_dropped, f"connections not dropped: {not_dropped}"
    _assert_cluster_works(three_nodes)


@pytest.mark.parametrize("token", ["ab" * 32, "ab", "not-hex"], ids=["wrong", "short", "not hex"])
def test_joining_with_a_wrong_token_fails_naming_the_token(three_nodes, token) -> None:
    sessions_before = sorted(os.listdir(os.path.dirname(three_nodes.sessions["head"])))
    env = {**three_nodes.env, "EMBER_TOKEN": token}
    done = subprocess.run(ember_cli() + ["start", "--address", three_nodes.address, "--num-cpus", "1"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert "token" in done.stderr.lower(), done.stderr
    # Nothing of the refused node stays behind, and the cluster is as it was.
    assert sorted(os.listdir(os.path.dirname(three_nodes.sessions["head"]))) == sessions_before
    assert len(ember.nodes()) == 3
    _assert_cluster_works(three_nodes)


def test_joining_a_head_on_another_machine_without_a_token_says_how_to_pass_one(three_nodes) -> None:
    """No head listens on that port here, so there is no session to read the token from."""
    done = subprocess.run(ember_cli() + ["start", "--address", f"127.0.0.1:{free_port()}"],
                          env=three_nodes.env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "--token-file" in done.stderr and "EMBER_TOKEN" in done.stderr, done.stderr


def test_every_port_of_the_cluster_listens_on_loopback_only(three_nodes) -> None:
    assert three_nodes.tcp_addresses["head"] == f"tcp:127.0.0.1:{three_nodes.port}"
    head_ports = _listening_ports(psutil.Process(three_nodes.pids["head"]))
    assert ("127.0.0.1", three_nodes.port) in head_ports
    listening = {(proc.pid, ip, port) for proc in cluster_processes(three_nodes.tmpdir)
                 for ip, port in _listening_ports(proc)}
    assert listening
    assert {ip for _pid, ip, _port in listening} == {"127.0.0.1"}, listening
