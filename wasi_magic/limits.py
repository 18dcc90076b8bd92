"""Resource limits of one run: wall-clock time, fuel, memory, output.

Spelled as our flags (``--timeout 5``, ``--fuel 1e9``, ``--max-memory 64MiB``)
or as the wasmtime CLI spells them (``-W timeout=5s``, ``-W fuel=N``,
``-W max-memory-size=N``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Iterable

from .errors import UsageError
from .output import DEFAULT_LIMIT

#: Default wall-clock limit of one run, in seconds, so that an accidental
#: infinite loop never hangs a kernel. ``--timeout 0`` disables it.
DEFAULT_TIMEOUT = 60.0

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$")

LIMIT_ARGUMENTS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--timeout",), dict(default=None, metavar="SECONDS",
                          help=f"Stop the guest after SECONDS of wall-clock time (default "
                               f"{DEFAULT_TIMEOUT:g}; 0: no limit). Accepts 500ms, 2s, 1m.")),
    (("--fuel",), dict(default=None, metavar="N",
                       help="Stop the guest after N units of fuel (about one per wasm instruction).")),
    (("--max-memory",), dict(default=None, metavar="SIZE", dest="max_memory",
                             help="Cap the guest's linear memory, e.g. 64MiB or 1G.")),
    (("--max-output",), dict(default=None, metavar="SIZE", dest="max_output",
                             help="Keep at most SIZE of each output stream (default 1MiB).")),
    (("-W",), dict(action="append", default=[], metavar="OPT=VALUE", dest="wasm_options",
                   help="wasmtime-style limits: -W timeout=5s, -W fuel=N, -W max-memory-size=N.")),
]


def parse_size(text: str, flag: str = "--max-memory") -> int:
    """``'64MiB'`` -> 67108864; bare numbers are bytes."""
    found = _SIZE.match(str(text))
    unit = found.group(2).lower() if found else ""
    if not found or unit not in _UNITS:
        raise UsageError(f"{flag} {text!r}: expected a size such as 64MiB, 512KiB, 1G or a "
                         f"number of bytes.")
    return int(float(found.group(1)) * _UNITS[unit])


def parse_duration(text: str, flag: str = "--timeout") -> float:
    """``'2s'`` -> 2.0, ``'500ms'`` -> 0.5, ``'1m'`` -> 60.0; bare numbers are seconds."""
    found = _DURATION.match(str(text))
    if not found:
        raise UsageError(f"{flag} {text!r}: expected seconds, such as 5, 2.5s, 500ms or 1m.")
    scale = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}
    return float(found.group(1)) * scale[found.group(2)]


def parse_count(text: str, flag: str = "--fuel") -> int:
    """``'1e9'`` or ``'1_000_000'`` -> int."""
    try:
        value = int(float(str(text).replace("_", "")))
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected a whole number such as 1000000 or 1e9.") from None
    if value <= 0:
        raise UsageError(f"{flag} {text!r}: must be greater than zero.")
    return value


@dataclass(frozen=True)
class Limits:
    """The limits of one run. ``None`` means no limit (or the default, for output)."""

    timeout: float | None = DEFAULT_TIMEOUT
    fuel: int | None = None
    max_memory: int | None = None
    max_output: int = DEFAULT_LIMIT

    @classmethod
    def parse(cls, timeout: str | float | None = None, fuel: str | int | None = None,
              max_memory: str | int | None = None, max_output: str | int | None = None,
              wasm_options: Iterable[str] = ()) -> "Limits":
        """Limits from flag values; ``wasm_options`` are ``-W name=value`` items."""
        values: dict[str, Any] = {}
        for item in wasm_options:
            name, sep, value = item.partition("=")
            key = {"timeout": "timeout", "fuel": "fuel", "max-memory-size": "max_memory"}.get(name)
            if not sep or key is None:
                raise UsageError(f"-W {item!r}: supported are -W timeout=DURATION, -W fuel=N and "
                                 f"-W max-memory-size=BYTES.")
            values[key] = value
        for key, value in (("timeout", timeout), ("fuel", fuel), ("max_memory", max_memory)):
            if value is not None:
                values[key] = value
        limits = cls()
        if "timeout" in values:
            seconds = parse_duration(values["timeout"])
            limits = replace(limits, timeout=seconds or None)
        if "fuel" in values:
            limits = replace(limits, fuel=parse_count(values["fuel"]))
        if "max_memory" in values:
            limits = replace(limits, max_memory=parse_size(values["max_memory"]))
        if max_output is not None:
            limits = replace(limits, max_output=parse_size(max_output, "--max-output"))
        return limits

    def wasmtime_options(self) -> list[str]:
        """The same limits as wasmtime CLI words (``-W timeout=5s`` …)."""
        words = []
        if self.timeout:
            words += ["-W", f"timeout={self.timeout:g}s"]
        if self.fuel:
            words += ["-W", f"fuel={self.fuel}"]
        if self.max_memory:
            words += ["-W", f"max-memory-size={self.max_memory}"]
        return words
