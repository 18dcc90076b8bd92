#!/usr/bin/env python3
"""Core latency benchmark of wasi-magic, side by side with the plain toolchain.

One command::

    python benchmarks/bench_core.py [--reps N] [--warm-reps N] [--restart-reps N] [--json PATH]

Scenarios (all run the same hello-world cell, which reads an argument, an
environment variable and a file from a granted directory):

(a)        a NEW cell in a running kernel, cold caches: a fresh ``$WASI_MAGIC_CACHE``
           and a cell made unique by a nonce comment; ``run_cell`` of ``%%wasi``
           (componentize-py + Winch compile + run), from the call to output done.
(b)        the same cell re-run in the same kernel (in-memory caches warm).
(c)        its first run after a kernel restart: a fresh Python process, disk cache
           warm; only its ``run_cell`` is timed.
baseline   what a user does today without wasi-magic: the componentize-py CLI from
           an activated venv, a Wasmtime compile with a default ``Config()``
           (Cranelift, no cache), then instantiate and run once.

Every run's output is checked; a wrong output aborts the benchmark. Times are
reported (median, min, max), never asserted. Results go to a table on stdout
and to a JSON file (default ``benchmarks/results/core.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "core.json"
FAILURE_LOG = HERE / "results" / "build-failure.log"

BODY = """\
import os, sys
print("Hello from WASI!")
print("args:", sys.argv[1:])
print("MY_VAR =", os.environ["MY_VAR"])
print(open(sys.argv[1]).read().upper())
"""
INPUT_NAME = "input.txt"
INPUT_TEXT = "hello file\n"
GUEST_DIR = "/data"
GUEST_ARGS = (f"{GUEST_DIR}/{INPUT_NAME}",)
GUEST_ENV = (("MY_VAR", "hello"),)
EXPECTED_STDOUT = ("Hello from WASI!\nargs: ['/data/input.txt']\nMY_VAR = hello\n"
                   "HELLO FILE\n\n")
RUN_EXPORT = "wasi:cli/run@0.2.9"

#: Targets, in seconds (or a ratio for (a) / baseline). Reported, never asserted.
TARGET_WARM = 0.015
TARGET_RESTART = 0.300
TARGET_COLD_RATIO = 0.6

#: A 1-minute load average above this (before we start) means someone else is busy.
LOAD_WARNING = 0.5

#: The parts reported under (a) and under the baseline.
COLD_PARTS = ("componentize-py subprocess", "rest of build (analysis, hashing, cache write)",
              "compile (Winch) + write .cwasm", "instantiate + run")
BASELINE_PARTS = ("componentize-py CLI (venv)", "compile (Cranelift, default Config)",
                  "instantiate + run")

#: The ``steps`` each scenario must show, proving the caches were in the intended state.
STEPS_COLD = {"build": "built", "component": "compiled"}
STEPS_WARM = {"build": "cached", "component": "memory"}
STEPS_RESTART = {"build": "cached", "component": "deserialized"}


class BenchmarkError(SystemExit):
    """Something measured was broken: abort with a message instead of reporting times."""

    def __init__(self, message: str) -> None:
        super().__init__(f"bench_core: ABORTED: {message}")


def log(message: str) -> None:
    """Progress on stderr (stdout is kept for the table)."""
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the cell


@dataclass(frozen=True)
class Workload:
    """The benchmarked cell and the host directory it is granted."""

    data_dir: Path

    @classmethod
    def create(cls, scratch: Path) -> "Workload":
        """Make the granted directory with the input file inside ``scratch``."""
        data = scratch / "data"
        data.mkdir()
        (data / INPUT_NAME).write_text(INPUT_TEXT, encoding="utf-8")
        return cls(data)

    @staticmethod
    def body(nonce: str) -> str:
        """The cell's Python source, made unique by a trailing comment."""
        return f"{BODY}# nonce: {nonce}\n"

    def magic_line(self) -> str:
        """The ``%%wasi`` flags: quiet, keep the RunResult in ``R``, grant dir, env, args."""
        env = " ".join(f"--env {name}={value}" for name, value in GUEST_ENV)
        return (f"-q --result R --dir {self.data_dir}::{GUEST_DIR} {env} -- "
                + " ".join(GUEST_ARGS))

    def cell(self, nonce: str) -> str:
        """The full IPython cell."""
        return f"%%wasi {self.magic_line()}\n{self.body(nonce)}"


