"""The edge handler (guest_src/handler) served over real HTTP by wasi_magic.edge."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from wasi_magic import build
from wasi_magic.edge import EdgeServer, percentile, serve
from wasi_magic.errors import RuntimeFailure

HANDLER = Path(__file__).resolve().parent.parent / "guest_src" / "handler"


@pytest.fixture(scope="session")
def handler_artifact(shared_cache: Path):
    return build(HANDLER / "handler.py", wit=HANDLER / "handler.wit", world="handler")


@pytest.fixture(scope="module")
def server(handler_artifact):
    with EdgeServer(handler_artifact) as running:
        yield running


def fetch(server: EdgeServer, path: str, data: bytes | None = None,
          method: str | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(server.url + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_health(server: EdgeServer) -> None:
    status, headers, body = fetch(server, "/api/health")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"status": "ok"}


def test_process(server: EdgeServer) -> None:
    payload = json.dumps({"text": "The cat saw the other cat."}).encode()
    status, _, body = fetch(server, "/api/process", payload)
    assert status == 200
    assert json.loads(body) == {
        "words": 6, "chars": 26, "upper": "THE CAT SAW THE OTHER CAT.",
        "top": [["the", 2], ["cat", 2], ["saw", 1]]}


def test_unknown_path_is_404(server: EdgeServer) -> None:
    status, _, body = fetch(server, "/nowhere?x=1")
    assert status == 404
    assert json.loads(body) == {"error": "no route for /nowhere"}


def test_malformed_json_is_400(server: EdgeServer) -> None:
    status, _, body = fetch(server, "/api/process", b'{"text": ')
    assert status == 400
    assert json.loads(body)["error"].startswith("malformed JSON")
    status, _, body = fetch(server, "/api/process", b'{"txt": "x"}')
    assert status == 400 and "string field" in json.loads(body)["error"]
    status, _, _ = fetch(server, "/api/process", b"\xff\xfe")
    assert status == 400


def test_wrong_method_is_405(server: EdgeServer) -> None:
    status, headers, _ = fetch(server, "/api/health", b"{}", method="POST")
    assert status == 405 and headers["allow"] == "GET"


def test_every_request_gets_a_fresh_instance(server: EdgeServer) -> None:
    seen = {fetch(server, "/api/health")[1]["x-instance-requests"] for _ in range(5)}
    assert seen == {"1"}  # the guest's request counter never gets past one


def test_concurrent_requests_and_latencies(server: EdgeServer) -> None:
    before = len(server.latencies)
    payload = json.dumps({"text": "a b c"}).encode()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: fetch(server, "/api/process", payload)[0], range(24)))
    assert statuses == [200] * 24
    new = server.latencies[before:]
    assert len(new) == 24 and all(seconds > 0 for seconds in new)
    summary = server.summary()
    assert summary["requests"] == len(server.latencies)
    assert 0 < summary["median_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert server.log[-1][2] == 200


def test_call_without_http(server: EdgeServer) -> None:
    status, headers, body = server.call("get", "/api/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    assert ("content-type", "application/json") in headers


def test_start_stop_and_serve(handler_artifact) -> None:
    edge = serve(handler_artifact)
    assert edge.running and edge.port > 0
    assert fetch(edge, "/api/health")[0] == 200
    url = edge.url
    edge.stop()
    edge.stop()  # twice is fine
    assert not edge.running
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/api/health", timeout=2)


def test_a_component_without_handle_is_refused() -> None:
    plugins = HANDLER.parent / "plugins"
    art = build(plugins / "upper.py", wit=plugins / "transform.wit", world="transform")
    with pytest.raises(RuntimeFailure, match="no function 'handle'"):
        EdgeServer(art)


def test_percentile() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
