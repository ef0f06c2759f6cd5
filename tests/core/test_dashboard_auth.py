"""The dashboard and the metrics endpoint answer only requests that carry the cluster
token (bearer header, or the cookie the login form sets); a 401 leaks nothing."""

from __future__ import annotations

import logging
import os
import socket
from types import SimpleNamespace
from typing import Iterator

import httpx
import pytest

import ember
from ember.exceptions import EmberError
from ember._node.launcher import read_http_urls
from tests.conftest import assert_no_leaked_processes

pytestmark = pytest.mark.timeout(60)

PATHS = ["/", "/tasks", "/tasks/00ff", "/actors", "/objects", "/logs", "/logs/view?filename=node_manager.log",
         "/serve", "/api/tasks", "/api/nodes", "/metrics", "/no-such-page", "/favicon.ico"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimpleNamespace]:
    if ember.is_initialized():
        ember.shutdown()
    info = ember.init(num_cpus=1, object_store_memory=64 << 20, dashboard_port=0)
    session = info["session_dir"]
    with open(os.path.join(session, "token")) as f:
        token = f.read().strip()
    yield SimpleNamespace(url=info.dashboard_url, metrics_url=read_http_urls(session)["metrics_url"],
                          token=token, session=session, node_id=info["node_id"])
    ember.shutdown()
    assert_no_leaked_processes()


def _leaks(body: str, cluster: SimpleNamespace) -> list[str]:
    return [secret for secret in (cluster.token, cluster.session, cluster.node_id, "ember-sessions")
            if secret in body]


@pytest.mark.parametrize("path", PATHS)
def test_a_request_without_the_token_gets_401_and_learns_nothing(cluster: SimpleNamespace, path: str) -> None:
    for headers in ({}, {"accept": "text/html"}, {"authorization": "Bearer " + "0" * 64},
                    {"authorization": f"Basic {cluster.token}"}, {"cookie": "ember_session=" + "f" * 64},
                    {"cookie": f"ember_session={cluster.token}"}):
        r = httpx.get(cluster.url + path, headers=headers)
        assert r.status_code == 401, (path, headers, r.status_code)
        assert not _leaks(r.text, cluster), (path, headers)
    html_401 = httpx.get(cluster.url + path, headers={"accept": "text/html"})
    assert 'id="login"' in html_401.text  # a browser gets the login form, and nothing else
    plain = httpx.get(cluster.url + "/", headers={"accept": "application/json"})
    assert plain.headers["www-authenticate"].startswith("Bearer")


def test_the_metrics_endpoint_of_a_node_needs_the_token(cluster: SimpleNamespace) -> None:
    assert httpx.get(cluster.metrics_url).status_code == 401
    assert httpx.get(cluster.metrics_url, headers={"authorization": "Bearer nope"}).status_code == 401
    r = httpx.get(cluster.metrics_url, headers={"authorization": f"Bearer {cluster.token}"})
    assert r.status_code == 200 and "ember_node_cpu_utilization" in r.text


def test_the_login_form_sets_an_httponly_cookie_that_is_not_the_token(cluster: SimpleNamespace) -> None:
    with httpx.Client(base_url=cluster.url) as client:
        wrong = client.post("/login", data={"token": "0" * 64})
        assert wrong.status_code == 401 and "not this cluster" in wrong.text
        assert not _leaks(wrong.text, cluster)
        r = client.post("/login?next=/tasks", data={"token": cluster.token})
        assert r.status_code == 303 and r.headers["location"] == "/tasks"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
        assert cluster.token not in cookie
        page = client.get("/")  # the client keeps the cookie
        assert page.status_code == 200 and 'id="nodes"' in page.text
        client.get("/logout")
        assert client.get("/").status_code == 401


def test_login_redirects_only_to_this_site(cluster: SimpleNamespace) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        r = httpx.post(cluster.url + "/login", params={"next": target}, data={"token": cluster.token})
        assert r.status_code == 303 and r.headers["location"] == "/", target


def test_a_bearer_header_opens_the_json_api(cluster: SimpleNamespace) -> None:
    r = httpx.get(cluster.url + "/api/nodes", headers={"authorization": f"Bearer {cluster.token}"})
    assert r.status_code == 200
    (node,) = r.json()["rows"]
    assert node["node_id"] == cluster.node_id and node["is_head"] and node["alive"]


def test_pages_forbid_scripts_and_framing(cluster: SimpleNamespace) -> None:
    r = httpx.get(cluster.url + "/", headers={"authorization": f"Bearer {cluster.token}"})
    assert r.status_code == 200
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"


def test_garbage_or_a_stalled_request_is_hung_up_on(cluster: SimpleNamespace) -> None:
    """Bytes that never make a request head (random data, half a head) must not hold a
    connection open: both HTTP ports hang up within seconds, as the node's own port does."""
    socks = []
    for url in (cluster.url, cluster.metrics_url):
        host, port = url.removeprefix("http://").split("/")[0].split(":")
        for payload in (os.urandom(2048), b"GET / HTTP/1.1\r\nHost: x\r\n"):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(payload)
            socks.append(sock)
    for sock in socks:  # all wait out their deadlines at once
        with sock:
            try:
                while sock.recv(4096):
                    pass
            except ConnectionResetError:
                pass  # closed: what this asks
    assert httpx.get(cluster.metrics_url, headers={"authorization": f"Bearer {cluster.token}"}).status_code == 200


def test_init_logs_the_dashboard_url(cluster: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    """Runs late in this module: it ends the module's cluster."""
    ember.shutdown()
    with caplog.at_level(logging.INFO, logger="ember"):
        info = ember.init(num_cpus=1, object_store_memory=64 << 20, dashboard_port=0)
    try:
        assert f"View the dashboard at {info.dashboard_url}" in caplog.text
        assert info.dashboard_url.startswith("http://127.0.0.1:")
    finally:
        ember.shutdown()


def test_init_without_a_dashboard_serves_none_but_still_exports_metrics() -> None:
    if ember.is_initialized():
        ember.shutdown()
    info = ember.init(num_cpus=1, object_store_memory=64 << 20, include_dashboard=False)
    try:
        assert info.dashboard_url == ""
        urls = read_http_urls(info["session_dir"])
        assert urls["dashboard_url"] == "" and urls["metrics_url"].startswith("http://127.0.0.1:")
    finally:
        ember.shutdown()


@pytest.mark.parametrize("option, what", [("dashboard_port", "dashboard"),
                                          ("_metrics_export_port", "metrics endpoint")])
def test_a_port_given_explicitly_and_taken_is_a_typed_error_naming_it(option: str, what: str) -> None:
    if ember.is_initialized():
        ember.shutdown()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        expected = f"cannot bind the {what} to 127.0.0.1:{port}.*pass another {option.lstrip('_')}"
        with pytest.raises(EmberError, match=expected):
            ember.init(num_cpus=1, object_store_memory=64 << 20, **{option: port})
    assert not ember.is_initialized()
    assert_no_leaked_processes()
    info = ember.init(num_cpus=1, object_store_memory=64 << 20)  # the runtime still starts
    ember.shutdown()
    assert info["session_dir"]