def new_nonce() -> str:
    """A comment value no cache has seen."""
    return uuid.uuid4().hex


def check_output(label: str, stdout: str, stderr: str) -> None:
    """Abort unless the guest printed exactly the expected text and nothing on stderr."""
    if stdout != EXPECTED_STDOUT or stderr:
        raise BenchmarkError(
            f"{label}: wrong output.\n  expected stdout: {EXPECTED_STDOUT!r}\n"
            f"  got stdout:      {stdout!r}\n  got stderr:      {stderr!r}")


def check_steps(label: str, steps: dict[str, str], expected: dict[str, str]) -> None:
    """Abort unless the run took the cache path the scenario is about. Whether the instance
    was made ahead of the run (``steps["instance"]``) is checked only if ``expected`` says."""
    if "instance" not in expected:
        steps = {key: value for key, value in steps.items() if key != "instance"}
    if steps != expected:
        raise BenchmarkError(f"{label}: expected steps {expected}, got {steps} "
                             f"(the caches were not in the intended state).")


# --------------------------------------------------------------------------- statistics


@dataclass
class Series:
    """Samples of one measured quantity, in seconds."""

    samples: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def summary(self) -> dict[str, Any]:
        """Median, min, max and the raw samples, for the JSON file."""
        return {"reps": len(self.samples), "median": self.median, "min": min(self.samples),
                "max": max(self.samples), "samples": self.samples}


class Scenario:
    """A named total with optional named parts (e.g. componentize-py, compile)."""

    def __init__(self, label: str, parts: Sequence[str] = ()) -> None:
        self.label = label
        self.total = Series()
        self.parts = {name: Series() for name in parts}

    def add(self, total: float, parts: dict[str, float] | None = None) -> None:
        self.total.add(total)
        for name, seconds in (parts or {}).items():
            self.parts[name].add(seconds)

    def summary(self) -> dict[str, Any]:
        return {"label": self.label, **self.total.summary(),
                "parts": {name: series.summary() for name, series in self.parts.items()}}


# --------------------------------------------------------------------------- IPython


@dataclass
class CellRun:
    """One timed ``run_cell``: seconds, captured streams and the ``RunResult`` (``--result R``)."""

    seconds: float
    stdout: str
    stderr: str
    result: Any


def make_shell() -> Any:
    """An InteractiveShell (history in memory) with the extension loaded."""
    from traitlets.config import Config
    from IPython.core.interactiveshell import InteractiveShell
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "wasi_magic")
    return shell


def timed_cell(shell: Any, cell: str) -> CellRun:
    """Run ``cell``, timing the ``run_cell`` call; guest output is captured, not shown."""
    out, err = io.StringIO(), io.StringIO()
    shell.user_ns.pop("R", None)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        started = time.perf_counter()
        outcome = shell.run_cell(cell)
        seconds = time.perf_counter() - started
    if not outcome.success:
        error = outcome.error_in_exec or outcome.error_before_exec
        raise BenchmarkError(f"run_cell failed: {error!r}\n{err.getvalue()}"
                             f"{save_log(getattr(error, 'log', ''))}")
    return CellRun(seconds, out.getvalue(), err.getvalue(), shell.user_ns.get("R"))


def checked_cell(shell: Any, cell: str, label: str, steps: dict[str, str]) -> CellRun:
    """:func:`timed_cell`, then abort unless the output and cache steps are right."""
    run = timed_cell(shell, cell)
    check_output(label, run.stdout, run.stderr)
    check_steps(label, dict(run.result.steps), steps)
    return run


def save_log(text: str) -> str:
    """Keep the full componentize-py log of a failed build; returns a note saying where."""
    if not text:
        return ""
    FAILURE_LOG.parent.mkdir(parents=True, exist_ok=True)
    FAILURE_LOG.write_text(text, encoding="utf-8")
    return f"\nFull componentize-py log: {FAILURE_LOG}"


@contextlib.contextmanager
def cache_at(root: Path) -> Iterator[None]:
    """Point ``$WASI_MAGIC_CACHE`` at ``root`` and forget every in-memory cache, both ways."""
    from wasi_magic.builder import forget_memo
    from wasi_magic.runtime import default_runtime
    old = os.environ.get("WASI_MAGIC_CACHE")
    os.environ["WASI_MAGIC_CACHE"] = str(root)
    forget_memo()
    default_runtime().forget()
    try:
        yield
    finally:
        forget_memo()
        default_runtime().forget()
        if old is None:
            os.environ.pop("WASI_MAGIC_CACHE", None)
        else:
            os.environ["WASI_MAGIC_CACHE"] = old


