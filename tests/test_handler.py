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


# --- a hostile handler against the edge server ---------------------------------------------------

EVIL = Path(__file__).resolve().parent / "guests" / "evil_handler"


@pytest.fixture(scope="module")
def evil_server(shared_cache: Path):
    artifact = build(EVIL / "evil_handler.py", wit=HANDLER / "handler.wit", world="handler")
    with EdgeServer(artifact, socket_timeout=1.0, max_connections=8) as running:
        yield running


def raw(server: EdgeServer, payload: bytes, *, shutdown: bool = False) -> bytes:
    """Send ``payload`` on a fresh connection and read everything the server answers."""
    import socket
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(payload)
        if shutdown:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def ask(server: EdgeServer, headers: list) -> bytes:
    body = json.dumps({"headers": headers}).encode()
    return raw(server, b"POST /x HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-length: "
               + str(len(body)).encode() + b"\r\n\r\n" + body)


@pytest.mark.parametrize("headers,why", [
    ([["x-a", "1\r\nset-cookie: stolen=1"]], "line break"),
    ([["x-a", "1\r\n\r\nHTTP/1.1 200 OK\r\nx-smuggled: 1"]], "line break"),
    ([["content-length ", "0"]], "not a token"),
    ([["x a", "1"]], "not a token"),
    ([["x-a", "caf\u00e9 \u2603"]], "not latin-1"),
])
def test_a_response_the_guest_cannot_be_trusted_with_is_a_500(evil_server, headers, why) -> None:
    answer = ask(evil_server, headers)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 "), answer
    assert b"set-cookie" not in head.lower() and b"x-smuggled" not in answer.lower()
    assert b"content-length " not in head.lower().replace(b"content-length: ", b"")
    assert why in json.loads(body)["error"]
    assert answer.count(b"HTTP/1.1") == 1  # one response, nothing smuggled behind it


def test_honest_headers_pass_and_hop_by_hop_ones_are_the_hosts(evil_server) -> None:
    answer = ask(evil_server, [["x-ok", "fine"], ["connection", "keep-alive"],
                               ["content-length", "999"]])
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 200 ") and b"x-ok: fine" in head
    assert b"content-length: 999" not in head and b"connection: keep-alive" not in head


def test_a_partial_body_at_the_end_of_the_stream_is_a_400(evil_server) -> None:
    calls = len(evil_server.latencies)
    answer = raw(evil_server, b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n{\"he",
                 shutdown=True)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert len(evil_server.latencies) == calls  # the guest never saw half a body


def test_stalled_clients_are_dropped_and_others_still_served(evil_server) -> None:
    import socket
    stalled = []
    try:
        for _ in range(evil_server.max_connections):
            sock = socket.create_connection((evil_server.host, evil_server.port), timeout=30)
            sock.sendall(b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\n")  # no body
            stalled.append(sock)
        # Each is dropped after the socket timeout (1 s here), never held forever: the
        # bound on recv only tells "closed" from "held".
        for sock in stalled:
            try:
                data = sock.recv(200)
            except ConnectionResetError:
                data = b""
            assert data == b"" or data.startswith(b"HTTP/1.1 503 "), data
    finally:
        for sock in stalled:
            sock.close()
    # The server answers an honest request afterwards.
    assert ask(evil_server, [["x-ok", "after"]]).startswith(b"HTTP/1.1 200 ")


def test_connections_over_the_cap_get_a_503_and_the_server_recovers(handler_artifact) -> None:
    """Two held connections fill a cap of two; a third is answered 503 at once (it sends
    nothing, so the server has nothing unread when it closes); once the two go, the server
    serves again."""
    import socket
    with EdgeServer(handler_artifact, socket_timeout=60.0, max_connections=2) as capped:
        held = [socket.create_connection((capped.host, capped.port), timeout=30)
                for _ in range(2)]
        try:
            for sock in held:  # each is inside a handler, waiting for the rest of its headers
                sock.sendall(b"GET /api/health HTTP/1.1\r\n")
            with socket.create_connection((capped.host, capped.port), timeout=30) as extra:
                answer = b""
                while chunk := extra.recv(4096):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 503 "), answer
        finally:
            for sock in held:
                sock.close()
        # The two handlers notice their clients left; then a request is served again.
        import time
        give_up = time.monotonic() + 30  # tells "recovers" from "never recovers"
        while (status := fetch(capped, "/api/health")[0]) == 503 and time.monotonic() < give_up:
            time.sleep(0.05)
        assert status == 200
