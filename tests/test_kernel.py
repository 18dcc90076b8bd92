"""``%%wasi`` in a real Jupyter kernel (ipykernel over jupyter_client): what a notebook sees."""

from __future__ import annotations

from pathlib import Path

import pytest
from kernels import execute, kernel_in, streams


@pytest.fixture(scope="module")
def kernel(shared_cache: Path, tmp_path_factory):
    work = tmp_path_factory.mktemp("kernel")
    (work / "data").mkdir()
    (work / "data" / "input.txt").write_text("from the host\n")
    with kernel_in(work, shared_cache) as (_, client):
        yield client


def test_cell_output_streams_into_the_notebook(kernel) -> None:
    messages = execute(kernel, (
        "%%wasi --dir data::/data --env MY_VAR=hello -- /data/input.txt\n"
        "import os, sys\n"
        "print('Hello from WASI!', sys.argv[1:], os.environ['MY_VAR'])\n"
        "print(open(sys.argv[1]).read().upper(), end='')\n"
        "print('a warning', file=sys.stderr)\n"))
    assert streams(messages, "stdout") == ("Hello from WASI! ['/data/input.txt'] hello\n"
                                           "FROM THE HOST\n")
    assert streams(messages, "stderr") == "a warning\n"
    # The status line is a display, updated in place, that ends as a summary.
    displays = [m for m in messages if m["msg_type"] in ("display_data", "update_display_data")]
    assert displays, [m["msg_type"] for m in messages]
    final = displays[-1]["content"]["data"]["text/plain"]
    # Built (or cached) first, or, not built yet, run in the quick-mode runner while it is
    # built behind (tests/test_background.py).
    assert final.startswith("wasi: ") and ("MiB" in final or "ran in the runner" in final), final
    assert not [m for m in messages if m["msg_type"] == "error"]


def test_guest_error_leaves_the_kernel_working(kernel) -> None:
    messages = execute(kernel, "%%wasi -q\nprint('before')\nraise RuntimeError('boom')\n")
    assert streams(messages, "stdout") == "before\n"
    err = streams(messages, "stderr")
    assert 'File "<cell>", line 2, in <module>' in err and "RuntimeError: boom" in err
    assert err.rstrip().endswith("[exit status 1]")
    after = execute(kernel, "print(6 * 7)")
    assert streams(after, "stdout") == "42\n"


def test_bad_flag_is_a_short_error(kernel) -> None:
    # IPython shows a UsageError as one line on stderr, no traceback.
    messages = execute(kernel, "%%wasi --dir missing::/m\nprint(1)\n")
    err = streams(messages, "stderr")
    assert err.startswith("UsageError: --dir 'missing::/m': the host directory")
    assert "Traceback" not in err and "wasi_magic" not in err
    # A build error is an error output whose 'traceback' is just the message.
    messages = execute(kernel, "%%wasi\nimport numpy\n")
    errors = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert len(errors) == 1 and errors[0]["ename"] == "GuestImportError"
    assert "line 1: import numpy" in errors[0]["evalue"]
    assert not any("wasi_magic" in line for line in errors[0]["traceback"])


def _lines_as_shown(messages: list[dict]) -> list[tuple[str, str]]:
    """The lines of the stream outputs, in the order the notebook shows them (consecutive
    outputs of one stream run together, as the notebook shows them)."""
    runs: list[list[str]] = []
    for m in messages:
        if m["msg_type"] == "stream":
            if runs and runs[-1][0] == m["content"]["name"]:
                runs[-1][1] += m["content"]["text"]
            else:
                runs.append([m["content"]["name"], m["content"]["text"]])
    return [(name, line) for name, text in runs for line in text.splitlines()]


def test_stdout_and_stderr_show_in_the_order_the_guest_wrote_them(kernel) -> None:
    # ipykernel sends each stream on its own schedule: without a flush when the guest
    # switches streams, the stderr lines would show above the stdout written before them.
    messages = execute(kernel, (
        "%%wasi --quick -q\nimport sys\nfor i in range(3):\n"
        "    print('out', i)\n    print('err', i, file=sys.stderr)\nprint('end')\n"))
    assert _lines_as_shown(messages) == [("stdout", "out 0"), ("stderr", "err 0"), ("stdout", "out 1"),
                     ("stderr", "err 1"), ("stdout", "out 2"), ("stderr", "err 2"),
                     ("stdout", "end")]


def test_wasi_run_output_shows_in_order_too(kernel, tmp_path: Path) -> None:
    # %wasi run (a built component): the same pairing of the two streams.
    source = tmp_path / "both.py"
    source.write_text("import sys\nprint('first')\nprint('second', file=sys.stderr)\n"
                      "print('third')\n")
    execute(kernel, f"%%capture\n%wasi build {source} -o {tmp_path / 'both.wasm'}")
    messages = execute(kernel, f"%wasi run {tmp_path / 'both.wasm'}")
    assert _lines_as_shown(messages) == [("stdout", "first"), ("stderr", "second"), ("stdout", "third")]


def test_a_guest_switching_streams_at_every_write_cannot_flood_the_notebook(kernel) -> None:
    # Hostile: 5,000 switches between stdout and stderr. The order is kept for the first
    # switches only; the notebook then gets ipykernel's grouped outputs, not one per switch.
    messages = execute(kernel, (
        "%%wasi --quick -q\nimport sys\nfor i in range(5000):\n"
        "    sys.stdout.write('o'); sys.stdout.flush(); sys.stderr.write('e')\n"))
    outputs = [m for m in messages if m["msg_type"] == "stream"]
    assert streams(messages, "stdout") == "o" * 5000 and streams(messages, "stderr") == "e" * 5000
    assert len(outputs) < 1000, len(outputs)
    assert streams(execute(kernel, "print('alive')"), "stdout") == "alive\n"
