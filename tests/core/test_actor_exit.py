"""How an actor method ends its actor, as in Ray: ``exit_actor()``, ``sys.exit()`` and
``os._exit()`` kill the actor, and callers get ``ActorDiedError`` (never a TaskError
wrapping SystemExit). Exit code 0 (and ``exit_actor``) is a clean, final exit; any other
code, or ``os._exit``, is a crash: the actor restarts under ``max_restarts``.
"""

from __future__ import annotations

import os
import sys

import pytest

import ember
from conftest import process_gone, wait_for
from ember.exceptions import ActorDiedError, TaskError

pytestmark = pytest.mark.timeout(60)

_T = 30


@ember.remote(max_restarts=1)
class Leaver:
    def pid(self) -> int:
        return os.getpid()

    def sys_exit(self, code: object) -> None:
        sys.exit(code)

    def os_exit(self, code: int) -> None:
        os._exit(code)

    def exit_actor(self) -> None:
        ember.exit_actor()


@ember.remote
class AsyncLeaver:
    async def ping(self) -> str:
        return "pong"

    async def sys_exit(self) -> None:
        sys.exit(0)

    @ember.method(num_returns=2)
    async def quit_two(self) -> tuple:
        ember.exit_actor()


@pytest.mark.parametrize("method, args, how", [
    ("sys_exit", (0,), "sys.exit"), ("sys_exit", (None,), "sys.exit"), ("exit_actor", (), "exit_actor"),
])
def test_a_clean_exit_kills_the_actor_for_good(ember_local, method: str, args: tuple, how: str) -> None:
    actor = Leaver.remote()
    pid = ember.get(actor.pid.remote(), timeout=_T)
    with pytest.raises(ActorDiedError, match=how) as raised:
        ember.get(getattr(actor, method).remote(*args), timeout=_T)
    assert not isinstance(raised.value, TaskError)
    with pytest.raises(ActorDiedError, match=how):  # not restarted, despite max_restarts=1
        ember.get(actor.pid.remote(), timeout=_T)
    wait_for(lambda: process_gone(pid), what="the actor's process to exit")


@pytest.mark.parametrize("method, code", [("sys_exit", 1), ("sys_exit", "bye"), ("os_exit", 0),
                                          ("os_exit", 3)])
def test_a_crash_exit_restarts_the_actor_under_max_restarts(ember_local, method: str, code: object) -> None:
    actor = Leaver.remote()
    pid = ember.get(actor.pid.remote(), timeout=_T)
    with pytest.raises(ActorDiedError):
        ember.get(getattr(actor, method).remote(code), timeout=_T)
    assert ember.get(actor.pid.remote(), timeout=_T) != pid
    ember.kill(actor)


def test_sys_exit_without_restarts_left_leaves_the_actor_dead(ember_local) -> None:
    actor = Leaver.options(max_restarts=0).remote()
    with pytest.raises(ActorDiedError):
        ember.get(actor.sys_exit.remote(2), timeout=_T)
    with pytest.raises(ActorDiedError):
        ember.get(actor.pid.remote(), timeout=_T)


def test_sys_exit_in_an_async_actor_kills_it(ember_local) -> None:
    actor = AsyncLeaver.remote()
    assert ember.get(actor.ping.remote(), timeout=_T) == "pong"
    with pytest.raises(ActorDiedError, match="sys.exit"):
        ember.get(actor.sys_exit.remote(), timeout=_T)


def test_exit_actor_in_an_async_method_with_two_returns_fails_both_refs(ember_local) -> None:
    """Both refs get an answer (the async path once encoded one None for two returns and
    never replied)."""
    actor = AsyncLeaver.remote()
    assert ember.get(actor.ping.remote(), timeout=_T) == "pong"
    first, second = actor.quit_two.remote()
    for ref in (first, second):
        with pytest.raises(ActorDiedError, match="exit_actor"):
            ember.get(ref, timeout=_T)
    with pytest.raises(ActorDiedError, match="exit_actor"):
        ember.get(actor.ping.remote(), timeout=_T)
