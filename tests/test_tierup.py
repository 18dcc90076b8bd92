"""Tier-up: a component's first run uses Winch; a low-priority background process
recompiles it with Cranelift into the cache; the next run (and every new worker) uses that.

Real builds (the quick-mode sandbox), real Wasmtime compiles in real processes. Each
test has a cache of its own for compiled components, so that a Cranelift entry found
there was made by the test.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wasi_magic.cache import Cache
from wasi_magic.capabilities import Capabilities
from wasi_magic.limits import Limits
from wasi_magic.quick import with_source

#: How long a background Cranelift compile may take on a loaded 2-core machine (a
#: bound for waiting, not an assertion about speed: ~7 s when idle).
PATIENCE = 600


def _caps(source: str) -> Capabilities:
    return with_source(Capabilities(), source)


def _cranelift_entries(root: Path) -> list[Path]:
    """The Cranelift entries of the cache at ``root`` (not temporary files)."""
    return sorted(p for p in root.glob("compiled/*-cranelift-*/*.cwasm")
                  if not p.name.startswith("."))


def _cache_with_build(root: Path, artifact) -> Path:
    """A fresh cache holding only ``artifact``'s build entry (sealed by this user's key)."""
    (root / "builds").mkdir(parents=True, exist_ok=True)
    for path in (artifact.path, artifact.path.with_suffix(".json")):
        (root / "builds" / path.name).write_bytes(path.read_bytes())
    return root


def test_a_run_then_the_background_compile_then_cranelift(quick_ready, tmp_path: Path) -> None:
    from wasi_magic.runtime import Runtime
    cache = Cache(tmp_path / "cache")
    runtime = Runtime(cache=cache, tier_up=True)
    first = runtime.run(quick_ready, _caps("print(6 * 7)"))
    assert (first.stdout, first.steps, first.tier) == ("42\n", {"component": "compiled"}, "winch")
    # While Cranelift compiles (seconds), runs do not wait for it: they use the Winch code.
    assert runtime.tier_up.pending(quick_ready.sha256, False)
    meanwhile = runtime.run(quick_ready, _caps("print('meanwhile')"))
    assert (meanwhile.stdout, meanwhile.steps, meanwhile.tier) == (
        "meanwhile\n", {"component": "memory"}, "winch")
    [compiler] = _tierup_processes(os.getpid())
    assert compiler.nice() == 19  # the lowest CPU priority: the kernel and guests go first
    assert runtime.wait_tier_up(PATIENCE)
    # (In the kernel's process, its code keeps epoch checks: only the sandbox worker can
    # end itself to stop a guest.)
    assert runtime.tier_up.done == [(quick_ready.sha256, False, True)]
    [entry] = _cranelift_entries(cache.root)
    assert entry.stem == quick_ready.sha256
    assert cache.get(entry.parent.relative_to(cache.root).as_posix(), entry.stem, ".cwasm")
    # The compile recorded what it cost, for a Cranelift runtime that loads it instead.
    recorded = Runtime(strategy="cranelift", cache=cache, tier_up=False).compile_seconds(quick_ready)
    assert recorded is not None and recorded > 0

    # The same runtime swaps it in, then keeps it in memory.
    second = runtime.run(quick_ready, _caps("print(6 * 8)"))
    assert (second.stdout, second.steps, second.tier) == ("48\n", {"component": "deserialized"},
                                                         "cranelift")
    third = runtime.run(quick_ready, _caps("print(6 * 9)"))
    assert (third.steps, third.tier) == ({"component": "memory"}, "cranelift")
    assert runtime.wait_tier_up(0)  # nothing more was queued

    # A new runtime (a new kernel) loads the Cranelift entry; it compiles nothing.
    fresh = Runtime(cache=cache, tier_up=True)
    again = fresh.run(quick_ready, _caps("print('fresh')"))
    assert (again.stdout, again.steps, again.tier) == ("fresh\n", {"component": "deserialized"},
                                                      "cranelift")
    assert fresh.tier_up.done == [] and fresh.wait_tier_up(0)

    # Limits stop a guest under Cranelift code just as under Winch.
    spin = fresh.run(quick_ready, _caps("while True:\n    pass\n"), limits=Limits(timeout=0.5))
    assert spin.tier == "cranelift" and "--timeout 0.5 s" in (spin.trap or "")


def _tierup_processes(parent: int, wait: float = 30) -> list:
    """The tier-up compile processes started by ``parent`` (waiting a moment for one)."""
    import psutil
    deadline = time.monotonic() + wait
    while True:
        found = [child for child in psutil.Process(parent).children()
                 if "wasi_magic.tierup" in " ".join(child.cmdline())]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_worker_killed_mid_compile_leaves_no_entry(quick_ready, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The compile process ends with its worker, and leaves nothing a run could load."""
    import psutil
    from wasi_magic.sandbox.supervisor import Sandbox
    root = _cache_with_build(tmp_path / "cache", quick_ready)
    monkeypatch.setenv("WASI_MAGIC_CACHE", str(root))
    monkeypatch.setenv("WASI_MAGIC_TIER_UP", "1")
    sandbox = Sandbox(spare=False)
    try:
        result = sandbox.run(quick_ready, _caps("print('then killed')"))
        assert (result.stdout, result.tier) == ("then killed\n", "winch")
        [compiler] = _tierup_processes(sandbox.pid)
    finally:
        sandbox.close()  # kills the worker (SIGKILL) mid-compile
    gone, alive = psutil.wait_procs([compiler], timeout=60)
    assert gone and not alive
    assert _cranelift_entries(root) == []
    assert not list(root.glob("compiled/*-cranelift-*/*.json"))


