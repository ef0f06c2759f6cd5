"""Errors as the user sees them: task errors, propagation, crashes, and a crash-case table."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

import ember
from ember.exceptions import (ActorDiedError, EmberError, RayTaskError, SerializationError,
                              TaskError, WorkerCrashedError)

pytestmark = pytest.mark.timeout(30)


class InsufficientFunds(Exception):
    """A user exception whose constructor takes two arguments."""

    def __init__(self, account: str, missing: int) -> None:
        super().__init__(f"{account} is short by {missing}")
        self.account = account
        self.missing = missing


class Rejected(Exception):
    """A user exception with a keyword field that survives pickling."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self):
        return (Rejected, (self.args[0], self.code))


@ember.remote
def add(x: int, y: int = 0) -> int:
    return x + y


@ember.remote
def raise_value_error(message: str) -> None:
    raise ValueError(message)


@ember.remote
def withdraw(account: str) -> None:
    raise InsufficientFunds(account, 42)


@ember.remote
def call_raiser() -> None:
    ember.get(raise_value_error.remote("raised two levels down"))


# --- task errors ------------------------------------------------------------------------


def test_a_task_error_is_also_an_instance_of_the_users_exception_class(ember_local) -> None:
    with pytest.raises(ValueError) as info:
        ember.get(raise_value_error.remote("bad value"))
    err = info.value
    assert isinstance(err, TaskError) and isinstance(err, EmberError)
    assert isinstance(err, RayTaskError)
    assert type(err.__cause__) is ValueError and str(err.__cause__) == "bad value"
    assert err.cause is err.__cause__


def test_a_task_error_carries_the_remote_traceback(ember_local) -> None:
    with pytest.raises(ValueError) as info:
        ember.get(raise_value_error.remote("look for me"))
    message = str(info.value)
    assert "raise_value_error" in message
    assert "Traceback (most recent call last)" in message
    assert "ValueError: look for me" in message
    assert f"pid={info.value.pid}" in message and info.value.pid != os.getpid()


def test_the_remote_traceback_shows_the_users_source_line(ember_local) -> None:
    """Like a local traceback, the remote one names this file and quotes the raising line."""
    with pytest.raises(ValueError) as info:
        ember.get(raise_value_error.remote("where"))
    message = str(info.value)
    assert os.path.basename(__file__) in message
    assert "raise ValueError(message)" in message


def test_a_user_exception_that_cannot_be_rebuilt_still_reports_its_traceback(ember_local) -> None:
    """InsufficientFunds pickles but cannot unpickle (its __init__ wants two arguments):
    the caller gets a TaskError whose message still has the remote traceback."""
    with pytest.raises(TaskError) as info:
        ember.get(withdraw.remote("alice"))
    message = str(info.value)
    assert "InsufficientFunds: alice is short by 42" in message
    assert "withdraw" in message
    assert ember.get(add.remote(1, 1)) == 2


def test_a_user_exception_with_fields_keeps_them(ember_local) -> None:
    @ember.remote
    def reject() -> None:
        raise Rejected("card declined", code=51)

    with pytest.raises(Rejected, match="card declined") as info:
        ember.get(reject.remote())
    assert info.value.code == 51
    assert info.value.__cause__.code == 51


def test_errors_propagate_through_nested_tasks(ember_local) -> None:
    """The outer task's error is an instance of the innermost user exception (as in Ray)."""
    with pytest.raises(ValueError, match="raised two levels down") as info:
        ember.get(call_raiser.remote())
    assert "call_raiser" in str(info.value)
    assert type(info.value.__cause__) is ValueError


def test_a_task_depending_on_a_failed_task_fails_with_the_same_error(ember_local) -> None:
    failed = raise_value_error.remote("upstream failure")
    downstream = add.remote(failed, 1)
    further = add.remote(downstream, 1)
    for ref in (downstream, further):
        with pytest.raises(ValueError, match="upstream failure") as info:
            ember.get(ref)
        assert info.value.function_name == "raise_value_error"
    assert ember.get(add.remote(1, 1)) == 2


def test_an_actor_call_depending_on_a_failed_task_fails_with_its_error(ember_local) -> None:
    @ember.remote
    class Sink:
        def take(self, value: Any) -> Any:
            return value

    sink = Sink.remote()
    with pytest.raises(ValueError, match="for the actor"):
        ember.get(sink.take.remote(raise_value_error.remote("for the actor")))
    assert ember.get(sink.take.remote(3)) == 3


