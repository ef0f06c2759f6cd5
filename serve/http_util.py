"""HTTP requests and responses as they cross the proxy -> replica hop.

The proxy sends one plain tuple per request (no starlette objects), and the replica
answers ``("full", status, headers, body)`` or, for streams, ``("stream", id, messages,
done)`` with raw ASGI messages. Both are a few hundred bytes to pickle.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import Response

#: (method, scheme, path, root_path, query_string, headers, body, client, server, http_version)
HttpRequest = tuple

_JSON = [(b"content-type", b"application/json")]
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_BYTES = [(b"content-type", b"application/octet-stream")]


def to_scope(req: HttpRequest) -> dict[str, Any]:
    method, scheme, path, root_path, query, headers, _body, client, server, version = req
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": version,
            "method": method, "scheme": scheme, "path": path, "raw_path": path.encode(),
            "root_path": root_path, "query_string": query, "headers": headers, "client": client,
            "server": server, "state": {}}


def make_receive(body: bytes) -> Callable[[], Any]:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the proxy holds the connection; nothing more arrives
        return {"type": "http.disconnect"}

    return receive


def to_request(req: HttpRequest) -> Request:
    return Request(to_scope(req), make_receive(req[6]))


def plain_result(value: Any) -> tuple | None:
    """A ("full", ...) reply for simple return values; None for Responses and generators."""
    if isinstance(value, str):
        return ("full", 200, _TEXT, value.encode())
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ("full", 200, _BYTES, bytes(value))
    if isinstance(value, Response) and not hasattr(value, "body_iterator"):
        return ("full", value.status_code, value.raw_headers, value.body)
    if isinstance(value, (dict, list, int, float, bool)) or value is None:
        return ("full", 200, _JSON, json.dumps(value).encode())
    return None


def error_reply(status: int, message: str, request_id: str) -> tuple:
    return ("full", status, _TEXT, f"{message} (request id: {request_id})\n".encode())


class AsgiRun:
    """Runs an ASGI app (or a starlette Response) and collects what it sends.

    ``wait_first`` returns once the app finished or started streaming; a streaming run
    keeps going in its task and ``take`` hands out the messages it sent since.
    """

    def __init__(self, app: Callable[..., Any], scope: dict, receive: Callable[[], Any]) -> None:
        self.messages: list[dict] = []
        self.streaming = False
        self.done = False
        self.error: BaseException | None = None
        self._event = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run(app, scope, receive))

    async def _run(self, app: Callable[..., Any], scope: dict, receive: Callable[[], Any]) -> None:
        try:
            await app(scope, receive, self._send)
        except BaseException as e:  # reported by the replica as a 500
            self.error = e
        finally:
            self.done = True
            self._event.set()

    async def _send(self, message: dict) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.body" and message.get("more_body"):
            self.streaming = True
        self._event.set()
        # Yield so a streaming producer cannot starve the loop.
        await asyncio.sleep(0)

    async def wait_first(self) -> None:
        while not self.done and not self.streaming:
            self._event.clear()
            await self._event.wait()

    def full_reply(self) -> tuple:
        status, headers, body = 500, [], []
        for m in self.messages:
            if m["type"] == "http.response.start":
                status, headers = m["status"], list(m.get("headers") or [])
            elif m["type"] == "http.response.body":
                body.append(m.get("body", b""))
        return ("full", status, headers, b"".join(body))

    async def take(self) -> tuple[list[dict], bool]:
        while not self.messages and not self.done:
            self._event.clear()
            await self._event.wait()
        out, self.messages = self.messages, []
        return out, self.done and not self.messages


_id_prefix = os.urandom(4).hex()
_id_counter = itertools.count()


def new_request_id() -> str:
    """Unique per process and cheap (os.urandom per request showed up in profiles)."""
    return f"{_id_prefix}{next(_id_counter):08x}"