def test_tier_up_off(quick_ready, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wasi_magic.runtime import Runtime
    monkeypatch.setenv("WASI_MAGIC_TIER_UP", "0")
    cache = Cache(tmp_path / "cache")
    runtime = Runtime(cache=cache)
    assert runtime.tier_up is None
    for expected in ("compiled", "memory"):
        result = runtime.run(quick_ready, _caps("print('off')"))
        assert (result.steps, result.tier) == ({"component": expected}, "winch")
    assert _cranelift_entries(cache.root) == []
    monkeypatch.setenv("WASI_MAGIC_TIER_UP", "maybe")
    with pytest.warns(RuntimeWarning, match="WASI_MAGIC_TIER_UP='maybe'"):
        assert Runtime(cache=cache).tier_up is not None


def test_a_new_worker_runs_what_the_last_one_tiered_up(quick_ready, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from wasi_magic.sandbox.supervisor import Sandbox
    from wasi_magic.session import prepare_cell, run_prepared
    root = _cache_with_build(tmp_path / "cache", quick_ready)
    monkeypatch.setenv("WASI_MAGIC_CACHE", str(root))
    monkeypatch.setenv("WASI_MAGIC_TIER_UP", "1")  # the worker inherits it
    sandbox = Sandbox(spare=False)
    try:
        prepared = prepare_cell("print('first')", quick=True, sandbox=sandbox)
        assert (prepared.how, prepared.strategy) == ("compiled", "winch")
        first = run_prepared(prepared, sandbox=sandbox)
        assert first.stdout == "first\n" and first.tier == "winch"
        deadline = time.monotonic() + PATIENCE
        while not _cranelift_entries(root) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert [p.stem for p in _cranelift_entries(root)] == [quick_ready.sha256]
    finally:
        sandbox.close()
    fresh = Sandbox(spare=False)
    try:
        prepared = prepare_cell("print('second')", quick=True, sandbox=fresh)
        assert (prepared.how, prepared.strategy) == ("deserialized", "cranelift")
        second = run_prepared(prepared, sandbox=fresh)
        assert second.stdout == "second\n" and second.tier == "cranelift"
    finally:
        fresh.close()


def _tierup_command(root: Path, path: Path, digest: str) -> list[str]:
    return [sys.executable, "-m", "wasi_magic.tierup", "--cache", str(root), str(path), digest]


def test_a_compile_killed_midway_or_of_a_changed_file_leaves_no_entry(quick_ready,
                                                                      tmp_path: Path) -> None:
    root = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen(_tierup_command(root, quick_ready.path, quick_ready.sha256), env=env)
    time.sleep(2)  # somewhere in the compile (not an assertion about its speed)
    child.kill()
    child.wait()
    assert _cranelift_entries(root) == []
    assert not list(root.rglob("*.json"))

    # A file whose bytes are not the sha256 it is filed under is never cached under it.
    other = tmp_path / "other.wasm"
    other.write_bytes(quick_ready.path.read_bytes()[:-1] + b"\0")
    done = subprocess.run(_tierup_command(root, other, quick_ready.sha256), env=env)
    assert done.returncode == 3
    assert _cranelift_entries(root) == []


def test_sigterm_mid_compile_ends_the_compile_at_once(quick_ready, tmp_path: Path) -> None:
    """SIGTERM (sent when its worker ends) stops a compile where it is: the process is
    ended by the signal itself, not by a handler that could run only when Wasmtime's
    compile returns (seconds later, a core's worth of CPU after its kernel is gone)."""
    import psutil
    root = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen(_tierup_command(root, quick_ready.path, quick_ready.sha256), env=env)
    process = psutil.Process(child.pid)
    # Compiling: past the imports (~0.2 s of CPU), far from the end of a Cranelift compile.
    deadline = time.monotonic() + PATIENCE
    while sum(process.cpu_times()[:2]) < 1.0 and child.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    assert child.wait() == -signal.SIGTERM
    assert _cranelift_entries(root) == []
    assert not [p for p in root.rglob("*") if p.is_file() and p.suffix != ".lock"]


def test_warm_compiles_what_the_worker_runs(quick_ready, session_ready, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick sandbox as tier-up code (Cranelift, without epoch checks and, for runs
    beside a session, with them), the session sandbox as sessions keep it (Cranelift with
    epoch checks): a worker then compiles none of them."""
    from wasi_magic.sandbox.supervisor import Sandbox
    from wasi_magic.session import prepare_cell
    from wasi_magic.sessions import Session
    from wasi_magic.warm import warm
    root = _cache_with_build(tmp_path / "cache", quick_ready)
    _cache_with_build(root, session_ready)
    monkeypatch.setenv("WASI_MAGIC_CACHE", str(root))
    monkeypatch.setenv("WASI_MAGIC_TIER_UP", "1")
    lines: list[str] = []
    warm([], report=lines.append)
    assert lines == ["quick-mode sandbox: cached", "session sandbox: cached"]
    assert sorted((p.parent.name.split("-")[3], p.stem) for p in _cranelift_entries(root)) == \
        sorted([("epoch", quick_ready.sha256), ("noepoch", quick_ready.sha256),
                ("epoch", session_ready.sha256)])
    assert not list(root.glob("compiled/*-winch-*/*.cwasm"))
    sandbox = Sandbox(spare=False)
    try:
        prepared = prepare_cell("print('warm')", quick=True, sandbox=sandbox)
        assert (prepared.how, prepared.strategy) == ("deserialized", "cranelift")
        with Session("warm", sandbox=sandbox) as session:
            assert session.start()["how"] == "deserialized"
            beside = sandbox.prepare(quick_ready)  # (the form with epoch checks)
            assert (beside["how"], beside["strategy"]) == ("deserialized", "cranelift")
    finally:
        sandbox.close()


# --- tier-up code without epoch checks: stopped by ending the worker --------------------

RUNAWAY = ("import sys\nprint('before', flush=True)\nprint('note', file=sys.stderr, flush=True)\n"
           "while True:\n    pass\n")


@pytest.fixture(scope="module")
def tiered_cache(quick_ready, session_ready, tmp_path_factory) -> Path:
    """A cache holding the quick sandbox and its tier-up code (Cranelift, no epoch checks),
    as ``warm`` leaves it: a worker runs quick cells on that code from the first cell.
    (And the session sandbox's build.)"""
    from wasi_magic.runtime import Runtime
    root = _cache_with_build(tmp_path_factory.mktemp("tiered") / "cache", quick_ready)
    _cache_with_build(root, session_ready)
    assert Runtime(cache=Cache(root), tier_up=False).precompile(quick_ready) == "compiled"
    return root


@pytest.fixture()
def tiered(tiered_cache: Path, monkeypatch: pytest.MonkeyPatch):
    """A sandbox (with its spare) on ``tiered_cache``, tier-up on."""
    from wasi_magic.sandbox.supervisor import Sandbox
    monkeypatch.setenv("WASI_MAGIC_CACHE", str(tiered_cache))
    monkeypatch.setenv("WASI_MAGIC_TIER_UP", "1")
    sandbox = Sandbox().start()
    try:
        yield sandbox
    finally:
        sandbox.close()


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (waiting a moment for it)."""
    import psutil
    try:
        psutil.Process(pid).wait(timeout=30)
    except psutil.NoSuchProcess:
        pass
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def _still_runs(sandbox, quick_ready, text: str = "next") -> None:
    after = sandbox.run(quick_ready, _caps(f"print({text!r})"))
    assert (after.stdout, after.status, after.tier) == (f"{text}\n", 0, "cranelift")


def test_a_time_limit_ends_the_worker_and_keeps_the_output(tiered, quick_ready) -> None:
    sandbox = tiered
    pid = sandbox.run(quick_ready, _caps("print('hello')")).tier and sandbox.pid
    result = sandbox.run(quick_ready, _caps(RUNAWAY), limits=Limits(timeout=1))
    assert result.tier == "cranelift"
    assert re.fullmatch(r"stopped by the time limit: ran 1\.\d s of --timeout 1 s", result.trap)
    assert (result.status, result.stdout, result.stderr) == (1, "before\n", "note\n")
    assert result.steps["sandbox"] == "restarted" and sandbox.restarts == 1
    assert _gone(pid) and sandbox.pid != pid
    _still_runs(sandbox, quick_ready)


def test_an_interrupt_ends_the_worker_at_once(tiered, quick_ready) -> None:
    import signal
    import threading
    sandbox = tiered
    shown: list[str] = []
    started = threading.Event()

    def stdout(text: str) -> None:
        shown.append(text)
        started.set()

    def press() -> None:  # the notebook's Interrupt: SIGINT to the kernel, mid-run
        if started.wait(60):
            os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press)
    presser.start()
    sandbox.run(quick_ready, _caps("print('warm-up')"))  # (its own "started" frame)
    pid = sandbox.pid
    shown.clear()
    started.clear()
    with pytest.raises(KeyboardInterrupt, match=r"^guest interrupted after \d+\.\d\d s$"):
        sandbox.run(quick_ready, _caps(RUNAWAY), limits=Limits(timeout=None), stdout=stdout)
    presser.join()
    assert "".join(shown) == "before\n"
    assert sandbox.restarts == 1 and _gone(pid)
    _still_runs(sandbox, quick_ready)


def test_an_output_flood_is_capped_up_to_the_end(tiered, quick_ready) -> None:
    result = tiered.run(quick_ready, _caps("while True:\n    print('x' * 99)\n"),
                        limits=Limits(timeout=1, max_output=64 << 10))
    assert result.tier == "cranelift" and "--timeout 1 s" in result.trap
    assert result.truncated and result.stdout.startswith("x" * 99 + "\n")
    assert result.stdout.endswith("truncated after 64.0 KiB; the rest was discarded]\n")
    assert len(result.stdout) < (64 << 10) + 200
    _still_runs(tiered, quick_ready)


def test_what_a_restart_would_lose_keeps_epoch_checks(tiered, quick_ready) -> None:
    """While a session lives in the worker, a runaway cell is stopped in place (epoch
    checks, Winch code here), and the session keeps running."""
    from wasi_magic.sessions import Session
    sandbox = tiered
    with Session("kept", sandbox=sandbox) as session:
        assert session.run("x = 6 * 7").status == 0
        result = sandbox.run(quick_ready, _caps(RUNAWAY), limits=Limits(timeout=1))
        assert result.tier == "winch" and "--timeout 1 s" in result.trap
        assert result.stdout == "before\n" and "sandbox" not in result.steps
        assert sandbox.restarts == 0
        assert session.run("print(x)").stdout == "42\n"
    # The session is closed: nothing would be lost, tier-up code again.
    result = sandbox.run(quick_ready, _caps(RUNAWAY), limits=Limits(timeout=1))
    assert result.tier == "cranelift" and sandbox.restarts == 1


def test_a_spare_loads_the_session_sandbox_as_sessions_run_it(tiered) -> None:
    """Kept, with epoch checks: a session started after a restart finds it loaded (and
    the spare starts no tier-up compile of a component no one-shot run uses)."""
    import signal
    from wasi_magic.sessions import Session
    sandbox = tiered
    with Session("first", sandbox=sandbox) as first:
        assert first.run("print('one')").stdout == "one\n"
        os.kill(sandbox.pid, signal.SIGKILL)  # the spare takes over at the next request
    with Session("second", sandbox=sandbox) as second:
        assert second.start()["how"] == "memory"
        assert second.run("print('two')").stdout == "two\n"


def test_a_deadline_fires_on_fire_once_and_never_after_cancel() -> None:
    from wasi_magic.sandbox.store import Deadline
    fired: list[tuple[bool, bool]] = []

    def on_fire(deadline: Deadline) -> None:
        fired.append((deadline.timed_out, deadline.interrupted))

    done = Deadline(None, 0.05, on_fire=on_fire)
    done.start()
    done.cancel()  # the guest finished first
    time.sleep(0.3)
    done.interrupt()
    assert fired == []
    late = Deadline(None, 0.05, on_fire=on_fire)
    late.start()
    time.sleep(0.3)
    late.interrupt()  # after the time limit: still one call
    late.cancel()
    assert fired == [(True, False)]


WORKERS = ("import psutil\nprint(sorted(c.pid for c in psutil.Process().children()\n"
           "             if 'wasi_magic.sandbox.worker' in ' '.join(c.cmdline())))")


def test_through_a_kernel_runaway_cells_on_tier_up_code_are_stopped(tiered_cache: Path,
                                                                     tmp_path: Path) -> None:
    """A hostile student's runaway cell, on code without epoch checks: the time limit and
    Interrupt stop it, its output is kept, no worker is left behind, the kernel lives."""
    from kernels import errors, execute, kernel_in, run_and_interrupt, streams
    with kernel_in(tmp_path, tiered_cache, WASI_MAGIC_TIER_UP="1") as (manager, client):
        warm_up = execute(client, "%%wasi -q --quick\nprint('on tier-up code')\n")
        assert streams(warm_up, "stdout") == "on tier-up code\n"
        before = streams(execute(client, WORKERS), "stdout")

        timed = execute(client, f"%%wasi -q --quick --timeout 1\n{RUNAWAY}")
        assert streams(timed, "stdout") == "before\n"
        err = streams(timed, "stderr")
        assert err.startswith("note\n") and "stopped by the time limit" in err, err
        assert "--timeout 1 s" in err and "Traceback" not in err and not errors(timed)

        messages, _ = run_and_interrupt(manager, client,
                                        f"%%wasi -q --quick --timeout 0\n{RUNAWAY}", "before")
        [shown] = errors(messages)
        assert shown["ename"] == "GuestInterrupted", messages
        assert re.fullmatch(r"guest interrupted after \d+\.\d\d s", shown["evalue"])
        assert shown["traceback"] == [f"KeyboardInterrupt: {shown['evalue']}"]

        assert streams(execute(client, "print(6 * 7)"), "stdout") == "42\n"
        after = execute(client, "%%wasi -q --quick\nprint('the next cell runs')\n")
        assert streams(after, "stdout") == "the next cell runs\n", after
        now = streams(execute(client, WORKERS), "stdout")
        # Two stops, two workers replaced: an active one and a spare, none of the old ones.
        assert len(eval(now)) == 2 and not set(eval(now)) & set(eval(before)), (before, now)


def test_hosts_load_the_warmed_cranelift_code_and_compile_nothing(
        quick_ready, session_ready, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load(), sessions and ``%wasi inspect`` (Runtime.loaded) after ``warm``: the Cranelift
    entries warm left are used as they are; no Winch compile, no background compile."""
    import wasi_magic.runtime
    from wasi_magic.inspect import inspect_wasm
    from wasi_magic.runtime import Runtime
    from wasi_magic.warm import warm
    root = _cache_with_build(tmp_path / "cache", quick_ready)
    _cache_with_build(root, session_ready)
    monkeypatch.setenv("WASI_MAGIC_CACHE", str(root))
    monkeypatch.setenv("WASI_MAGIC_TIER_UP", "1")
    # The process's default runtime (``%wasi inspect`` uses it), as a kernel started with
    # tier-up on has it: this session's was made with tier-up off (see conftest).
    monkeypatch.setattr(wasi_magic.runtime, "_default", Runtime())
    warm([], report=lambda _: None)
    entries = sorted(root.glob("compiled/*/*.cwasm*"))
    runtime = Runtime(cache=Cache(root))
    component, engine, linker, _, how = runtime.loaded(quick_ready)
    assert how == "deserialized"
    cranelift = runtime._flavor(False, "cranelift")
    assert engine is cranelift.engine and linker is cranelift.linker
    assert tuple(component.type.exports(engine))
    assert runtime.loaded(session_ready, kept=True)[4] == "deserialized"
    assert runtime.loaded(quick_ready)[4] == "memory"
    assert inspect_wasm(quick_ready.path).imports
    assert sorted(root.glob("compiled/*/*.cwasm*")) == entries  # nothing compiled
    assert runtime.wait_tier_up(0) is True  # nothing was queued
    # Tier-up off: the runtime's own compiler (Winch), compiled now.
    monkeypatch.setenv("WASI_MAGIC_TIER_UP", "0")
    plain = Runtime(cache=Cache(root))
    component, engine, _, _, how = plain.loaded(quick_ready)
    assert how == "compiled" and engine is plain.engine
    assert list(root.glob("compiled/*-winch-*/*.cwasm"))


def test_a_compile_is_recorded_with_its_entry(quick_ready, tmp_path: Path) -> None:
    """The seconds a compile took are kept with the cached entry, for whoever loads it
    instead; the seal does not cover them, so a record that is not a plausible number is
    ignored."""
    import json
    from wasi_magic.runtime import Runtime
    cache = Cache(tmp_path / "cache")
    runtime = Runtime(cache=cache, tier_up=False)
    assert runtime.compile_seconds(quick_ready) is None  # nothing compiled yet
    _, seconds, how = runtime.component(quick_ready)
    assert how == "compiled"
    recorded = runtime.compile_seconds(quick_ready)
    assert recorded is not None and 0 < recorded <= seconds
    later = Runtime(cache=cache, tier_up=False)  # as another process would
    assert later.component(quick_ready)[2] == "deserialized"
    assert later.compile_seconds(quick_ready) == recorded
    [meta_path] = cache.root.glob("compiled/*-winch-*/*.json")
    for bad in ("1.5", -1, 0, True, 1e9, float("nan"), None):
        meta = json.loads(meta_path.read_text())
        meta["compile_seconds"] = bad
        meta_path.write_text(json.dumps(meta))
        assert later.compile_seconds(quick_ready) is None, bad
    # The entry itself is still sealed and loads: only the number is refused.
    assert Runtime(cache=cache, tier_up=False).component(quick_ready)[2] == "deserialized"


def test_interface_reads_the_compiled_form_a_run_left_in_memory(quick_ready, tmp_path: Path) -> None:
    """A component's imports and exports are the same whichever compiler made its code: after
    a run (here one with fuel, whose code differs), reading them loads or compiles nothing."""
    from wasi_magic.runtime import Runtime
    cache = Cache(tmp_path / "cache")
    runtime = Runtime(cache=cache, tier_up=False)
    ran = runtime.run(quick_ready, _caps("print('fuelled')"), limits=Limits(fuel=10**10))
    assert ran.stdout == "fuelled\n"
    compiled = sorted(cache.root.glob("compiled/*/*.cwasm"))
    assert len(compiled) == 1 and "-fuel-" in compiled[0].parent.name
    imports, exports = runtime.interface(quick_ready)
    assert sorted(cache.root.glob("compiled/*/*.cwasm")) == compiled  # nothing compiled now
    # The same names as a runtime that compiles (and caches) the component's plain form.
    other = Runtime(cache=Cache(tmp_path / "other"), tier_up=False)
    assert other.interface(quick_ready) == (imports, exports)
    assert any(name.startswith("wasi:cli/run@") for name in exports)
    assert any(name.startswith("wasi:filesystem/") for name in imports)