def test_a_failed_ref_nested_in_an_argument_fails_only_when_fetched(ember_local) -> None:
    @ember.remote
    def inspect_box(box: list) -> str:
        try:
            ember.get(box[0])
        except ValueError as e:
            return f"caught: {e.__cause__}"
        return "no error"

    failed = raise_value_error.remote("inside the box")
    assert ember.get(inspect_box.remote([failed])) == "caught: inside the box"


def test_actor_method_errors_are_task_errors_of_the_users_class(ember_local) -> None:
    @ember.remote
    class Account:
        def withdraw(self) -> None:
            raise Rejected("bob is short by 7")

    with pytest.raises(Rejected, match="bob is short by 7") as info:
        ember.get(Account.remote().withdraw.remote())
    assert isinstance(info.value, TaskError)
    assert "Account.withdraw" in str(info.value)


# --- crashes ----------------------------------------------------------------------------


def test_a_worker_that_exits_fails_its_task_with_worker_crashed(ember_local) -> None:
    @ember.remote(max_retries=0)
    def exit_hard() -> None:
        os._exit(3)

    with pytest.raises(WorkerCrashedError, match="exit_hard") as info:
        ember.get(exit_hard.remote(), timeout=20)
    assert "max_retries" in str(info.value)
    assert ember.get(add.remote(2, 2)) == 4


def test_a_crashing_task_is_retried_max_retries_times(ember_local, tmp_path) -> None:
    @ember.remote(max_retries=2)
    def crash_and_count(path: str) -> None:
        with open(path, "a") as f:
            f.write("x")
        os._exit(1)

    path = str(tmp_path / "attempts")
    with pytest.raises(WorkerCrashedError) as info:
        ember.get(crash_and_count.remote(path), timeout=20)
    assert open(path).read() == "xxx"
    assert info.value.attempts == 3


# --- the crash-case table ---------------------------------------------------------------


class _FailsToUnpickle:
    """Pickles fine in the driver; rebuilding it anywhere raises."""

    def __reduce__(self):
        return (_refuse_to_unpickle, ())


def _refuse_to_unpickle() -> None:
    raise RuntimeError("refusing to unpickle")


@ember.remote
def return_arg(value: Any) -> Any:
    return value


@ember.remote
def return_lock() -> Any:
    return threading.Lock()


@ember.remote
def return_unpicklable_in_driver() -> Any:
    return _FailsToUnpickle()


@ember.remote
def run_and_raise() -> None:
    raise ZeroDivisionError("division by zero in the task")


def _case_pickle_argument() -> None:
    return_arg.remote(threading.Lock())


def _case_unpickle_argument() -> None:
    ember.get(return_arg.remote(_FailsToUnpickle()))


def _case_run() -> None:
    ember.get(run_and_raise.remote())


def _case_pickle_return() -> None:
    ember.get(return_lock.remote())


def _case_unpickle_return() -> None:
    ember.get(return_unpicklable_in_driver.remote())


def _case_crash() -> None:
    @ember.remote(max_retries=0)
    def segfault_like() -> None:
        os.kill(os.getpid(), 9)

    ember.get(segfault_like.remote(), timeout=20)


CRASH_CASES = [
    # (failing at, action, expected error type, text the message must contain)
    ("pickle-argument", _case_pickle_argument, SerializationError, "argument 0 of `return_arg`"),
    ("unpickle-argument", _case_unpickle_argument, EmberError, "refusing to unpickle"),
    ("run", _case_run, ZeroDivisionError, "division by zero in the task"),
    ("pickle-return", _case_pickle_return, TaskError, "return value 0 of `return_lock`"),
    ("unpickle-return", _case_unpickle_return, SerializationError, "refusing to unpickle"),
    ("worker-killed", _case_crash, WorkerCrashedError, "segfault_like"),
]


@pytest.mark.parametrize("action,error,text", [c[1:] for c in CRASH_CASES],
                         ids=[c[0] for c in CRASH_CASES])
def test_each_failure_point_raises_a_typed_error_and_the_runtime_survives(
        ember_local, action, error, text) -> None:
    with pytest.raises(error, match=text):
        action()
    assert ember.get(add.remote(20, 22)) == 42


def test_actor_death_is_an_ember_error_with_the_cause(ember_local) -> None:
    @ember.remote
    class Doomed:
        def pid(self) -> int:
            return os.getpid()

    d = Doomed.remote()
    ember.get(d.pid.remote())
    ember.kill(d)
    with pytest.raises(ActorDiedError) as info:
        ember.get(d.pid.remote(), timeout=10)
    assert isinstance(info.value, EmberError)
    assert "Doomed" in str(info.value) and "ember.kill" in str(info.value)
