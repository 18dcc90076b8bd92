"""Self-checks for lesson 04 (the log analyzer).

- Exercise 1: for each line in :data:`CANDIDATES`, predict whether the analyzer
  keeps it. The check asks the analyzer itself and, for each wrong guess, says
  why serde_json (and so the analyzer) decides otherwise.
- Exercise 2: a least-privilege grant for the analyzer: logs read-only, a
  separate writable folder for the report. The check runs the real component
  with the grant, on a copy of a small log, and reads what it wrote where.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

from ._shared import verdict

LESSONS = Path(__file__).resolve().parent.parent
BUILD = LESSONS / "build"
ANALYZER = LESSONS.parent / "guest_src" / "log_analyzer" / "analyzer.py"
WORK = BUILD / "checks" / "lesson04"

#: Exercise 1: will the analyzer keep each of these lines as an entry?
CANDIDATES = [
    '{"timestamp": "t1", "level": "INFO", "message": "ok", "duration_ms": 12}',
    '["t2", "INFO", "an array of the fields, in order"]',
    '{"timestamp": "t3", "level": "INFO", "message": "twice", "level": "WARN"}',
    '{"timestamp": "t4", "level": "INFO", "message": "m", "host": {"rack": [1, 2]}}',
    '{"timestamp": "t5", "level": "INFO", "message": "m", "service": null}',
    '{"timestamp": "t6", "level": "INFO", "message": "m", "duration_ms": 1e400}',
]



def analyzer_module() -> Any:
    """guest_src/log_analyzer/analyzer.py, imported from its file."""
    spec = importlib.util.spec_from_file_location("lesson04_analyzer", ANALYZER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Exercise 1 ---------------------------------------------------------------------------

def kept_problem(guesses: Any) -> str | None:
    """What is wrong with ``guesses`` (one bool per line of CANDIDATES), or None."""
    if not isinstance(guesses, (list, tuple)) or not all(isinstance(g, bool) for g in guesses):
        return "KEPT must be a list of True/False, one for each candidate line"
    if len(guesses) != len(CANDIDATES):
        return f"KEPT has {len(guesses)} answers for {len(CANDIDATES)} lines"
    analyzer = analyzer_module()
    wrong = []
    for number, (line, guess) in enumerate(zip(CANDIDATES, guesses), start=1):
        try:
            analyzer.parse_entry(line)
            actual, why = True, "serde reads it into LogEntry"
        except analyzer.Malformed as exc:
            actual, why = False, str(exc)
        if guess != actual:
            wrong.append(f"line {number} is {'kept' if actual else 'skipped'} ({why})")
    if wrong:
        return f"{len(wrong)} of {len(CANDIDATES)} wrong: " + "; ".join(wrong)
    return None


def check_kept(guesses: Any) -> None:
    """Print whether ``guesses`` match what the analyzer keeps."""
    verdict("Exercise 1", kept_problem(guesses), "you read JSON lines the way serde_json does")


# Exercise 2 ---------------------------------------------------------------------------

SAMPLE = [
    {"timestamp": "t1", "level": "INFO", "service": "api", "message": "GET / 200", "duration_ms": 20.0},
    {"timestamp": "t2", "level": "ERROR", "service": "db", "message": "deadlock"},
    {"timestamp": "t3", "level": "INFO", "service": "api", "message": "GET / 200", "duration_ms": 1500.0},
]


def _fresh_folders(work: Path) -> tuple[Path, Path]:
    """An input folder holding logs.json and an empty output folder, under ``work``."""
    shutil.rmtree(work, ignore_errors=True)
    logs, reports = work / "logs", work / "reports"
    logs.mkdir(parents=True)
    reports.mkdir()
    (logs / "logs.json").write_text("".join(json.dumps(entry) + "\n" for entry in SAMPLE))
    return logs, reports


def grant_problem(grant_for: Any, component: Path | str = BUILD / "log-analyzer.wasm",
                  work: Path = WORK) -> str | None:
    """What is wrong with ``grant_for(logs, reports)`` as the analyzer's grant, or None.

    The check makes two folders under ``work`` (emptied first) and runs ``component``.
    """
    from wasi_magic import Capabilities, read_guest_file, run
    logs, reports = _fresh_folders(work)
    try:
        caps = grant_for(logs, reports)
    except Exception as exc:  # the student's code: say what it raised
        return f"grant_for raised {type(exc).__name__}: {exc}"
    if not isinstance(caps, Capabilities):
        return f"grant_for returned {type(caps).__name__}: build it with Capabilities.parse(...)"
    by_host = {grant.host.resolve(): grant for grant in caps.dirs}
    extra = [str(host) for host in by_host if host not in (logs.resolve(), reports.resolve())]
    if extra:
        return f"the grant also opens {extra[0]}: the analyzer needs only the two folders"
    if logs.resolve() not in by_host:
        return "the logs folder is not granted: the analyzer has nothing to read"
    if not by_host[logs.resolve()].read_only:
        return "the logs folder is writable: the analyzer only reads it, so add ::ro"
    if reports.resolve() not in by_host:
        return "the reports folder is not granted: the report has nowhere to go"
    if by_host[reports.resolve()].read_only:
        return "the reports folder is read-only: the analyzer cannot write its report there"
    result = run(component, caps)
    written = sorted(path.name for path in reports.iterdir())
    if result.status != 0:
        last = (result.stderr.strip().splitlines() or [result.trap or "no message"])[-1]
        return (f"the analyzer exited with status {result.status}: {last} "
                f"(check the two paths after -- in args, as the analyzer sees them)")
    if sorted(path.name for path in logs.iterdir()) != ["logs.json"]:
        return "the analyzer wrote into the logs folder: point the report path at the reports folder"
    if len(written) != 1:
        return f"the reports folder holds {written}, expected one report"
    report = json.loads(read_guest_file(reports / written[0]))  # the guest wrote it: no links
    if report.get("total_entries") != len(SAMPLE):
        return f"the report counts {report.get('total_entries')} entries, expected {len(SAMPLE)}"
    return None


def check_grant(grant_for: Any) -> None:
    """Print whether ``grant_for`` gives the analyzer read-only logs and a writable report folder."""
    verdict("Exercise 2", grant_problem(grant_for),
            "logs read-only, the report in its own folder, and nothing else granted")
