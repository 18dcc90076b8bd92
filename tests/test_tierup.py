"""Tier-up: a component's first run uses Winch; a low-priority background process
recompiles it with Cranelift into the cache; the next run (and every new worker) uses that.

Real builds (the quick-mode sandbox), real Wasmtime compiles in real processes. Each
test has a cache of its own for compiled components, so that a Cranelift entry found
there was made by the test.
"""

from __future__ import annotations

import os
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
    assert runtime.tier_up.done == [(quick_ready.sha256, False)]
    [entry] = _cranelift_entries(cache.root)
    assert entry.stem == quick_ready.sha256
    assert cache.get(entry.parent.relative_to(cache.root).as_posix(), entry.stem, ".cwasm")

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


def test_warm_compiles_the_quick_sandbox_with_cranelift(quick_ready, session_ready, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from wasi_magic.warm import warm
    root = _cache_with_build(tmp_path / "cache", quick_ready)
    _cache_with_build(root, session_ready)
    monkeypatch.setenv("WASI_MAGIC_CACHE", str(root))
    monkeypatch.setenv("WASI_MAGIC_TIER_UP", "1")
    lines: list[str] = []
    warm([], report=lines.append)
    assert lines == ["quick-mode sandbox: cached", "session sandbox: cached"]
    assert sorted(p.stem for p in _cranelift_entries(root)) == sorted(
        [quick_ready.sha256, session_ready.sha256])
    assert not list(root.glob("compiled/*-winch-*/*.cwasm"))
