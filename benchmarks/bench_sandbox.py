"""The supervised sandbox against v1's in-process runs, side by side (issue 12).

    python benchmarks/bench_sandbox.py [--reps 30] [--json PATH]

Rows (medians over ``--reps`` runs, min and max beside them; the two paths take
turns, so drift on the machine touches both alike):

- quick-mode edited cell, end to end: in-process ``Runtime.run`` vs the worker;
  and ``run_cell("%%wasi --quick …")`` in an IPython shell (worker);
- unchanged build-mode cell re-run: in-process vs worker, and through ``run_cell``;
- first run after a kernel restart: a fresh process runs ``%load_ext`` then the
  cell; only ``run_cell`` is timed (right after ``%load_ext``, and once the
  worker has had a moment to start); and a quick cell, once the worker has had a
  moment to start (and to load the quick-mode runner, which ``%load_ext`` names);
- a guest blocked in ``select`` under ``--timeout 1``: seconds past the deadline
  until the result; Interrupt (SIGINT) of a blocked guest and of a spinning one
  until the caller is free;
- the cell after a worker was killed (the spare takes over);
- kernel RSS: steady after 200 cells, and the peak while a new cell builds;
- edge handler: median and p99 per request over 200 requests, in-process vs worker.

Times are reported, never asserted. Results also go to ``benchmarks/results/sandbox.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wasi_magic import Capabilities, build  # noqa: E402
from wasi_magic.limits import Limits  # noqa: E402
from wasi_magic.quick import quick_sandbox, with_source  # noqa: E402
from wasi_magic.runtime import Runtime  # noqa: E402
from wasi_magic.sandbox.supervisor import Sandbox  # noqa: E402

HELLO = "import sys\nprint('hello', sys.argv[1:])\n"


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def stats(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "n": len(samples)}


def alternate(reps: int, **paths: Callable[[], Any]) -> dict[str, dict[str, float]]:
    """Time each path ``reps`` times, taking turns (the first path switches each rep)."""
    samples: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for rep in range(reps):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            samples[name].append(timed(paths[name]))
    return {name: stats(values) for name, values in samples.items()}


def check(result: Any, expected: str) -> None:
    if result.stdout != expected:
        raise SystemExit(f"wrong output: {result.stdout!r} (expected {expected!r}), "
                         f"trap={result.trap!r}")


def run_cells(reps: int, quick_art: Any, hello_art: Any, runtime: Runtime,
              sandbox: Sandbox) -> dict[str, Any]:
    """Quick-mode edited cells and unchanged build-mode cells, in-process vs worker."""
    nonces = iter(range(10 ** 9))
    limits = Limits()

    def quick(runner: Callable[..., Any]) -> Callable[[], None]:
        def once() -> None:
            n = next(nonces)
            caps = with_source(Capabilities(), f"print({n})  # edited")
            check(runner(quick_art, caps, limits=limits), f"{n}\n")
        return once

    def rerun(runner: Callable[..., Any]) -> Callable[[], None]:
        return lambda: check(runner(hello_art, Capabilities(args=("x",)), limits=limits),
                             "hello ['x']\n")

    for warm in (runtime.run, sandbox.run):  # compile/deserialize outside the timing
        warm(quick_art, with_source(Capabilities(), "pass"), limits=limits)
        warm(hello_art, Capabilities(), limits=limits)
    return {"quick edited cell": alternate(reps, in_process=quick(runtime.run),
                                           worker=quick(sandbox.run)),
            "unchanged build cell": alternate(reps, in_process=rerun(runtime.run),
                                              worker=rerun(sandbox.run))}


def through_ipython(reps: int) -> dict[str, Any]:
    """The same two rows through ``run_cell`` in an IPython shell (the product path)."""
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "wasi_magic")
    shell.run_cell("%%wasi -q --quick --out O\npass\n")
    shell.run_cell(f"%%wasi -q --out O -- x\n{HELLO}")
    nonces = iter(range(10 ** 9))

    def quick() -> None:
        n = next(nonces)
        shell.run_cell(f"%%wasi -q --quick --out O\nprint({n})\n")
        assert shell.user_ns["O"] == f"{n}\n", shell.user_ns["O"]

    def rerun() -> None:
        shell.run_cell(f"%%wasi -q --out O -- x\n{HELLO}")
        assert shell.user_ns["O"] == "hello ['x']\n", shell.user_ns["O"]

    return {"quick edited cell (run_cell)": stats([timed(quick) for _ in range(reps)]),
            "unchanged build cell (run_cell)": stats([timed(rerun) for _ in range(reps)])}


RESTART_CHILD = """
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "wasi_magic")
time.sleep({pause})
started = time.perf_counter()
shell.run_cell("%%wasi -q {mode} --out O -- x\\n" + {cell!r})
seconds = time.perf_counter() - started
assert shell.user_ns["O"] == "hello ['x']\\n", shell.user_ns.get("O")
print(json.dumps({{"seconds": seconds}}))
"""


def restart(reps: int, pause: float, mode: str = "") -> dict[str, float]:
    """First run after a restart: a new process, a warm disk cache; only run_cell timed
    (``mode``: ``--quick`` for a quick cell; else a build-mode cell, built already)."""
    samples = []
    for _ in range(reps):
        child = RESTART_CHILD.format(cell=HELLO, pause=pause, mode=mode)
        done = subprocess.run([sys.executable, "-c", child],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
        if done.returncode:
            raise SystemExit(done.stderr[-2000:])
        samples.append(json.loads(done.stdout.splitlines()[-1])["seconds"])
    return stats(samples)


def blocked(reps: int, quick_art: Any, sandbox: Sandbox) -> dict[str, Any]:
    """Deadlines and Interrupts of guests blocked in a host call, and the cell after a kill."""
    select = "import select\nprint('running', flush=True)\nselect.select([], [], [], 1e9)\n"
    spin = "print('running', flush=True)\nwhile True:\n    pass\n"
    past_deadline, interrupt_blocked, interrupt_spin, after_kill = [], [], [], []
    for _ in range(reps):
        started = time.perf_counter()
        result = sandbox.run(quick_art, with_source(Capabilities(), select),
                             limits=Limits(timeout=1))
        assert "blocked in a host call" in (result.trap or ""), result.trap
        past_deadline.append(time.perf_counter() - started - 1.0)
        after_kill.append(timed(lambda: check(sandbox.run(
            quick_art, with_source(Capabilities(), "print(1)"), limits=Limits()), "1\n")))
        for source, samples in ((select, interrupt_blocked), (spin, interrupt_spin)):
            samples.append(interrupt(sandbox, quick_art, source))
    return {"deadline -> result, blocked in select (s past the 1 s limit)": stats(past_deadline),
            "Interrupt -> free caller, blocked in select": stats(interrupt_blocked),
            "Interrupt -> free caller, spinning in wasm": stats(interrupt_spin),
            "next cell after the worker was killed": stats(after_kill)}


def interrupt(sandbox: Sandbox, quick_art: Any, source: str) -> float:
    """Seconds from SIGINT (sent once the guest printed) until the caller gets control."""
    pressed: list[float] = []

    def press() -> None:
        pressed.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    def on_output(text: str) -> None:
        # 0.2 s after the guest printed, so that it is inside its blocking call (an
        # Interrupt that arrives before would stop wasm code, not a blocked guest).
        if "running" in text and not pressed:
            threading.Timer(0.2, press).start()

    try:
        sandbox.run(quick_art, with_source(Capabilities(), source), limits=Limits(timeout=None),
                    stdout=on_output)
    except KeyboardInterrupt:
        return time.perf_counter() - pressed[0]
    raise SystemExit("the guest was not interrupted")


KERNEL_RSS_CHILD = """
import json, os, sys, threading, time, psutil
from IPython.core.interactiveshell import InteractiveShell
me = psutil.Process()
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "wasi_magic")
for i in range(200):
    shell.run_cell(f"%%wasi -q --quick --out O\\nprint({{i}})\\n")
    shell.run_cell("%%wasi -q --out O -- x\\n" + {cell!r})
