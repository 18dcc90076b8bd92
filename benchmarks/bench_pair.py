#!/usr/bin/env python3
"""Paired A/B of a quick cell between two copies of wasi-magic, side by side.

One command::

    git worktree add /tmp/base <revision>          # the baseline's package tree
    python benchmarks/bench_pair.py /tmp/base . [--cells 600] [--gap 0.02] [--aa]

Each tree (a folder holding a ``wasi_magic`` package) gets a child process of its own: an
IPython shell with the extension loaded, the quick-mode sandbox compiled as ``warm`` makes
it, and its own sandbox worker (which imports the same tree). The children take turns, in
a new random order each round, ``--gap`` seconds apart (every core idle in between, as
between a student's cells), each running ``bench_core.py``'s hello-world cell in quick mode
with a new source. The machine's slow phases (see the README) then hit both alike: the
median of the per-round differences resolves a few hundredths of a millisecond where
``bench_speed.py``'s ratio moves by tenths from one run to the next. ``--aa`` adds a second
child of the baseline: its difference says how small a difference means anything.

Times are reported, never asserted; every output is checked. Results go to a table and to
``benchmarks/results/pair.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "pair.json"
WARMUP = 20  # cells each child runs before it says it is ready


def child() -> None:
    """Serve cells on stdin ("go" lines); answer ``run_cell seconds, guest seconds``."""
    import contextlib
    sys.path.insert(0, str(HERE))
    import bench_core as core
    import bench_speed as speed
    import wasi_magic
    workload = core.Workload.create(Path(tempfile.mkdtemp(prefix="wasi-magic-pair-")))
    with contextlib.redirect_stdout(sys.stderr):
        shell = core.make_shell()
        speed.prepare_quick(shell, workload)
        for n in range(WARMUP):
            core.checked_cell(shell, speed.quick_cell(workload, f"warm{n}"), "warm-up",
                              speed.STEPS_QUICK)
    print("ready", str(Path(wasi_magic.__file__).resolve().parent.parent), flush=True)
    for n, _ in enumerate(sys.stdin):
        run = core.checked_cell(shell, speed.quick_cell(workload, f"cell{n}"), "paired cell",
                                speed.STEPS_QUICK)
        guest = run.result.instantiate_seconds + run.result.run_seconds
        print(run.seconds, guest, flush=True)


def start(label: str, tree: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            cwd=tempfile.gettempdir())
    words = (proc.stdout.readline() or "").split()  # type: ignore[union-attr]
    if words[:1] != ["ready"] or Path(words[1]) != tree:
        proc.kill()
        sys.exit(f"bench_pair: the {label} child did not start from {tree} (got {words})")
    return proc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path, help="folder holding the baseline's wasi_magic")
    parser.add_argument("new", type=Path, help="folder holding the changed wasi_magic")
    parser.add_argument("--cells", type=int, default=600, help="cells per child (600)")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between cells (0.02)")
    parser.add_argument("--aa", action="store_true", help="add a second baseline child")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    trees = {"base": args.base.resolve(), "new": args.new.resolve()}
    if args.aa:
        trees["base again"] = trees["base"]
    for label, tree in trees.items():
        if not (tree / "wasi_magic" / "__init__.py").is_file():
            sys.exit(f"bench_pair: {tree} holds no wasi_magic package ({label})")
    children = {label: start(label, tree) for label, tree in trees.items()}
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in trees}
    try:
        for _ in range(args.cells):
            order = list(children)
            random.shuffle(order)
            for label in order:
                time.sleep(args.gap)
                proc = children[label]
                proc.stdin.write("go\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                seconds, guest = map(float, proc.stdout.readline().split())  # type: ignore[union-attr]
                samples[label].append((seconds, guest))
    finally:
        for proc in children.values():
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait()
    rows: dict[str, Any] = {}
    for label, pairs in samples.items():
        row = {"run_cell_ms": statistics.median(s for s, _ in pairs) * 1e3,
               "guest_ms": statistics.median(g for _, g in pairs) * 1e3}
        if label != "base":
            row["paired_difference_ms"] = statistics.median(
                a[0] - b[0] for a, b in zip(pairs, samples["base"])) * 1e3
        rows[label] = row
        extra = (f"   paired difference vs base: {row['paired_difference_ms']:+.3f} ms"
                 if "paired_difference_ms" in row else "")
        print(f"{label:<11} run_cell {row['run_cell_ms']:.3f} ms   guest {row['guest_ms']:.3f} ms"
              f"{extra}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"trees": {k: str(v) for k, v in trees.items()},
                                     "cells": args.cells, "gap": args.gap, "rows": rows,
                                     "load_average": os.getloadavg()}, indent=1))
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child()
    else:
        main()
