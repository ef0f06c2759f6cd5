"""HTTP and handle behaviour of ember.serve through real sockets (httpx) and real replicas."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

import ember
import ember.serve as serve
from _serve_util import clean_apps, count, serve_url  # noqa: F401 - fixtures
from conftest import wait_for


@serve.deployment(num_replicas=2, num_cpus=0)
class WhoAmI:
    async def __call__(self, request):
        return serve.get_replica_context().replica_id


@serve.deployment(num_cpus=0)
class Adder:
    def __init__(self, amount: int) -> None:
        self.amount = amount

    async def add(self, x: int) -> int:
        return x + self.amount


@serve.deployment(num_cpus=0)
class Doubler:
    async def __call__(self, x: int) -> int:
        return 2 * x


@serve.deployment(num_cpus=0)
class Composed:
    def __init__(self, adder, doubler) -> None:
        self.adder = adder
        self.doubler = doubler

    async def __call__(self, request):
        x = int(request.query_params["x"])
        # The adder's response goes straight into the doubler's call.
        return {"result": await self.doubler.remote(self.adder.add.remote(x))}

    async def compute(self, x: int) -> int:
        return await self.doubler.remote(self.adder.add.remote(x))


@serve.deployment(num_cpus=0, max_ongoing_requests=32)
class BatchedModel:
    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05)
    async def predict(self, xs: list) -> list:
        return [x * 10 for x in xs]

    async def __call__(self, request):
        return str(await self.predict(int(request.query_params["x"])))


@serve.deployment(num_cpus=0)
class Streamer:
    def __call__(self, request):
        n = int(request.query_params.get("n", "3"))
        return StreamingResponse((f"chunk{i}\n" for i in range(n)), media_type="text/plain")

    async def numbers(self, n: int):
        for i in range(n):
            yield i


@serve.deployment(num_cpus=0)
class Failing:
    async def __call__(self, request):
        raise ValueError("secret detail that must not reach the client")

    def boom(self) -> None:
        raise KeyError("from the replica")


@serve.deployment(num_cpus=0, max_ongoing_requests=1, max_queued_requests=1)
class Slow:
    async def __call__(self, request):
        await asyncio.sleep(float(request.query_params.get("s", "1")))
        return "done"

    async def wait(self, s: float) -> str:
        await asyncio.sleep(s)
        return "done"


@serve.deployment(num_cpus=0, user_config={"greeting": "hello"})
class Configurable:
    def __init__(self) -> None:
        self.greeting = None

    def reconfigure(self, config: dict) -> None:
        self.greeting = config["greeting"]

    async def __call__(self, request):
        return self.greeting


@serve.deployment(num_cpus=0)
class Multi:
    @serve.multiplexed(max_num_models_per_replica=2)
    async def get_model(self, model_id: str) -> str:
        return f"model-{model_id}"

    async def __call__(self, request):
        return await self.get_model(serve.get_multiplexed_model_id())

    async def where(self) -> tuple[str, str]:
        model = await self.get_model(serve.get_multiplexed_model_id())
        return model, serve.get_replica_context().replica_id


starlette_app = Starlette(routes=[
    Route("/hello", lambda request: PlainTextResponse("hello from starlette")),
    Route("/json", lambda request: JSONResponse({"path": request.url.path})),
])


@serve.deployment(num_cpus=0)
@serve.ingress(starlette_app)
class WithIngress:
    pass


@serve.deployment(num_cpus=0)
def echo(request):
    return {"method": request.method, "body": request.query_params.get("q")}


@pytest.mark.timeout(60)
def test_two_replicas_both_serve(clean_apps: str) -> None:
    serve.run(WhoAmI.bind(), name="who", route_prefix="/who")
    with httpx.Client(base_url=clean_apps) as client:
        seen = wait_for(lambda: len({client.get("/who").text for _ in range(20)}) == 2 or None,
                        timeout_s=30, what="both replicas to answer")
    assert seen
    st = serve.status().applications["who"]
    assert st.status == "RUNNING"
    assert st.deployments["WhoAmI"].replica_states == {"RUNNING": 2}


@pytest.mark.timeout(60)
def test_composition_through_handles(clean_apps: str) -> None:
    handle = serve.run(Composed.bind(Adder.bind(1), Doubler.bind()), name="comp", route_prefix="/comp")
    assert httpx.get(f"{clean_apps}/comp?x=4").json() == {"result": 10}
    assert handle.compute.remote(5).result() == 12
    # A response passed into another call from the driver, and a handle to an inner deployment.
    adder = serve.get_deployment_handle("Adder", "comp")
    doubler = serve.get_deployment_handle("Doubler", "comp")
    assert doubler.remote(adder.add.remote(2)).result() == 6
    assert serve.get_app_handle("comp").compute.remote(0).result() == 2


@pytest.mark.timeout(60)
def test_batching_makes_batches_under_concurrent_load(clean_apps: str) -> None:
    serve.run(BatchedModel.bind(), name="batch", route_prefix="/batch")

    async def load() -> list[str]:
        async with httpx.AsyncClient(base_url=clean_apps, timeout=30) as client:
            rs = await asyncio.gather(*[client.get(f"/batch?x={i}") for i in range(32)])
        return [r.text for r in rs]

    assert asyncio.run(load()) == [str(i * 10) for i in range(32)]
    handle = serve.get_deployment_handle("BatchedModel", "batch")
    assert [r.result() for r in [handle.predict.remote(i) for i in range(16)]] == [i * 10 for i in range(16)]
    from ember.serve.snapshot import get_controller
    (_, replica), = ember.get(get_controller().replica_actors.remote("batch", "BatchedModel"))
    sizes = ember.get(replica.stats.remote())["batch_sizes"]["predict"]
    assert max(sizes) > 1 and sum(sizes) == 48


@pytest.mark.timeout(60)
def test_streaming_over_http_and_handle(clean_apps: str) -> None:
    handle = serve.run(Streamer.bind(), name="stream", route_prefix="/stream")
    with httpx.Client(base_url=clean_apps) as client:
        with client.stream("GET", "/stream?n=5") as r:
            assert r.status_code == 200
            assert "".join(r.iter_text()) == "".join(f"chunk{i}\n" for i in range(5))
    assert list(handle.options(stream=True).numbers.remote(4)) == [0, 1, 2, 3]

    async def consume() -> list[int]:
        return [x async for x in handle.options(stream=True, method_name="numbers").remote(3)]

    assert asyncio.run(consume()) == [0, 1, 2]


@pytest.mark.timeout(60)
def test_status_codes(clean_apps: str) -> None:
    handle = serve.run(Failing.bind(), name="fail", route_prefix="/fail")
    serve.run(Slow.bind(), name="slow", route_prefix="/slow")
    with httpx.Client(base_url=clean_apps, timeout=30) as client:
        r = client.get("/nowhere/at/all")
        assert r.status_code == 404
        r = client.get("/fail")
        assert r.status_code == 500
        assert r.headers["x-request-id"] in r.text
        assert "secret detail" not in r.text and "Traceback" not in r.text
    with pytest.raises(KeyError):
        handle.boom.remote().result()

    async def flood() -> list[int]:
        async with httpx.AsyncClient(base_url=clean_apps, timeout=30) as client:
            rs = await asyncio.gather(*[client.get("/slow?s=1") for _ in range(6)])
        return [r.status_code for r in rs]

    codes = count(asyncio.run(flood()))
    # one running + one queued (max_queued_requests=1); the rest are turned away
    assert codes.get(503, 0) >= 3 and codes.get(200, 0) >= 1, codes
    assert httpx.get(f"{clean_apps}/fail").status_code == 500  # still serving


@pytest.mark.timeout(60)
def test_ingress_app_function_deployment_and_several_apps(clean_apps: str) -> None:
    serve.run(WithIngress.bind(), name="ing", route_prefix="/ing")
    serve.run(echo.bind(), name="echo", route_prefix="/echo")
    with httpx.Client(base_url=clean_apps) as client:
        assert client.get("/ing/hello").text == "hello from starlette"
        assert client.get("/ing/json").json() == {"path": "/ing/json"}
        assert client.get("/echo?q=1").json() == {"method": "GET", "body": "1"}
        assert client.get("/ingx/hello").status_code == 404
    assert set(serve.status().applications) >= {"ing", "echo"}


@pytest.mark.timeout(60)
def test_user_config_reconfigures_live_replicas(clean_apps: str) -> None:
    serve.run(Configurable.bind(), name="cfg", route_prefix="/cfg")
    assert httpx.get(f"{clean_apps}/cfg").text == "hello"
    pid_before = ember.get(ember.get(__import__("ember.serve.snapshot", fromlist=["x"]).get_controller()
                                     .replica_actors.remote("cfg", "Configurable"))[0][1].stats.remote())["pid"]
    serve.run(Configurable.options(user_config={"greeting": "bonjour"}).bind(), name="cfg", route_prefix="/cfg")
    assert httpx.get(f"{clean_apps}/cfg").text == "bonjour"
    from _serve_util import replica_pids
    assert replica_pids("cfg", "Configurable") == [pid_before]  # same replica, reconfigured


@pytest.mark.timeout(60)
def test_multiplexed_models(clean_apps: str) -> None:
    handle = serve.run(Multi.bind(), name="multi", route_prefix="/multi")
    r = httpx.get(f"{clean_apps}/multi", headers={"serve_multiplexed_model_id": "a"})
    assert r.text == "model-a"
    assert handle.options(multiplexed_model_id="b").remote(None).result() == "model-b"
    # With two replicas, one model id keeps going to one replica (its model stays loaded there).
    handle = serve.run(Multi.options(num_replicas=2).bind(), name="multi2", route_prefix=None)
    for model in ("x", "y", "z"):
        places = {handle.options(multiplexed_model_id=model).where.remote().result() for _ in range(6)}
        assert len(places) == 1 and next(iter(places))[0] == f"model-{model}"


@pytest.mark.timeout(60)
def test_request_timeout(clean_apps: str) -> None:
    # request_timeout_s is an http option of the running proxy: use a second proxy-less check
    # through handles instead, with the same typed error.
    handle = serve.run(Slow.bind(), name="slow2", route_prefix="/slow2")
    with pytest.raises(TimeoutError):
        handle.wait.remote(2.0).result(timeout_s=0.1)


@pytest.mark.timeout(60)
def test_malformed_http_does_not_reach_replicas(clean_apps: str) -> None:
    serve.run(WhoAmI.bind(), name="who2", route_prefix="/who2")
    host, port = clean_apps.split("//")[1].split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"GET /who2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        reply = s.recv(1000)
    assert reply.startswith(b"HTTP/1.1 431") or reply.startswith(b"HTTP/1.1 400") or reply == b""
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        reply = s.recv(1000)
    assert reply.startswith(b"HTTP/1.1 400") or reply == b""
    assert httpx.get(f"{clean_apps}/who2").status_code == 200
    assert serve.status().applications["who2"].deployments["WhoAmI"].replica_states == {"RUNNING": 2}


@serve.deployment(num_replicas=2, num_cpus=1)
class Heavy:
    async def __call__(self, request):
        return "heavy"


@pytest.mark.timeout(60)
def test_delete_returns_the_replicas_resources(clean_apps: str) -> None:
    total = ember.cluster_resources()["CPU"]
    wait_for(lambda: ember.available_resources().get("CPU") == total, what="an idle cluster")
    serve.run(Heavy.bind(), name="heavy", route_prefix="/heavy")
    assert ember.available_resources().get("CPU") == total - 2
    assert httpx.get(f"{clean_apps}/heavy").text == "heavy"
    serve.delete("heavy")
    assert "heavy" not in serve.status().applications
    wait_for(lambda: ember.available_resources().get("CPU") == total, what="the replicas' CPUs to be free")
    assert httpx.get(f"{clean_apps}/heavy").status_code == 404
