"""The dashboard and metrics web apps (starlette, served by uvicorn from http_listener.py).

    TokenGate (auth.py) -> routes below -> pages.py (HTML) / JSON
                                        -> data.py reads the head's state (telemetry's
                                           node stats, the task/actor/... tables)

Endpoints are plain functions: starlette runs them on its thread pool, so reading the
node's tables under its lock never blocks uvicorn's event loop.
"""

from __future__ import annotations

import urllib.parse
from typing import Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from . import pages
from .auth import COOKIE, TokenGate, login_page, safe_next, session_value, token_matches
from .data import DashboardData, QueryError
from .html import esc, page

_PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Every page: no scripts at all, no framing, no caching. Names, errors and log lines on
#: a page come from user code; they are escaped, and this is the second line of defence.
PAGE_HEADERS = {"content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
                                           "form-action 'self'; frame-ancestors 'none'",
                "x-frame-options": "DENY", "x-content-type-options": "nosniff", "cache-control": "no-store",
                "referrer-policy": "no-referrer"}


def make_metrics_app(token: bytes, render: Callable[[], bytes]) -> Starlette:
    """A node's metrics endpoint: GET /metrics with the token as a bearer header."""
    def metrics(_request: Request) -> Response:
        return Response(render(), media_type=_PROMETHEUS_TYPE)
    return Starlette(routes=[Route("/metrics", metrics)],
                     middleware=[Middleware(TokenGate, token=token, html_login=False)])


def make_dashboard_app(data: DashboardData) -> Starlette:
    """The head's dashboard: pages, a small JSON API, and the head's own /metrics."""
    telemetry = data.telemetry
    token = telemetry.ctx.token

    async def login(request: Request) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        if request.method == "GET":
            return HTMLResponse(login_page(next_path), headers=PAGE_HEADERS)
        # urlencoded only (what the form sends); starlette's form parser would need
        # python-multipart for a single field.
        form = urllib.parse.parse_qs((await request.body()).decode("latin-1"))
        given = (form.get("token") or [""])[0]
        if not given or not token_matches(given, token):
            return HTMLResponse(login_page(next_path, "That is not this cluster's token."), status_code=401,
                                headers=PAGE_HEADERS)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(COOKIE, session_value(token), httponly=True, samesite="strict", path="/")
        return response

    def logout(_request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    def html(render: Callable[[DashboardData, Request], str]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                body, status = render(data, request), 200
            except QueryError as e:
                body, status = page("Bad request", request.url.path, f'<p id="error">{esc(e)}</p>'), 400
            refresh_s = request.query_params.get("refresh", "")
            if refresh_s.isdigit() and 1 <= int(refresh_s) <= 3600:
                # ?refresh=N reloads the page every N s (a log being followed, a busy cluster).
                body = body.replace("<head>", f'<head><meta http-equiv="refresh" content="{int(refresh_s)}">', 1)
            return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)
        return endpoint

    def api(kind: str) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                return JSONResponse(data.api(kind, dict(request.query_params)))
            except QueryError as e:
                return JSONResponse({"error": str(e)}, status_code=400)
        return endpoint

    def metrics(_request: Request) -> Response:
        return Response(telemetry.metrics_text(), media_type=_PROMETHEUS_TYPE)

    routes = [Route("/login", login, methods=["GET", "POST"]), Route("/logout", logout),
              Route("/metrics", metrics)]
    routes += [Route(path, html(render)) for path, render in pages.PAGES]
    routes += [Route(f"/api/{kind}", api(kind)) for kind in DashboardData.API_KINDS]
    return Starlette(routes=routes, middleware=[Middleware(TokenGate, token=token, html_login=True)])
