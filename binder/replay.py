"""Replay the Binder build locally and check that the lessons then build nothing.

Run: ``python binder/replay.py [--json PATH]``. In a temporary copy of the
repository, with a fresh HOME (hence a fresh wasi-magic cache) and a fresh
virtual environment, it:

1. installs ``binder/requirements.txt`` as repo2docker would;
2. runs every lesson once on the empty cache (the cold run), then removes all it left
   (HOME emptied, the repository as cloned: the image has none of it);
3. runs ``binder/postBuild`` (which warms and packs the cache: ``cache_bytes`` is the
   image's cache, measured right after it);
4. runs every lesson again (the warm run), counting componentize-py builds.

It prints the cold and warm lesson times (a lesson's time: its kernel starting, its
cells, its kernel shutting down; the replay's own harness processes are reported apart),
the builds of each run and the
size of the image's caches (wasi-magic's and wasmtime's own, which lesson 03's
engine uses), writes them as JSON, and exits non-zero if the warm run built
anything or a lesson failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs one notebook, in a kernel that knows its notebook as JupyterLab's do; prints, as JSON, the seconds until its first cell starts (the kernel
# starting, which a student waits for with or without wasi-magic), the seconds from then
# until its last cell has run, and the seconds of the kernel's shutdown after it. Their sum
# is the lesson's time; starting this harness (Python, importing nbclient) is not in it.
EXECUTE = """
import json, os, sys, time, nbformat, nbclient
path = sys.argv[1]
# As Jupyter Server does for a kernel it starts for a notebook (nbclient does not).
os.environ["JPY_SESSION_NAME"] = os.path.abspath(path)
nb = nbformat.read(path, as_version=4)
marks = {}
def cell_starts(**_):
    marks.setdefault("first", time.perf_counter())
def cell_ran(**_):
    marks["last"] = time.perf_counter()
started = time.perf_counter()
nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", on_cell_start=cell_starts,
                        on_cell_executed=cell_ran, resources={"metadata": {"path": "."}}).execute()
ended = time.perf_counter()
print(json.dumps({"kernel": marks["first"] - started, "cells": marks["last"] - marks["first"],
                  "shutdown": ended - marks["last"]}))
"""


def copy_repository(target: Path) -> Path:
    """Copy the files git knows (as a fresh clone would have them) into ``target``."""
    for name in repository_files():
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def repository_files() -> list[str]:
    """The files of a fresh clone, relative to the repository's root."""
    return subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                          check=True, capture_output=True, text=True).stdout.split()


def reset_to_clone(repo: Path, home: Path) -> None:
    """Undo what the cold run left, as the image starts without it: every file in ``repo``
    a fresh clone lacks (the lessons' ``build/`` folders, bytecode) and everything in
    ``home`` (wasi-magic's and wasmtime's caches, matplotlib's font list, IPython's
    profile). Only what ``postBuild`` then makes is there for the warm run, as in Binder."""
    keep = {repo / name for name in repository_files()}
    for path in sorted(repo.rglob("*"), reverse=True):  # a folder's files before it
        if path in keep:
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    for path in home.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def run(command: list[str], env: dict[str, str], cwd: Path) -> float:
    """Run a command, failing loudly; returns its wall-clock seconds."""
    return run_output(command, env, cwd)[0]


