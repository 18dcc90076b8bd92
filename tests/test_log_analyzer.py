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
    lines = ['{"timestamp": "t", "level": "INFO"', '["a"]', '{"timestamp": "t", "message": "m"}',
             '{"timestamp": "t", "level": "INFO", "message": "m", "duration_ms": "fast"}',
             entry("t", "INFO")]
    warnings: list[str] = []
    report = analyzer.analyze(analyzer.read_entries(lines, warnings.append))
    assert report["total_entries"] == 1
    assert [w.split(":")[0] for w in warnings] == [f"Skipping malformed line {n}" for n in (1, 2, 3, 4)]
    assert "expected an object, got list" in warnings[1] and "'level'" in warnings[2]


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
