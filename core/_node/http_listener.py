"""HTTP listeners a node binds at start-up and serves only once someone connects.

    start-up: bind the socket (no web imports)  --first connection-->  import the app,
    run uvicorn on the same socket (the waiting connection sits in the listen backlog,
    so the first request is only slower, never refused)

Most clusters (every ``ember.init()`` of a test suite, a short script) never open the
dashboard or get scraped; binding costs microseconds, importing starlette, uvicorn and
prometheus_client about 100 ms of CPU, which a node pays only when it is asked.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from typing import Any, Callable

log = logging.getLogger("ember._node.http")

#: An ASGI application (starlette's), built on the first connection.
AppFactory = Callable[[], Any]
#: Seconds a connection has to send a whole request head (and, after a response, the next
#: one): garbage or a stalled client is hung up on, as the node's own port does.
REQUEST_HEAD_TIMEOUT_S = 2.0


def bind_listener(host: str, port: int, fallback_to_any_port: bool) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    Args:
        fallback_to_any_port: when ``port`` is taken, take any free port instead (the
            dashboard's 8265 is Ray's default, and a second cluster on the machine must
            still start).

    Raises:
        OSError: the port is taken (and no fallback), or ``host`` is no local address.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        if not fallback_to_any_port or port == 0:
            sock.close()
            raise
        sock.bind((host, 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class LazyServer:
    """Serves ``make_app()``'s ASGI app on ``sock`` with uvicorn, from the first connection
    on, in a thread of its own. ``stop()`` is safe to call twice and from any thread."""

    def __init__(self, sock: socket.socket, make_app: AppFactory, name: str) -> None:
        self.sock = sock
        self.url = url_of(sock)
        self._make_app = make_app
        self._name = name
        self._stop = threading.Event()
        self._server: Any = None  # uvicorn.Server once serving
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"ember-{name}")

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self.sock], [], [], 0.25)
            if readable:
                break
        else:
            self.sock.close()
            return
        try:
            # Imported here, on the first connection: see the module docstring.
            import uvicorn
            from uvicorn.protocols.http.h11_impl import H11Protocol
            app = self._make_app()
            config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                    timeout_graceful_shutdown=1, server_header=False,
                                    http=_guarded(H11Protocol))
            server = uvicorn.Server(config)
        except ImportError as e:
            log.error("cannot serve the %s at %s: %s. Install the web stack with "
                      "pip install 'ember[dashboard]'", self._name, self.url, e)
            self.sock.close()
            return
        except Exception:  # a bug in the app: say so, and leave the node running
            log.exception("cannot serve the %s at %s", self._name, self.url)
            self.sock.close()
            return
        self._server = server
        if self._stop.is_set():
            self.sock.close()
            return
        try:
            server.run(sockets=[self.sock])
        except Exception:
            log.exception("the %s at %s stopped", self._name, self.url)
        finally:
            self.sock.close()

    def stop(self) -> None:
        self._stop.set()
        server = self._server
        if server is not None:
            server.should_exit = True
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)


def _guarded(base: type) -> type:
    """uvicorn's h11 protocol with a deadline on each request head.

    uvicorn times out idle keep-alive connections only; bytes that never complete a
    request (random data, a half-sent head) would hold a connection open for good.
    """
    class GuardedH11(base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_deadline()

        def _arm_deadline(self) -> None:
            # No new request (cycle) by the deadline: hang up.
            self._waiting_cycle = self.cycle
            self._deadline = self.loop.call_later(REQUEST_HEAD_TIMEOUT_S, self._deadline_passed)

        def _deadline_passed(self) -> None:
            if self.cycle is self._waiting_cycle and not self.transport.is_closing():
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._deadline.cancel()
            self._arm_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            self._deadline.cancel()
            super().connection_lost(exc)

    return GuardedH11
