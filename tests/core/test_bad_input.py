"""Bad input gets a clear, typed error, and the next task still succeeds."""

from __future__ import annotations

import threading

import pytest

import ember
from ember.exceptions import EmberError, SerializationError, TaskError

pytestmark = pytest.mark.timeout(30)


@ember.remote
def add(x: int, y: int = 0) -> int:
    return x + y


@ember.remote
def identity(value):
    return value


@ember.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n


def _still_works() -> None:
    assert ember.get(add.remote(40, 2), timeout=20) == 42


# --- calling remote things directly -----------------------------------------------------


def test_calling_a_remote_function_directly_shows_the_remote_call(ember_local) -> None:
    with pytest.raises(TypeError, match=r"add\.remote\("):
        add(1, 2)
    _still_works()


def test_instantiating_an_actor_class_directly_shows_the_remote_call(ember_local) -> None:
    with pytest.raises(TypeError, match=r"Counter\.remote\("):
        Counter()
    _still_works()


def test_calling_an_actor_method_directly_shows_the_remote_call(ember_local) -> None:
    c = Counter.remote()
    with pytest.raises(TypeError, match=r"incr\.remote\("):
        c.incr()
    assert ember.get(c.incr.remote()) == 1


# --- unpicklable values -----------------------------------------------------------------


def test_an_unpicklable_argument_is_named_in_the_error(ember_local) -> None:
    with pytest.raises(SerializationError, match=r"argument 1 of `add`.*lock") as info:
        add.remote(1, threading.Lock())
    assert isinstance(info.value, TypeError)
    with pytest.raises(SerializationError, match=r"argument 'value' of `identity`"):
        identity.remote(value=threading.Lock())
    _still_works()


def test_an_unpicklable_actor_argument_is_named_in_the_error(ember_local) -> None:
    c = Counter.remote()
    with pytest.raises(SerializationError, match=r"argument 0 of `Counter\.incr`"):
        c.incr.remote(threading.Lock())
    assert ember.get(c.incr.remote()) == 1


def test_an_unpicklable_put_is_named_in_the_error(ember_local) -> None:
    with pytest.raises(SerializationError, match="ember.put"):
        ember.put(threading.Lock())
    _still_works()


def test_an_unpicklable_return_value_is_named_in_the_error(ember_local) -> None:
    @ember.remote
    def return_lock():
        return threading.Lock()

    with pytest.raises(TaskError, match=r"return value 0 of `.*return_lock`") as info:
        ember.get(return_lock.remote())
    assert isinstance(info.value.cause, SerializationError)
    _still_works()


# --- get/wait of things that are not refs -----------------------------------------------


@pytest.mark.parametrize("value", [1, "ref", None, {"a": 1}], ids=repr)
def test_get_of_a_non_ref_is_a_type_error(ember_local, value) -> None:
    with pytest.raises(TypeError, match="ObjectRef"):
        ember.get(value)
    _still_works()


def test_get_of_a_list_holding_a_non_ref_is_a_type_error(ember_local) -> None:
    with pytest.raises(TypeError, match="ObjectRef"):
        ember.get([add.remote(1), 2])
    _still_works()


def test_get_of_a_remote_function_asks_did_you_mean(ember_local) -> None:
    with pytest.raises(TypeError, match=r"(?i)did you mean.*\.remote\("):
        ember.get(add)
    with pytest.raises(TypeError, match=r"(?i)did you mean"):
        ember.get(Counter.remote().incr)
    _still_works()


def test_wait_of_a_single_ref_asks_for_a_list(ember_local) -> None:
    with pytest.raises(TypeError, match="list"):
        ember.wait(add.remote(1))
    _still_works()


def test_wait_with_duplicate_refs_is_a_value_error(ember_local) -> None:
    ref = add.remote(1)
    with pytest.raises(ValueError, match="duplicate"):
        ember.wait([ref, ref])
    _still_works()


def test_kill_of_something_else_than_an_actor_is_a_type_error(ember_local) -> None:
    with pytest.raises(TypeError, match="cancel"):
        ember.kill(add.remote(1))
    _still_works()


# --- invalid options --------------------------------------------------------------------


BAD_VALUES = [
    ({"num_cpus": -1}, "num_cpus"),
    ({"num_gpus": "x"}, "num_gpus"),
    ({"num_gpus": 1.5}, "num_gpus"),
    ({"memory": -5}, "memory"),
    ({"resources": {"TPU": -1}}, "TPU"),
    ({"resources": {"CPU": 1}}, "num_cpus"),
    ({"max_retries": -2}, "max_retries"),
    ({"num_returns": "two"}, "num_returns"),
]


