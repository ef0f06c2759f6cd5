"""The first exchange on every connection: the cluster token, then the versions.

    client                                              server
    hello (raw frame): EMBER/1 <token> \\0 {"ember": "0.1.0", "python": "3.11"}
                                             ------->   wrong token  -> "EMBER/1 REFUSED", close
                                                        versions differ -> "EMBER/1 MISMATCH {...}", close
                                             <-------   "EMBER/1 OK {...}"
    Register (the first pickle) ...

Nothing is unpickled by either side before this exchange succeeds: the client sends its
first pickle only after the server's OK, so a wrong token, another ember version or
another Python minor version is refused before any pickle crosses. The refusal of a
wrong token is one fixed frame (it reveals nothing about the right token). A hello
without the versions part (raw-socket tools, benchmarks) is checked for the token only
and gets no answer, as before this exchange existed.
"""

from __future__ import annotations

import hmac
import json
import os
import socket
import sys
from dataclasses import dataclass
from typing import Literal

from .._version import __version__
from ..exceptions import AuthenticationError, ClusterConnectionError, VersionMismatchError
from .transport import Connection, ConnectionClosed, ProtocolViolation, connect

MAGIC = b"EMBER/1 "
#: The whole answer to a wrong token, always the same bytes.
REFUSED = MAGIC + b"REFUSED"
_OK = MAGIC + b"OK "
_MISMATCH = MAGIC + b"MISMATCH "
#: Largest hello or answer: a token of MAX_TOKEN_BYTES plus the versions.
HELLO_MAX_BYTES = 2048
#: Seconds a client waits for the server's answer to its hello (and for a TCP connect).
CONNECT_TIMEOUT_S = float(os.environ.get("EMBER_CONNECT_TIMEOUT_S", "10"))

Verdict = Literal["ok", "refused", "mismatch"]


