"""Who may see the dashboard and the metrics: whoever proves the cluster token.

    request --(Authorization: Bearer <token> | ember_session cookie)--> the app
            --otherwise--> 401: the login form (HTML) or one fixed line (anything else)

The cookie holds an HMAC of the token, not the token: a leaked cookie opens the
dashboard (read-only) but not the cluster. A 401 says nothing about the cluster (no ids,
no version, no paths): it is the same bytes for every cluster.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import urllib.parse
from typing import Any, Awaitable, Callable

COOKIE = "ember_session"
#: Paths served without the token: the login form itself, nothing else.
_OPEN_PATHS = frozenset({"/login"})

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def session_value(token: bytes) -> str:
    """The cookie value that proves the token (an HMAC of it, see the module docstring)."""
    return hmac.new(token, b"ember-dashboard-session", hashlib.sha256).hexdigest()


def token_matches(given: str, token: bytes) -> bool:
    """``given`` is the cluster token (the text ``<session>/token`` holds, or the secret the
    head was started with)."""
    return hmac.compare_digest(given.strip().encode(), token)


def authorized(headers: dict[str, str], token: bytes) -> bool:
    """A bearer header with the token, or the session cookie."""
    auth = headers.get("authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() == "bearer" and credentials and token_matches(credentials, token):
        return True
    cookies = _parse_cookies(headers.get("cookie", ""))
    value = cookies.get(COOKIE)
    return value is not None and hmac.compare_digest(value.encode(), session_value(token).encode())


def _parse_cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            out[name] = value
    return out


def safe_next(path: str | None) -> str:
    """Where to go after logging in: a local path only (never another site)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ember dashboard: log in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28em;margin:4em auto;color:#222}}
input{{font:inherit;padding:.4em;width:100%;box-sizing:border-box;margin:.5em 0}}
button{{font:inherit;padding:.4em 1.2em}} .err{{color:#b00020}}</style></head>
<body><h1>ember dashboard</h1>{message}
<form method="post" action="/login?next={next}" id="login">
<label for="token">Cluster token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus>
<button type="submit" id="login-button">Log in</button></form>
<p>The token is in the head's session directory (<code>&lt;session&gt;/token</code>), or in
<code>$EMBER_TOKEN</code> where the cluster was started with one.</p></body></html>"""


def login_page(next_path: str, message: str = "") -> bytes:
    body = LOGIN_PAGE.format(message=f'<p class="err" id="login-error">{html.escape(message)}</p>'
                             if message else "",
                             next=urllib.parse.quote(safe_next(next_path), safe="/"))
    return body.encode()


UNAUTHORIZED = (b"401 unauthorized: send the cluster token as `Authorization: Bearer <token>` "
                b"(the hex token in the head's <session>/token)\n")


class TokenGate:
    """ASGI middleware: every request but the login form must prove the token.

    Args:
        app: what an authorized request reaches.
        token: the cluster token.
        html_login: answer a browser (``Accept: text/html``) with the login form; False
            for the metrics endpoint, where only scrapers (bearer header) come.
    """

    def __init__(self, app: ASGIApp, token: bytes, html_login: bool) -> None:
        self.app = app
        self.token = token
        self.html_login = html_login

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if (self.html_login and scope["path"] in _OPEN_PATHS) or authorized(headers, self.token):
            await self.app(scope, receive, send)
            return
        if self.html_login and "text/html" in headers.get("accept", ""):
            target = scope["path"] + (f"?{scope['query_string'].decode('latin-1')}"
                                      if scope.get("query_string") else "")
            body, kind = login_page(target), b"text/html; charset=utf-8"
        else:
            body, kind = UNAUTHORIZED, b"text/plain; charset=utf-8"
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="ember"'),
                                (b"cache-control", b"no-store"), (b"x-frame-options", b"DENY"),
                                (b"content-security-policy",
                                 b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")]})
        await send({"type": "http.response.body", "body": body})
