"""`ember debug replay|attach|list` against a head started with `ember start --head`:
a driver's failed task replays in the CLI's own process; a task stopped at
``breakpoint()`` is debugged from another terminal."""

from __future__ import annotations

import re
import subprocess
import textwrap
from typing import Iterator

import pytest

from conftest import wait_for

from .conftest import Head, ember_cli, start_head

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    with start_head(num_cpus=2) as h:
        yield h


def _debug(head: Head, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(ember_cli() + ["debug", "--address", head.address, *args], env=head.env,
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_cli_replays_a_failed_task_in_its_own_process(head):
    driver = head.run_driver(textwrap.dedent("""
        import os
        import ember
        ember.init(address=ADDRESS)

        @ember.remote
        def divide(a, b):
            return a / b

        ref = divide.remote(7, 0)
        try:
            ember.get(ref)
        except ZeroDivisionError as e:
            print("TASK", ref.id[:12].hex())
    """))
    assert driver.returncode == 0, driver.stderr
    task_id = re.search(r"TASK (\w+)", driver.stdout).group(1)
    listed = _debug(head, "list")
    assert task_id in listed.stdout and "ZeroDivisionError" in listed.stdout, listed.stdout + listed.stderr
    replayed = _debug(head, "replay", task_id)
    assert replayed.returncode == 1
    assert "ZeroDivisionError" in replayed.stderr and "raised again, in this process" in replayed.stderr
    unknown = _debug(head, "replay", "abcdef")
    assert unknown.returncode == 1 and "no failed task kept for replay" in unknown.stderr


def test_cli_attaches_pdb_to_a_task_at_breakpoint(head):
    driver = head.start_driver(textwrap.dedent("""
        import ember
        ember.init(address=ADDRESS)

        @ember.remote
        def paused(x):
            y = x + 1
            breakpoint()
            return y

        print("RESULT", ember.get(paused.remote(41)), flush=True)
    """), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        task_id = wait_for(lambda: re.search(r"breakpoint\s+(\w+)", _debug(head, "list").stdout),
                           timeout_s=60, what="the task to wait at breakpoint()").group(1)
        attached = _debug(head, "attach", task_id, stdin="p y * 10\nc\n")
        assert attached.returncode == 0 and "420" in attached.stdout, attached.stdout + attached.stderr
        out, _ = driver.communicate(timeout=60)
        assert "RESULT 42" in out
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