@dataclass(frozen=True)
class Versions:
    """What must match between two processes of one cluster."""
    ember: str
    #: major.minor: cloudpickled functions and code objects do not cross minor versions.
    python: str

    def encode(self) -> bytes:
        return json.dumps({"ember": self.ember, "python": self.python}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Versions:
        """Raises ValueError on anything but the JSON ``encode`` writes."""
        fields = json.loads(raw.decode())
        if not isinstance(fields, dict) or not all(isinstance(fields.get(k), str) for k in ("ember", "python")):
            raise ValueError(f"not a versions record: {raw[:80]!r}")
        return cls(fields["ember"], fields["python"])

    def differs(self, other: Versions) -> tuple[str, str, str] | None:
        """(what, ours, theirs) of the first difference, or None."""
        if self.ember != other.ember:
            return "ember", self.ember, other.ember
        if self.python != other.python:
            return "Python", self.python, other.python
        return None


#: This process's versions.
LOCAL = Versions(__version__, f"{sys.version_info[0]}.{sys.version_info[1]}")


def hello(token: bytes, versions: Versions | None = None) -> bytes:
    """The client's first frame body (``versions``: this process's, LOCAL)."""
    return MAGIC + token + b"\0" + (versions or LOCAL).encode()


def judge_hello(body: bytes | bytearray, token: bytes) -> tuple[Verdict, bytes | None, tuple[str, str, str] | None]:
    """The server's verdict on a hello: (verdict, the answer frame's body or None, and for
    a mismatch (what, this process's version, theirs)).

    Raises:
        ProtocolViolation: not an ember hello at all (no answer is owed to it).
    """
    body = bytes(body)
    if not body.startswith(MAGIC):
        raise ProtocolViolation("not an ember hello")
    theirs_token, sep, raw_versions = body[len(MAGIC):].partition(b"\0")
    if not hmac.compare_digest(theirs_token, token):
        return "refused", REFUSED, None
    if not sep:
        return "ok", None, None  # a bare hello: token only, no answer (see the module doc)
    try:
        theirs = Versions.decode(raw_versions)
    except ValueError as e:
        raise ProtocolViolation(f"a hello with unreadable versions: {e}") from e
    difference = LOCAL.differs(theirs)
    if difference is not None:
        return "mismatch", _MISMATCH + LOCAL.encode(), difference
    return "ok", _OK + LOCAL.encode(), None


_FIX_ADDRESS = ("Check the address: it is the HOST:PORT `ember start --head` printed (the head's "
                "--port, 6379 by default), and the head must be running")


def connect_to(address: str, token: bytes, timeout_s: float | None = None) -> Connection:
    """Connect to the ember process at ``address`` and pass the handshake.

    ``timeout_s`` (default CONNECT_TIMEOUT_S, $EMBER_CONNECT_TIMEOUT_S) bounds the TCP
    connect and the wait for the answer to the hello, each.

    Raises:
        ClusterConnectionError: nothing listens there, it does not answer in time, or it
            is not ember.
        AuthenticationError, VersionMismatchError: see ``client_handshake``.
    """
    timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s
    where = _where(address)
    try:
        conn = connect(address, timeout_s)
    except ConnectionRefusedError as e:
        raise ClusterConnectionError(where, "nothing listens there (connection refused)", _FIX_ADDRESS) from e
    except (TimeoutError, socket.timeout) as e:
        raise ClusterConnectionError(where, f"no answer to the connection request within {timeout_s:g} s "
                                            "(EMBER_CONNECT_TIMEOUT_S)",
                                     _FIX_ADDRESS + "; a firewall may drop the packets") from e
    except OSError as e:
        raise ClusterConnectionError(where, f"the connection failed: {e}", _FIX_ADDRESS) from e
    try:
        client_handshake(conn, token, address, timeout_s)
    except BaseException:
        conn.close()
        raise
    return conn


def _where(address: str) -> str:
    return address.removeprefix("tcp:").removeprefix("unix:")


def client_handshake(conn: Connection, token: bytes, address: str,
                     timeout_s: float | None = None) -> Versions:
    """Send the hello and read the server's answer; returns the server's versions.

    Raises:
        AuthenticationError: the server refused the token.
        VersionMismatchError: the server runs another ember or Python minor version.
        ClusterConnectionError: what answered is not an ember node, or it did not answer
            within ``timeout_s``.
    """
    timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s
    where = _where(address)
    try:
        conn.send_raw(hello(token))
        conn.sock.settimeout(timeout_s)
        try:
            body, fds = conn.recv_raw(max_bytes=HELLO_MAX_BYTES)
        finally:
            if not conn.closed:
                conn.sock.settimeout(None)
    except (ProtocolViolation, ConnectionClosed) as e:
        # Connection turns a receive timeout into ConnectionClosed: the cause tells them apart.
        if isinstance(e.__cause__, (TimeoutError, socket.timeout)):
            raise ClusterConnectionError(where, f"it accepted the connection but did not answer ember's "
                                                f"handshake within {timeout_s:g} s (EMBER_CONNECT_TIMEOUT_S)",
                                         _FIX_ADDRESS) from e
        sent = conn.pending()
        what = (f"it answered ember's handshake with bytes that are not ember's ({sent[:24]!r}…)" if sent
                else "it closed the connection without answering ember's handshake")
        raise ClusterConnectionError(where, f"it is not an ember node (or an older ember): {what}",
                                     _FIX_ADDRESS) from e
    for fd in fds:
        os.close(fd)
    body = bytes(body)
    if body == REFUSED:
        raise AuthenticationError(where)
    for prefix in (_OK, _MISMATCH):
        if body.startswith(prefix):
            try:
                theirs = Versions.decode(body[len(prefix):])
            except ValueError:
                break
            difference = LOCAL.differs(theirs)
            if difference is not None:
                raise VersionMismatchError(where, *difference)
            if prefix == _MISMATCH:
                break  # they object to versions equal to ours: not an answer we understand
            return theirs
    raise ClusterConnectionError(where, f"it is not an ember node (or an older ember): it answered "
                                        f"ember's handshake with {body[:40]!r}", _FIX_ADDRESS)


def serve_hello(conn: Connection, token: bytes, timeout_s: float = 10.0) -> None:
    """The server side on a blocking connection (a worker's): check the hello, answer it.

    Raises:
        ProtocolViolation: no hello before the deadline, not a hello, a wrong token (the
            fixed refusal was sent), or other versions (the mismatch was sent).
    """
    conn.sock.settimeout(timeout_s)
    try:
        body, fds = conn.recv_raw(max_bytes=HELLO_MAX_BYTES)
    except (TimeoutError, socket.timeout) as e:
        raise ProtocolViolation("no hello before the deadline") from e
    finally:
        if not conn.closed:
            conn.sock.settimeout(None)
    for fd in fds:
        os.close(fd)
    verdict, answer, _difference = judge_hello(body, token)
    if answer is not None:
        try:
            conn.send_raw(answer)
        except ConnectionClosed:
            pass
    if verdict != "ok":
        raise ProtocolViolation("bad cluster token" if verdict == "refused" else "other versions")
