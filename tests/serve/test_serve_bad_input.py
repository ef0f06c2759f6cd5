"""Each bad input gets a typed error that names the thing and the fix; the next call works."""

from __future__ import annotations

import threading

import httpx
import pytest

import ember.serve as serve
from ember.serve.exceptions import (DeployFailedError, NotAnApplicationError, PortInUseError,
                                    RoutePrefixConflictError, ServeConfigError)
from _serve_util import clean_apps, serve_url  # noqa: F401 - fixtures


@serve.deployment(num_cpus=0)
class Ok:
    def __init__(self, tag: str = "ok") -> None:
        self.tag = tag

    async def __call__(self, request):
        return self.tag


@serve.deployment(num_cpus=0)
class BrokenInit:
    def __init__(self) -> None:
        raise RuntimeError("cannot load the model file")


@serve.deployment(num_replicas=3, num_cpus=2)
class TooBig:
    async def __call__(self, request):
        return "never"


def _still_serves(url: str) -> None:
    serve.run(Ok.bind("fine"), name="probe", route_prefix="/probe")
    assert httpx.get(f"{url}/probe").text == "fine"


@pytest.mark.timeout(60)
def test_route_prefix_clash(clean_apps: str) -> None:
    serve.run(Ok.bind("a"), name="a", route_prefix="/same")
    with pytest.raises(RoutePrefixConflictError, match=r"'/same'.*application 'a'.*serve.delete"):
        serve.run(Ok.bind("b"), name="b", route_prefix="/same")
    assert httpx.get(f"{clean_apps}/same").text == "a"
    assert "b" not in serve.status().applications
    _still_serves(clean_apps)


@pytest.mark.timeout(60)
def test_replicas_that_can_never_be_placed(clean_apps: str) -> None:
    with pytest.raises(DeployFailedError, match=r"TooBig.*3 replicas.*at most 2.*num_replicas"):
        serve.run(TooBig.bind(), name="big", route_prefix="/big")
    st = serve.status().applications["big"]
    assert st.status == "DEPLOY_FAILED" and "at most 2" in st.message
    _still_serves(clean_apps)


@pytest.mark.timeout(60)
def test_constructor_that_raises(clean_apps: str) -> None:
    serve.run(Ok.bind("other"), name="other", route_prefix="/other")
    with pytest.raises(DeployFailedError, match="cannot load the model file"):
        serve.run(BrokenInit.bind(), name="broken", route_prefix="/broken")
    st = serve.status().applications["broken"]
    assert st.status == "DEPLOY_FAILED"
    assert "Traceback" in st.deployments["BrokenInit"].message
    assert "cannot load the model file" in st.deployments["BrokenInit"].message
    assert httpx.get(f"{clean_apps}/other").text == "other"  # other apps keep serving
    # Fixing the code and deploying again under the same name works.
    serve.run(Ok.bind("fixed"), name="broken", route_prefix="/broken")
    assert httpx.get(f"{clean_apps}/broken").text == "fixed"


@pytest.mark.timeout(60)
def test_non_serializable_init_argument(clean_apps: str) -> None:
    with pytest.raises(ServeConfigError, match=r"deployment 'Ok'.*cannot be serialized"):
        serve.run(Ok.bind(threading.Lock()), name="lock", route_prefix="/lock")
    _still_serves(clean_apps)


@pytest.mark.timeout(60)
def test_run_needs_a_bound_application(clean_apps: str) -> None:
    with pytest.raises(NotAnApplicationError, match=r"serve.run\(Ok.bind\(...\)\)"):
        serve.run(Ok)
    with pytest.raises(NotAnApplicationError, match="bound application"):
        serve.run(lambda: None)
    with pytest.raises(ServeConfigError, match="must start with '/'"):
        serve.run(Ok.bind(), name="x", route_prefix="noslash")
    _still_serves(clean_apps)


@pytest.mark.timeout(60)
def test_bad_deployment_options() -> None:
    with pytest.raises(ServeConfigError, match="Did you mean 'num_replicas'"):
        serve.deployment(num_replica=2)(Ok.func_or_class)
    with pytest.raises(ServeConfigError, match="num_replicas.*integer >= 0"):
        Ok.options(num_replicas=-1)
    with pytest.raises(ServeConfigError, match="max_replicas"):
        Ok.options(autoscaling_config={"min_replicas": 3, "max_replicas": 1})
    with pytest.raises(ServeConfigError, match="max_batch_size"):
        serve.batch(max_batch_size=0)
    with pytest.raises(TypeError, match="cannot be called directly"):
        Ok()


@pytest.mark.timeout(60)
def test_port_already_in_use(clean_apps: str) -> None:
    port = int(clean_apps.rsplit(":", 1)[1])
    # Serve already listens there: a second cluster's proxy cannot.
    import subprocess
    import sys
    code = ("import ember, ember.serve as serve\n"
            "from ember.serve.exceptions import PortInUseError\n"
            "ember.init(num_cpus=1)\n"
            "try:\n"
            f"    serve.start(http_options={{'port': {port}}})\n"
            "except PortInUseError as e:\n"
            "    print('TYPED', e)\n"
            "print('STATUS', serve.status().applications)\n"
            "ember.shutdown()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert f"TYPED port {port}" in out.stdout and "already in use" in out.stdout, out.stderr[-2000:]
    assert "STATUS {}" in out.stdout
    assert PortInUseError.__mro__[1:3]
    _still_serves(clean_apps)
