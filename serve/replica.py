"""A replica: the ember actor that runs one copy of a deployment's code.

It is an async actor, so one replica serves up to ``max_ongoing_requests`` requests at
once on its event loop (its own semaphore is the real limit; routers only estimate).
HTTP requests arrive as plain tuples (http_util.py) and leave as ("full", ...) or
("stream", ...) replies; a user exception becomes a 500 naming the request id, with the
traceback logged here (it reaches the driver's output), never sent to the client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import sys
import time
from typing import Any

import cloudpickle
from starlette.responses import StreamingResponse

from .config import DeploymentConfig
from .context import ReplicaContext, request_id, request_model_id, set_replica_context
from .deployment import function_wrapper
from .http_util import AsgiRun, error_reply, make_receive, plain_result, to_request, to_scope

logger = logging.getLogger("ember.serve.replica")
_STREAM_HEADERS = [(b"content-type", b"text/plain; charset=utf-8")]


def _setup_logging() -> None:
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


class _GeneratorStream:
    """Drives a (sync or async) generator from a handle call; chunks are pulled in batches."""

    def __init__(self, gen: Any) -> None:
        self.items: list[Any] = []
        self.done = False
        self.error: BaseException | None = None
        self._event = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run(gen))

    async def _run(self, gen: Any) -> None:
        try:
            if inspect.isasyncgen(gen):
                async for item in gen:
                    self.items.append(item)
                    self._event.set()
            else:
                for item in gen:
                    self.items.append(item)
                    self._event.set()
                    await asyncio.sleep(0)
        except BaseException as e:  # raised to the caller with the last chunks
            self.error = e
        finally:
            self.done = True
            self._event.set()

    async def take(self) -> tuple[list[Any], bool]:
        while not self.items and not self.done:
            self._event.clear()
            await self._event.wait()
        if self.error is not None and not self.items:
            raise self.error
        out, self.items = self.items, []
        return out, self.done and self.error is None and not self.items


class Replica:
    """One copy of a deployment (created by the controller, never by users)."""

    def __init__(self, app_name: str, deployment: str, replica_id: str, code: bytes,
                 config: DeploymentConfig) -> None:
        _setup_logging()
        target, args, kwargs = cloudpickle.loads(code)
        self.context = ReplicaContext(app_name, deployment, replica_id)
        set_replica_context(self.context)
        cls = target if inspect.isclass(target) else function_wrapper(target)
        self.asgi_app = getattr(cls, "__serve_asgi_app__", None)
        self.obj = cls(*args, **kwargs)
        self.context.servable_object = self.obj
        self.config = config
        self.ongoing = 0
        self.last_request_at = 0.0
        self.streams: dict[str, Any] = {}
        self._sem: asyncio.Semaphore | None = None
        self._stream_seq = 0

    # --- lifecycle (called by the controller) --------------------------------------------

    async def ready(self) -> bool:
        """Set up the loop side; apply ``user_config``. Returns once it can take requests."""
        loop = asyncio.get_running_loop()
        # ``await ref`` resolves from the runtime's callback, but a value that must be
        # mapped from the store is still read on the default executor: give it room for
        # every request this replica may have waiting on another deployment.
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(
            max(32, self.config.max_ongoing_requests * 2), thread_name_prefix="serve-await"))
        self._sem = asyncio.Semaphore(self.config.max_ongoing_requests)
        if self.config.user_config is not None:
            await self.reconfigure(self.config.user_config)
        return True

    async def reconfigure(self, user_config: Any) -> None:
        fn = getattr(self.obj, "reconfigure", None)
        if fn is None:
            raise AttributeError(f"deployment {self.context.deployment!r} got user_config but has no "
                                 "reconfigure(self, user_config) method; add one")
        result = fn(user_config)
        if inspect.isawaitable(result):
            await result

    async def check_health(self) -> int:
        """Run the user's ``check_health`` (if any); returns the number of ongoing requests."""
        fn = getattr(self.obj, "check_health", None)
        if fn is not None:
            result = fn()
            if inspect.isawaitable(result):
                await result
        return self.ongoing

    async def num_ongoing(self) -> int:
        return self.ongoing

    async def drain(self, timeout_s: float) -> int:
        """Wait (up to ``timeout_s``) until no request runs here and none started lately."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ongoing == 0 and time.monotonic() - self.last_request_at > 0.05:
                break
            await asyncio.sleep(0.02)
        return self.ongoing

    async def stats(self) -> dict[str, Any]:
        """Batch sizes of each ``@serve.batch`` method (for tests and tuning)."""
        out = {}
        for key, value in self.obj.__dict__.items():
            if key.startswith("__serve_batch_"):
                out[key[len("__serve_batch_"):]] = list(value.batch_sizes)
        return {"ongoing": self.ongoing, "batch_sizes": out, "pid": os.getpid(),
                "replica_id": self.context.replica_id}

    # --- requests -------------------------------------------------------------------------

    async def _enter(self) -> None:
        if self._sem is None:
            await self.ready()
        self.ongoing += 1
        self.last_request_at = time.monotonic()
        await self._sem.acquire()

    def _leave(self, _task: Any = None) -> None:
        self.ongoing -= 1
        self._sem.release()

    def _new_stream(self, stream: Any) -> str:
        self._stream_seq += 1
        sid = f"{self.context.replica_id}:{self._stream_seq}"
        self.streams[sid] = stream
        stream.task.add_done_callback(self._leave)
        return sid

    async def handle_request(self, meta: tuple, *args: Any, **kwargs: Any) -> Any:
        """A handle call: ``meta`` = (method name, request id, model id, stream)."""
        method_name, rid, model_id, stream = meta
        await self._enter()
        handed_off = False
        try:
            request_id.set(rid)
            request_model_id.set(model_id)
            method = getattr(self.obj, method_name, None)
            if method is None:
                raise AttributeError(f"deployment {self.context.deployment!r} has no method "
                                     f"{method_name!r}; call one of its methods with handle.<name>.remote()")
            result = method(*args, **kwargs)
            if stream:
                if inspect.isawaitable(result):
                    result = await result
                if not (inspect.isgenerator(result) or inspect.isasyncgen(result)):
                    raise TypeError(f"handle.options(stream=True) needs {method_name!r} of "
                                    f"{self.context.deployment!r} to be a generator; it returned "
                                    f"{type(result).__name__}")
                gen = _GeneratorStream(result)
                sid = self._new_stream(gen)
                handed_off = True
                chunks, done = await gen.take()
                if done:
                    self.streams.pop(sid, None)
                return ("stream", sid, chunks, done)
            if inspect.isawaitable(result):
                result = await result
            return result
        finally:
            if not handed_off:
                self._leave()

    async def next_chunks(self, stream_id: str) -> tuple:
        stream = self.streams.get(stream_id)
        if stream is None:
            raise KeyError(f"no stream {stream_id!r} on this replica (finished or never started)")
        try:
            chunks, done = await stream.take()
        except BaseException:
            self.streams.pop(stream_id, None)
            raise
        if done:
            self.streams.pop(stream_id, None)
        return ("stream", stream_id, chunks, done)

    async def handle_http(self, meta: tuple, req: tuple) -> tuple:
        """An HTTP request from the proxy; answers ("full", ...) or ("stream", ...)."""
        rid = meta[1]
        await self._enter()
        handed_off = False
        try:
            request_id.set(rid)
            request_model_id.set(meta[2])
            if self.asgi_app is not None:
                run = AsgiRun(self.asgi_app, to_scope(req), make_receive(req[6]))
            else:
                result = self.obj(to_request(req))
                if inspect.isawaitable(result):
                    result = await result
                reply = plain_result(result)
                if reply is not None:
                    return reply
                if inspect.isgenerator(result) or inspect.isasyncgen(result):
                    result = StreamingResponse(result, headers={"content-type": "text/plain; charset=utf-8"})
                if not callable(result):
                    raise TypeError(f"__call__ of {self.context.deployment!r} returned "
                                    f"{type(result).__name__}; return str, bytes, a JSON-able value, a "
                                    "starlette Response or a generator")
                run = AsgiRun(result, to_scope(req), make_receive(b""))
            await run.wait_first()
            if run.error is not None:
                raise run.error
            if not run.streaming:
                return run.full_reply()
            sid = self._new_stream(run)
            handed_off = True
            messages, done = await run.take()
            if done:
                self.streams.pop(sid, None)
            return ("stream", sid, messages, done)
        except Exception as e:  # the client gets a 500 with the id; the traceback stays here
            logger.error("request %s to deployment %r failed", rid, self.context.deployment,
                         exc_info=e)
            return error_reply(500, "Internal Server Error", rid)
        finally:
            if not handed_off:
                self._leave()
