"""Instances made ahead: between two runs the sandbox worker drops the finished run's
store and instantiates the component that ran last, without WASI. The next run of that
component only grants and calls (issue 14, item 4).

Hostile-student view: a run that takes an instance made ahead must see exactly its own
grants and limits, never the previous run's; runs whose store must differ from birth
(a memory cap, fuel) never take one. Each case uses a real worker and the real quick-mode
sandbox.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wasi_magic import Capabilities, build
from wasi_magic.errors import RuntimeFailure
from wasi_magic.limits import Limits
from wasi_magic.quick import quick_sandbox, with_source
from wasi_magic.sandbox.supervisor import Sandbox

PROBE = ("import os, sys\n"
         "print(sys.argv[1:], sorted(k for k in os.environ if k != 'PWD'))\n"
         "for path in ('/data/input.txt', '/other/input.txt'):\n"
         "    try:\n"
         "        print(path, open(path).read().strip())\n"
         "    except OSError as exc:\n"
         "        print(path, type(exc).__name__)\n")


@pytest.fixture(scope="module")
def runner(shared_cache: Path):
    return quick_sandbox()


@pytest.fixture()
def worker():
    sandbox = Sandbox(spare=False)
    yield sandbox
    sandbox.close()


def run(sandbox: Sandbox, artifact, source: str, caps: Capabilities | None = None,
        limits: Limits | None = None):
    return sandbox.run(artifact, with_source(caps or Capabilities(), source),
                       limits=limits or Limits())


def test_each_run_sees_only_its_own_grants(worker: Sandbox, runner, sandbox: Path) -> None:
    (sandbox / "other").mkdir()
    (sandbox / "other" / "input.txt").write_text("other file\n")
    granted = Capabilities.parse(["data::/data::ro"], ["A=1"], ["x"], cwd=sandbox)
    other = Capabilities.parse(["other::/other"], ["B=2"], cwd=sandbox)
    results = [run(worker, runner, PROBE, caps) for caps in
               (Capabilities(), granted, Capabilities(), other, granted)]
    assert [r.stdout for r in results] == [
        "[] []\n/data/input.txt FileNotFoundError\n/other/input.txt FileNotFoundError\n",
        "['x'] ['A']\n/data/input.txt hello file\n/other/input.txt FileNotFoundError\n",
        "[] []\n/data/input.txt FileNotFoundError\n/other/input.txt FileNotFoundError\n",
        "[] ['B']\n/data/input.txt FileNotFoundError\n/other/input.txt other file\n",
        "['x'] ['A']\n/data/input.txt hello file\n/other/input.txt FileNotFoundError\n",
    ]
    # The first run instantiated; every later one took the instance made ahead of it.
    assert "instance" not in results[0].steps
    assert all(r.steps.get("instance") == "made ahead" for r in results[1:]), \
        [r.steps for r in results]
    # Nothing was written into the granted (read-only) folder, nor beside it.
    assert sorted(p.name for p in (sandbox / "data").iterdir()) == ["input.txt", "sub"]


def test_state_does_not_carry_into_the_instance_made_ahead(worker: Sandbox, runner) -> None:
    first = run(worker, runner, "import json, builtins\njson.LEAK = 1\nbuiltins.MARK = 2\n"
                                "print('set')")
    second = run(worker, runner, "import json, builtins\n"
                                 "print(hasattr(json, 'LEAK'), hasattr(builtins, 'MARK'))")
    assert (first.stdout, second.stdout) == ("set\n", "False False\n")
    assert second.steps.get("instance") == "made ahead"


def test_a_memory_cap_never_takes_an_instance_made_ahead(worker: Sandbox, runner) -> None:
    run(worker, runner, "print('warm')")
    capped = run(worker, runner, "data = bytearray(200 << 20)\nprint('allocated')",
                 limits=Limits(max_memory=64 << 20))
    assert "instance" not in capped.steps
    assert capped.status != 0 and "allocated" not in capped.stdout
    assert "MemoryError" in capped.stderr or capped.trap, (capped.stderr, capped.trap)
    again = run(worker, runner, "data = bytearray(200 << 20)\nprint('allocated')")
    assert again.stdout == "allocated\n"


def test_fuel_never_takes_an_instance_made_ahead(worker: Sandbox, runner) -> None:
    run(worker, runner, "print('warm')")
    metered = run(worker, runner, "while True:\n    pass\n", limits=Limits(fuel=10**8))
    assert "instance" not in metered.steps
    assert metered.trap and "fuel" in metered.trap
    after = run(worker, runner, "print('after')")
    assert after.stdout == "after\n"


def test_forget_drops_the_instance_made_ahead(worker: Sandbox, runner) -> None:
    run(worker, runner, "print('one')")
    assert run(worker, runner, "print('two')").steps.get("instance") == "made ahead"
    worker.forget()  # what `%wasi cache clear` does
    fresh = run(worker, runner, "print('three')")
    assert fresh.stdout == "three\n" and "instance" not in fresh.steps


def test_a_timeout_still_stops_a_guest_in_an_instance_made_ahead(worker: Sandbox,
                                                                 runner) -> None:
    run(worker, runner, "print('warm')")
    spinning = run(worker, runner, "while True:\n    pass\n", limits=Limits(timeout=1))
    assert spinning.steps.get("instance") == "made ahead"
    assert spinning.trap and spinning.trap.startswith("stopped by the time limit"), spinning.trap
    # Stopped by its own deadline inside the worker, not killed by the supervisor.
    assert "blocked" not in spinning.trap and spinning.steps.get("sandbox") != "restarted"
    assert run(worker, runner, "print('next')").stdout == "next\n"


def test_a_component_that_is_not_a_command_says_so_also_when_made_ahead(worker: Sandbox,
                                                                       runner) -> None:
    # The worker looks up the `run` export of the instance it makes ahead: a component
    # without one (a typed world) must still get the one-line message, every time.
    root = Path(__file__).resolve().parent.parent / "guest_src" / "plugins"
    artifact = build(root / "upper.py", wit=root / "transform.wit", world="transform")
    for _ in range(3):
        with pytest.raises(RuntimeFailure, match="does not export wasi:cli/run"):
            worker.run(artifact, Capabilities(), limits=Limits())
    assert run(worker, runner, "print('after')").stdout == "after\n"


def test_back_to_back_runs_free_their_slots(worker: Sandbox, runner) -> None:
    """Finished runs' stores are dropped on the worker's reaper thread, while the next
    run goes on: forty runs sent back to back, each using ~40 MiB of memory, never find
    the pool (8 memory slots) full, each starts from a fresh heap, and all take an
    instance made ahead or make their own."""
    source = "import sys\nblob = bytearray(40 << 20)\nprint(len(blob), 'seen' in dir(sys))\nsys.seen = 1\n"
    results = [run(worker, runner, source)]
    pid = worker.pid
    results += [run(worker, runner, source) for _ in range(39)]
    assert [(r.status, r.trap, r.stdout) for r in results] == [(0, None, f"{40 << 20} False\n")] * 40
    assert {r.steps.get("instance") for r in results[1:]} <= {"made ahead", None}
    assert worker.pid == pid  # one worker throughout: never restarted


def _resident_images(pid: int) -> list[int]:
    """The resident sizes (KiB) of the worker's writable mappings of compiled components
    that hold more than 8 MiB: memory slots of the pool that keep a snapshot resident."""
    sizes, current = [], None
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and ":" not in fields[0]:
                current = fields[1] == "rw-p" and fields[-1].endswith(".cwasm")
            elif current and fields[0] == "Rss:" and int(fields[1]) > 8 << 10:
                sizes.append(int(fields[1]))
    return sizes


def test_runs_of_a_component_reuse_one_resident_slot(worker: Sandbox, runner) -> None:
    """The pool keeps each memory slot a component used resident (so that its next run
    takes no page faults). The instance made ahead takes the slot the last run freed, so a
    student's runs of the quick-mode runner keep one slot (~23 MiB), not one more per run
    in flight (they alternated between two, and a third now and then)."""
    for n in range(6):
        assert run(worker, runner, f"print({n})").stdout == f"{n}\n"
        worker.request(("ping",))  # (served after the worker's work between requests)
    resident = _resident_images(worker.pid)
    assert len(resident) == 1, resident