steady = me.memory_info().rss
peak = [steady]
done = threading.Event()
def watch():
    while not done.is_set():
        peak.append(me.memory_info().rss)
        time.sleep(0.02)
threading.Thread(target=watch, daemon=True).start()
shell.run_cell("%%wasi -q --out O\\nprint('new {nonce}')\\n")
done.set()
assert shell.user_ns["O"] == "new {nonce}\\n"
print(json.dumps({{"steady": steady, "build_peak": max(peak)}}))
"""


def kernel_rss() -> dict[str, float]:
    """A 'kernel' (an IPython shell in its own process): RSS after 400 cells, and the peak
    while a new cell is built and compiled."""
    code = KERNEL_RSS_CHILD.format(cell=HELLO, nonce=uuid.uuid4().hex)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=900, cwd=ROOT)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return {key: value / 2 ** 20 for key, value in json.loads(done.stdout.splitlines()[-1]).items()}


def edge(requests: int) -> dict[str, Any]:
    """The edge handler: per-request time in the sandbox, in-process vs through the worker."""
    from wasi_magic.edge import EdgeServer
    handler = ROOT / "guest_src" / "handler"
    artifact = build(handler / "handler.py", wit=handler / "handler.wit", world="handler")
    rows = {}
    for label, runtime in (("in_process", Runtime()), ("worker", None)):
        with EdgeServer(artifact, runtime=runtime) as server:
            for _ in range(requests + 10):
                with urllib.request.urlopen(server.url + "/api/health", timeout=30) as response:
                    response.read()
            latencies = server.latencies[10:]
        rows[label] = {"median_ms": statistics.median(latencies) * 1000,
                       "p99_ms": sorted(latencies)[int(0.99 * (len(latencies) - 1))] * 1000,
                       "n": len(latencies)}
    return rows


def machine() -> dict[str, Any]:
    import importlib.metadata as md
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "wasmtime": md.version("wasmtime"),
            "componentize-py": md.version("componentize-py"), "load": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "sandbox.json")
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": machine()}
    quick_art, hello_art = quick_sandbox(), build(HELLO)
    runtime, sandbox = Runtime(), Sandbox().start()
    report.update(run_cells(args.reps, quick_art, hello_art, runtime, sandbox))
    report.update(through_ipython(args.reps))
    report["first run after a restart (run_cell right after %load_ext)"] = restart(7, 0.0)
    report["first run after a restart (worker started, 1 s after %load_ext)"] = restart(7, 1.0)
    # %load_ext has the worker load the quick-mode runner: a quick cell then finds it.
    report["first quick cell after a restart (1 s after %load_ext)"] = restart(7, 1.0, "--quick")
    report.update(blocked(max(3, args.reps // 6), quick_art, sandbox))
    report["kernel RSS (MiB)"] = kernel_rss()
    report["edge handler per request"] = edge(200)
    sandbox.close()
    print(json.dumps(report, indent=1))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
