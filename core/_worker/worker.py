"""A worker process: runs tasks and actor methods pushed to it by submitters.

    submitter --PushTask--> [conn thread] --queue--> [main thread] run task
                                  |                        |
                                  +-- CancelTask           +--TaskReply--> submitter
                                  +-- GeneratorConsumed    +--GeneratorItems (streaming.py)
    node manager --StartActor--> [nm reader] --queue--> [main thread] __init__

The main thread runs one task at a time (signals and cancellation target it).
Threaded actors run calls on a pool of ``max_concurrency`` threads; async actors on
one event loop thread.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import cloudpickle

from .._client import context
from .._wire import protocol as p
from .._resources import plain_resources
from ..actor import READY_METHOD
from .._client.arguments import decode_args
from .._client.context import ExitActorSignal, TaskContext, current_task
from ..exceptions import RuntimeEnvSetupError, TaskCancelledError, TaskError
from .._wire.ids import object_id
from .._client.object_entry import Completion, error_returns
from .._client.runtime import Runtime
from .._wire.serialization import serialize
from .._wire.handshake import serve_hello
from .._wire.transport import Connection, ConnectionClosed, ProtocolViolation, accept, listen
from ..runtime_env import SETUP_HOOK_ENV, hook_name
from . import remote_pdb
from .output import LogForwarder, flush_output
from .process_env import apply_env_vars, enter_process_env, restore_env_vars, set_visible_gpus
from .replay import keep_for_replay
from ..object_ref import ObjectRef
from ..object_ref_generator import DynamicObjectRefGenerator
from .streaming import ItemSender, Producer, StreamCancelled

#: What a task whose spec names no resources was given (shared: only ever read).
_DEFAULT_TASK_RESOURCES = {"CPU": 1.0}

#: What a finished call leaves: its returns, and whether the worker exits after replying.
Outcome = tuple[list[Completion], bool]


class Worker:
    """One worker process: runs the tasks (or the one actor) its node manager leased it for.

    Submitters push calls straight to it over its own sockets (Unix for its node, TCP for
    others); each call's outcome (returns, or the error) goes back on the connection it
    came from. Sync tasks run on the main thread (so cancellation can interrupt them);
    threaded actors on a pool; async actors on one event-loop thread. All three paths
    share ``_outcome_of`` for what a result or an exception becomes.
    """

    def __init__(self, spec: dict) -> None:
        self.session_dir = spec["session_dir"]
        self.worker_id = bytes.fromhex(spec["worker_id"])
        self.token = os.environ["EMBER_TOKEN"].encode()
        sock_path = os.path.join(self.session_dir, "sockets", f"w-{spec['worker_id'][:16]}.sock")
        self._listener, self.address = listen(f"unix:{sock_path}")
        # Submitters on other nodes push over TCP, bound where the node's own port is.
        self._tcp_listener, self.tcp_address = listen(f"tcp:{spec.get('node_host', '127.0.0.1')}:0")
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.functions: dict[bytes, Callable] = {}
        self.calls_per_function: dict[bytes, int] = {}
        #: The actor instance this worker hosts (None for task workers).
        self.actor: object | None = None
        self.actor_spec: p.ActorSpec | None = None
        self.actor_gpu_ids: list[int] = []
        self.pool: ThreadPoolExecutor | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.async_limit: asyncio.Semaphore | None = None
        self.running: TaskContext | None = None
        #: The running task's (args, kwargs) on the main thread, kept for replay if it raises.
        self._inputs: tuple[tuple, dict] | None = None
        self.cancelled: set[bytes] = set()
        #: Contexts of the calls running now, by task id (a cancel marks them).
        self.calls: dict[bytes, TaskContext] = {}
        #: Actor calls received but not started, by task id. Whoever pops a call first
        #: owns its reply: the call when it starts, or a cancel (answered at once, the
        #: call then skipped), so a queued call never waits behind the one running.
        self.queued: dict[bytes, tuple[Connection, p.TaskSpec]] = {}
        #: An async actor's running calls, by task id (a cancel cancels them on the loop).
        self.async_calls: dict[bytes, asyncio.Task] = {}
        #: What the hosted actor holds, in plain names (its calls' assigned resources).
        self.actor_resources: dict[str, float] = {}
        #: The job's setup hook ran (or there is none); set before the first task.
        self.setup_done = False
        #: Why the setup hook failed: every task and actor given this worker fails with it.
        self.setup_error: RuntimeEnvSetupError | None = None
        self.exiting = False
        #: Streaming generators running now, by task id (back-pressure and cancel reach them).
        self.producers: dict[bytes, Producer] = {}
        #: Sends every generator's values, batched, on its own thread.
        self.sender = ItemSender()
        #: The asyncio task of each running async actor call (so cancel can reach it).
        self.async_calls: dict[bytes, asyncio.Task] = {}
        self.rt = Runtime(spec["node_address"], self.token, "worker", self.worker_id, self.address,
                          on_message=self._on_node_message, tcp_address=self.tcp_address)
        for listener in (self._listener, self._tcp_listener):
            threading.Thread(target=self._accept_loop, args=(listener,), daemon=True,
                             name="ember-worker-accept").start()

    # --- inbound ----------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                conn = accept(listener)
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name="ember-worker-conn").start()

    def _serve(self, conn: Connection) -> None:
        try:
            serve_hello(conn, self.token)
            while True:
                msg, _ = conn.recv()
                if isinstance(msg, p.PushTask):
                    self._route(conn, msg.spec)
                elif isinstance(msg, p.GeneratorConsumed):
                    producer = self.producers.get(msg.task_id)
                    if producer is not None:
                        producer.on_consumed(msg.consumed)
                elif isinstance(msg, p.CancelTask):
                    self._cancel(msg)
        except (ConnectionClosed, ProtocolViolation, OSError):
            conn.close()

    def _route(self, conn: Connection, spec: p.TaskSpec) -> None:
        if spec.actor_id is not None:
            self.queued[spec.task_id] = (conn, spec)
        if spec.actor_id is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self._start_async_call, conn, spec)
        elif spec.actor_id is not None and self.pool is not None:
            self.pool.submit(self._execute, conn, spec)
        else:
            self.tasks.put((conn, spec))

    def _on_node_message(self, msg: Any, fds: list[int]) -> None:
        if isinstance(msg, p.StartActor):
            self.tasks.put((None, msg))
        elif isinstance(msg, p.Exit):
            os._exit(0)

    def _cancel(self, msg: p.CancelTask) -> None:
        self.cancelled.add(msg.task_id)
        producer = self.producers.get(msg.task_id)
        if producer is not None:  # a generator stops at its next value (or while it waits)
            producer.cancel()
        queued = self.queued.pop(msg.task_id, None)
        if queued is not None:  # an actor call not started: it never runs
            conn, spec = queued
            self._finish(conn, spec, (error_returns(TaskCancelledError(spec.name), spec.num_returns), False))
            return
        ctx = self.calls.get(msg.task_id)
        if ctx is not None:
            ctx.cancelled = True
            if ctx.actor_id is not None:
                # An actor keeps state between calls, so a running call is not interrupted
                # (it may poll is_canceled()); an async actor's call is cancelled on its loop.
                if msg.recursive:
                    self.rt.submitter.cancel_children(msg.task_id)
                call = self.async_calls.get(msg.task_id)
                if call is not None and self.loop is not None:
                    self.loop.call_soon_threadsafe(call.cancel)
                return
        running = self.running
        if running is not None and running.task_id == msg.task_id:
            if msg.recursive:
                self.rt.submitter.cancel_children(msg.task_id)
            # A real SIGINT, not _thread.interrupt_main(): only a signal wakes a main
            # thread blocked in a system call such as time.sleep(10e6).
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    # --- the main loop ----------------------------------------------------------------

    def run(self) -> int:
        while True:
            try:
                conn, item = self.tasks.get()
                if not self.setup_done:
                    self.run_setup_hook()
                if isinstance(item, p.StartActor):
                    self._start_actor(item)
                else:
                    self._execute(conn, item)
            except KeyboardInterrupt:
                continue  # a cancel that raced with the end of its task
            if self.exiting:
                return 0

    def run_setup_hook(self) -> None:
        """Run the job's ``worker_process_setup_hook`` once, before the first task or actor
        (on the main thread). A failure is kept: every call given this worker fails with it."""
        self.setup_done = True
        hook_id = os.environ.get(SETUP_HOOK_ENV)
        if not hook_id:
            return
        hook: Any = hook_id
        try:
            hook = self._function(bytes.fromhex(hook_id))
            hook()
        except BaseException as e:  # the hook's failure is reported to every caller
            tb = "".join(traceback.format_exception(e)).rstrip()
            self.setup_error = RuntimeEnvSetupError(
                "worker_process_setup_hook", f"the hook {hook_name(hook)} raised in worker pid {os.getpid()}, "
                f"so this worker runs no task of the job:\n{tb}\n",
                "Fix the hook (it runs once in every worker of the job, before its first task), or drop "
                "it from ember.init(runtime_env=...)")
        finally:
            flush_output()

    def _function(self, function_id: bytes) -> Callable:
        fn = self.functions.get(function_id)
        if fn is None:
            blob, _ = self.rt.call(lambda rid: p.GetFunction(rid, function_id))
            fn = self.functions[function_id] = cloudpickle.loads(blob)
        return fn

    def _load_args(self, spec: p.TaskSpec) -> tuple[tuple, dict]:
        return decode_args(self.rt, spec.payload, spec.deps)

    def _context(self, spec: p.TaskSpec, is_async: bool = False) -> TaskContext:
        """The call's context, registered in ``calls`` until it finishes (for cancels)."""
        if spec.actor_id is None:
            ctx = TaskContext(spec.task_id, spec.name, None, spec.gpu_ids, spec.placement_group,
                              spec.resources if spec.resources is not None else _DEFAULT_TASK_RESOURCES)
        else:
            ctx = TaskContext(spec.task_id, spec.name, spec.actor_id, self.actor_gpu_ids,
                              self.actor_spec.request.placement_group if self.actor_spec else None,
                              self.actor_resources, is_async)
        if spec.task_id in self.cancelled:
            ctx.cancelled = True
        self.calls[spec.task_id] = ctx
        return ctx

    def _actor_method(self, name: str) -> Callable:
        """The hosted actor's method ``name`` (``__ray_ready__`` is answered for every actor)."""
        if name == READY_METHOD:
            return _ready
        return getattr(self.actor, name)

    def _call_interruptibly(self, ctx: TaskContext, spec: p.TaskSpec, fn: Callable,
                            conn: Connection) -> Any:
        # Any SIGINT from _cancel that lands while this frame is active surfaces as
        # KeyboardInterrupt from here; once it returns, late ones are ignored, so a cancel
        # racing with the end of its task can never hit the next task. A generator runs
        # to its end inside this frame too.
        saved = apply_env_vars(spec.env_vars)
        ctx.interruptible = True
        try:
            args, kwargs = self._load_args(spec)
            self._inputs = (args, kwargs)  # kept for replay if it raises
            return self._drive(spec, conn, fn(*args, **kwargs))
        finally:
            ctx.interruptible = False
            restore_env_vars(saved)

    def _on_sigint(self, _signum: int, _frame: Any) -> None:
        running = self.running
        if running is not None and running.interruptible and running.task_id in self.cancelled:
            raise KeyboardInterrupt

    def _execute(self, conn: Connection, spec: p.TaskSpec) -> None:
        """Run a task or a sync actor call (main thread, or a threaded actor's pool)."""
        if spec.actor_id is not None and self.queued.pop(spec.task_id, None) is None:
            return  # cancelled before it started, and answered then
        ctx = self._context(spec)
        token = current_task.set(ctx)
        on_main = threading.current_thread() is threading.main_thread()
        if on_main:
            self.running = ctx
            if spec.actor_id is None:
                set_visible_gpus(spec.gpu_ids)
        self.rt.task_events.started(spec)
        error: BaseException | None = None
        try:
            if self.setup_error is not None:
                raise self.setup_error
            if spec.task_id in self.cancelled:
                raise KeyboardInterrupt
            fn = self._function(spec.function_id) if spec.actor_id is None else self._actor_method(spec.method)
            if on_main:
                result = self._call_interruptibly(ctx, spec, fn, conn)
            else:
                args, kwargs = self._load_args(spec)
                result = self._drive(spec, conn, fn(*args, **kwargs))
            outcome = self._encode_returns(spec, result), False
        except BaseException as e:  # whatever happened travels to the caller
            hint = ""
            if (self._inputs is not None and spec.actor_id is None and isinstance(e, Exception)
                    and not isinstance(e, RuntimeEnvSetupError)):
                hint = keep_for_replay(self.rt, spec, self._inputs, e)
            outcome = self._outcome_of(spec, e, hint)
            error = e
        finally:
            if on_main:
                self._inputs = None
                self.running = None
            current_task.reset(token)
        self.rt.task_events.ended(spec, *_error_event(error))
        self._finish(conn, spec, outcome)

    def _drive(self, spec: p.TaskSpec, conn: Connection, result: Any) -> Any:
        """What a call's result becomes when it is a generator (sync calls).

        Streaming: run it here, each value sent as it is yielded; the call itself returns
        None. Dynamic: every value stored, one DynamicObjectRefGenerator of their refs
        returned. A generator under a count of num_returns: its values are the returns.
        """
        if spec.generator == "streaming":
            producer = self._open_stream(spec, conn, result)
            try:
                if inspect.isasyncgen(result):  # an async generator task: its own loop
                    asyncio.run(producer.run_async(result))
                else:
                    producer.run(result)
            finally:
                self.producers.pop(spec.task_id, None)
            return None
        if spec.generator == "dynamic":
            _check_generator(spec, result, inspect.isgenerator)
            return DynamicObjectRefGenerator([ObjectRef(self.rt.put(value)) for value in result])
        if inspect.isgenerator(result):  # Ray's static returns: num_returns=k, k yields
            values = list(result)
            n = spec.num_returns
            if len(values) != n:
                raise ValueError(f"task `{spec.name}` declared num_returns={n} but its generator "
                                 f"yielded {len(values)} values; yield exactly {n}, or drop num_returns "
                                 f"to stream the values (num_returns='streaming')")
            return values[0] if n == 1 else tuple(values)
        return result

    def _open_stream(self, spec: p.TaskSpec, conn: Connection, result: Any) -> Producer:
        _check_generator(spec, result, lambda r: inspect.isgenerator(r) or inspect.isasyncgen(r))
        producer = self.producers[spec.task_id] = Producer(spec, conn, self.rt.objects, self.sender)
        if spec.task_id in self.cancelled:  # cancelled before it started
            producer.cancel()
        return producer

    def _outcome_of(self, spec: p.TaskSpec, error: BaseException, hint: str = "") -> Outcome:
        """What a call that raised leaves, the same for sync and async calls.

        ``sys.exit()`` or ``exit_actor()`` in an actor method ends the actor without a
        reply, as in Ray: its callers get ActorDiedError from the lost connection. A
        cancel is a TaskCancelledError; anything else is the user's error (a TaskError).
        """
        if isinstance(error, RuntimeEnvSetupError):  # raised as it is: the caller can catch it
            return error_returns(error, spec.num_returns), False
        if isinstance(error, SystemExit) and spec.actor_id is not None:
            self.rt.task_events.ended(spec, *_error_event(error))  # flushed as the process leaves
            self._leave_actor(error)
        cancelled = spec.task_id in self.cancelled or isinstance(error, asyncio.CancelledError)
        # A recursive cancel stops the children first, so the task may see a child's
        # TaskCancelledError (from its get) before its own interrupt: cancelled all the same.
        by_child = isinstance(error, TaskCancelledError) or (
            isinstance(error, TaskError) and isinstance(error.cause, TaskCancelledError))
        interrupted = isinstance(error, (KeyboardInterrupt, asyncio.CancelledError, StreamCancelled))
        if cancelled and (by_child or interrupted):
            return error_returns(TaskCancelledError(spec.name), spec.num_returns), False
        return error_returns(_task_error(spec.name, error, hint), spec.num_returns), False

    def _finish(self, conn: Connection | None, spec: p.TaskSpec, outcome: Outcome) -> None:
        """Reply with the call's outcome; leave if it asked to or used up max_calls."""
        returns, exiting = outcome
        ctx = self.calls.pop(spec.task_id, None)
        self.async_calls.pop(spec.task_id, None)
        if ctx is not None and ctx.cancelled and not exiting:
            # A cancelled call that still ran to its end (an actor call is not interrupted;
            # a task may catch the KeyboardInterrupt) reports the cancel, as in Ray.
            returns = error_returns(TaskCancelledError(spec.name), spec.num_returns)
        self.cancelled.discard(spec.task_id)
        if spec.generator == "streaming":
            self.sender.flush()  # every value reaches the caller before the reply
        if spec.max_calls:
            n = self.calls_per_function.get(spec.function_id, 0) + 1
            self.calls_per_function[spec.function_id] = n
            exiting = exiting or n >= spec.max_calls
        self._reply(conn, p.TaskReply(spec.task_id, returns, worker_exiting=exiting))
        if exiting:
            self._exit()

    def _reply(self, conn: Connection, msg: p.TaskReply) -> None:
        try:
            conn.send(msg)
        except ConnectionClosed:
            pass

    def _exit(self) -> None:
        if self.actor_spec is not None:
            self.rt.send(p.ExitActor(self.actor_spec.actor_id))
        flush_output()
        self.rt.objects.drain_releases()
        self.rt.task_events.flush()
        os._exit(0)

    def _leave_actor(self, error: SystemExit) -> None:
        """An actor method called exit_actor() or sys.exit(code): the process ends now.

        exit_actor() and exit code 0 (or None) are a clean, final exit (no restart); any
        other code is a crash, and the actor restarts under max_restarts (Ray's rule).
        os._exit() needs nothing here: the process is simply gone.
        """
        code = 0 if isinstance(error, ExitActorSignal) else error.code
        if code in (0, None):
            how = "exit_actor()" if isinstance(error, ExitActorSignal) else f"sys.exit({code!r})"
            self.rt.send(p.ExitActor(self.actor_spec.actor_id, how))
        flush_output()
        self.rt.objects.drain_releases()
        self.rt.task_events.flush()
        os._exit(code if isinstance(code, int) else 1)

    def _encode_returns(self, spec: p.TaskSpec, result: Any) -> list[Completion]:
        n = spec.num_returns
        if n == 1:
            values = [result]
        elif n == 0:
            values = []
        else:
            if not isinstance(result, (tuple, list)) or len(result) != n:
                got = f"{len(result)} values" if isinstance(result, (tuple, list)) else type(result).__name__
                raise ValueError(f"task `{spec.name}` declared num_returns={n} but returned {got}; "
                                 f"return a tuple of {n} values or change num_returns")
            values = list(result)
        objects = self.rt.objects
        return [objects.encode_value(object_id(spec.task_id, i),
                                     serialize(value, what=f"return value {i} of `{spec.name}`"),
                                     spec.owner_id)
                for i, value in enumerate(values)]

    # --- actors -----------------------------------------------------------------------

    def _start_actor(self, msg: p.StartActor) -> None:
        spec = msg.spec
        self.actor_spec = spec
        self.actor_gpu_ids = msg.gpu_ids
        set_visible_gpus(msg.gpu_ids)
        apply_env_vars(spec.env_vars)  # for the actor's whole life: its worker is its own
        request = spec.request
        self.actor_resources = plain_resources(request.hold if request.hold is not None else request.shape)
        ctx = TaskContext(None, spec.class_name, spec.actor_id, msg.gpu_ids, request.placement_group,
                          self.actor_resources)
        token = current_task.set(ctx)
        started_s = time.time()
        try:
            if self.setup_error is not None:
                raise self.setup_error
            cls = self._function(spec.class_id)
            args, kwargs = decode_args(self.rt, spec.payload, spec.deps)
            self.actor = cls(*args, **kwargs)
        except BaseException as e:  # reported to every caller as the actor's death cause
            cause = "".join(traceback.format_exception(e))
            self.rt.task_events.actor_created(spec, started_s, cause)
            self.rt.task_events.flush()  # the node may stop this worker any moment now
            self.rt.send(p.Reply(msg.rid, False, cause))
            return
        finally:
            current_task.reset(token)
        self.rt.task_events.actor_created(spec, started_s, None)
        context.actor_spec = spec
        if spec.is_async:
            self._start_event_loop(spec.max_concurrency)
        elif spec.max_concurrency > 1:
            self.pool = ThreadPoolExecutor(spec.max_concurrency, thread_name_prefix="ember-actor")
        self.rt.send(p.Reply(msg.rid, True, None))

    def _start_event_loop(self, limit: int) -> None:
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self.async_limit = asyncio.Semaphore(limit)
            loop.call_soon(started.set)
            loop.run_forever()

        threading.Thread(target=run, daemon=True, name="ember-actor-loop").start()
        started.wait()
        self.loop = loop

    def _start_async_call(self, conn: Connection, spec: p.TaskSpec) -> None:
        self.async_calls[spec.task_id] = self.loop.create_task(self._run_async_call(conn, spec))

    async def _run_async_call(self, conn: Connection, spec: p.TaskSpec) -> None:
        async with self.async_limit:
            if self.queued.pop(spec.task_id, None) is None:
                self.async_calls.pop(spec.task_id, None)
                return  # cancelled before it started, and answered then
            current_task.set(self._context(spec, is_async=True))
            self.rt.task_events.started(spec)
            error: BaseException | None = None
            try:
                if spec.task_id in self.cancelled:
                    raise asyncio.CancelledError
                method = self._actor_method(spec.method)
                if _all_inline(spec):  # nothing to fetch: no thread hop
                    args, kwargs = self._load_args(spec)
                else:
                    args, kwargs = await asyncio.to_thread(self._load_args, spec)
                result = method(*args, **kwargs)
                if spec.generator == "streaming":
                    producer = self._open_stream(spec, conn, result)
                    try:
                        await producer.run_async(result)
                    finally:
                        self.producers.pop(spec.task_id, None)
                    result = None
                elif inspect.isawaitable(result):
                    result = await result
                else:
                    result = self._drive(spec, conn, result)
                outcome = self._encode_returns(spec, result), False
            except BaseException as e:  # whatever happened travels to the caller
                outcome = self._outcome_of(spec, e)
                error = e
            self.rt.task_events.ended(spec, *_error_event(error))
            self._finish(conn, spec, outcome)


