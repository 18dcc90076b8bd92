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


#: The largest values the limits accept (Wasmtime counts fuel in a u64; a memory
#: or an output stream of more than 1 TiB is no limit at all on any machine).
MAX_FUEL = (1 << 64) - 1
MAX_SIZE = 1 << 40
#: The longest time limit accepted: 30 days (``--timeout 0`` means none).
MAX_TIMEOUT = 30 * 24 * 3600.0


def parse_size(text: str, flag: str = "--max-memory") -> int:
    """``'64MiB'`` -> 67108864; bare numbers are bytes. Must be between 1 byte and 1 TiB."""
    found = _SIZE.match(str(text))
    unit = found.group(2).lower() if found else ""
    if not found or unit not in _UNITS:
        raise UsageError(f"{flag} {text!r}: expected a size such as 64MiB, 512KiB, 1G or a "
                         f"number of bytes.")
    value = int(float(found.group(1)) * _UNITS[unit])
    if not 1 <= value <= MAX_SIZE:
        raise UsageError(f"{flag} {text!r}: must be between 1 byte and 1TiB (leave the flag "
                         f"out for the default).")
    return value


def parse_duration(text: str, flag: str = "--timeout") -> float:
    """``'2s'`` -> 2.0, ``'500ms'`` -> 0.5, ``'1m'`` -> 60.0; bare numbers are seconds.

    ``0`` means no limit; anything above :data:`MAX_TIMEOUT` (30 days) is refused.
    """
    found = _DURATION.match(str(text))
    if not found:
        raise UsageError(f"{flag} {text!r}: expected seconds, such as 5, 2.5s, 500ms or 1m.")
    scale = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}
    seconds = float(found.group(1)) * scale[found.group(2)]
    if not seconds <= MAX_TIMEOUT:
        raise UsageError(f"{flag} {text!r}: at most 30 days ({MAX_TIMEOUT:g} s); use "
                         f"{flag} 0 for no time limit.")
    return seconds


def parse_count(text: str, flag: str = "--fuel") -> int:
    """``'1e9'`` or ``'1_000_000'`` -> int, between 1 and 2**64 - 1."""
    digits = str(text).replace("_", "").strip()
    value: int | None = None
    if digits.isdigit():
        value = int(digits)  # exact, even beyond a float's precision
    else:
        try:
            number = float(digits)
            value = int(number) if number.is_integer() else None
        except (ValueError, OverflowError):
            pass
    if value is None:
        raise UsageError(f"{flag} {text!r}: expected a whole number such as 1000000 or 1e9.")
    if not 1 <= value <= MAX_FUEL:
        raise UsageError(f"{flag} {text!r}: must be between 1 and {MAX_FUEL:,} (2**64 - 1).")
    return value


@dataclass(frozen=True)
class Limits:
    """The limits of one run. ``None`` means no limit (or the default, for output)."""

    timeout: float | None = DEFAULT_TIMEOUT
    fuel: int | None = None
    max_memory: int | None = None
    max_output: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        # Limits also arrive from Python (load(), the panel): check them here, once.
        timeout = self.timeout
        if timeout is not None and not (isinstance(timeout, (int, float))
                                        and 0 <= timeout <= MAX_TIMEOUT):
            raise UsageError(f"timeout={timeout!r}: expected seconds between 0 and "
                             f"{MAX_TIMEOUT:g} (30 days), or None for no limit.")
        for name, value, top in (("fuel", self.fuel, MAX_FUEL),
                                 ("max_memory", self.max_memory, MAX_SIZE)):
            if value is not None and not (isinstance(value, int) and 1 <= value <= top):
                raise UsageError(f"{name}={value!r}: expected a whole number from 1 to {top:,}, "
                                 f"or None for no limit.")
        if not (isinstance(self.max_output, int) and 1 <= self.max_output <= MAX_SIZE):
            raise UsageError(f"max_output={self.max_output!r}: expected a number of bytes from "
                             f"1 to {MAX_SIZE:,}.")

    @classmethod
    def parse(cls, timeout: str | float | None = None, fuel: str | int | None = None,
              max_memory: str | int | None = None, max_output: str | int | None = None,
              wasm_options: Iterable[str] = (), *, defaults: "Limits | None" = None) -> "Limits":
        """Limits from flag values; ``wasm_options`` are ``-W name=value`` items.

        What no flag sets comes from ``defaults`` (the session's settings), else from
        the class defaults.
        """
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
        limits = defaults if defaults is not None else cls()
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
