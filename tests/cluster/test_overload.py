"""A node manager that no client can wedge (issue 19), on a real ``ember start --head``.

Drivers run as subprocesses that join the head, so they can exit, die or stop at will;
the head runs with ``EMBER_DEBUG_LEDGER=1``, which checks after every message that
free + held == total, and the log must show no violation.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import subprocess
import time

import psutil
import pytest

from .conftest import Head, start_head, wait_for

#: The module's head cuts a handshake that is not done within this many seconds.
_HANDSHAKE_S = 3

#: Polls until the head is idle (free == total) and prints both, as JSON.
_IDLE_CHECK = """
import json, time, ember
ember.init(address=ADDRESS)
deadline = time.monotonic() + 20
while True:
    free, total = ember.available_resources(), ember.cluster_resources()
    if free.get("CPU") == total.get("CPU") or time.monotonic() > deadline:
        break
    time.sleep(0.05)
print(json.dumps({"free": free.get("CPU", 0.0), "total": total.get("CPU")}))
"""


def assert_idle_and_sound(head: Head) -> None:
    """Once every driver is gone, every CPU is free again and the ledger never broke."""
    done = head.run_driver(_IDLE_CHECK)
    assert done.returncode == 0, done.stderr
    cpus = json.loads(done.stdout.strip().splitlines()[-1])
    assert cpus["free"] == cpus["total"], f"CPUs leaked with no driver left: {cpus}"
    assert "ledger invariant violated" not in head.log_text()
    # No worker outlives its job (one killed while starting used to idle forever).
    wait_for(lambda: not _workers_of(head), timeout_s=20, what="every worker of the ended jobs to exit")


def _workers_of(head: Head) -> list[psutil.Process]:
    """Worker processes of the head: the fork server's children."""
    try:
        fork_servers = psutil.Process(head.pid).children()
        return [w for f in fork_servers for w in f.children() if w.status() != psutil.STATUS_ZOMBIE]
    except psutil.Error:
        return []


@pytest.fixture(scope="module")
def head():
    with start_head(num_cpus=2, extra_env={"EMBER_HANDSHAKE_TIMEOUT_S": str(_HANDSHAKE_S)}) as h:
        yield h


_SHORT_DRIVER = """
import ember
ember.init(address=ADDRESS)

@ember.remote
def f(i):
    return i

assert sum(ember.get([f.remote(i) for i in range(60)])) == 1770
"""


@pytest.mark.timeout(180)
def test_many_short_drivers_leave_every_cpu_free(head: Head) -> None:
    """Drivers that exit right after their last get used to leave grants holding CPUs
    (pending grants were dropped without release): two such drivers wedged the head."""
    procs = [head.start_driver(_SHORT_DRIVER) for _ in range(12)]
    for proc in procs:
        assert proc.wait(timeout=150) == 0
    assert_idle_and_sound(head)


