"""Tier-up on the CPU-bound cell: first run (Winch) vs second run (Cranelift) vs native.

    python benchmarks/bench_tierup.py [--reps 3] [--json PATH]

Each rep starts from a cold compiled-component cache, with tier-up on, and a new
sandbox worker, as a new kernel meeting a new cell does (cells run in the worker):

- first run: the worker compiles the component with Winch (timed apart) and runs
  it; the background Cranelift compile starts right after that run;
- the wait for that background compile (its wall time, at ``nice 19``, on one core;
  polled every 0.25 s);
- second run: the same worker runs the cell again, now with the Cranelift code,
  which in the worker has no epoch checks (a deadline ends the worker instead).

and native CPython runs the same source in this process right before each second run (same load).
Also called by ``bench_speed.py``, whose GUEST COMPUTE section shows these rows.
Times are reported, never asserted; outputs are checked.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_core as core  # noqa: E402
import bench_speed as speed  # noqa: E402
from bench_core import format_seconds, log  # noqa: E402

#: Issue 14: a CPU-bound cell run a second time (Cranelift after tier-up) / native.
TARGET_SECOND_RUN_RATIO = 2.5
#: Background compile: how long to wait at most (a bound, not a target).
PATIENCE = 900.0

ROWS = ("compute_native", "compute_tier_first", "compute_tier_wait", "compute_tier_second")


def tierup_scenarios(results: "speed.Results", artifact: Any, expected: str, scratch: Path,
                     reps: int, *, native: bool = False) -> dict[str, Any]:
    """Measure first (Winch) and second (Cranelift) runs of ``artifact`` in a sandbox
    worker with tier-up on; with ``native``, the native run too (taking turns)."""
    from wasi_magic.limits import Limits
    from wasi_magic.sandbox.supervisor import Sandbox

    first = results.new("compute_tier_first", "tier-up, 1st run: Winch (run; compile apart)",
                        parts=("Winch compile (first run only)",))
    waited = results.new("compute_tier_wait", "tier-up: background Cranelift compile (wall)")
    second = results.new("compute_tier_second", "tier-up, 2nd run: Cranelift, no epoch checks (run)",
                         parts=("load Cranelift code from the cache",))
    natives = results.new("compute_native", "native CPython (exec in this process)") \
        if native else None
    steps: list[dict[str, Any]] = []
    paired: list[float] = []
    for rep in range(reps):
        log(f"tier-up: rep {rep + 1}/{reps}: first run (Winch)...")
        with core.cache_at(scratch / f"cache-tierup-{rep}"), _tier_up_on():
            sandbox = Sandbox(spare=False).start()
            try:
                one = sandbox.run(artifact, limits=Limits(timeout=None))
                speed.expect("compute cell, tier-up first run", one.stdout, one.stderr, expected)
                first.add(one.run_seconds,
                          {"Winch compile (first run only)": one.compile_seconds})
                started = time.perf_counter()
                loaded = _wait_for_cranelift(sandbox, artifact)
                waited.add(time.perf_counter() - started)
                if natives is not None:
                    # Right before the second run, so that both meet the same load.
                    seconds, stdout = speed.native_exec(speed.COMPUTE_SOURCE)
                    speed.expect("compute cell, native", stdout, "", expected)
                    natives.add(seconds)
                two = sandbox.run(artifact, limits=Limits(timeout=None))
                speed.expect("compute cell, tier-up second run", two.stdout, two.stderr,
                             expected)
                second.add(two.run_seconds, {"load Cranelift code from the cache": loaded})
            finally:
                sandbox.close()
        steps.append({"first": [one.tier, one.steps], "second": [two.tier, two.steps]})
        if natives is not None:
            paired.append(two.run_seconds / natives.total.samples[-1])
        if (one.tier, two.tier) != ("winch", "cranelift"):
            raise speed.SpeedError(f"expected Winch then Cranelift, ran {one.tier} then {two.tier}")
    results.facts["tier_up_paired_ratios"] = paired
    return {"steps": steps, "second_over_native_paired": paired}


@contextlib.contextmanager
def _tier_up_on() -> Iterator[None]:
    """Tier-up on for the workers started meanwhile (they read ``$WASI_MAGIC_TIER_UP``)."""
    old = os.environ.get("WASI_MAGIC_TIER_UP")
    os.environ["WASI_MAGIC_TIER_UP"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("WASI_MAGIC_TIER_UP", None)
        else:
            os.environ["WASI_MAGIC_TIER_UP"] = old


def _wait_for_cranelift(sandbox: Any, artifact: Any) -> float:
    """Poll the worker until its background compile is done and it has loaded the
    Cranelift code; returns the seconds that load took."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        ready = sandbox.prepare(artifact)
        if ready["strategy"] == "cranelift":
            return ready["seconds"]
        time.sleep(0.25)
    raise speed.SpeedError("the background Cranelift compile did not finish")


def tierup_note(results: "speed.Results") -> str:
    """One line: first and second run against native."""
    m = results.median
    native, one, two = m("compute_native"), m("compute_tier_first"), m("compute_tier_second")
    if None in (native, one, two):
        return "Tier-up: not measured."
    verdict = "met" if two / native <= TARGET_SECOND_RUN_RATIO else "NOT met"
    paired = results.facts.get("tier_up_paired_ratios") or []
    pairs = (f" Per rep, second run / the native run just before it: median "
             f"{statistics.median(paired):.2f}x ({', '.join(f'{r:.2f}' for r in paired)})."
             if paired else "")
    return (f"Tier-up: the CPU-bound cell's first run (Winch) takes {format_seconds(one)} "
            f"({one / native:.2f}x native), its second run (Cranelift, no epoch checks) "
            f"{format_seconds(two)} "
            f"({two / native:.2f}x native; target <= {TARGET_SECOND_RUN_RATIO}x: {verdict})."
            + pairs)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "tierup.json")
    args = parser.parse_args(argv)
    from wasi_magic import build
    from wasi_magic.cache import Cache
    info = core.machine()
    results = speed.Results()
    expected = speed.native_exec(speed.COMPUTE_SOURCE)[1]
    with tempfile.TemporaryDirectory(prefix="wasi-magic-tierup-") as tmp:
        scratch = Path(tmp)
        log("tier-up: building the CPU-bound cell (componentize-py)...")
        artifact = build(speed.COMPUTE_SOURCE, cache=Cache(scratch / "cache-build"))
        facts = tierup_scenarios(results, artifact, expected, scratch, args.reps, native=True)
    info["load_average_end"] = core.load_average()
    rows = []
    for key in ROWS:
        target = f"<= {TARGET_SECOND_RUN_RATIO} x native" if key == "compute_tier_second" else ""
        rows += speed.scenario_rows(results, key, target)
    print(f"Machine: {info['cpu']}, {info['cores']} cores; load average at start "
          f"{info['load_average_start']}, at end {info['load_average_end']}")
    print(core.render_table(rows))
    print(tierup_note(results))
    document = {"machine": info, "scenarios": results.summary(), "facts": facts,
                "note": tierup_note(results)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=1), encoding="utf-8")
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
