"""Replay of a failed task in the user's own process, and pdb attached to a remote
``breakpoint()`` over a token-protected loopback socket."""

from __future__ import annotations

import io
import os
import socket

import numpy as np
import pytest

import ember
from conftest import wait_for
from ember.exceptions import EmberError
from ember.util import debug

pytestmark = pytest.mark.timeout(90)


@ember.remote(max_retries=0)
def only_in(expected_pid: int, data: np.ndarray, scale: int = 1) -> float:
    if os.getpid() != expected_pid:
        raise RuntimeError(f"ran in pid {os.getpid()}, not {expected_pid}")
    return float(data.sum()) * scale


def test_a_failed_task_replays_here_with_the_same_function_and_arguments(ember_local):
    data = ember.put(np.arange(10.0))
    ref = only_in.remote(os.getpid(), data, scale=2)
    with pytest.raises(RuntimeError, match="ember debug replay") as info:
        ember.get(ref)
    assert ref.id[:12].hex() in str(info.value)
    # Here, in this process, the same call succeeds: same function, same (resolved) inputs.
    assert debug.replay(ref) == 90.0
    assert debug.replay(ref.id[:12].hex()[:10]) == 90.0  # a prefix of the task id works too
    assert ref.id[:12].hex() in [t["task_id"] for t in debug.failed_tasks()]


def test_replay_can_be_turned_off_per_task_and_unknown_ids_are_typed_errors(ember_local):
    ref = only_in.options(debug_replay=False).remote(-1, np.zeros(2))
    with pytest.raises(RuntimeError) as info:
        ember.get(ref)
    assert "ember debug replay" not in str(info.value)
    with pytest.raises(EmberError, match="replay turned off"):
        debug.replay(ref)
    with pytest.raises(EmberError, match="no failed task kept for replay has id 'ffff'"):
        debug.replay("ffff")
    with pytest.raises(TypeError, match="task id"):
        debug.replay(42)
    assert ember.get(ember.put(1)) == 1


def test_kept_failures_are_bounded_oldest_dropped_first(monkeypatch):
    ember.shutdown()
    monkeypatch.setenv("EMBER_REPLAY_MAX_TASKS", "2")
    monkeypatch.setenv("EMBER_REPLAY_MAX_BYTES", "100000")
    ember.init(num_cpus=1)
    try:
        refs = [only_in.remote(-1, np.zeros(4)) for _ in range(3)]
        big = only_in.remote(-1, np.zeros(1_000_000))  # 8 MB of inputs: over the size bound
        for ref in refs + [big]:
            with pytest.raises(RuntimeError):
                ember.get(ref)
        kept = [t["task_id"] for t in debug.failed_tasks()]
        assert kept == [r.id[:12].hex() for r in refs[1:]]
    finally:
        ember.shutdown()


@ember.remote
def stops_at_breakpoint(x: int) -> int:
    y = x * 2
    breakpoint()
    return y


def test_breakpoint_in_a_task_opens_pdb_reachable_with_the_token_only(ember_local):
    ref = stops_at_breakpoint.remote(21)
    (waiting,) = wait_for(lambda: debug.list_breakpoints(), timeout_s=30, what="the task to reach breakpoint()")
    # Without the token nothing is served, and the task keeps waiting for the right client.
    with socket.create_connection((waiting["host"], waiting["port"])) as sock:
        sock.sendall(b"0" * 64 + b"\n")
        assert sock.recv(100) == b""
    assert debug.list_breakpoints()
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"p y + 1\nc\n")
    os.close(write_fd)
    out = io.StringIO()
    with os.fdopen(read_fd) as stdin:
        debug.attach(waiting["task_id"], stdin=stdin, stdout=out)
    assert "43" in out.getvalue()
    assert ember.get(ref, timeout=30) == 42
    assert not debug.list_breakpoints()


def test_replay_turned_off_on_the_node_keeps_nothing(monkeypatch):
    ember.shutdown()
    monkeypatch.setenv("EMBER_DEBUG_REPLAY", "0")  # the node and its workers inherit it
    ember.init(num_cpus=1)
    try:
        ref = only_in.remote(-1, np.zeros(2))
        with pytest.raises(RuntimeError) as info:
            ember.get(ref)
        assert "ember debug replay" not in str(info.value)
        assert debug.failed_tasks() == []
    finally:
        ember.shutdown()
