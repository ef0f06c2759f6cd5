"""The HTTP proxy: uvicorn + a bare ASGI app on the proxy actor's event loop.

Per request: match the longest route prefix, pick a replica (router.py), make one
actor call ``replica.handle_http(meta, request_tuple)``, write its reply. Routes and
replica sets come from the process's Snapshot (long poll), never from a per-request
controller call. Malformed HTTP (oversized headers, bad framing) is answered by
uvicorn/h11 before any replica sees it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import socket
from typing import Any

import uvicorn
from ember.exceptions import ActorDiedError, ActorUnavailableError

from .exceptions import BackPressureError, DeploymentUnavailableError, PortInUseError
from .http_util import new_request_id
from .router import get_router, queued_requests
from .snapshot import client

logger = logging.getLogger("ember.serve.proxy")

#: Bodies above this many bytes get 413 (http_options["max_body_bytes"] changes it).
DEFAULT_MAX_BODY_BYTES = 100 << 20
#: Request headers above this many bytes in total get 431 (http_options["max_header_bytes"]).
DEFAULT_MAX_HEADER_BYTES = 64 << 10
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
MAX_TRIES = 4


def match_route(routes: dict[str, tuple[str, str]], path: str) -> tuple[str, tuple[str, str]] | None:
    """The longest route prefix that ``path`` is under (``/a`` matches ``/a`` and ``/a/x``, not ``/ab``)."""
    best: tuple[str, tuple[str, str]] | None = None
    for prefix, target in routes.items():
        if prefix == "/" or path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, target)
    return best


class HTTPProxy:
    """The proxy actor (created by the controller)."""

    def __init__(self, controller: Any, http_options: dict[str, Any]) -> None:
        self.controller = controller
        self.host = http_options.get("host") or "127.0.0.1"
        self.port = int(http_options.get("port", 8000))
        self.max_body_bytes = int(http_options.get("max_body_bytes") or DEFAULT_MAX_BODY_BYTES)
        self.max_header_bytes = int(http_options.get("max_header_bytes") or DEFAULT_MAX_HEADER_BYTES)
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task | None = None
        self.inflight = 0

    async def start(self) -> int:
        """Bind and start serving; returns the port.

        Raises:
            PortInUseError: something else listens on the port.
        """
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(256, thread_name_prefix="serve-proxy"))
        client(self.controller)
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM,
                             socket.IPPROTO_TCP)  # proto set: asyncio then sets TCP_NODELAY
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:
                raise PortInUseError(f"port {self.port} on {self.host} is already in use, so the Serve HTTP "
                                     "proxy cannot listen there; stop what holds it or pass "
                                     "serve.start(http_options={'port': <another port>})") from None
            raise
        sock.listen(2048)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self._asgi, interface="asgi3", proxy_headers=False, lifespan="off",
                                log_level="warning", access_log=False, timeout_keep_alive=30,
                                h11_max_incomplete_event_size=16 * 1024, timeout_graceful_shutdown=None)
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.task = loop.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.005)
        return self.port

    async def queued_requests(self) -> dict[tuple[str, str], int]:
        """Requests waiting here for a replica with room, per deployment (for autoscaling:
        replicas alone never report more than max_ongoing_requests each)."""
        return queued_requests()

    async def shutdown(self, timeout_s: float) -> None:
        """Stop accepting, let in-flight requests finish (up to ``timeout_s``), free the port."""
        if self.server is None:
            return
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
        except asyncio.TimeoutError:
            self.server.force_exit = True
            await self.task
        self.server = None

    async def _asgi(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = scope["headers"]
        rid = ""
        model_id = ""
        header_bytes = 0
        for key, value in headers:
            header_bytes += len(key) + len(value) + 4
            if key == b"x-request-id":
                rid = value.decode("latin-1")[:64]
            elif key == b"serve_multiplexed_model_id":
                model_id = value.decode("latin-1")
        rid = rid or new_request_id()
        if header_bytes > self.max_header_bytes:
            # h11 only limits headers that arrive in pieces; a single large read passes it.
            return await _reply(send, 431, f"request headers over {self.max_header_bytes} bytes", rid)
        snap = client().snapshot
        path = scope["path"]
        matched = match_route(snap.routes, path)
        if matched is None:
            return await _reply(send, 404, f"no application serves path {path!r}; routes: "
                                f"{sorted(snap.routes) or 'none'}", rid)
        prefix, (app, deployment) = matched
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                return await _reply(send, 413, f"request body over {self.max_body_bytes} bytes", rid)
        req = (scope["method"], scope.get("scheme", "http"), path, "" if prefix == "/" else prefix.rstrip("/"),
               scope.get("query_string", b""), headers, body, scope.get("client"), scope.get("server"),
               scope.get("http_version", "1.1"))
        meta = ("__call__", rid, model_id, False)
        timeout_s = snap.request_timeout_s
        try:
            if timeout_s:
                reply, actor = await asyncio.wait_for(self._call(app, deployment, meta, req, rid), timeout_s)
            else:
                reply, actor = await self._call(app, deployment, meta, req, rid)
        except asyncio.TimeoutError:
            return await _reply(send, 408, f"request timed out after request_timeout_s={timeout_s}", rid)
        except BackPressureError as e:
            return await _reply(send, 503, str(e), rid)
        except DeploymentUnavailableError as e:
            return await _reply(send, 503 if "no live replica" in str(e) else 500, str(e), rid)
        if reply[0] == "full":
            _, status, out_headers, out_body = reply
            out_headers = list(out_headers)
            if not any(k.lower() == b"content-length" for k, _ in out_headers):
                out_headers.append((b"content-length", str(len(out_body)).encode()))
            out_headers.append((b"x-request-id", rid.encode()))
            await send({"type": "http.response.start", "status": status, "headers": out_headers})
            await send({"type": "http.response.body", "body": out_body})
            return
        await self._stream(send, reply, actor, rid)

    async def _call(self, app: str, deployment: str, meta: tuple, req: tuple, rid: str) -> tuple:
        router = get_router(app, deployment)
        tried: tuple[str, ...] = ()
        while True:
            replica_id, actor = await router.pick_async(tried, meta[2])
            tried += (replica_id,)
            try:
                return await actor.handle_http.remote(meta, req), actor
            except (ActorDiedError, ActorUnavailableError) as e:
                router.mark_dead(replica_id)
                if len(tried) >= MAX_TRIES:
                    raise DeploymentUnavailableError(
                        f"replicas {list(tried)} of deployment {deployment!r} died while running request "
                        f"{rid} ({e})") from None
            finally:
                router.release(replica_id)

    async def _stream(self, send: Any, reply: tuple, actor: Any, rid: str) -> None:
        _, stream_id, messages, done = reply
        started = closed = False
        while True:
            for m in messages:
                if m["type"] == "http.response.start":
                    m = {**m, "headers": list(m.get("headers") or []) + [(b"x-request-id", rid.encode())]}
                    started = True
                elif not m.get("more_body"):
                    closed = True
                await send(m)
            if done:
                break
            try:
                _, _, messages, done = await actor.next_chunks.remote(stream_id)
            except Exception as e:  # the replica died mid-stream: end the body
                logger.warning("stream %s of request %s broke: %s", stream_id, rid, e)
                if not started:
                    await _reply(send, 500, "the replica died while streaming", rid)
                    return
                break
        if not closed:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _reply(send: Any, status: int, text: str, rid: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": _TEXT + [(b"x-request-id", rid.encode())]})
    await send({"type": "http.response.body", "body": f"{text} (request id: {rid})\n".encode()})

