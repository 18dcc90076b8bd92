"""Serve a handler component over real HTTP: a toy edge runtime.

The component implements a world shaped like ``guest_src/handler/handler.wit``::

    record request  { method: string, path: string,
                      headers: list<tuple<string, string>>, body: list<u8> }
    record response { status: u16, headers: list<tuple<string, string>>, body: list<u8> }
    export handle: func(req: request) -> response;

:class:`EdgeServer` listens on 127.0.0.1 (a free port by default), turns each
HTTP request into a ``request`` record, calls ``handle`` in a **fresh
instance** of the component, and sends back the ``response``. The guest never
sees a socket, only values. Each request's time in the sandbox (new store,
instantiate, call) is recorded in :attr:`EdgeServer.latencies`::

    with EdgeServer(artifact) as server:          # or server = serve(artifact); server.stop()
        urllib.request.urlopen(server.url + "/api/health").read()
    print(server.summary())

Requests are served on threads (``ThreadingHTTPServer``); the guest calls run
in the sandbox worker, one at a time (see :mod:`wasi_magic.sandbox.remote`).
A trap or a timeout in the guest answers 500 or 504; the server carries on.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from statistics import median
from typing import Any, Iterable, Optional

from .artifact import Artifact
from .capabilities import Capabilities
from .errors import GuestTrap, RuntimeFailure, UsageError
from .host import load as load_in_process
from .runtime import Runtime
from .values import Record

#: Default wall-clock limit of one request in the guest, in seconds.
DEFAULT_REQUEST_TIMEOUT = 5.0
#: Largest request body accepted, in bytes. wasmtime-py 50 passes a ``list<u8>``
#: element by element (about 1.7 s per MiB each way), so keep bodies small.
DEFAULT_MAX_BODY = 256 << 10
#: Headers the host sets itself; the guest's values for them are ignored.
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive",
                          "upgrade", "te", "trailer", "proxy-connection"})
#: Seconds a client may take to send its headers or body, or stay idle between
#: requests on a kept-alive connection, before the server closes it.
DEFAULT_SOCKET_TIMEOUT = 10.0
#: Connections served at once; more are answered 503 and closed.
DEFAULT_MAX_CONNECTIONS = 32
#: RFC 9110 token characters: what a header name may contain.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class BadResponse(ValueError):
    """The guest's response cannot be sent as HTTP (the client gets a 500 instead)."""


