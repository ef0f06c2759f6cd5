"""DeploymentHandle and DeploymentResponse: calling a deployment from Python.

``handle.method.remote(*args)`` sends the call at once (one actor call to the chosen
replica) and returns a DeploymentResponse: ``await`` it in async code, ``.result()`` in
sync code, or pass it into another handle call, where it travels as an ObjectRef that
ember resolves at the next replica (the caller never waits on the intermediate value).
A call whose replica died before answering is sent again to another replica.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, AsyncIterator, Iterator

import ember
from ember.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError

from .exceptions import ReplicaDiedError, RequestTimeoutError
from .router import Router, get_router

#: Times a call is sent again after its replica died.
MAX_RESENDS = 3
_REPLICA_GONE = (ActorDiedError, ActorUnavailableError)


def _in_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class DeploymentHandle:
    """Calls one deployment of one application; picklable, so it can be passed to replicas."""

    def __init__(self, deployment_name: str, app_name: str, method_name: str = "__call__",
                 stream: bool = False, multiplexed_model_id: str = "") -> None:
        self.deployment_name = deployment_name
        self.app_name = app_name
        self._method = method_name
        self._stream = stream
        self._model_id = multiplexed_model_id

    def options(self, *, method_name: str | None = None, stream: bool | None = None,
                multiplexed_model_id: str | None = None, **_ignored: Any) -> "DeploymentHandle":
        """A copy calling another method, streaming results, or pinned to a multiplexed model."""
        return DeploymentHandle(self.deployment_name, self.app_name,
                                self._method if method_name is None else method_name,
                                self._stream if stream is None else stream,
                                self._model_id if multiplexed_model_id is None else multiplexed_model_id)

    def __getattr__(self, name: str) -> "DeploymentHandle":
        if name.startswith("_"):
            raise AttributeError(name)
        return self.options(method_name=name)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Send one call; returns DeploymentResponse (or DeploymentResponseGenerator if streaming)."""
        router = get_router(self.app_name, self.deployment_name)
        meta = (self._method, os.urandom(8).hex(), self._model_id, self._stream)
        if self._stream:
            return DeploymentResponseGenerator(router, meta, args, kwargs)
        return DeploymentResponse(router, meta, args, kwargs)

    def __reduce__(self) -> tuple:
        return (DeploymentHandle, (self.deployment_name, self.app_name, self._method, self._stream,
                                   self._model_id))

    def __repr__(self) -> str:
        return f"DeploymentHandle(deployment={self.deployment_name!r}, app={self.app_name!r})"


