"""The cluster token: where a process gets it, and what a usable one is.

A token is a secret text shared by every process of a cluster (its UTF-8 bytes are what
the handshake compares). ``ember start --head`` makes one only when none is given;
operators give one secret to every node and driver (``$EMBER_TOKEN`` or a token file,
e.g. a mounted Kubernetes secret). Each token remembers where it came from, so a refusal
can say which setting to fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..exceptions import InvalidOptionError

#: Shorter secrets are refused: guessable tokens would open the cluster to anyone.
MIN_TOKEN_BYTES = 16
#: Longer ones are refused too: the whole hello must fit one small frame.
MAX_TOKEN_BYTES = 1024
ENV_VAR = "EMBER_TOKEN"


@dataclass(frozen=True)
class ClusterToken:
    """A cluster token and where it came from."""
    secret: bytes
    #: For messages: "$EMBER_TOKEN", "--token-file PATH", "the session file PATH", ...
    source: str

    def text(self) -> str:
        """The token as it is written to files and environment variables."""
        return self.secret.decode()


def new_token() -> ClusterToken:
    """A fresh random token (64 hex characters), for a head (or ``ember.init()``) given none."""
    return ClusterToken(os.urandom(32).hex().encode(), "the token this node made")


def checked(text: str, source: str) -> ClusterToken:
    """``text`` (surrounding whitespace dropped) as a token, if it is a usable one.

    Raises:
        InvalidOptionError: shorter than MIN_TOKEN_BYTES, longer than MAX_TOKEN_BYTES, or
            holding a NUL character.
    """
    secret = text.strip().encode()
    if len(secret) < MIN_TOKEN_BYTES:
        raise InvalidOptionError(
            f"the cluster token from {source} is {len(secret)} bytes long; a token must have at least "
            f"{MIN_TOKEN_BYTES} bytes (make one with `openssl rand -hex 32`, or start the head without "
            "a token and it makes one)")
    if len(secret) > MAX_TOKEN_BYTES:
        raise InvalidOptionError(f"the cluster token from {source} is {len(secret)} bytes long; the "
                                 f"limit is {MAX_TOKEN_BYTES} bytes")
    if b"\0" in secret:
        raise InvalidOptionError(f"the cluster token from {source} holds a NUL character; use printable "
                                 "text (e.g. `openssl rand -hex 32`)")
    return ClusterToken(secret, source)


def read_token_file(path: str, source: str | None = None) -> ClusterToken:
    """The token in the file at ``path``.

    Raises:
        InvalidOptionError: the file cannot be read, or holds no usable token.
    """
    source = source or f"--token-file {path}"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidOptionError(f"cannot read the cluster token from {source}: {e}") from e
    return checked(text, source)


def given_token(token_file: str | None, flag: str = "--token-file") -> ClusterToken | None:
    """The token this process was given: ``token_file`` first, then ``$EMBER_TOKEN``; None
    when neither is set. ``flag`` names how ``token_file`` was passed, for messages
    ("--token-file" for the CLI, "token_file" for ``ember.init``).

    Raises:
        InvalidOptionError: the token given is not usable.
    """
    if token_file:
        return read_token_file(token_file, f"{flag} {token_file}" if flag.startswith("-")
                               else f"{flag}={token_file}")
    text = os.environ.get(ENV_VAR)
    if text:
        return checked(text, f"${ENV_VAR}")
    return None
