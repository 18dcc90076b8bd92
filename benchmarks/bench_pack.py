"""Packed cache entries: the lessons' cache before and after ``cache pack``, and what the
first use of a packed entry costs.

    python benchmarks/bench_pack.py [--seed DIR] [--reps 3] [--json PATH]

1. A fresh cache is filled as Binder's ``postBuild`` fills it: ``python -m wasi_magic
   warm lessons/`` (every lesson cell built and compiled with Cranelift). ``--seed DIR``
   copies the build entries of another cache of this user first (e.g. ``~/.cache/
   wasi-magic``), so that cells built before are not built again; the compiles are made.
2. ``python -m wasi_magic cache pack``: the bytes on disk before and after, and its time.
3. The first use of each entry: ``Cache.get`` unpacks it (and its reference, for the first
   entry of a section), then verifies it; timed per entry, in this process, each rep after
   packing again. Shown beside a second ``get`` (verifying the unpacked entry: what every
   load from disk costs anyway), so the difference is what packing adds.

Medians over entries and reps. Times are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _run(args: list[str], cache: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "wasi_magic", *args], check=True, cwd=ROOT,
                   env=dict(os.environ, WASI_MAGIC_CACHE=str(cache)),
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _first_uses(cache_root: Path) -> dict[str, list[float]]:
    """Seconds of each entry's first get (unpack + verify) and of a second one (verify)."""
    from wasi_magic.cache import Cache
    from wasi_magic.cache_pack import data_suffix, sections
    cache = Cache(cache_root, layered=False)
    times: dict[str, list[float]] = {"unpack_builds": [], "unpack_compiled": [],
                                     "verify_builds": [], "verify_compiled": []}
    for section in sections(cache):
        kind = "builds" if section == "builds" else "compiled"
        for meta in sorted((cache_root / section).glob("*.json")):
            for step in ("unpack", "verify"):
                started = time.perf_counter()
                entry = cache.get(section, meta.stem, data_suffix(section))
                seconds = time.perf_counter() - started
                if entry is None:
                    raise SystemExit(f"{section}/{meta.stem}: not intact after packing")
                times[f"{step}_{kind}"].append(seconds)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=Path, help="copy this cache's build entries first")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "pack.json")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-pack-") as tmp:
        cache = Path(tmp) / "cache"
        if args.seed is not None and (args.seed / "builds").is_dir():
            shutil.copytree(args.seed / "builds", cache / "builds",
                            ignore=shutil.ignore_patterns(".*", "*.zst"))
        os.environ["WASI_MAGIC_CACHE"] = str(cache)
        from wasi_magic.cache import Cache
        from wasi_magic.warm import warm
        started = time.perf_counter()
        built = warm([ROOT / "lessons"], report=lambda line: None)
        warm_seconds = time.perf_counter() - started
        # Only what the lessons use, as in the Binder image (not the rest of the seed).
        keys = {artifact.key for artifact in built}
        for meta in (cache / "builds").glob("*.json"):
            if meta.stem not in keys:
                Cache(cache, layered=False).discard("builds", meta.stem, ".wasm")
        before = Cache(cache, layered=False).info()
        pack_seconds = _run(["cache", "pack"], cache)
        after = Cache(cache, layered=False).info()
        samples: dict[str, list[float]] = {}
        for rep in range(args.reps):
            if rep:
                _run(["cache", "pack"], cache)
            for key, values in _first_uses(cache).items():
                samples.setdefault(key, []).extend(values)
    report = {
        "load_average": os.getloadavg()[0],
        "warm_seconds": round(warm_seconds, 1),
        "pack_seconds": round(pack_seconds, 1),
        "entries": {"builds": before["builds"]["entries"], "compiled": before["compiled"]["entries"]},
        "bytes_before": before["bytes"], "bytes_after": after["bytes"],
        "per_section": {section: {"before": before[section]["bytes"],
                                  "after": after[section]["bytes"]}
                        for section in ("builds", "compiled")},
        "median_seconds": {key: round(statistics.median(values), 4)
                           for key, values in samples.items() if values},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"{report['entries']['builds']} components, {report['entries']['compiled']} compiled")
    for section in ("builds", "compiled"):
        sizes = report["per_section"][section]
        print(f"  {section:9} {_mib(sizes['before']):>11} -> {_mib(sizes['after']):>10}")
    print(f"  total     {_mib(before['bytes']):>11} -> {_mib(after['bytes']):>10} "
          f"(cache pack: {pack_seconds:.1f} s)")
    medians = report["median_seconds"]
    for kind in ("builds", "compiled"):
        if f"unpack_{kind}" in medians:
            print(f"  first use of a packed {kind} entry: {medians[f'unpack_{kind}']*1000:.0f} ms "
                  f"(median; verifying it unpacked: {medians[f'verify_{kind}']*1000:.0f} ms)")
    print(f"load average after: {report['load_average']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
