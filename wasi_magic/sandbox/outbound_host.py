"""The host side of ``wasi-magic:cell/http``: outgoing HTTP, checked against ``--allow-http``.

wasmtime-py's own ``wasi:http`` (``Linker.add_wasi_http``) connects wherever the
guest asks, with no hook a Python host could check. So a cell that imports
``wasi_magic_http`` calls this module's ``request`` instead, in the sandbox
worker (or the command-line process), and each request is

1. checked: the URL is parsed once (:func:`wasi_magic.outbound.check`) and its
   scheme, host and port must equal a granted origin; a guest-set ``Host``
   header is refused (the destination comes from the URL alone);
2. resolved once, and the connection made to exactly the addresses that name
   resolved to (no second lookup a DNS rebinder could answer differently);
3. sent with :mod:`http.client`, which follows no redirect and reads no proxy
   variable (``HTTP_PROXY`` would send every request to another host);
4. bounded: a socket timeout, and at most :data:`MAX_BODY` bytes of response.

A refusal or failure comes back to the guest as an error string (``denied: …``
or ``failed: …``), never as a trap. The run's time limit still holds: a request
blocked on a silent server ends when the supervisor kills the worker.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import http.client

from ..outbound import Origin, Refused, check
from . import shim

#: The interface and function name a cell's component imports (``wit/http.wit``).
INTERFACE = "wasi-magic:cell/http@0.1.0"
FUNCTION = "request"
#: The largest response body a guest receives, and the largest request body it may send.
MAX_BODY = 16 << 20
#: Seconds a connect or a read may wait (the run's own --timeout usually ends it first).
SOCKET_TIMEOUT = 30.0
#: The methods a guest may send (not CONNECT or TRACE: a tunnel, an echo of credentials).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
#: Headers the host sets itself, from the URL and the body.
_HOST_SET = {"host", "content-length", "transfer-encoding", "connection"}

Outcome = Any  # (status, headers, body) or an error string


@dataclass(frozen=True)
class StoreGrants:
    """What a store's guest may reach over HTTP: kept as the store's data."""

    origins: tuple[Origin, ...]
    timeout: float = SOCKET_TIMEOUT


def define(linker: Any) -> None:
    """Implement ``wasi-magic:cell/http`` in ``linker`` (a component linker). Harmless for
    components that do not import it; the grants come from each store's data."""
    with linker.root() as root:
        with root.add_instance(INTERFACE) as instance:
            instance.add_func(FUNCTION, _host_request)


def _host_request(context: Any, method: str, url: str, headers: list, body: bytes) -> Outcome:
    try:
        grants = shim.store_data(context)
        if not isinstance(grants, StoreGrants):
            grants = StoreGrants(())
        return fetch(method, url, headers, bytes(body), grants.origins, timeout=grants.timeout)
    except Exception as exc:  # noqa: BLE001 - an exception here would trap the guest
        return f"failed: internal error in the host: {type(exc).__name__}: {exc}"


def fetch(method: str, url: str, headers: Sequence[tuple[str, str]], body: bytes,
          origins: tuple[Origin, ...], *, timeout: float = SOCKET_TIMEOUT,
          limit: int = MAX_BODY) -> Outcome:
    """Send one request if ``origins`` allow it: ``(status, headers, body)`` or an error
    string, ``denied: …`` (nothing was sent) or ``failed: …``."""
    try:
        origin = check(url, origins)
    except (PermissionError, Refused) as exc:
        return f"denied: {exc}"
    if method not in METHODS:
        return (f"denied: the method {method[:40]!r} is not allowed (one of "
                f"{', '.join(sorted(METHODS))})")
    for name, value in headers:
        if not _TOKEN.match(name) or any(c in value for c in "\r\n\0"):
            return f"denied: the header {name[:40]!r} is not a valid header line"
        if name.lower() in _HOST_SET:
            return (f"denied: the guest may not set {name}: the host sets it from the URL "
                    f"and the body (a Host header must never choose the destination)")
    if len(body) > limit:
        return f"denied: the request body is larger than {limit:,} bytes"
    import http.client  # here: `python -m wasi_magic run` starts faster without it
    try:
        sock = _connect(origin, timeout)
    except OSError as exc:
        return f"failed: cannot connect to {origin}: {exc.strerror or exc}"
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = None
    try:
        connection = _connection(origin, sock, timeout)
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if body or method in ("POST", "PUT", "PATCH"):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        response = connection.getresponse()
        data = response.read(limit + 1)
        if len(data) > limit:
            return f"failed: the response from {origin} is larger than {limit:,} bytes"
        return (response.status, [(k, v) for k, v in response.getheaders()], data)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return f"failed: {origin}: {type(exc).__name__}: {exc}"
    finally:
        if connection is not None:
            connection.close()
        sock.close()


def _connect(origin: Origin, timeout: float) -> socket.socket:
    """A socket connected to one of the addresses ``origin.host`` resolves to *now*."""
    infos = socket.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
    last: OSError = OSError(f"{origin.host} has no address")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last


def _connection(origin: Origin, sock: socket.socket,
                timeout: float) -> http.client.HTTPConnection:
    """An http.client connection over the already connected ``sock``."""
    import http.client
    if origin.scheme == "https":
        import ssl
        context = ssl.create_default_context()
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            origin.host, origin.port, timeout=timeout, context=context)
        # The certificate is checked against the name in the URL (SNI too).
        connection.sock = context.wrap_socket(sock, server_hostname=origin.host)
    else:
        connection = http.client.HTTPConnection(origin.host, origin.port, timeout=timeout)
        connection.sock = sock
    return connection
