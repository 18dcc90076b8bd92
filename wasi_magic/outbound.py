"""Which outgoing HTTP requests a guest may make: the ``--allow-http`` allowlist.

An entry names an origin, ``scheme://host[:port]``, as Spin's
``allowed_outbound_hosts`` does; the port defaults to the scheme's (80, 443).
A request is allowed when the *parsed* URL's scheme, host and port equal an
entry's, after both sides are normalized the same way (lowercase, one trailing
dot dropped, IPv6 written canonically). Never a string prefix:
``http://allowed.example@evil.example/`` and ``http://allowed.example.evil.example/``
start with an allowed string and go elsewhere.

What cannot be compared safely is refused outright: user info (``user@``),
percent-encoded or non-ASCII host names, numeric hosts that are not a plain
dotted quad (``127.1``, ``0x7f.0.0.1`` and ``2130706433`` all reach 127.0.0.1).
The host side (:mod:`wasi_magic.sandbox.outbound_host`) then connects to the
address it resolved for exactly that name, so the check and the connection
agree (see the README, "Outgoing HTTP").
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import CapabilityError

#: The flag that grants an origin, named in every refusal.
FLAG = "--allow-http"
DEFAULT_PORTS = {"http": 80, "https": 443}
#: A DNS name: ASCII labels of letters, digits and hyphens (no underscores, no '%').
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
#: Looks numeric to a resolver (each label decimal, or 0x-hex): must be a plain dotted quad.
_NUMERIC = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*$")


class Refused(ValueError):
    """A URL that no allowlist can match (its text, not the grant, is the problem)."""


@dataclass(frozen=True)
class Origin:
    """Where a request really goes: scheme, normalized host, port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = DEFAULT_PORTS[self.scheme] == self.port
        return f"{self.scheme}://{host}" + ("" if default else f":{self.port}")


def normalize_host(raw: str) -> str:
    """The canonical form of a URL's host, or :class:`Refused` saying why it is ambiguous."""
    if not raw:
        raise Refused("the URL has no host")
    if "%" in raw:
        raise Refused(f"the host {raw!r} is percent-encoded; write it plainly")
    if not raw.isascii():
        raise Refused(f"the host {raw!r} is not ASCII; write its IDNA form (xn--...)")
    host = raw.lower()
    if host.startswith("[") and host.endswith("]"):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise Refused(f"{raw!r} is not an IPv6 address") from None
        return address.compressed
    if ":" in host:
        raise Refused(f"the host {raw!r} is an IPv6 address without [brackets]")
    if host.endswith("."):
        host = host[:-1]  # 'example.com.' is the same name; two dots are refused below
    if _NUMERIC.match(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise Refused(f"the numeric host {raw!r} is not a plain dotted quad "
                          f"(a resolver may read it as another address)") from None
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise Refused(f"{raw!r} is not a valid host name")
    return host


def origin_of(url: str) -> Origin:
    """The origin a request URL targets, parsed as the connection will use it.

    Raises :class:`Refused` for anything ambiguous (user info, a bad port, an
    unknown scheme, a host :func:`normalize_host` refuses).
    """
    if any(c in url for c in "\0\r\n\t ") or not url.isascii():
        raise Refused("the URL contains spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"the URL does not parse ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise Refused(f"the scheme {parts.scheme!r} is not http or https")
    if "@" in parts.netloc:
        raise Refused("the URL has user info before '@'; the host is what follows it, "
                      "and wasi-magic refuses such URLs outright")
    if "\\" in url:
        raise Refused("the URL contains a backslash (parsers disagree about it)")
    host = parts.netloc.rsplit(":", 1)[0] if port is not None or parts.netloc.endswith(":") \
        else parts.netloc
    if port == 0:
        raise Refused("port 0 is not a port")
    return Origin(scheme, normalize_host(host), port if port is not None
                  else DEFAULT_PORTS[scheme])


def parse_grant(spec: str) -> Origin:
    """One ``--allow-http`` value (``http://127.0.0.1:8000``), or a one-line CapabilityError."""
    example = f"for example {FLAG} http://127.0.0.1:8000 or {FLAG} https://api.example.org"
    if "*" in spec:
        raise CapabilityError(f"{FLAG} {spec!r}: wildcards are not supported; name each "
                              f"origin ({example}).")
    if "://" not in spec:
        raise CapabilityError(f"{FLAG} {spec!r}: give a scheme, host and optional port "
                              f"({example}).")
    try:
        origin = origin_of(spec)
    except Refused as exc:
        raise CapabilityError(f"{FLAG} {spec!r}: {exc} ({example}).") from None
    rest = urlsplit(spec)
    if rest.path not in ("", "/") or rest.query or rest.fragment or spec.endswith(("?", "#")):
        raise CapabilityError(f"{FLAG} {spec!r}: an entry names an origin (scheme, host, "
                              f"port), not a path: {FLAG} {origin}.")
    return origin


def check(url: str, grants: tuple[Origin, ...]) -> Origin:
    """The origin of ``url`` if ``grants`` allow it; else :class:`PermissionError` naming
    the host and the flag that would allow it (or :class:`Refused` for an ambiguous URL)."""
    origin = origin_of(url)
    if origin in grants:
        return origin
    granted = ", ".join(str(g) for g in grants) if grants else "nothing"
    raise PermissionError(f"{origin} is not granted (HTTP granted: {granted}); "
                          f"allow it with {FLAG} {origin}")