_ABRUPT = {
    # killed with tasks running and lease requests queued
    "sigkill_mid_run": """
import time, ember
ember.init(address=ADDRESS)

@ember.remote
def slow(i):
    time.sleep(30)

refs = [slow.remote(i) for i in range(8)]
print("running", flush=True)
time.sleep(60)
""",
    # leaves an actor holding a CPU and a placement group holding a bundle
    "exit_holding_actor_and_group": """
import ember
from ember.util import placement_group
ember.init(address=ADDRESS)

@ember.remote(num_cpus=1)
class A:
    def ping(self):
        return 1

a = A.remote()
assert ember.get(a.ping.remote()) == 1
pg = placement_group([{"CPU": 1}])
ember.get(pg.ready(), timeout=30)
print("running", flush=True)
""",
    # a task's worker dies under it
    "worker_death": """
import os, ember
ember.init(address=ADDRESS)

@ember.remote(max_retries=0)
def die():
    os._exit(3)

try:
    ember.get(die.remote())
except Exception:
    pass
print("running", flush=True)
""",
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(_ABRUPT))
def test_every_end_path_returns_what_it_took(head: Head, case: str) -> None:
    proc = head.start_driver(_ABRUPT[case], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "running"
        if case == "sigkill_mid_run":
            proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) in (0, -signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_idle_and_sound(head)


# --- slow, stopped and flooding peers (step 2 and 3 of issue 19) -----------------------

_CHATTER = """
import ember
ember.init(address=ADDRESS)

@ember.remote(num_cpus=0)
def chatter():
    line = "x" * 1000
    for _ in range(200_000):
        print(line)

ref = chatter.remote()
ember.get(ref)
"""

_WORK = """
import ember
ember.init(address=ADDRESS)

@ember.remote
def f(i):
    print("working on", i)
    return i

assert sum(ember.get([f.remote(i) for i in range(40)], timeout=90)) == 780
print("done")
"""


@pytest.mark.timeout(180)
def test_a_stopped_driver_does_not_stall_the_others(head: Head) -> None:
    """A driver that stops reading (SIGSTOP while its task prints) used to block the node
    manager, which sent its log lines under its global lock: everyone else hung."""
    stopped = head.start_driver(_CHATTER, stdout=subprocess.PIPE, text=True)
    try:
        first = stopped.stdout.readline()
        assert "x" * 100 in first, first  # its task's output is flowing to it
        stopped.send_signal(signal.SIGSTOP)
        others = [head.start_driver(_WORK, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for _ in range(2)]
        for proc in others:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0 and "done" in out, err[-2000:]
    finally:
        stopped.kill()
        stopped.wait()
    assert_idle_and_sound(head)


def _frame(body: bytes, nfds: int = 0) -> bytes:
    return struct.pack("<IB", len(body), nfds) + body


def _connect(head: Head) -> socket.socket:
    host, port = head.address.split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _hello(head: Head) -> bytes:
    with open(os.path.join(head.session_dir, "token")) as f:
        return _frame(b"EMBER/1 " + f.read().strip().encode())


def _closed_by_peer(sock: socket.socket, timeout_s: float) -> bool:
    sock.settimeout(timeout_s)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _node_rss(head: Head) -> int:
    return psutil.Process(head.pid).memory_info().rss


@pytest.mark.timeout(60)
def test_an_oversized_frame_after_the_token_is_refused_without_allocating_it(head: Head) -> None:
    rss_before = _node_rss(head)
    socks = []
    for _ in range(3):
        sock = _connect(head)
        sock.sendall(_hello(head) + struct.pack("<IB", (2 << 30) - 1, 0) + b"\0" * 1000)
        socks.append(sock)
    for sock in socks:
        assert _closed_by_peer(sock, 15), "a 2 GiB frame header did not close the connection"
        sock.close()
    assert _node_rss(head) - rss_before < 200 << 20
    assert "a frame of 2147483647 bytes" in head.log_text()
    assert_idle_and_sound(head)


@pytest.mark.timeout(60)
def test_a_trickling_handshake_is_cut_at_one_deadline_for_the_whole_handshake(head: Head) -> None:
    """One byte at a time never times out a per-recv deadline; the whole handshake has one."""
    sock = _connect(head)
    hello = _hello(head)
    start = time.monotonic()
    closed = False
    for byte in hello:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            closed = True
            break
        if _closed_by_peer(sock, 0.5):
            closed = True
            break
    assert closed, "the node manager kept a trickling connection open past its deadline"
    assert time.monotonic() - start < _HANDSHAKE_S + 10
    sock.close()


@pytest.mark.timeout(120)
def test_an_fd_flood_under_a_low_ulimit_does_not_kill_the_listeners() -> None:
    """1,000+ idle connections under a low open-file limit used to end the accept loop for
    good (EMFILE) and kill the memory monitor; now accepting backs off and resumes."""
    with start_head(num_cpus=1, fd_limit=256,
                    extra_env={"EMBER_MAX_UNAUTHENTICATED": "100000",
                               "EMBER_MEMORY_MONITOR_REFRESH_MS": "50"}) as low:
        host, port = low.address.split(":")
        flood = []
        try:
            for _ in range(400):
                flood.append(socket.create_connection((host, int(port)), timeout=10))
            wait_for(lambda: "open file limit" in low.log_text(), timeout_s=30,
                     what="the node manager's warning naming the open file limit")
        finally:
            for sock in flood:
                sock.close()
        done = low.run_driver(_SHORT_DRIVER, timeout_s=90)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "memory monitor could not read" not in low.log_text()
        assert psutil.Process(low.pid).is_running()
        assert_idle_and_sound(low)


#: Actors in the many-actors test: 2,000 as in issue 19 (each idle actor is a process of
#: about 5 MiB of private memory, ~10 GB in all; lower it on a machine with less memory).
_MANY_ACTORS = int(os.environ.get("EMBER_TEST_MANY_ACTORS", "2000"))

_ACTORS_DRIVER = """
import json, sys, time, ember
ember.init(address=ADDRESS)

@ember.remote(num_cpus=0)
class Tiny:
    def ping(self):
        return 1

n = int(sys.argv[1])
t = time.monotonic()
actors = [Tiny.remote() for _ in range(n)]
assert sum(ember.get([a.ping.remote() for a in actors], timeout=400)) == n
print(json.dumps({"seconds": round(time.monotonic() - t, 1)}), flush=True)
sys.stdin.readline()  # the actors stay alive until the test has looked
"""


@pytest.mark.timeout(480)
def test_thousands_of_actors_created_and_called_once_from_one_driver(head: Head) -> None:
    """Used to deadlock: driver and node manager both blocked in send on one socket with
    both buffers full, and the node manager ran one thread per connection."""
    proc = subprocess.Popen([sys.executable, "-c", f"ADDRESS = {head.address!r}\n{_ACTORS_DRIVER}",
                             str(_MANY_ACTORS)], env=head.env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "seconds" in line, f"the driver exited {proc.wait()} before every actor answered"
        # One event loop thread serves every connection: no thread per actor.
        assert psutil.Process(head.pid).num_threads() < 30
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_idle_and_sound(head)
