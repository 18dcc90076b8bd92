"""A guest's stdout through a pipe the sandbox worker reads (not Wasmtime's callback).

What must not change: output streams while the guest runs, stdout and stderr arrive in
the order written, the output cap holds, and no byte of one run reaches another run —
also when a run is stopped while it writes. Each case uses a real worker and the real
quick-mode sandbox.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wasi_magic import Capabilities
from wasi_magic.limits import Limits
from wasi_magic.quick import quick_sandbox, with_source
from wasi_magic.sandbox import stdout_pipe
from wasi_magic.sandbox.supervisor import Sandbox


@pytest.fixture(scope="module")
def runner(shared_cache: Path):
    return quick_sandbox()


@pytest.fixture(scope="module")
def worker():
    sandbox = Sandbox(spare=False)
    yield sandbox
    sandbox.close()


def run(sandbox: Sandbox, artifact, source: str, caps: Capabilities | None = None,
        limits: Limits | None = None, **streams):
    return sandbox.run(artifact, with_source(caps or Capabilities(), source),
                       limits=limits or Limits(), **streams)


def test_this_system_uses_the_pipe() -> None:
    # On Linux the worker's runtime takes the pipe; elsewhere it keeps the callback.
    assert stdout_pipe.available() is not None


def test_output_streams_while_the_guest_runs(worker: Sandbox, runner, tmp_path: Path) -> None:
    # The guest waits for a file that the test creates only once it has seen the first
    # line: if stdout were delivered at the end of the run, the guest would hit its limit.
    caps = Capabilities.parse(dirs=[f"{tmp_path}::/flag::rw"])
    seen: list[str] = []

    def on_stdout(text: str) -> None:
        seen.append(text)
        if "waiting" in "".join(seen):
            (tmp_path / "go").touch()

    source = ("import os\nprint('waiting')\n"
              "while not os.path.exists('/flag/go'):\n    pass\nprint('done')\n")
    result = run(worker, runner, source, caps, Limits(timeout=60), stdout=on_stdout)
    assert result.trap is None and result.stdout == "waiting\ndone\n"
    assert "".join(seen) == "waiting\ndone\n"


def test_stdout_and_stderr_arrive_in_the_order_written(worker: Sandbox, runner) -> None:
    order: list[tuple[str, str]] = []
    source = ("import sys\nfor i in range(20):\n"
              "    print('out', i)\n    print('err', i, file=sys.stderr, flush=True)\n")
    result = run(worker, runner, source, stdout=lambda t: order.append(("out", t)),
                 stderr=lambda t: order.append(("err", t)))
    assert result.status == 0
    lines = "".join(text for _, text in order).splitlines()
    assert lines == [f"{kind} {i}" for i in range(20) for kind in ("out", "err")]


def test_the_output_cap_holds_and_nothing_carries_over(worker: Sandbox, runner) -> None:
    big = run(worker, runner, "import sys\nfor _ in range(64):\n    sys.stdout.write('x' * 65536)\n",
              limits=Limits(max_output=1000))
    assert big.truncated and big.stdout.startswith("x" * 1000)
    assert "truncated after" in big.stdout and len(big.stdout) < 1200
    assert run(worker, runner, "print('next')").stdout == "next\n"


def test_a_run_stopped_while_writing_leaves_nothing_for_the_next(worker: Sandbox,
                                                                 runner) -> None:
    flood = run(worker, runner, "while True:\n    print('y' * 4000)\n", limits=Limits(timeout=1))
    assert flood.trap and flood.trap.startswith("stopped by the time limit"), flood.trap
    streamed: list[str] = []
    after = run(worker, runner, "print('clean')", stdout=streamed.append)
    assert after.stdout == "clean\n" and "".join(streamed) == "clean\n"


def test_a_config_made_ahead_holds_only_argv_and_streams(worker: Sandbox, runner,
                                                         tmp_path: Path) -> None:
    # Between runs the worker makes the next run's WASI config with the last run's argv
    # and the output streams; each run adds its own environment, folders and stdin.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "input.txt").write_text("granted\n")
    probe = ("import os, sys\n"
             "print(sys.argv[1:], sorted(k for k in os.environ if k != 'PWD'))\n"
             "print(os.path.exists('/data/input.txt'), sys.stdin.read())\n"
             "print('to stderr', file=sys.stderr, flush=True)\nprint('last')\n")
    first = Capabilities.parse(["data::/data::ro"], ["A=1"], ["x"], cwd=tmp_path)
    same_args = Capabilities.parse([], ["B=2"], ["x"], stdin_text="typed", cwd=tmp_path)
    other_args = Capabilities.parse([], [], ["y"], cwd=tmp_path)
    order: list[tuple[str, str]] = []
    results = [run(worker, runner, probe, caps, stdout=lambda t: order.append(("out", t)),
                   stderr=lambda t: order.append(("err", t)))
               for caps in (first, same_args, same_args, other_args, first)]
    assert [(r.stdout, r.stderr) for r in results] == [
        ("['x'] ['A']\nTrue \nlast\n", "to stderr\n"),
        ("['x'] ['B']\nFalse typed\nlast\n", "to stderr\n"),
        ("['x'] ['B']\nFalse typed\nlast\n", "to stderr\n"),
        ("['y'] []\nFalse \nlast\n", "to stderr\n"),
        ("['x'] ['A']\nTrue \nlast\n", "to stderr\n"),
    ]
    assert all(r.steps.get("instance") == "made ahead" for r in results[1:])
    # Streamed in the order written, stderr included, run after run.
    expected = "".join(r.stdout.replace("last\n", "") + r.stderr + "last\n" for r in results)
    assert "".join(text for _, text in order) == expected
