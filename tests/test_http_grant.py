"""Issue 15 (4a): outgoing HTTP is a granted capability, checked by the host.

A real HTTP server on 127.0.0.1 counts the requests it sees; a real guest
(one componentize-py build, shared) asks for URLs given as its arguments and
prints what happened. Through the API (the sandbox worker), the command line
and a real kernel: a granted origin works; without a grant, and for every
tricky URL, the guest gets a refusal and the server sees nothing.
"""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from kernels import errors, execute, kernel_in, streams
from wasi_magic import errors as wm_errors
from wasi_magic.capabilities import Capabilities
from wasi_magic.limits import Limits
from wasi_magic.outbound import check, parse_grant
from wasi_magic.sandbox import outbound_host

#: The guest: each argument is a URL to GET (or socket:HOST:PORT to try a plain socket).
GUEST = '''\
import socket
import sys
from wasi_magic_http import get

for url in sys.argv[1:]:
    if url.startswith("socket:"):
        _, host, port = url.split(":")
        try:
            socket.create_connection((host, int(port)), timeout=2)
            print("SOCKET-OPEN", url)
        except OSError as exc:
            print("SOCKET-REFUSED", url, type(exc).__name__)
        continue
    try:
        response = get(url)
        print("OK", url, response.status, response.text)
    except PermissionError as exc:
        print("REFUSED", url, exc)
    except ConnectionError as exc:
        print("FAILED", url, exc)
'''


