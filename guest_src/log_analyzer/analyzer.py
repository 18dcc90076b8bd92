"""A log analyzer that ships as one .wasm file.

Reads JSON-lines logs (one object per line: ``timestamp``, ``level``,
``message``, optional ``service`` and ``duration_ms``) and writes a JSON
report:

- ``total_entries``: lines that parsed. A line is skipped as malformed, with a
  note on stderr, exactly when the seed's Rust program (serde_json into its
  ``LogEntry`` struct) would skip it; the rules are listed above ``FIELDS``;
- ``by_level`` and ``by_service``: counts (entries without a service are not
  counted by service);
- ``error_messages``: every ERROR entry as ``[timestamp] service: message``;
- ``slow_requests``: the 10 slowest entries over 1000 ms, slowest first;
- ``avg_duration_ms`` and ``p99_duration_ms`` over the entries with a duration
  (p99 is the value at index ``int(n * 0.99)`` of the sorted durations; the
  average is null if the sum overflows, as serde_json writes an infinite f64).

Usage, natively or in a sandbox::

    python analyzer.py [LOGS.json] [REPORT.json]
    wasmtime run --dir test-data::/data log-analyzer.wasm -- /data/logs.json /data/report.json

The paths default to /data/logs.json and /data/report.json. The program uses
only the standard library, so the same file runs under CPython and, built
with componentize-py, as a WASI component.
"""

from __future__ import annotations

import json
import json.decoder
import math
import re
import sys
from collections import Counter
from typing import Any, Iterable, Iterator

SLOW_MS = 1000.0
TOP_SLOW = 10


class Malformed(ValueError):
    """A line that is not a log entry."""


# The seed's Rust struct, which serde_json fills from each line:
#
#     struct LogEntry { timestamp: String, level: String, message: String,
#                       #[serde(default)] service: String,
#                       #[serde(default)] duration_ms: Option<f64> }
#
# A line is skipped exactly when serde_json would fail to read it into that struct.
# The rules, one by one (tests/test_log_analyzer.py has a test for each):
# - the line is one JSON value and nothing after it but JSON whitespace;
# - the value is an object, or an array of the fields in order (serde reads a struct
#   from either); an array may stop before the defaulted fields, but not go past five;
# - timestamp, level, message are required strings; service is a string if present;
# - duration_ms is null or a number; integers are read as floats; a number too large
#   for a float (1e400, a 400-digit integer) is "out of range"; NaN is not JSON;
# - a field named twice is an error, even when both values agree;
# - unknown fields are ignored whatever they hold, but must be valid JSON;
# - strings must be valid: no control characters, and a string that is read (a key or
#   one of the four string fields) may not hold half of a UTF-16 surrogate pair.
FIELDS = ("timestamp", "level", "message", "service", "duration_ms")
REQUIRED = FIELDS[:3]
STRINGS = FIELDS[:4]
JSON_WHITESPACE = " \t\n\r"
# char::is_whitespace in Rust (Unicode White_Space), which the seed's trim() uses for
# blank lines; Python's str.isspace() also counts \x1c-\x1f, so it is spelled out.
RUST_WHITESPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
                            "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
# json.loads recurses once per bracket; a line with more brackets than this is read by
# the iterative reader below, which cannot run out of stack.
FAST_PATH_BRACKETS = 64


class _Number(str):
    """A JSON number kept as its text, so that huge numbers cost nothing until read."""


class _Pairs(list):
    """A JSON object as its (key, value) pairs in order, duplicates kept."""


def _no_constants(name: str):
    raise Malformed(f"{name} is not valid JSON")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(text: str) -> bool:
    # isascii() first: nearly every string is ASCII, and it is one C call, not a loop.
    return not text.isascii() and _SURROGATE.search(text) is not None


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, _Number):
        return "number"
    if isinstance(value, str):
        return "string"
    return "map" if isinstance(value, _Pairs) else "sequence"


def _as_float(text: str) -> float:
    if not text.isascii():  # the pure-Python json scanner's \d also matches other digits
        raise Malformed("invalid number")
    number = float(text)
    if math.isinf(number):
        raise Malformed("number out of range")
    return number


def _field(name: str, value: Any) -> Any:
    """One field's value, checked the way serde checks its Rust type."""
    if name in STRINGS:
        if not isinstance(value, str) or isinstance(value, _Number):
            raise Malformed(f"invalid type: {_type_name(value)}, expected a string (field `{name}`)")
        if _has_surrogate(value):
            raise Malformed(f"lone surrogate in a string (field `{name}`)")
        return value
    if value is None:
        return None
    if not isinstance(value, _Number):
        raise Malformed(f"invalid type: {_type_name(value)}, expected f64 (field `{name}`)")
    return _as_float(value)


