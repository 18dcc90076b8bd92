"""Interrupt while a cell's component is being built or compiled, in a real kernel.

Pressing Interrupt during a build is defined behaviour: the build stops (the
componentize-py process is killed), the cell says ``build interrupted`` in one
line, the cache holds nothing half-written, and the next cell works.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psutil
import pytest

from kernels import errors, execute, kernel_in, run_and_interrupt, streams


def cache_files(cache: Path) -> list[str]:
    """Every component, compiled component, metadata or temporary file in ``cache``."""
    return sorted(str(p.relative_to(cache)) for section in ("builds", "compiled")
                  for p in (cache / section).rglob("*") if p.is_file())


def componentize_processes(manager) -> list[str]:
    """Command lines of componentize-py processes the kernel started and that still run."""
    kernel = psutil.Process(manager.provisioner.process.pid)
    found = []
    for proc in kernel.children(recursive=True):
        try:
            line = " ".join(proc.cmdline())
        except psutil.Error:  # ended while we looked
            continue
        if "componentize_py" in line:
            found.append(line)
    return found


def assert_build_interrupted(messages: list[dict]) -> None:
    shown = errors(messages)
    assert len(shown) == 1, messages
    assert shown[0]["ename"] == "GuestInterrupted"
    assert shown[0]["evalue"].startswith("build interrupted")
    assert shown[0]["traceback"] == [f"KeyboardInterrupt: {shown[0]['evalue']}"]


@pytest.mark.parametrize("line", ["%%wasi", "%%wasi --quick"])
def test_interrupt_during_componentize_py(line: str, tmp_path: Path, shared_cache: Path,
                                          quick_ready) -> None:
    cache = tmp_path / "cache"  # cold: the cell (or the quick sandbox) must be built
    with kernel_in(tmp_path, cache) as (manager, client):
        cell = f"{line}\nprint('never built {uuid.uuid4().hex}')\n"
        messages, _ = run_and_interrupt(manager, client, cell,
                                        when="building with componentize-py", stream="display")
        assert_build_interrupted(messages)
        assert "never built" not in streams(messages, "stdout")
        assert cache_files(cache) == []  # no component, no metadata, no temporary file
        assert componentize_processes(manager) == []  # the build process was stopped, not left behind
        # The kernel carries on, and so does wasi-magic (with the shared cache's sandbox).
        assert streams(execute(client, "print(6 * 7)"), "stdout") == "42\n"
        execute(client, f"import os; os.environ['WASI_MAGIC_CACHE'] = {str(shared_cache)!r}")
        after = execute(client, "%%wasi -q --quick\nprint('the next cell runs')\n")
        assert streams(after, "stdout") == "the next cell runs\n", after


def test_interrupt_while_the_component_is_compiled(tmp_path: Path, quick_ready) -> None:
    # A cache that holds the quick sandbox's component but not its compiled form.
    cache = tmp_path / "cache"
    (cache / "builds").mkdir(parents=True)
    for path in (quick_ready.path, quick_ready.path.with_suffix(".json")):
        shutil.copy(path, cache / "builds" / path.name)
    built = cache_files(cache)
    with kernel_in(tmp_path, cache) as (manager, client):
        cell = "%%wasi --quick\nprint('compiled and ran')\n"
        messages, _ = run_and_interrupt(manager, client, cell, when="loading", stream="display")
        assert_build_interrupted(messages)
        assert "compiled and ran" not in streams(messages, "stdout")
        assert cache_files(cache) == built  # no compiled entry, whole or half-written
        # The same cell, run again in the same cache, compiles and runs.
        again = execute(client, cell)
        assert streams(again, "stdout") == "compiled and ran\n", again
        assert len(cache_files(cache)) == len(built) + 2  # the .cwasm and its metadata