def percentile(values: Iterable[float], fraction: float) -> float:
    """The ``fraction`` (0-1) percentile of ``values``, nearest-rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


class EdgeServer:
    """An HTTP server that answers every request with a fresh instance of a handler component."""

    def __init__(self, artifact: Artifact | str | os.PathLike[str],
                 caps: Optional[Capabilities] = None, *, host: str = "127.0.0.1", port: int = 0,
                 timeout: Optional[float] = DEFAULT_REQUEST_TIMEOUT,
                 max_memory: int | str | None = None, max_body: int = DEFAULT_MAX_BODY,
                 function: str = "handle", runtime: Optional[Runtime] = None,
                 socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        if runtime is None:  # the guest runs in the sandbox worker, never in this process
            from .sandbox.remote import load
            self.guest: Any = load(artifact, caps, fresh=True, timeout=timeout,
                                   max_memory=max_memory)
        else:
            self.guest = load_in_process(artifact, caps, fresh=True, timeout=timeout,
                                         max_memory=max_memory, runtime=runtime)
        try:
            self._handle = self.guest[function]
        except KeyError:
            raise RuntimeFailure(f"{self.guest.name} exports no function {function!r}; it "
                                 f"exports: {', '.join(self.guest.functions)}") from None
        self.host = host
        self.port = port
        self.max_body = max_body
        self.socket_timeout = socket_timeout
        self.max_connections = max_connections
        #: Seconds each request spent in the sandbox (new instance + call), in order.
        self.latencies: list[float] = []
        #: The last requests as ``(method, path, status, seconds)``.
        self.log: deque[tuple[str, str, int, float]] = deque(maxlen=1000)
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the server is accepting requests."""
        return self._server is not None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (valid once started)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> "EdgeServer":
        """Listen and serve on a background thread; returns self."""
        with self._lock:
            if self._server is not None:
                return self
            server = _Server((self.host, self.port), _Handler)
            server.daemon_threads = True
            server.limit = self.max_connections
            server.counting = threading.Lock()
            server.edge = self  # type: ignore[attr-defined]
            self.port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                            name=f"wasi-magic-edge-{self.port}", daemon=True)
            self._thread.start()
        return self

    @property
    def connections(self) -> int:
        """Connections being served right now."""
        server = self._server
        return server.active if server is not None else 0

    def stop(self) -> None:
        """Stop serving and close the socket (safe to call twice)."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> "EdgeServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"serving {self.url}" if self.running else "stopped"
        return f"<EdgeServer {self.guest.name} {state}, {len(self.latencies)} requests>"

    # --- requests ----------------------------------------------------------------------------

    def call(self, method: str, path: str, headers: Iterable[tuple[str, str]] = (),
             body: bytes = b"") -> tuple[int, list[tuple[str, str]], bytes]:
        """Handle one request in a fresh instance, without HTTP: ``(status, headers, body)``."""
        request = Record(method=method.upper(), path=path,
                         headers=[(name.lower(), value) for name, value in headers],
                         body=bytes(body))
        started = time.perf_counter()
        try:
            response = self._handle(request)
            status, out_headers, out_body = _unpack(response)
        except GuestTrap as exc:
            status = 504 if exc.kind == "timeout" else 500
            out_headers = [("content-type", "application/json")]
            out_body = json.dumps({"error": str(exc).splitlines()[0]}).encode()
        except BadResponse as exc:
            status, out_headers = 500, [("content-type", "application/json")]
            out_body = json.dumps({"error": str(exc)}).encode()
        seconds = time.perf_counter() - started
        self.latencies.append(seconds)
        self.log.append((method.upper(), path, status, seconds))
        return status, out_headers, out_body

    def summary(self) -> dict[str, Any]:
        """Requests served and their latency in the sandbox (median, p99, in milliseconds)."""
        values = list(self.latencies)
        if not values:
            return {"requests": 0}
        return {"requests": len(values), "median_ms": round(median(values) * 1000, 3),
                "p99_ms": round(percentile(values, 0.99) * 1000, 3),
                "max_ms": round(max(values) * 1000, 3)}


def _unpack(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Check the guest's response record: what it says must be sendable as HTTP as it is.

    A status outside 100-599 becomes 502. A header name that is not a token
    (``content-length `` with its trailing space, say), or a value with a CR, LF
    or NUL (response splitting) or a character latin-1 cannot carry, makes the
    whole response a 500: nothing the guest wrote reaches the client unchecked.
    """
    status = int(response.status)
    if not 100 <= status <= 599:
        return 502, [("content-type", "text/plain")], f"bad status {status} from guest".encode()
    headers = []
    for name, value in response.headers:
        name, value = str(name), str(value)
        if not name or not set(name) <= _TOKEN:
            raise BadResponse(f"the guest returned a header name that is not a token: {name!r}")
        if any(ch in value for ch in "\r\n\0"):
            raise BadResponse(f"the guest returned a header {name!r} whose value holds a line "
                              f"break or NUL")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise BadResponse(f"the guest returned a header {name!r} whose value is not "
                              f"latin-1 (an HTTP header cannot carry it)") from None
        if name.lower() not in _HOP_HEADERS:
            headers.append((name, value))
    return status, headers, bytes(response.body)


class _Server(ThreadingHTTPServer):
    """A threading server that serves at most ``limit`` connections at once."""

    limit = DEFAULT_MAX_CONNECTIONS
    active = 0
    counting = threading.Lock()

    def _take(self) -> bool:
        with self.counting:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._take():
            try:  # too many at once: say so, and close
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n"
                                b"connection: close\r\n\r\n")
                # Read what the client already sent (closing with unread data would send
                # a reset, and the client could lose the 503), without waiting for more.
                request.setblocking(False)
                while request.recv(65536):
                    pass
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request is normal on a network: no traceback."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.counting:
                self.active -= 1


class _Handler(BaseHTTPRequestHandler):
    """Turns one HTTP request into a call of the edge's component."""

    server_version = "wasi-magic-edge/0.1"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        # A socket timeout bounds every read: a client that stalls in its headers or
        # body, or idles on a kept-alive connection, is dropped instead of holding a
        # thread forever.
        self.timeout = self.server.edge.socket_timeout  # type: ignore[attr-defined]
        super().setup()

    def _serve(self) -> None:
        edge: EdgeServer = self.server.edge  # type: ignore[attr-defined]
        if self.headers.get("transfer-encoding"):
            return self._send(411, [("content-type", "text/plain")], b"send a Content-Length\n")
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= edge.max_body:
            self.close_connection = True
            return self._send(413, [("content-type", "text/plain")], b"body too large\n")
        try:
            body = self.rfile.read(length) if length else b""
        except OSError:  # the client stalled past the socket timeout
            self.close_connection = True
            return
        if len(body) != length:  # the stream ended early: never hand half a body on
            self.close_connection = True
            return self._send(400, [("content-type", "text/plain")], b"incomplete body\n")
        try:
            status, headers, payload = edge.call(self.command, self.path, self.headers.items(), body)
        except (UsageError, RuntimeFailure) as exc:
            status, headers, payload = 500, [("content-type", "text/plain")], f"{exc}\n".encode()
        self._send(status, headers, payload)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the edge keeps its own log (``EdgeServer.log``)."""


def serve(artifact: Artifact | str | os.PathLike[str], caps: Optional[Capabilities] = None,
          **options: Any) -> EdgeServer:
    """Start an :class:`EdgeServer` in the background and return it (``.stop()`` it later)."""
    return EdgeServer(artifact, caps, **options).start()