# --------------------------------------------------------------------------- scenarios


def cold_new_cell(shell: Any, workload: Workload, scratch: Path) -> tuple[float, dict[str, float]]:
    """(a) One new cell with empty caches: build + compile + run through the magic."""
    from wasi_magic.builder import estimate_seconds
    from wasi_magic.cache import Cache
    cache = Path(tempfile.mkdtemp(prefix="cache-cold-", dir=scratch))
    with cache_at(cache):
        run = checked_cell(shell, workload.cell(new_nonce()), "(a) new cell", STEPS_COLD)
    # The fresh cache recorded exactly one build: its componentize-py subprocess time.
    componentize = estimate_seconds(Cache(cache)) or 0.0
    shutil.rmtree(cache, ignore_errors=True)
    result = run.result
    return run.seconds, {COLD_PARTS[0]: componentize,
                         COLD_PARTS[1]: result.build_seconds - componentize,
                         COLD_PARTS[2]: result.compile_seconds,
                         COLD_PARTS[3]: result.instantiate_seconds + result.run_seconds}


def venv_environment() -> dict[str, str]:
    """The environment of a shell where this Python's venv has been activated."""
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    env["VIRTUAL_ENV"] = sys.prefix
    env["PATH"] = os.pathsep.join([str(Path(sys.prefix) / "bin"), env.get("PATH", "")])
    return env