@pytest.mark.parametrize("options,text", BAD_VALUES, ids=[str(o) for o, _ in BAD_VALUES])
def test_invalid_option_values_fail_at_decoration(ember_local, options, text) -> None:
    with pytest.raises(ValueError, match=text) as info:
        ember.remote(**options)(lambda: None)
    assert isinstance(info.value, EmberError)
    _still_works()


@pytest.mark.parametrize("options,text", BAD_VALUES, ids=[str(o) for o, _ in BAD_VALUES])
def test_invalid_option_values_fail_at_options(ember_local, options, text) -> None:
    with pytest.raises(ValueError, match=text):
        add.options(**options)
    _still_works()


@pytest.mark.parametrize("options,text", [
    ({"num_cpus": -1}, "num_cpus"), ({"num_gpus": "x"}, "num_gpus"),
    ({"max_concurrency": 0}, "max_concurrency"), ({"lifetime": "forever"}, "lifetime"),
], ids=["num_cpus=-1", "num_gpus=x", "max_concurrency=0", "lifetime=forever"])
def test_invalid_actor_options_fail_at_decoration_and_options(ember_local, options, text) -> None:
    with pytest.raises(ValueError, match=text):
        ember.remote(**options)(type("Plain", (), {}))
    with pytest.raises(ValueError, match=text):
        Counter.options(**options)
    c = Counter.remote()
    assert ember.get(c.incr.remote()) == 1


@pytest.mark.parametrize("where", ["decoration", "options"])
def test_unknown_option_names_suggest_the_right_one(ember_local, where) -> None:
    with pytest.raises(ValueError, match="unknown option 'num_cpu'.*Did you mean 'num_cpus'"):
        if where == "decoration":
            ember.remote(num_cpu=1)(lambda: None)
        else:
            add.options(num_cpu=1)
    with pytest.raises(ValueError, match="Did you mean 'max_retries'"):
        add.options(max_retry=1)
    with pytest.raises(ValueError, match="Did you mean 'max_restarts'"):
        Counter.options(max_restart=1)
    _still_works()


def test_an_unknown_actor_method_option_suggests_the_right_one(ember_local) -> None:
    c = Counter.remote()
    with pytest.raises(ValueError, match="Did you mean 'num_returns'"):
        c.incr.options(num_return=2)
    assert ember.get(c.incr.remote()) == 1


def test_positional_arguments_to_remote_are_refused(ember_local) -> None:
    with pytest.raises(TypeError, match="keyword"):
        ember.remote(1, 2)
    _still_works()


# --- init and get_actor -----------------------------------------------------------------


def test_init_twice_is_an_error_unless_ignored(ember_local) -> None:
    with pytest.raises(EmberError, match="ignore_reinit_error"):
        ember.init(num_cpus=1)
    info = ember.init(num_cpus=1, ignore_reinit_error=True)
    assert info["session_dir"] == ember_local["session_dir"]
    _still_works()


def test_init_with_bad_arguments_fails_before_starting_a_cluster(fresh_ember) -> None:
    ember.shutdown()
    with pytest.raises(ValueError, match="num_cpu"):
        ember.init(num_cpu=2)
    assert not ember.is_initialized()
    with pytest.raises(ValueError, match="num_cpus"):
        ember.init(num_cpus=-1)
    assert not ember.is_initialized()
    ember.init(num_cpus=1)
    _still_works()


def test_get_actor_of_an_unknown_name_is_a_value_error(ember_local) -> None:
    with pytest.raises(ValueError, match="no actor named 'nobody'"):
        ember.get_actor("nobody")
    with pytest.raises(ValueError, match="non-empty"):
        ember.get_actor("")
    _still_works()


# --- timeouts (issue 19) ----------------------------------------------------------------


@pytest.mark.parametrize("timeout, error", [("x", TypeError), (True, TypeError), (-1, ValueError),
                                            (float("nan"), ValueError)])
def test_get_and_wait_refuse_a_timeout_that_is_not_a_non_negative_number(ember_local, timeout,
                                                                          error) -> None:
    ref = add.remote(1, 2)
    with pytest.raises(error, match="timeout"):
        ember.get(ref, timeout=timeout)
    with pytest.raises(error, match="timeout"):
        ember.wait([ref], timeout=timeout)
    assert ember.get(ref, timeout=0.0 + 20) == 3
    _still_works()


@ember.remote(max_retries=0)
def raises_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


def test_a_task_raising_keyboard_interrupt_is_a_task_error_not_a_cancellation(ember_local) -> None:
    """Nothing cancelled it: the task failed with the user's exception."""
    with pytest.raises(TaskError) as info:
        ember.get(raises_keyboard_interrupt.remote(), timeout=20)
    assert not isinstance(info.value, ember.exceptions.TaskCancelledError)
    assert "KeyboardInterrupt" in str(info.value)
    _still_works()
