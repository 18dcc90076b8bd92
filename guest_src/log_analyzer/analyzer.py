"""A log analyzer that ships as one .wasm file.

Reads JSON-lines logs (one object per line: ``timestamp``, ``level``,
``message``, optional ``service`` and ``duration_ms``) and writes a JSON
report:

- ``total_entries``: lines that parsed (malformed lines are skipped, with a
  note on stderr);
- ``by_level`` and ``by_service``: counts (entries without a service are not
  counted by service);
- ``error_messages``: every ERROR entry as ``[timestamp] service: message``;
- ``slow_requests``: the 10 slowest entries over 1000 ms, slowest first;
- ``avg_duration_ms`` and ``p99_duration_ms`` over the entries with a duration
  (p99 is the value at index ``int(n * 0.99)`` of the sorted durations).

Usage, natively or in a sandbox::

    python analyzer.py [LOGS.json] [REPORT.json]
    wasmtime run --dir test-data::/data log-analyzer.wasm -- /data/logs.json /data/report.json

The paths default to /data/logs.json and /data/report.json. The program uses
only the standard library, so the same file runs under CPython and, built
with componentize-py, as a WASI component.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from typing import Any, Iterable, Iterator

SLOW_MS = 1000.0
TOP_SLOW = 10


class Malformed(ValueError):
    """A line that is not a log entry."""


def parse_entry(line: str) -> dict[str, Any]:
    """One log entry from one line of JSON, or :class:`Malformed` saying what is wrong."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        raise Malformed(f"invalid JSON: {exc}") from None
    if not isinstance(entry, dict):
        raise Malformed(f"expected an object, got {type(entry).__name__}")
    for field in ("timestamp", "level", "message"):
        if not isinstance(entry.get(field), str):
            raise Malformed(f"missing or non-string field {field!r}")
    if not isinstance(entry.setdefault("service", ""), str):
        raise Malformed("field 'service' is not a string")
    duration = entry.get("duration_ms")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))):
        raise Malformed("field 'duration_ms' is not a number")
    entry["duration_ms"] = None if duration is None else float(duration)
    return entry


def read_entries(lines: Iterable[str], warn=lambda text: None) -> Iterator[dict[str, Any]]:
    """The entries of a JSON-lines log; blank lines are ignored, malformed ones reported to ``warn``."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield parse_entry(line.rstrip("\r\n"))
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
    # math.fsum is correctly rounded on every Python; plain sum() changed in 3.12, and
    # the guest's CPython is newer than some hosts', so sum() could differ in the last digit.
    average = math.fsum(durations) / len(durations) if durations else 0.0
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


def summary(report: dict[str, Any]) -> str:
    """A few readable lines about a report (the report itself holds every error line)."""
    levels = ", ".join(f"{level} {count}" for level, count in report["by_level"].items())
    lines = [f"entries: {report['total_entries']} ({levels})",
             f"services: {len(report['by_service'])}, errors: {len(report['error_messages'])}",
             f"duration: avg {report['avg_duration_ms']:.1f} ms, p99 {report['p99_duration_ms']:.1f} ms",
             "slowest:"]
    lines += [f"  {r['duration_ms']:8.1f} ms  {r['service']}: {r['message']}"
              for r in report["slow_requests"][:3]]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    source = argv[1] if len(argv) > 1 else "/data/logs.json"
    target = argv[2] if len(argv) > 2 else "/data/report.json"
    warn = lambda text: print(text, file=sys.stderr)
    warn(f"Reading logs from: {source}")
    try:
        logs = open(source, encoding="utf-8")
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
            json.dump(report, out, indent=2)
            out.write("\n")
    print(summary(report))
    warn(f"Report written to: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