class Server:
    """A counting HTTP server on 127.0.0.1: ``/hello``, ``/redirect?to=URL``, ``/hang``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.hits: list[str] = []
        self.release = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
                owner.hits.append(self.path)
                parts = urlsplit(self.path)
                if parts.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", parse_qs(parts.query)["to"][0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if parts.path == "/hang":
                    owner.release.wait(60)
                body = f"hello from {parts.path}".encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (the hanging case: its worker was ended)

            def log_message(self, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self.httpd = Server((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.origin = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def servers():
    allowed, other = Server(), Server()
    yield allowed, other
    allowed.close()
    other.close()


@pytest.fixture(scope="module")
def artifact(shared_cache: Path):
    from conftest import prepare_cell
    return prepare_cell(GUEST)


def run(artifact, urls: list[str], grants: list[str], timeout: float = 30):
    from wasi_magic.sandbox.supervisor import default_sandbox
    caps = Capabilities.parse(args=urls, http=grants)
    return default_sandbox().run(artifact, caps, limits=Limits(timeout=timeout))


def lines(result) -> dict[str, str]:
    found = {}
    for line in result.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        url, _, detail = rest.partition(" ")
        found[url] = f"{kind} {detail}"
    return found


# --- the API (sandbox worker) ----------------------------------------------------------


def test_granted_origin_is_reached(artifact, servers) -> None:
    allowed, _ = servers
    before = len(allowed.hits)
    result = run(artifact, [f"{allowed.origin}/hello"], [allowed.origin])
    assert result.status == 0, result.stderr
    assert lines(result)[f"{allowed.origin}/hello"] == "OK 200 hello from /hello"
    assert allowed.hits[before:] == ["/hello"]


def test_without_a_grant_the_guest_is_refused_and_nothing_is_sent(artifact, servers) -> None:
    allowed, _ = servers
    before = len(allowed.hits)
    url = f"{allowed.origin}/hello"
    result = run(artifact, [url, f"socket:127.0.0.1:{allowed.port}"], [])
    outcome = lines(result)
    assert outcome[url].startswith("REFUSED")
    assert f"127.0.0.1:{allowed.port}" in outcome[url]
    assert f"--allow-http {allowed.origin}" in outcome[url]
    assert outcome[f"socket:127.0.0.1:{allowed.port}"].startswith("SOCKET-REFUSED")
    assert allowed.hits[before:] == []


def test_tricky_urls_are_refused_and_no_server_sees_them(artifact, servers) -> None:
    allowed, other = servers
    port, oport = allowed.port, other.port
    tricky = [
        f"http://127.0.0.1:{port}@127.0.0.1:{oport}/userinfo",  # the host is after '@'
        f"http://127.0.0.1:{port}\\@127.0.0.1:{oport}/backslash",
        f"http://127.0.0.1:{oport}/other-port",
        f"https://127.0.0.1:{port}/other-scheme",
        f"http://localhost:{port}/other-name-same-address",
        f"http://127.1:{port}/short-form",
        f"http://2130706433:{port}/decimal",
        f"http://0x7f.0.0.1:{port}/hex",
        f"http://127.0.0.01:{port}/leading-zero",
        f"http://[::ffff:127.0.0.1]:{port}/mapped-ipv6",
        f"http://127.0.0.%31:{port}/percent",
        f"http://127.0.0.1.evil.example:{port}/suffix",
    ]
    before, obefore = len(allowed.hits), len(other.hits)
    result = run(artifact, tricky, [allowed.origin])
    outcome = lines(result)
    for url in tricky:
        assert outcome[url].startswith("REFUSED"), (url, outcome.get(url), result.stderr)
    assert allowed.hits[before:] == [] and other.hits[obefore:] == []


def test_spelling_differences_that_mean_the_same_origin_are_allowed(artifact, servers) -> None:
    allowed, _ = servers
    port = allowed.port
    urls = [f"HTTP://127.0.0.1:{port}/upper", f"http://127.0.0.1.:{port}/dot",
            f"http://localhost:{port}/name"]
    result = run(artifact, urls, [f"http://127.0.0.1:{port}/", f"http://LOCALHOST.:{port}"])
    outcome = lines(result)
    assert [outcome[url].split()[:2] for url in urls] == [["OK", "200"]] * 3, result.stdout


def test_ipv6_literals_compare_in_canonical_form(artifact) -> None:
    server = Server("::1")
    try:
        spelled = f"http://[0:0:0:0:0:0:0:1]:{server.port}/six"
        result = run(artifact, [spelled, f"http://[::2]:{server.port}/other"],
                     [f"http://[0::1]:{server.port}"])
        outcome = lines(result)
        assert outcome[spelled] == "OK 200 hello from /six", result.stdout
        assert outcome[f"http://[::2]:{server.port}/other"].startswith("REFUSED")
        assert server.hits == ["/six"]
    finally:
        server.close()


def test_a_redirect_to_an_origin_not_granted_is_refused(artifact, servers) -> None:
    allowed, other = servers
    away = f"{allowed.origin}/redirect?to={other.origin}/stolen"
    home = f"{allowed.origin}/redirect?to=/hello"
    before, obefore = len(allowed.hits), len(other.hits)
    outcome = lines(run(artifact, [away, home], [allowed.origin]))
    assert outcome[away].startswith("REFUSED") and other.origin in outcome[away]
    assert outcome[home] == "OK 200 hello from /hello"
    assert other.hits[obefore:] == []
    assert allowed.hits[before:] == ["/redirect?to=" + other.origin + "/stolen",
                                     "/redirect?to=/hello", "/hello"]


def test_a_hanging_server_ends_with_the_time_limit(artifact, servers) -> None:
    allowed, _ = servers
    result = run(artifact, [f"{allowed.origin}/hang"], [allowed.origin], timeout=1)
    assert result.trap and "--timeout 1 s" in result.trap and "host call" in result.trap
    after = run(artifact, [f"{allowed.origin}/hello"], [allowed.origin])  # a fresh worker
    assert lines(after)[f"{allowed.origin}/hello"].startswith("OK 200")


# --- the host function itself ------------------------------------------------------------


def test_proxy_variables_are_not_honoured(servers, monkeypatch) -> None:
    allowed, other = servers
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, other.origin)
    obefore = len(other.hits)
    outcome = outbound_host.fetch("GET", f"{allowed.origin}/hello", [], b"",
                                  (parse_grant(allowed.origin),))
    assert outcome[0] == 200 and outcome[2] == b"hello from /hello"
    assert other.hits[obefore:] == []


def test_each_request_resolves_its_host_once(servers, monkeypatch) -> None:
    allowed, _ = servers
    real, asked = socket.getaddrinfo, []

    def counting(host, *args, **kwargs):
        asked.append(host)
        return real(host, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", counting)
    outcome = outbound_host.fetch("GET", f"http://localhost:{allowed.port}/hello", [], b"",
                                  (parse_grant(f"http://localhost:{allowed.port}"),))
    assert outcome[0] == 200 and asked == ["localhost"]


def test_response_size_is_bounded_and_host_header_is_the_hosts(servers) -> None:
    allowed, _ = servers
    grant = (parse_grant(allowed.origin),)
    too_big = outbound_host.fetch("GET", f"{allowed.origin}/hello", [], b"", grant, limit=5)
    assert isinstance(too_big, str) and too_big.startswith("failed:") and "larger" in too_big
    before = len(allowed.hits)
    spoofed = outbound_host.fetch("GET", f"{allowed.origin}/hello",
                                  [("Host", "evil.example")], b"", grant)
    assert isinstance(spoofed, str) and spoofed.startswith("denied:") and "Host" in spoofed
    tunnel = outbound_host.fetch("CONNECT", f"{allowed.origin}/", [], b"", grant)
    assert isinstance(tunnel, str) and tunnel.startswith("denied:") and "CONNECT" in tunnel
    assert allowed.hits[before:] == []


def test_https_to_a_plain_server_fails_cleanly(servers) -> None:
    allowed, _ = servers
    grant = (parse_grant(f"https://127.0.0.1:{allowed.port}"),)
    outcome = outbound_host.fetch("GET", f"https://127.0.0.1:{allowed.port}/hello", [], b"",
                                  grant, timeout=5)
    assert isinstance(outcome, str) and outcome.startswith("failed:") and "SSL" in outcome


def test_check_compares_parsed_origins() -> None:
    grants = (parse_grant("http://allowed.example"),)
    assert str(check("http://ALLOWED.example./x", grants)) == "http://allowed.example"
    for url in ("http://allowed.example@evil.example/", "http://allowed.example.evil.example/",
                "http://allowed.example:8080/", "https://allowed.example/",
                "http://allowed.example%2eevil.example/"):
        with pytest.raises((PermissionError, ValueError)):
            check(url, grants)


@pytest.mark.parametrize("spec", ["127.0.0.1:8000", "http://*.example.org", "http://a.example/x",
                                  "http://user@a.example", "ftp://a.example", "http://a:99999",
                                  "http://127.1"])
def test_a_bad_allow_http_value_is_one_clear_line(spec: str) -> None:
    with pytest.raises(wm_errors.CapabilityError) as caught:
        Capabilities.parse(http=[spec])
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"--allow-http {spec!r}")


def test_grants_show_in_describe_and_the_command_line() -> None:
    caps = Capabilities.parse(http=["http://127.0.0.1:8000/", "http://127.0.0.1:8000"])
    assert caps.http == (parse_grant("http://127.0.0.1:8000"),)
    assert caps.describe() == ["http http://127.0.0.1:8000"]
    assert "# --allow-http http://127.0.0.1:8000" in caps.wasmtime_command()
    assert Capabilities.of(http=caps.http) == caps


# --- the command line --------------------------------------------------------------------


def test_command_line(artifact, servers) -> None:
    allowed, _ = servers
    url = f"{allowed.origin}/hello"
    base = [sys.executable, "-m", "wasi_magic", "run", str(artifact.path)]
    done = subprocess.run(base + ["--allow-http", allowed.origin, "--", url],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"OK {url} 200 hello from /hello" in done.stdout
    refused = subprocess.run(base + ["--", url], capture_output=True, text=True, timeout=300)
    assert f"REFUSED {url}" in refused.stdout
    hang = subprocess.run(base + ["--timeout", "1", "--allow-http", allowed.origin, "--",
                                  f"{allowed.origin}/hang"], capture_output=True, text=True,
                          timeout=300)
    assert hang.returncode == 134 and hang.stderr.startswith("stopped by the time limit")
    assert len(hang.stderr.strip().splitlines()) == 1, hang.stderr
    bad = subprocess.run(base + ["--allow-http", "127.0.0.1:8000"], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    assert "--allow-http '127.0.0.1:8000'" in bad.stderr and "Traceback" not in bad.stderr


# --- a real kernel -----------------------------------------------------------------------


def test_in_a_kernel(artifact, servers, tmp_path, shared_cache) -> None:
    allowed, _ = servers
    url = f"{allowed.origin}/hello"
    with kernel_in(tmp_path, shared_cache) as (_, client):
        granted = execute(client, f"%%wasi -q --allow-http {allowed.origin} -- {url}\n{GUEST}")
        assert f"OK {url} 200 hello from /hello" in streams(granted, "stdout")
        refused = execute(client, f"%%wasi -q -- {url}\n{GUEST}")
        assert f"REFUSED {url}" in streams(refused, "stdout")
        assert f"--allow-http {allowed.origin}" in streams(refused, "stdout")
        hang = execute(client, f"%%wasi -q --timeout 1 --allow-http {allowed.origin} -- "
                               f"{allowed.origin}/hang\n{GUEST}")
        shown = streams(hang, "stderr") + "".join(e["evalue"] for e in errors(hang))
        assert "--timeout 1 s" in shown, hang
        # IPython shows a UsageError as one line on stderr, no traceback.
        bad = streams(execute(client, f"%%wasi -q --allow-http 127.0.0.1:8000\n{GUEST}"),
                      "stderr")
        assert bad.startswith("UsageError: --allow-http '127.0.0.1:8000'"), bad
        assert len(bad.strip().splitlines()) == 1
        quick = streams(execute(client, f"%%wasi -q --quick --allow-http {allowed.origin}\n"
                                        f"print(1)"), "stderr")
        assert quick.startswith("UsageError: --allow-http needs build mode"), quick
        after = execute(client, f"%%wasi -q --allow-http {allowed.origin} -- {url}\n{GUEST}")
        assert f"OK {url} 200" in streams(after, "stdout")
        line = execute(client, f"%wasi run {artifact.path} --allow-http {allowed.origin} -- {url}")
        assert f"OK {url} 200" in streams(line, "stdout")


# --- the panel ---------------------------------------------------------------------------


def test_panel_http_row(artifact, servers, tmp_path) -> None:
    from wasi_magic.widgets import CapabilityPanel
    allowed, _ = servers
    url = f"{allowed.origin}/panel"
    panel = CapabilityPanel(artifact, Capabilities(args=(url,)), cwd=tmp_path)
    assert lines(panel.run())[url].startswith("REFUSED")
    assert "denied: no origin granted" in panel.imports_table.value
    panel.http.value = allowed.origin  # a change re-runs, as every panel field does
    assert lines(panel.last_result)[url] == "OK 200 hello from /panel"
    assert f"http {allowed.origin}" in panel.summary()
    assert f"# --allow-http {allowed.origin}" in panel.summary()
    panel.http.value = "127.0.0.1:8000"
    assert "Not run" in panel.message_text and "--allow-http '127.0.0.1:8000'" in panel.message_text


def test_a_typed_world_cannot_import_the_http_helper() -> None:
    from wasi_magic import worlds
    with pytest.raises(wm_errors.GuestImportError) as caught:
        worlds.generate("from wasi_magic_http import get\n")
    assert "line 1: import wasi_magic_http" in str(caught.value)
    assert "typed world has no HTTP import" in str(caught.value)