def _ready() -> bool:
    """``__ray_ready__``: the actor is up (its ``__init__`` ran) and answers calls."""
    return True


def _error_event(error: BaseException | None) -> tuple[str | None, str]:
    """(error type, message) a call's end is recorded with; (None, "") when it succeeded
    (``exit_actor()`` and ``sys.exit(0)`` included). Formatted only for failures."""
    if error is None or isinstance(error, ExitActorSignal) or (
            isinstance(error, SystemExit) and error.code in (0, None)):
        return None, ""
    if isinstance(error, (KeyboardInterrupt, asyncio.CancelledError, StreamCancelled)):
        return "TASK_CANCELLED", "the task was cancelled"
    return "TASK_EXECUTION_EXCEPTION", "".join(traceback.format_exception(type(error), error,
                                                                           error.__traceback__))


def _all_inline(spec: p.TaskSpec) -> bool:
    """Whether a call's arguments all travelled inline (loading them cannot block)."""
    return not isinstance(spec.payload, tuple) and all(kind == "inline" for kind, _ in spec.deps)


def _check_generator(spec: p.TaskSpec, result: Any, ok: Callable[[Any], bool]) -> None:
    """A call made with num_returns="streaming"/"dynamic" must have returned a generator."""
    if not ok(result):
        raise TypeError(f"`{spec.name}` was called with num_returns={spec.generator!r} but returned "
                        f"{type(result).__name__}, not a generator: make it yield its values, or call "
                        f"it with num_returns=1")


