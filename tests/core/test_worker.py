"""Inside a worker: forwarded output, the runtime context, the driver's cwd and sys.path."""

from __future__ import annotations

import os
import sys

import pytest

import ember

from conftest import driver_output, wait_for

pytestmark = pytest.mark.timeout(30)



@ember.remote
def say(text: str) -> int:
    print(text)
    return os.getpid()


@ember.remote
def complain(text: str) -> int:
    print(text, file=sys.stderr)
    return os.getpid()


@ember.remote
def context() -> dict:
    ctx = ember.get_runtime_context()
    return {"job": ctx.get_job_id(), "node": ctx.get_node_id(), "task": ctx.get_task_id(),
            "actor": ctx.get_actor_id(), "worker": ctx.get_worker_id(), "name": ctx.get_task_name()}


@ember.remote
class Talker:
    def say(self, text: str) -> int:
        print(text)
        return os.getpid()

    def context(self) -> dict:
        ctx = ember.get_runtime_context()
        return {"job": ctx.get_job_id(), "task": ctx.get_task_id(), "actor": ctx.get_actor_id()}


# --- output -----------------------------------------------------------------------------


def test_task_print_reaches_the_driver_prefixed_with_name_and_pid(ember_local) -> None:
    with driver_output() as output:
        pid = ember.get(say.remote("hello from a task"))
        wait_for(lambda: output.has(f"(say pid={pid}) hello from a task"), what="the forwarded line")


def test_task_stderr_reaches_the_driver_stderr(ember_local) -> None:
    with driver_output() as output:
        pid = ember.get(complain.remote("something went wrong"))
        wait_for(lambda: output.has(f"(complain pid={pid}) something went wrong", "err"),
                 what="the forwarded stderr line")


def test_actor_print_is_prefixed_with_the_class_name(ember_local) -> None:
    with driver_output() as output:
        talker = Talker.remote()
        pid = ember.get(talker.say.remote("hello from an actor"))
        wait_for(lambda: output.has(f"(Talker pid={pid}) hello from an actor"), what="the actor's line")


def test_every_line_of_a_multi_line_print_is_prefixed(ember_local) -> None:
    with driver_output() as output:
        pid = ember.get(say.remote("first line\nsecond line"))
        wait_for(lambda: output.has(f"(say pid={pid}) second line"), what="the second line")
        assert f"(say pid={pid}) first line" in output.out.getvalue()


# --- runtime context --------------------------------------------------------------------


def test_the_driver_has_a_job_and_node_but_no_task_or_actor(ember_local) -> None:
    ctx = ember.get_runtime_context()
    assert len(ctx.get_job_id()) > 0 and len(ctx.get_node_id()) > 0
    assert ctx.get_task_id() is None and ctx.get_actor_id() is None
    assert ctx.job_id == ctx.get_job_id() and ctx.node_id == ctx.get_node_id()


def test_a_task_sees_its_own_task_id_and_the_drivers_job(ember_local) -> None:
    driver = ember.get_runtime_context()
    first, second = ember.get([context.remote(), context.remote()])
    for seen in (first, second):
        assert seen["job"] == driver.get_job_id()
        assert seen["node"] == driver.get_node_id()
        assert seen["actor"] is None
        assert seen["task"] is not None
        assert seen["worker"] != driver.get_worker_id()
        assert seen["name"] == "context"
    assert first["task"] != second["task"]


def test_an_actor_sees_its_actor_id_in_every_call(ember_local) -> None:
    a, b = Talker.remote(), Talker.remote()
    first, second = ember.get([a.context.remote(), a.context.remote()])
    other = ember.get(b.context.remote())
    assert first["actor"] is not None and first["actor"] == second["actor"]
    assert first["actor"] == a._actor_id.hex()
    assert other["actor"] != first["actor"]
    assert first["task"] != second["task"]
    assert first["job"] == ember.get_runtime_context().get_job_id()


# --- the driver's environment -----------------------------------------------------------


def test_workers_run_in_the_drivers_working_directory(ember_local) -> None:
    @ember.remote
    def cwd() -> str:
        return os.getcwd()

    assert ember.get(cwd.remote()) == os.getcwd()


def test_workers_import_modules_next_to_the_test_file(ember_local) -> None:
    """This test module is importable by name in the worker (sys.path is shipped)."""
    @ember.remote
    def import_this_module() -> str:
        import importlib
        return importlib.import_module(__name__).__name__

    assert ember.get(import_this_module.remote()) == __name__
