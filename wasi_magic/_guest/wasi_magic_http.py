"""Outgoing HTTP from a ``%%wasi`` cell: ``from wasi_magic_http import get``.

Every request goes through the host (``wasi-magic:cell/http``), which sends it
only to an origin the cell was granted with ``--allow-http`` and otherwise
refuses it: this module then raises :class:`PermissionError` naming the host
and the flag. Redirects are followed here, in the guest, one hop at a time,
so each hop is checked by the host again.
"""

import json as _json
from urllib.parse import urljoin

from componentize_py_types import Err
from wit_world.imports import http as _http

#: Redirects followed by :func:`request` before it gives up.
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)


class Response:
    """A response: ``status``, ``headers`` (a list of pairs), ``body`` (bytes)."""

    def __init__(self, url, status, headers, body):
        self.url = url
        self.status = status
        self.headers = list(headers)
        self.body = bytes(body)

    def header(self, name, default=None):
        """The first header called ``name`` (any case), or ``default``."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), default)

    @property
    def text(self):
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        """The body parsed as JSON."""
        return _json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} from {self.url} ({len(self.body)} bytes)>"


def _send(method, url, headers, body):
    try:
        status, got, data = _http.request(method, url, list(headers), bytes(body))
    except Err as exc:
        message = str(exc.value)
        kind, _, text = message.partition(": ")
        if kind == "denied":
            raise PermissionError(f"HTTP request to {url} refused: {text}") from None
        raise ConnectionError(f"HTTP request to {url} failed: {text}") from None
    return Response(url, status, got, data)


def request(method, url, headers=(), body=b"", follow_redirects=True):
    """Send ``method url`` and return a :class:`Response`.

    ``headers`` is a dict or a list of pairs; ``body`` is bytes or text. With
    ``follow_redirects`` a 3xx is followed (at most :data:`MAX_REDIRECTS`
    times), each hop checked against the grants by the host.
    """
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    data = body.encode() if isinstance(body, str) else bytes(body)
    for _ in range(MAX_REDIRECTS + 1):
        response = _send(method, url, pairs, data)
        target = response.header("location")
        if not follow_redirects or response.status not in _REDIRECTS or target is None:
            return response
        url = urljoin(url, target)
        if response.status == 303 or (response.status in (301, 302) and method == "POST"):
            method, data = "GET", b""
    raise ConnectionError(f"more than {MAX_REDIRECTS} redirects, the last to {url}")


def get(url, headers=(), follow_redirects=True):
    """``GET url``: a :class:`Response`."""
    return request("GET", url, headers, b"", follow_redirects)


def post(url, body=b"", headers=(), follow_redirects=True):
    """``POST url`` with ``body``: a :class:`Response`."""
    return request("POST", url, headers, body, follow_redirects)