def componentize_cli(app: Path, env: dict[str, str]) -> Path:
    """Run the componentize-py CLI as a user would, in ``app``; returns the component."""
    from wasi_magic import guest
    from wasi_magic.builder import CELL_WORLD, WIT_DIR
    exe = shutil.which("componentize-py", path=env["PATH"])
    if exe is None:
        raise BenchmarkError(f"componentize-py is not on PATH in {sys.prefix}/bin.")
    out = app / "out.wasm"
    command = [exe, "-d", str(WIT_DIR), "-w", CELL_WORLD, "componentize",
               "-p", str(app), guest.APP_MODULE, "-o", str(out)]
    proc = subprocess.run(command, cwd=app, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        output = proc.stdout + proc.stderr
        tail = "\n".join(output.strip().splitlines()[-12:])
        raise BenchmarkError(f"baseline componentize-py failed ({proc.returncode}):\n"
                             f"{tail}{save_log(output)}")
    return out


def run_component(engine: Any, component: Any, data_dir: Path, stdout: Path,
                  stderr: Path) -> None:
    """Instantiate a ``wasi:cli`` command and call ``run`` once, output to files."""
    import wasmtime
    from wasmtime import component as wcomponent
    linker = wcomponent.Linker(engine)
    linker.add_wasip2()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["out.wasm", *GUEST_ARGS]
    wasi.env = [list(pair) for pair in GUEST_ENV]
    wasi.preopen_dir(str(data_dir), GUEST_DIR)
    wasi.stdout_file = str(stdout)
    wasi.stderr_file = str(stderr)
    store.set_wasi(wasi)
    instance = linker.instantiate(store, component)
    run_index = instance.get_export_index(store, RUN_EXPORT)
    func = instance.get_func(store, instance.get_export_index(store, "run", run_index))
    func(store)
    func.post_return(store)
    del instance, func, store


def baseline(workload: Workload, scratch: Path) -> tuple[float, dict[str, float]]:
    """The plain toolchain: componentize-py CLI, Cranelift compile, instantiate + run."""
    import wasmtime
    from wasmtime import component as wcomponent
    from wasi_magic import guest
    app = Path(tempfile.mkdtemp(prefix="baseline-", dir=scratch))
    for name, text in guest.generate(workload.body(new_nonce())).files.items():
        (app / name).write_text(text, encoding="utf-8")
    env = venv_environment()
    stdout, stderr = app / "stdout.txt", app / "stderr.txt"

    started = time.perf_counter()
    wasm = componentize_cli(app, env)
    built = time.perf_counter()
    engine = wasmtime.Engine(wasmtime.Config())
    component = wcomponent.Component(engine, wasm.read_bytes())
    compiled = time.perf_counter()
    run_component(engine, component, workload.data_dir, stdout, stderr)
    finished = time.perf_counter()

    check_output("baseline", stdout.read_text(encoding="utf-8"), stderr.read_text(encoding="utf-8"))
    shutil.rmtree(app, ignore_errors=True)
    return finished - started, {BASELINE_PARTS[0]: built - started,
                                BASELINE_PARTS[1]: compiled - built,
                                BASELINE_PARTS[2]: finished - compiled}


def restart_first_run(cell_file: Path, cache: Path,
                      expected: dict[str, str] = STEPS_RESTART) -> float:
    """(c) A fresh process runs the cell once with the warm disk cache; returns its seconds."""
    env = dict(os.environ, WASI_MAGIC_CACHE=str(cache))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child-cell",
                           str(cell_file)], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600)
    if proc.returncode != 0:
        raise BenchmarkError(f"(c) child process failed ({proc.returncode}):\n{proc.stderr}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    check_output("(c) after restart", report["stdout"], report["stderr"])
    check_steps("(c) after restart", report["steps"], expected)
    return float(report["seconds"])


def child_main(cell_file: Path) -> None:
    """The 'restarted kernel': load the extension, time one run_cell, print JSON."""
    shell = make_shell()
    run = timed_cell(shell, cell_file.read_text(encoding="utf-8"))
    print(json.dumps({"seconds": run.seconds, "stdout": run.stdout, "stderr": run.stderr,
                      "steps": dict(run.result.steps)}))


def repeat(scenario: Scenario, reps: int, measure: Callable[[], Any]) -> None:
    """Call ``measure`` ``reps`` times, adding each (total[, parts]) to ``scenario``."""
    for _ in range(reps):
        value = measure()
        total, parts = value if isinstance(value, tuple) else (value, None)
        scenario.add(total, parts)
        if reps <= 10:
            log(f"  {scenario.label}: sample {len(scenario.total.samples)}: "
                f"{format_seconds(total)}")


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's best guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_bytes() -> int | None:
    """Total RAM from /proc/meminfo."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages: other work on the machine skews every number."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "ram_bytes": ram_bytes(),
        "platform": platform.platform(), "python": platform.python_version(),
        "python_executable": sys.executable, "venv": sys.prefix,
        "wasmtime": version_of("wasmtime"), "componentize_py": version_of("componentize-py"),
        "ipython": version_of("ipython"), "wasi_magic": version_of("wasi-magic"),
        "load_average_start": load_average(),
    }


# --------------------------------------------------------------------------- report


def format_seconds(seconds: float) -> str:
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def table_rows(scenario: Scenario, target: str = "", met: bool | None = None) -> list[list[str]]:
    """The scenario's total row and an indented row per part."""
    series = scenario.total
    verdict = "" if met is None else ("yes" if met else "NO")
    rows = [[scenario.label, str(len(series.samples)), format_seconds(series.median),
             format_seconds(min(series.samples)), format_seconds(max(series.samples)),
             target, verdict]]
    for name, part in scenario.parts.items():
        rows.append([f"    {name}", "", format_seconds(part.median), format_seconds(min(part.samples)),
                     format_seconds(max(part.samples)), "", ""])
    return rows


def render_table(rows: list[list[str]]) -> str:
    header = ["scenario", "reps", "median", "min", "max", "target", "met"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def report(info: dict[str, Any], cold: Scenario, base: Scenario, warm: Scenario,
           restart: Scenario, overhead: Scenario) -> tuple[str, dict[str, Any]]:
    """The printed text and the JSON document."""
    ratio = cold.total.median / base.total.median
    verdicts = {"warm_rerun": warm.total.median <= TARGET_WARM,
                "restart_first_run": restart.total.median <= TARGET_RESTART,
                "cold_vs_baseline": ratio <= TARGET_COLD_RATIO}
    rows = (table_rows(base)
            + table_rows(cold, f"<= {TARGET_COLD_RATIO} x baseline", verdicts["cold_vs_baseline"])
            + table_rows(warm, f"<= {TARGET_WARM * 1000:.0f} ms", verdicts["warm_rerun"])
            + table_rows(restart, f"<= {TARGET_RESTART * 1000:.0f} ms",
                         verdicts["restart_first_run"])
            + table_rows(overhead))
    ram = f"{info['ram_bytes'] / 2**30:.1f} GiB" if info["ram_bytes"] else "unknown"
    info["load_average_end"] = load_average()
    load = f"Load average (1/5/15 min) at start {info['load_average_start']}, " \
           f"at end {info['load_average_end']}"
    if (info["load_average_start"] or [0])[0] > LOAD_WARNING:
        load += "  (WARNING: the machine was busy before the benchmark began; expect noise)"
    text = "\n".join([
        f"Machine: {info['cpu']}, {info['cores']} cores, {ram} RAM, {info['platform']}",
        f"Python {info['python']} · wasmtime {info['wasmtime']} · componentize-py "
        f"{info['componentize_py']} · IPython {info['ipython']} · wasi-magic {info['wasi_magic']}",
        load,
        "",
        render_table(rows),
        "",
        f"(a) / baseline = {ratio:.2f} (medians; target <= {TARGET_COLD_RATIO}: "
        f"{'met' if verdicts['cold_vs_baseline'] else 'NOT met'})",
    ])
    document = {
        "machine": info,
        "cell": {"magic_line": "-q --result R --dir <tmp>::/data --env MY_VAR=hello -- "
                               "/data/input.txt", "body": BODY},
        "scenarios": {"cold_new_cell": cold.summary(), "baseline": base.summary(),
                      "warm_rerun": warm.summary(), "restart_first_run": restart.summary(),
                      "ipython_overhead": overhead.summary()},
        "ratio_cold_over_baseline": ratio,
        "targets": {"warm_rerun_seconds": TARGET_WARM, "restart_first_run_seconds": TARGET_RESTART,
                    "cold_over_baseline": TARGET_COLD_RATIO},
        "targets_met": verdicts,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return text, document


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3,
                        help="reps of (a) and of the baseline, interleaved (default 3)")
    parser.add_argument("--warm-reps", type=int, default=50,
                        help="reps of (b), re-runs in the same kernel (default 50)")
    parser.add_argument("--restart-reps", type=int, default=7,
                        help="reps of (c), one fresh process each (default 7)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help=f"where to write the results (default {DEFAULT_JSON})")
    parser.add_argument("--child-cell", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.reps, args.warm_reps, args.restart_reps) < 1:
        parser.error("every --*reps must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child_cell is not None:
        child_main(args.child_cell)
        return
    info = machine()
    with tempfile.TemporaryDirectory(prefix="wasi-magic-bench-") as tmp:
        scratch = Path(tmp)
        workload = Workload.create(scratch)
        shell = make_shell()
        from wasi_magic.runtime import default_runtime
        default_runtime()  # the engine is created once per kernel, not per cell

        for _ in range(5):  # warm up IPython's own first-cell costs
            timed_cell(shell, "pass")
        overhead = Scenario("IPython run_cell('pass') (context)")
        repeat(overhead, args.warm_reps, lambda: timed_cell(shell, "pass").seconds)

        cold = Scenario("(a) new cell, cold caches (%%wasi)", COLD_PARTS)
        base = Scenario("baseline: CLI + Cranelift + run", BASELINE_PARTS)
        log(f"(a) and baseline, interleaved, {args.reps} reps each (~10-20 s per rep)...")
        pair = [(base, lambda: baseline(workload, scratch)),
                (cold, lambda: cold_new_cell(shell, workload, scratch))]
        for _ in range(args.reps):
            for scenario, measure in pair:
                repeat(scenario, 1, measure)
            pair.reverse()  # alternate which goes first, so order effects cancel out

        warm_cache = scratch / "cache-warm"
        cell = workload.cell("warm")
        with cache_at(warm_cache):
            log("warm build for (b) and (c)...")
            checked_cell(shell, cell, "warm build", STEPS_COLD)
            warm = Scenario("(b) re-run, same kernel")
            log(f"(b) {args.warm_reps} reps...")
            repeat(warm, args.warm_reps,
                   lambda: checked_cell(shell, cell, "(b) re-run", STEPS_WARM).seconds)

        cell_file = scratch / "cell.ipy"
        cell_file.write_text(cell, encoding="utf-8")
        restart = Scenario("(c) first run after restart")
        log(f"(c) {args.restart_reps} fresh processes...")
        repeat(restart, args.restart_reps, lambda: restart_first_run(cell_file, warm_cache))

    text, document = report(info, cold, base, warm, restart, overhead)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=1), encoding="utf-8")
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
