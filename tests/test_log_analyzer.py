"""The log analyzer of lesson 04: one program, natively and as a component, same report."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from wasi_magic import Capabilities, build, run

HERE = ROOT / "guest_src" / "log_analyzer"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"la_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


analyzer = _module("analyzer")
generate = _module("generate")


def entry(ts: str, level: str, service: str = "web", duration: float | None = None,
          message: str = "m") -> str:
    record = {"timestamp": ts, "level": level, "message": message, "service": service}
    if duration is not None:
        record["duration_ms"] = duration
    return json.dumps(record)


def test_report_fields_follow_the_lesson_rules() -> None:
    lines = [entry(f"t{i}", "INFO", duration=float(i)) for i in range(1, 101)]
    lines += [entry("t101", "ERROR", service="db", message="deadlock"),
              entry("t102", "WARN", service="", duration=1500.0),
              entry("t103", "INFO", duration=1500.0), ""]
    warnings: list[str] = []
    report = analyzer.analyze(analyzer.read_entries(lines, warnings.append))
    assert report["total_entries"] == 103 and warnings == []
    assert report["by_level"] == {"ERROR": 1, "INFO": 101, "WARN": 1}
    assert report["by_service"] == {"db": 1, "web": 101}  # an empty service is not counted
    assert report["error_messages"] == ["[t101] db: deadlock"]
    # 102 durations sorted: index int(102 * 0.99) = 100 -> the first 1500.0
    assert report["p99_duration_ms"] == 1500.0
    assert [r["timestamp"] for r in report["slow_requests"]] == ["t102", "t103"]  # ties: log order


def test_slow_requests_are_the_top_ten_slowest_first() -> None:
    lines = [entry(f"t{i}", "INFO", duration=1000.0 + i) for i in range(25)]
    lines.append(entry("exactly", "INFO", duration=1000.0))  # not over 1000 ms
    report = analyzer.analyze(analyzer.read_entries(lines))
    assert [r["duration_ms"] for r in report["slow_requests"]] == [1024.0 - i for i in range(10)]


def test_malformed_lines_are_skipped_and_named() -> None:
    lines = ['{"timestamp": "t", "level": "INFO"', '"log rotated"', '{"timestamp": "t", "message": "m"}',
             '{"timestamp": "t", "level": "INFO", "message": "m", "duration_ms": "fast"}',
             entry("t", "INFO")]
    warnings: list[str] = []
    report = analyzer.analyze(analyzer.read_entries(lines, warnings.append))
    assert report["total_entries"] == 1
    assert [w.split(":")[0] for w in warnings] == [f"Skipping malformed line {n}" for n in (1, 2, 3, 4)]
    assert "expected struct LogEntry" in warnings[1] and "missing field `level`" in warnings[2]
    assert "expected f64 (field `duration_ms`)" in warnings[3]


# serde_json's rules for the seed's LogEntry, one by one: (why, line, kept?, what the note says).
BASE = '"timestamp": "t", "level": "INFO", "message": "m"'
SERDE_RULES = [
    # the shape of the value
    ("an object", "{%s}" % BASE, True, ""),
    ("an array in field order is a struct too", '["t", "INFO", "m", "web", 12.5]', True, ""),
    ("an array may stop before the defaulted fields", '["t", "INFO", "m"]', True, ""),
    ("an array must hold the required fields", '["t", "INFO"]', False, "invalid length 2"),
    ("an array cannot go past five fields", '["t", "INFO", "m", "web", 1, 2]', False, "trailing characters"),
    ("a string is not a struct", '"log rotated"', False, "expected struct LogEntry"),
    ("a number is not a struct", "42", False, "expected struct LogEntry"),
    ("null is not a struct", "null", False, "expected struct LogEntry"),
    # types of the fields
    ("a number is not a String", '{"timestamp": 1, "level": "INFO", "message": "m"}', False,
     "invalid type: number, expected a string (field `timestamp`)"),
    ("null is not a String", '{%s, "service": null}' % BASE, False, "invalid type: null, expected a string"),
    ("an object is not a String", '{"timestamp": "t", "level": {"x": 1}, "message": "m"}', False,
     "invalid type: map"),
    ("true is not an f64", '{%s, "duration_ms": true}' % BASE, False, "invalid type: boolean, expected f64"),
    ("a numeric string is not an f64", '{%s, "duration_ms": "12"}' % BASE, False, "invalid type: string"),
    ("null is None for Option<f64>", '{%s, "duration_ms": null}' % BASE, True, ""),
    ("an integer reads into f64", '{%s, "duration_ms": 12}' % BASE, True, ""),
    ("a negative number reads into f64", '{%s, "duration_ms": -3.5}' % BASE, True, ""),
    # missing and duplicate fields
    ("timestamp is required", '{"level": "INFO", "message": "m"}', False, "missing field `timestamp`"),
    ("message is required", '{"timestamp": "t", "level": "INFO"}', False, "missing field `message`"),
    ("service and duration_ms default", "{%s}" % BASE, True, ""),
    ("a field twice is an error", '{%s, "level": "INFO"}' % BASE, False, "duplicate field `level`"),
    ("even a null twice", '{%s, "duration_ms": null, "duration_ms": null}' % BASE, False,
     "duplicate field `duration_ms`"),
    ("an unknown field is ignored", '{%s, "host": {"deep": [1, 2, {"x": null}]}}' % BASE, True, ""),
    ("an unknown field twice is ignored", '{%s, "host": 1, "host": 2}' % BASE, True, ""),
    ("an unknown field still has to be JSON", '{%s, "host": [1, 2,]}' % BASE, False, "invalid JSON"),
    # numbers
    ("NaN is not JSON", '{%s, "duration_ms": NaN}' % BASE, False, "NaN is not valid JSON"),
    ("Infinity is not JSON", '{%s, "duration_ms": -Infinity}' % BASE, False, "-Infinity is not valid JSON"),
    ("nor in an unknown field", '{%s, "host": NaN}' % BASE, False, "NaN is not valid JSON"),
    ("1e400 is out of range for f64", '{%s, "duration_ms": 1e400}' % BASE, False, "number out of range"),
    ("a 400-digit integer is out of range", '{%s, "duration_ms": %s}' % (BASE, "9" * 400), False,
     "number out of range"),
    ("a 300-digit integer fits an f64", '{%s, "duration_ms": %s}' % (BASE, "9" * 300), True, ""),
    ("a tiny number rounds to zero", '{%s, "duration_ms": 1e-400}' % BASE, True, ""),
    ("a huge number in an unknown field is only skipped", '{%s, "n": %s}' % (BASE, "7" * 5000), True, ""),
    ("a leading zero is not JSON", '{%s, "duration_ms": 012}' % BASE, False, "invalid JSON"),
    ("a leading plus is not JSON", '{%s, "duration_ms": +12}' % BASE, False, "invalid JSON"),
    # strings
    ("a raw control character", '{"timestamp": "t\tx", "level": "INFO", "message": "m"}', False, "invalid JSON"),
    ("a lone surrogate in a field", '{"timestamp": "t", "level": "\\ud800", "message": "m"}', False,
     "lone surrogate in a string (field `level`)"),
    ("a lone surrogate in a key", '{%s, "\\udc00": 1}' % BASE, False, "lone surrogate in a key"),
    ("a lone surrogate in a skipped value", '{%s, "host": "\\ud800"}' % BASE, True, ""),
    ("an escaped pair is one character", '{"timestamp": "t", "level": "\\ud83d\\ude00", "message": "m"}',
     True, ""),
    # around the value
    ("whitespace around the value", " \t{%s} \r" % BASE, True, ""),
    ("trailing data", '{%s} {"x": 1}' % BASE, False, "invalid JSON"),
    ("a trailing comma", '{%s,}' % BASE, False, "invalid JSON"),
    ("a byte order mark is not whitespace", "\ufeff{%s}" % BASE, False, "invalid JSON"),
    ("a form feed is not JSON whitespace", "\x0c{%s}" % BASE, False, "invalid JSON"),
    ("cut off mid-write", '{"timestamp": "t", "lev', False, "invalid JSON"),
    # nesting: serde skips unknown values with a loop, so any depth is fine there
    ("deep nesting in an unknown field", '{%s, "x": %s}' % (BASE, "[" * 100_000 + "]" * 100_000), True, ""),
    ("deep nesting, unbalanced", '{%s, "x": %s}' % (BASE, "[" * 100_000 + "]" * 99_999), False,
     "invalid JSON"),
    ("deep nesting in a known field", '{"timestamp": %s, "level": "I", "message": "m"}' % ("[" * 5000 + "]" * 5000),
     False, "invalid type: sequence"),
]


@pytest.mark.parametrize("fast", [True, False], ids=["json.loads", "by hand"])
@pytest.mark.parametrize("why, line, kept, note", SERDE_RULES, ids=[rule[0] for rule in SERDE_RULES])
def test_a_line_is_skipped_exactly_when_serde_json_would_fail(why, line, kept, note, fast) -> None:
    try:
        parsed = analyzer.parse_entry(line, fast=fast)
    except analyzer.Malformed as exc:
        assert not kept, f"{why}: skipped ({exc})"
        assert note in str(exc), f"{why}: {exc}"
    else:
        assert kept, f"{why}: kept as {parsed}"


def test_fields_read_as_serde_would() -> None:
    short = analyzer.parse_entry('["t", "INFO", "m"]')
    assert short == {"timestamp": "t", "level": "INFO", "message": "m", "service": "", "duration_ms": None}
    assert analyzer.parse_entry('{%s, "duration_ms": 12}' % BASE)["duration_ms"] == 12.0
    assert analyzer.parse_entry('{%s, "duration_ms": %s}' % (BASE, "9" * 300))["duration_ms"] == float("9" * 300)
    assert analyzer.parse_entry('{"timestamp": "t", "level": "\\ud83d\\ude00", "message": "m"}')["level"] == "😀"


def test_blank_lines_are_the_seeds_trim_is_empty() -> None:
    lines = ["", " \t", "\u00a0\u3000", "\x1c", entry("t", "INFO")]  # \x1c: Python whitespace, not Rust's
    warnings: list[str] = []
    report = analyzer.analyze(analyzer.read_entries(lines, warnings.append))
    assert report["total_entries"] == 1
    assert [w.split(":")[0] for w in warnings] == ["Skipping malformed line 4"]


def test_a_line_that_is_not_utf8_is_skipped_not_fatal() -> None:
    lines = [b'{"timestamp": "t", "level": "\xff", "message": "m"}\n', entry("t", "INFO").encode() + b"\r\n"]
    warnings: list[str] = []
    report = analyzer.analyze(analyzer.read_entries(lines, warnings.append))
    assert report["total_entries"] == 1
    assert warnings == ["Skipping malformed line 1: stream did not contain valid UTF-8"]


def test_an_overflowing_sum_gives_a_null_average() -> None:
    huge = "9" * 308
    lines = [entry("a", "INFO", duration=float(huge)), entry("b", "INFO", duration=float(huge))]
    report = analyzer.analyze(analyzer.read_entries(lines))
    assert report["avg_duration_ms"] is None and report["p99_duration_ms"] == float(huge)
    assert "avg null" in analyzer.summary(report)


def test_generator_is_seeded_and_breaks_a_few_lines() -> None:
    first, again = generate.generate(2000, seed=3, malformed=4), generate.generate(2000, seed=3, malformed=4)
    assert first == again and first != generate.generate(2000, seed=4, malformed=4)
    report = analyzer.analyze(analyzer.read_entries(first))
    assert report["total_entries"] == 1996


@pytest.fixture(scope="module")
def component(shared_cache: Path):
    return build(HERE / "analyzer.py")


def test_the_component_writes_the_same_report_as_cpython(component, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "logs.json").write_text("\n".join(generate.generate(5000, seed=11, malformed=3)) + "\n")
    native = subprocess.run([sys.executable, str(HERE / "analyzer.py"), str(data / "logs.json"),
                             str(tmp_path / "native.json")], capture_output=True, text=True)
    assert native.returncode == 0, native.stderr
    caps = Capabilities.parse(dirs=[f"{data}::/data"])  # the default paths
    result = run(component, caps)
    assert result.status == 0, result.stderr
    assert (data / "report.json").read_bytes() == (tmp_path / "native.json").read_bytes()
    assert result.stdout == native.stdout
    assert result.stderr.replace("/data/", str(data) + "/") == native.stderr.replace(
        str(tmp_path / "native.json"), str(data / "report.json"))


HOSTILE_LOG = b"\n".join([
    ('{%s, "duration_ms": %s}' % (BASE, "9" * 400)).encode(),              # out of range
    ('{%s, "duration_ms": 1.5e308}' % BASE).encode(),                       # two of these overflow the sum
    ('{%s, "duration_ms": 1.5e308}' % BASE).encode(),
    ('{%s, "n": %s}' % (BASE, "7" * 5000)).encode(),                        # past int()'s digit limit
    ('{%s, "x": %s}' % (BASE, "[" * 50_000 + "]" * 50_000)).encode(),        # deeper than any stack
    b'{"timestamp": "t", "level": "\\ud800", "message": "m"}',             # half a surrogate pair
    b'{"timestamp": "\xff\xfe", "level": "INFO", "message": "m"}',        # not UTF-8
    ('{%s, "duration_ms": NaN}' % BASE).encode(),
    ('{%s}\r{%s}' % (BASE, BASE)).encode(),                                # a lone CR does not end a line
]) + b"\n"


def test_a_hostile_log_never_crashes_the_component(component, tmp_path: Path) -> None:
    (tmp_path / "logs.json").write_bytes(HOSTILE_LOG)
    result = run(component, Capabilities.parse(dirs=[f"{tmp_path}::/data"]))
    assert result.status == 0, result.stderr
    text = (tmp_path / "report.json").read_text()
    report = json.loads(text, parse_constant=lambda name: pytest.fail(f"report holds {name}"))
    assert report["total_entries"] == 4 and report["avg_duration_ms"] is None
    skipped = [line.split(":", 1) for line in result.stderr.splitlines() if line.startswith("Skipping")]
    assert [int(where.rsplit(" ", 1)[1]) for where, _ in skipped] == [1, 6, 7, 8, 9]
    assert "number out of range" in skipped[0][1] and "valid UTF-8" in skipped[2][1]
    native = subprocess.run([sys.executable, str(HERE / "analyzer.py"), str(tmp_path / "logs.json"),
                             str(tmp_path / "native.json")], capture_output=True, text=True)
    assert native.returncode == 0 and (tmp_path / "native.json").read_text() == text


def test_a_read_only_input_grant_cannot_take_the_report(component, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "in" / "logs.json").write_text(entry("t", "INFO") + "\n")
    refused = run(component, Capabilities.parse(dirs=[f"{tmp_path / 'in'}::/data::ro"]))
    assert refused.status == 1
    assert "Failed to write /data/report.json: Operation not permitted" in refused.stderr
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["logs.json"]
    caps = Capabilities.parse(dirs=[f"{tmp_path / 'in'}::/in::ro", f"{tmp_path / 'out'}::/out"],
                              args=["/in/logs.json", "/out/report.json"])
    written = run(component, caps)
    assert written.status == 0, written.stderr
    assert json.loads((tmp_path / "out" / "report.json").read_text())["total_entries"] == 1