def _task_error(name: str, error: BaseException, hint: str = "") -> TaskError:
    # A task that failed because a task it waited on failed re-raises the innermost
    # user exception (as Ray does), so `except ValueError:` works at every level.
    cause = error.cause if isinstance(error, TaskError) and error.cause is not None else error
    tb = "".join(traceback.format_exception(type(error), error, error.__traceback__)) + hint
    return TaskError(name, tb, cause, os.getpid())


def main(spec: dict) -> int:
    """Entry point of a forked worker (called by the fork server's child)."""
    if spec.get("cwd"):
        try:
            os.chdir(spec["cwd"])
        except OSError:
            pass
    if spec.get("sys_path"):
        sys.path[:] = spec["sys_path"]
    os.environ.update(spec.get("env_vars") or {})
    enter_process_env(spec.get("process_env"), spec.get("pip_site") or "")
    worker = Worker(spec)
    # Tasks and actors it starts inherit its process env (Ray's rule for runtime_env).
    worker.rt.default_process_env = spec.get("process_env")
    # Cancellation raises KeyboardInterrupt in the task through SIGINT (see _cancel).
    signal.signal(signal.SIGINT, worker._on_sigint)
    context.attach_worker(worker.rt)
    remote_pdb.install(worker.rt, worker.token)
    def actor_class() -> str | None:
        return worker.actor_spec.class_name if worker.actor_spec else None

    sys.stdout = LogForwarder(worker.rt, False, sys.__stdout__, actor_class)
    sys.stderr = LogForwarder(worker.rt, True, sys.__stderr__, actor_class)
    return worker.run()