def run_output(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Run a command, failing loudly; returns its wall-clock seconds and its stdout."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done.stdout


def builds(cache: Path) -> int:
    """componentize-py builds recorded in the cache's build log."""
    log = cache / "builds.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def run_lessons(python: str, repo: Path, env: dict[str, str]) -> dict[str, dict[str, float]]:
    """Execute every lesson top to bottom in its own folder; per lesson, the seconds of the
    kernel's start ("kernel"), of its cells ("cells"), of the kernel's shutdown ("shutdown"),
    of the three together ("total": what a student waits for) and of starting the harness
    process that runs it ("harness": Python and nbclient starting, outside the lesson)."""
    times = {}
    for notebook in sorted((repo / "lessons").glob("*.ipynb")):
        wall, out = run_output([python, "-c", EXECUTE, notebook.name], env, notebook.parent)
        lesson = json.loads(out.strip().splitlines()[-1])
        total = lesson["kernel"] + lesson["cells"] + lesson["shutdown"]
        times[notebook.name] = dict(lesson, total=total, harness=wall - total)
    return times


def summary(times: dict[str, dict[str, float]], builds: int) -> dict[str, object]:
    """A run's report: lesson, cell, kernel and harness seconds, builds, and seconds per
    lesson."""
    return {"seconds": round(sum(t["total"] for t in times.values()), 1),
            "cell_seconds": round(sum(t["cells"] for t in times.values()), 1),
            "kernel_seconds": round(sum(t["kernel"] for t in times.values()), 1),
            "harness_seconds": round(sum(t["harness"] for t in times.values()), 1),
            "builds": builds,
            "per_lesson": {name: {k: round(v, 1) for k, v in t.items()}
                           for name, t in times.items()}}


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "binder-replay.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="binder-replay-") as tmp:
        base = Path(tmp)
        repo = copy_repository(base / "repo")
        home = base / "home"
        home.mkdir()
        # Binder sets none of wasi-magic's settings (a test session turns tier-up off, for
        # one): the replay runs with the defaults a student gets. Nor does it stop Python
        # from writing bytecode caches: without them every kernel and sandbox worker would
        # compile wasi-magic's modules again (~45 ms a process).
        env = {key: value for key, value in os.environ.items()
               if key not in ("VIRTUAL_ENV", "PYTHONPATH", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
                              "PYTHONDONTWRITEBYTECODE")
               and not key.startswith("WASI_MAGIC_")}
        env.update(HOME=str(home), PIP_DISABLE_PIP_VERSION_CHECK="1",
                   PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR",
                                                str(Path.home() / ".cache" / "pip")))
        venv = base / "venv"
        run([sys.executable, "-m", "venv", str(venv)], env, base)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        python = str(venv / "bin" / "python")
        install = run([python, "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"],
                      env, repo)
        run([python, "-m", "pip", "install", "-q", "--no-deps", "-e", "."], env, repo)
        cache = home / ".cache" / "wasi-magic"
        wasmtime_cache = home / ".cache" / "wasmtime"  # Config.cache's folder (lesson 03)

        cold = run_lessons(python, repo, env)
        cold_builds = builds(cache)
        reset_to_clone(repo, home)

        post_build = run(["bash", "binder/postBuild"], env, repo)
        after_post_build = builds(cache)
        wasi_magic_bytes = folder_size(cache)
        wasmtime_bytes = folder_size(wasmtime_cache)
        warm = run_lessons(python, repo, env)
        warm_builds = builds(cache) - after_post_build
        # The image holds the packed cache (cache_bytes); what the lessons unpack on first
        # use goes to the user's writable layer: this is the cache after one pass.
        cache_bytes_after_lessons = folder_size(cache)

    report = {
        "install_seconds": round(install, 1),
        "postbuild_seconds": round(post_build, 1),
        "postbuild_builds": after_post_build,
        "cold": summary(cold, cold_builds),
        "warm": summary(warm, warm_builds),
        # What the image carries: wasi-magic's cache and wasmtime's own (both in HOME).
        "cache_bytes": wasi_magic_bytes + wasmtime_bytes,
        "wasi_magic_cache_bytes": wasi_magic_bytes,
        "wasmtime_cache_bytes": wasmtime_bytes,
        "cache_bytes_after_lessons": cache_bytes_after_lessons,
    }
    report["warm_over_cold"] = round(report["warm"]["seconds"] / max(report["cold"]["seconds"], 1e-9), 3)
    # The cells alone: what wasi-magic makes a student wait for, the kernels' start aside.
    report["warm_over_cold_cells"] = round(
        report["warm"]["cell_seconds"] / max(report["cold"]["cell_seconds"], 1e-9), 3)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1))
    print(f"lessons cold: {report['cold']['seconds']} s with {cold_builds} builds")
    print(f"postBuild:    {report['postbuild_seconds']} s, {after_post_build} builds, "
          f"caches {report['cache_bytes'] / 2**20:.0f} MiB (wasi-magic "
          f"{wasi_magic_bytes / 2**20:.0f} MiB, wasmtime {wasmtime_bytes / 2**20:.0f} MiB; "
          f"{cache_bytes_after_lessons / 2**20:.0f} MiB once the lessons unpacked theirs)")
    print(f"lessons warm: {report['warm']['seconds']} s with {warm_builds} builds "
          f"({report['warm_over_cold']:.1%} of cold); their cells alone: "
          f"{report['warm']['cell_seconds']} s against {report['cold']['cell_seconds']} s "
          f"({report['warm_over_cold_cells']:.1%}); kernels starting: "
          f"{report['warm']['kernel_seconds']} s (not counted: the replay's own harness "
          f"processes, {report['warm']['harness_seconds']} s)")
    for name in warm:
        print(f"  {name}: cold {cold[name]['total']:.1f} s (cells {cold[name]['cells']:.1f}), "
              f"warm {warm[name]['total']:.1f} s (cells {warm[name]['cells']:.1f})")
    print(json.dumps(report))
    return 1 if warm_builds else 0


if __name__ == "__main__":
    raise SystemExit(main())
