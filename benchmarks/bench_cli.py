"""`python -m wasi_magic run` against a five-line wasmtime-py script (issue 13, item 8).

    python benchmarks/bench_cli.py [--reps 30] [--json PATH]

Rows (medians over ``--reps`` runs, min and max beside them; the two commands take
turns, so drift on the machine touches both alike):

- start-up: ``python -m wasi_magic run hello.wat`` vs a script that makes an Engine,
  a Linker with WASI, compiles the same file and calls ``_start``; the ratio;
- a guest blocked in a host call (a 100 s ``poll_oneoff``) under ``--timeout 1``:
  seconds from the start until the process has ended.

Both run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` unset), as an installed
package does. Times are reported, never asserted; results also go to
``benchmarks/results/cli.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELLO = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "hello\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 8)) (i32.store (i32.const 4) (i32.const 6))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))))"""

SCRIPT = """import sys, wasmtime
engine = wasmtime.Engine(); store = wasmtime.Store(engine)
linker = wasmtime.Linker(engine); linker.define_wasi()
config = wasmtime.WasiConfig(); config.inherit_stdout(); store.set_wasi(config)
linker.instantiate(store, wasmtime.Module.from_file(engine, sys.argv[1])).exports(store)["_start"](store)
"""

SLEEPER = """(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i64.store (i32.const 88) (i64.const 100000000000))
    (drop (call $poll (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 12)))))"""


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - started, done.stdout


def summary(samples: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(samples) * 1000, 1),
            "min_ms": round(min(samples) * 1000, 1), "max_ms": round(max(samples) * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "cli.json"))
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "hello.wat").write_text(HELLO)
        (work / "script.py").write_text(SCRIPT)
        (work / "sleeper.wat").write_text(SLEEPER)
        commands = {"cli": [sys.executable, "-m", "wasi_magic", "run", "hello.wat"],
                    "script": [sys.executable, "script.py", "hello.wat"]}
        for command in commands.values():  # write the bytecode caches first
            assert timed(command, work, env)[1] == "hello\n", command
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for rep in range(args.reps):
            order = list(commands) if rep % 2 == 0 else list(reversed(commands))
            for name in order:
                seconds, out = timed(commands[name], work, env)
                if out != "hello\n":
                    raise SystemExit(f"{name} printed {out!r}")
                samples[name].append(seconds)
        blocked = [timed([sys.executable, "-m", "wasi_magic", "run", "--timeout", "1",
                          "sleeper.wat"], work, env)[0] for _ in range(max(3, args.reps // 10))]
    rows = {name: summary(values) for name, values in samples.items()}
    ratio = statistics.median(samples["cli"]) / statistics.median(samples["script"])
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load": os.getloadavg()},
        "start-up": rows, "ratio cli/script": round(ratio, 2), "target ratio": 1.5,
        "blocked guest under --timeout 1: process ended after (s)":
            round(statistics.median(blocked), 2),
    }
    text = json.dumps(report, indent=2)
    print(text)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