def _entry(fields: dict[str, Any]) -> dict[str, Any]:
    for name in REQUIRED:
        if name not in fields:
            raise Malformed(f"missing field `{name}`")
    return {"timestamp": fields["timestamp"], "level": fields["level"], "message": fields["message"],
            "service": fields.get("service", ""), "duration_ms": fields.get("duration_ms")}


def _from_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if _has_surrogate(key):
            raise Malformed("lone surrogate in a key")
        if key not in FIELDS:
            continue  # unknown fields are allowed: the struct has no deny_unknown_fields
        if key in fields:
            raise Malformed(f"duplicate field `{key}`")
        fields[key] = _field(key, value)
    return _entry(fields)


def _from_array(values: list[Any]) -> dict[str, Any]:
    if len(values) > len(FIELDS):
        raise Malformed("trailing characters (an array of more than 5 fields)")
    if len(values) < len(REQUIRED):
        raise Malformed(f"invalid length {len(values)}, expected struct LogEntry with 5 elements")
    return _entry({name: _field(name, value) for name, value in zip(FIELDS, values)})


def _fast(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line, object_pairs_hook=_Pairs, parse_int=_Number,
                           parse_float=_Number, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise Malformed(f"invalid JSON: {exc}") from None
    if isinstance(value, _Pairs):
        return _from_object(value)
    if isinstance(value, list):
        return _from_array(value)
    raise Malformed(f"invalid type: {_type_name(value)}, expected struct LogEntry")


class _Reader:
    """serde_json's reading of a LogEntry, by hand, for lines nested too deep for json.loads.

    Known fields hold scalars (anything else is a type error), so only unknown values
    can nest, and serde skips those with a loop, not recursion: so does :meth:`skip`.
    """

    def __init__(self, text: str) -> None:
        self.text, self.at = text, 0

    def fail(self, what: str) -> Malformed:
        return Malformed(f"invalid JSON: {what} at column {self.at + 1}")

    def peek(self) -> str:
        while self.at < len(self.text) and self.text[self.at] in JSON_WHITESPACE:
            self.at += 1
        return self.text[self.at] if self.at < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.at += 1

    def string(self) -> str:
        self.expect('"')
        try:
            value, self.at = json.decoder.scanstring(self.text, self.at, True)
        except json.JSONDecodeError as exc:
            raise Malformed(f"invalid JSON: {exc}") from None
        return value

    def scalar(self) -> Any:
        """A value for a known field: a string, a number, null, true or false."""
        char = self.peek()
        if char == '"':
            return self.string()
        for word, value in (("null", None), ("true", True), ("false", False)):
            if self.text.startswith(word, self.at):
                self.at += len(word)
                return value
        for constant in ("NaN", "Infinity", "-Infinity"):  # named like json.loads names them
            if self.text.startswith(constant, self.at):
                _no_constants(constant)
        match = NUMBER.match(self.text, self.at)
        if match:
            self.at = match.end()
            return _Number(match.group())
        if char in ("[", "{"):
            raise Malformed(f"invalid type: {'sequence' if char == '[' else 'map'}, expected a scalar")
        raise self.fail("expected a value")

    def skip(self) -> None:
        """Step over one valid JSON value of any depth, without recursion."""
        closers: list[str] = []
        while True:
            char = self.peek()
            if char in ("[", "{"):
                self.at += 1
                closers.append("]" if char == "[" else "}")
                if self.peek() == closers[-1]:
                    self.at += 1
                    closers.pop()
                elif char == "{":
                    self.string()
                    self.expect(":")
                    continue
                else:
                    continue
            else:
                self.scalar()
            while closers:  # after a value: a comma, or close what is open
                following = self.peek()
                if following == ",":
                    self.at += 1
                    if closers[-1] == "}":
                        self.string()
                        self.expect(":")
                    break
                if following != closers[-1]:
                    raise self.fail(f"expected ',' or {closers[-1]!r}")
                self.at += 1
                closers.pop()
            if not closers:
                return

    def entry(self) -> dict[str, Any]:
        char = self.peek()
        if char == "{":
            self.at += 1
            pairs: list[tuple[str, Any]] = []
            if self.peek() != "}":
                while True:
                    key = self.string()
                    self.expect(":")
                    if _has_surrogate(key):
                        raise Malformed("lone surrogate in a key")
                    if key in FIELDS:
                        pairs.append((key, self.scalar()))
                    else:
                        self.skip()
                    if self.peek() != ",":
                        break
                    self.at += 1
            self.expect("}")
            entry = _from_object(pairs)
        elif char == "[":
            self.at += 1
            values: list[Any] = []
            if self.peek() != "]":
                while True:
                    values.append(self.scalar())
                    if self.peek() != ",":
                        break
                    self.at += 1
            self.expect("]")
            entry = _from_array(values)
        else:
            raise Malformed(f"invalid type: {_type_name(self.scalar())}, expected struct LogEntry")
        if self.peek():
            raise self.fail("trailing characters")
        return entry


def parse_entry(line: str, fast: bool = True) -> dict[str, Any]:
    """One log entry from one line of JSON, or :class:`Malformed` saying what is wrong.

    ``fast=False`` forces the hand-written reader (tests check both agree).
    """
    if fast and line.count("[") + line.count("{") <= FAST_PATH_BRACKETS:
        return _fast(line)
    return _Reader(line).entry()


def is_blank(line: str) -> bool:
    """Whether the seed's ``line.trim().is_empty()`` holds: Unicode whitespace only."""
    return all(char in RUST_WHITESPACE for char in line)


def read_entries(lines: Iterable[str | bytes], warn=lambda text: None) -> Iterator[dict[str, Any]]:
    """The entries of a JSON-lines log; blank lines are ignored, malformed ones reported to ``warn``.

    Lines may be text or bytes; a line of bytes that is not UTF-8 is skipped as malformed
    (the seed's Rust program would stop with a panic there).
    """
    for number, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                warn(f"Skipping malformed line {number}: stream did not contain valid UTF-8")
                continue
        line = line.removesuffix("\n").removesuffix("\r")
        if is_blank(line):
            continue
        try:
            yield parse_entry(line)
        except Malformed as exc:
            warn(f"Skipping malformed line {number}: {exc}")


def analyze(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The report for a stream of parsed entries."""
    total = 0
    by_level: Counter[str] = Counter()
    by_service: Counter[str] = Counter()
    errors: list[str] = []
    durations: list[float] = []
    slow: list[dict[str, Any]] = []
    for entry in entries:
        total += 1
        by_level[entry["level"]] += 1
        if entry["service"]:
            by_service[entry["service"]] += 1
        if entry["level"] == "ERROR":
            errors.append(f"[{entry['timestamp']}] {entry['service']}: {entry['message']}")
        duration = entry["duration_ms"]
        if duration is not None:
            durations.append(duration)
            if duration > SLOW_MS:
                slow.append({"timestamp": entry["timestamp"], "service": entry["service"],
                             "duration_ms": duration, "message": entry["message"]})
    durations.sort()
    average = _mean(durations)
    p99 = durations[min(int(len(durations) * 0.99), len(durations) - 1)] if durations else 0.0
    slow.sort(key=lambda request: request["duration_ms"], reverse=True)  # stable: ties keep log order
    return {
        "total_entries": total,
        "by_level": dict(sorted(by_level.items())),
        "by_service": dict(sorted(by_service.items())),
        "error_messages": errors,
        "slow_requests": slow[:TOP_SLOW],
        "avg_duration_ms": average,
        "p99_duration_ms": p99,
    }


def _mean(durations: list[float]) -> float | None:
    """The average, or None where the seed's f64 sum overflows (serde_json writes that as null)."""
    if not durations:
        return 0.0
    try:
        # math.fsum is correctly rounded on every Python; plain sum() changed in 3.12, and
        # the guest's CPython is newer than some hosts', so sum() could differ in the last digit.
        total = math.fsum(durations)
    except OverflowError:
        return None
    average = total / len(durations)
    return average if math.isfinite(average) else None


def summary(report: dict[str, Any]) -> str:
    """A few readable lines about a report (the report itself holds every error line)."""
    levels = ", ".join(f"{level} {count}" for level, count in report["by_level"].items())
    lines = [f"entries: {report['total_entries']} ({levels})",
             f"services: {len(report['by_service'])}, errors: {len(report['error_messages'])}",
             f"duration_ms: avg {_one_decimal(report['avg_duration_ms'])}, "
             f"p99 {_one_decimal(report['p99_duration_ms'])}",
             "slowest (duration_ms):"]
    lines += [f"  {r['duration_ms']:8.1f}  {r['service']}: {r['message']}"
              for r in report["slow_requests"][:3]]
    return "\n".join(lines)


def _one_decimal(value: float | None) -> str:
    return "null" if value is None else f"{value:.1f}"


def main(argv: list[str]) -> int:
    source = argv[1] if len(argv) > 1 else "/data/logs.json"
    target = argv[2] if len(argv) > 2 else "/data/report.json"
    warn = lambda text: print(text, file=sys.stderr)
    warn(f"Reading logs from: {source}")
    try:
        # Bytes, split at b"\n" only, like Rust's BufRead::lines (text mode would also
        # split at a lone \r); read_entries decodes each line on its own.
        logs = open(source, "rb")
    except OSError as exc:
        warn(f"Failed to open {source}: {exc.strerror or exc}")
        return 1
    with logs:
        # Open the report before the work, so that a missing grant fails at once.
        try:
            out = open(target, "w", encoding="utf-8")
        except OSError as exc:
            warn(f"Failed to write {target}: {exc.strerror or exc}")
            return 1
        with out:
            report = analyze(read_entries(logs, warn))
            json.dump(report, out, indent=2, allow_nan=False)  # always valid JSON
            out.write("\n")
    print(summary(report))
    warn(f"Report written to: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
