"""`ember serve run/deploy/status/shutdown` in real subprocesses, through ember's own CLI
(which hands its `serve` subcommand to serve.cli.main)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

import httpx
import pytest

from _serve_util import free_port, port_is_free
from conftest import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))


def _serve_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ember.cli", "serve", *args]


def _get(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return None


@pytest.mark.timeout(90)
def test_serve_run_blocks_and_ctrl_c_shuts_down() -> None:
    tmp = tempfile.mkdtemp(prefix="serve-cli-")  # a private TMPDIR: never joins another cluster
    env = dict(os.environ, TMPDIR=tmp)
    port = free_port()
    proc = subprocess.Popen(_serve_cli("run", "_serve_cli_app:app", "--port", str(port)), cwd=HERE, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: _get(f"http://127.0.0.1:{port}/") == "hello", timeout_s=60,
                        what="`serve run` to serve")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()[-2000:]
        assert port_is_free(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.timeout(120)
def test_deploy_status_shutdown_against_a_started_cluster() -> None:
    tmp = tempfile.mkdtemp(prefix="serve-cli-")
    env = dict(os.environ, TMPDIR=tmp)
    port = free_port()
    config = os.path.join(tmp, "serve.yaml")
    with open(config, "w") as f:
        f.write(f"http_options:\n  host: 127.0.0.1\n  port: {port}\n"
                "applications:\n"
                "  - name: greet\n    route_prefix: /greet\n    import_path: _serve_cli_app:build\n"
                "    args: {greeting: bonjour}\n"
                "    deployments:\n      - name: Greeter\n        num_replicas: 2\n")
    ember = [sys.executable, "-m", "ember.cli"]
    try:
        out = subprocess.run(_serve_cli("status"), cwd=HERE, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and "ember start --head" in out.stderr
        subprocess.run(ember + ["start", "--head", "--port", str(free_port()), "--num-cpus", "2"], env=env,
                       check=True, capture_output=True, timeout=60)
        out = subprocess.run(_serve_cli("deploy", config), cwd=HERE, env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr[-2000:]
        # The deploying command has exited; Serve keeps running on the cluster.
        assert _get(f"http://127.0.0.1:{port}/greet") == "bonjour"
        out = subprocess.run(_serve_cli("status"), cwd=HERE, env=env, capture_output=True, text=True, timeout=60)
        assert "greet: RUNNING" in out.stdout and "Greeter: HEALTHY" in out.stdout and "'RUNNING': 2" in out.stdout
        out = subprocess.run(_serve_cli("shutdown"), cwd=HERE, env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr[-2000:]
        assert wait_for(lambda: port_is_free(port), what="the port to be free")
        out = subprocess.run(_serve_cli("status"), cwd=HERE, env=env, capture_output=True, text=True, timeout=60)
        assert "applications: none" in out.stdout
    finally:
        subprocess.run(ember + ["stop"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