def _resolve_args(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """DeploymentResponses among the arguments become their ObjectRefs (resolved by ember)."""
    if not any(isinstance(a, DeploymentResponse) for a in args) and \
            not any(isinstance(v, DeploymentResponse) for v in kwargs.values()):
        return args, kwargs
    args = tuple(a._object_ref_now() if isinstance(a, DeploymentResponse) else a for a in args)
    kwargs = {k: v._object_ref_now() if isinstance(v, DeploymentResponse) else v for k, v in kwargs.items()}
    return args, kwargs


class DeploymentResponse:
    """The future result of one handle call."""

    def __init__(self, router: Router, meta: tuple, args: tuple, kwargs: dict) -> None:
        self._router = router
        self._meta = meta
        self._args = args
        self._kwargs = kwargs
        self._ref: Any = None
        self._replica: str | None = None
        self._tried: tuple[str, ...] = ()
        self._sending: asyncio.Task | None = None
        self._value: Any = None
        self._done = False
        choice = router.try_pick(model_id=meta[2])
        if choice is not None:
            self._send(choice)
        else:
            loop = _in_loop()
            if loop is None:
                self._send(router.pick_sync(model_id=meta[2]))
            else:
                self._sending = loop.create_task(self._send_async())

    def _send(self, choice: tuple[str, Any]) -> None:
        replica_id, actor = choice
        try:
            args, kwargs = _resolve_args(self._args, self._kwargs)
            self._ref = actor.handle_request.remote(self._meta, *args, **kwargs)
        except BaseException:
            self._router.release(replica_id)
            raise
        self._replica = replica_id
        self._tried = self._tried + (replica_id,)

    async def _send_async(self) -> None:
        self._send(await self._router.pick_async(model_id=self._meta[2]))

    def _release(self) -> None:
        if self._replica is not None:
            replica, self._replica = self._replica, None
            self._router.release(replica)

    def _object_ref_now(self) -> Any:
        """The ObjectRef of this call, sending it now if it is still queued."""
        if self._ref is None:
            if self._sending is not None:
                self._sending.cancel()
                self._sending = None
            self._send(self._router.pick_sync())
        return self._ref

    async def _to_object_ref(self) -> Any:
        if self._ref is None and self._sending is not None:
            await self._sending
        return self._object_ref_now()

    def _to_object_ref_sync(self) -> Any:
        return self._object_ref_now()

    def _on_replica_gone(self, error: BaseException) -> bool:
        """Mark the replica dead; True if the call should be sent again."""
        replica = self._replica
        self._release()
        self._ref = None
        if replica is not None:
            self._router.mark_dead(replica)
        return len(self._tried) <= MAX_RESENDS

    def _fail_replica(self, error: BaseException) -> ReplicaDiedError:
        return ReplicaDiedError(f"deployment {self._router.name!r}: the replicas {list(self._tried)} died "
                                f"while running request {self._meta[1]} ({error})")

    async def _result_async(self) -> Any:
        if self._done:
            return self._value
        while True:
            if self._ref is None:
                if self._sending is not None:
                    sending, self._sending = self._sending, None
                    await sending
                else:
                    self._send(await self._router.pick_async(self._tried))
            try:
                value = await self._ref
            except _REPLICA_GONE as e:
                if self._on_replica_gone(e):
                    continue
                raise self._fail_replica(e) from e
            finally:
                if self._ref is not None:
                    self._release()
            self._value, self._done = value, True
            self._args = self._kwargs = ()
            return value

    def __await__(self) -> Any:
        return self._result_async().__await__()

    def result(self, *, timeout_s: float | None = None) -> Any:
        """Block until the result is ready (raises the replica's exception, or TimeoutError)."""
        if self._done:
            return self._value
        while True:
            ref = self._object_ref_now()
            try:
                value = ember.get(ref, timeout=timeout_s)
            except GetTimeoutError:
                raise RequestTimeoutError(f"request {self._meta[1]} to deployment {self._router.name!r} "
                                          f"took longer than timeout_s={timeout_s}") from None
            except _REPLICA_GONE as e:
                if self._on_replica_gone(e):
                    self._send(self._router.pick_sync(self._tried))
                    continue
                raise self._fail_replica(e) from e
            self._release()
            self._value, self._done = value, True
            self._args = self._kwargs = ()
            return value

    def __reduce__(self) -> Any:
        raise TypeError("a DeploymentResponse cannot be pickled; pass it directly into another handle "
                        "call (it travels as a reference), or pass its value (`await response` / "
                        "`response.result()`)")

    def cancel(self) -> None:
        if self._sending is not None:
            self._sending.cancel()
        if self._ref is not None:
            ember.cancel(self._ref)

    def __del__(self) -> None:
        try:
            self._release()
        except Exception:
            pass


class DeploymentResponseGenerator:
    """The chunks of a streaming call (``handle.options(stream=True)``), sync or async iterable.

    The replica runs the generator and buffers what it yields; this pulls the buffered
    chunks in one call per batch, always from the replica that started the stream.
    """

    def __init__(self, router: Router, meta: tuple, args: tuple, kwargs: dict) -> None:
        self._router = router
        choice = router.try_pick() or router.pick_sync()
        self._replica, self._actor = choice
        args, kwargs = _resolve_args(args, kwargs)
        try:
            self._start = self._actor.handle_request.remote(meta, *args, **kwargs)
        except BaseException:
            router.release(self._replica)
            raise
        self._stream_id: str | None = None
        self._buffer: list[Any] = []
        self._finished = False

    def _take(self, reply: Any) -> None:
        kind, stream_id, chunks, done = reply
        self._stream_id = stream_id
        self._buffer.extend(chunks)
        if done:
            self._finish()

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._router.release(self._replica)

    def __iter__(self) -> Iterator[Any]:
        try:
            self._take(ember.get(self._start))
            while True:
                while self._buffer:
                    yield self._buffer.pop(0)
                if self._finished:
                    return
                self._take(ember.get(self._actor.next_chunks.remote(self._stream_id)))
        finally:
            self._finish()

    async def _aiter(self) -> AsyncIterator[Any]:
        try:
            self._take(await self._start)
            while True:
                while self._buffer:
                    yield self._buffer.pop(0)
                if self._finished:
                    return
                self._take(await self._actor.next_chunks.remote(self._stream_id))
        finally:
            self._finish()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._aiter()
