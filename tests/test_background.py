"""Build-mode cells whose imports are all in the quick-mode runner, in a real kernel.

Such a cell runs in the runner at once (its output, limits and traceback), while its
own component is built behind it by one low-priority componentize-py; the status line
says what happened, the component lands in the cache, and the next identical run uses
it. ``-o`` waits for the real component; ``%wasi config --background-builds off`` turns
it off; a cell that needs more than the runner waits as before; an Interrupt does not
stop a background build; a kernel that dies leaves no componentize-py behind.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from pathlib import Path

import psutil
import pytest

from kernels import errors, execute, kernel_in, run_and_interrupt, streams

RAN = re.compile(r"^wasi: ran in the runner in \d+ ms · building cell\.wasm…$")
BUILT = re.compile(r"^wasi: ran in the runner in \d+ ms · cell\.wasm built in \d+\.\d s$")


@pytest.fixture(scope="module")
def kernel(shared_cache: Path, quick_ready, tmp_path_factory):
    with kernel_in(tmp_path_factory.mktemp("background-kernel"), shared_cache) as (manager, client):
        yield manager, client


def statuses(messages: list[dict], parent: str | None = None) -> list[str]:
    """The status line's texts, in order (of the execution ``parent``, if given)."""
    return [m["content"]["data"]["text/plain"] for m in messages
            if m["msg_type"] in ("display_data", "update_display_data")
            and (parent is None or m["parent_header"].get("msg_id") == parent)]


def execute_keeping(client, code: str, kept: list[dict]) -> list[dict]:
    """:func:`kernels.execute`, keeping every message of other executions in ``kept``
    (a background build's late status update belongs to the cell that started it)."""
    msg_id = client.execute(code)
    messages = []
    while True:
        msg = client.get_iopub_msg(timeout=600)
        if msg["parent_header"].get("msg_id") != msg_id:
            kept.append(msg)
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages
        messages.append(msg)


def wait_for_builds(client, kept: list[dict]) -> None:
    done = execute_keeping(client, "from wasi_magic.background import default_builder\n"
                                   "print(default_builder().wait(900))", kept)
    assert streams(done, "stdout") == "True\n", done


def show(client, expression: str) -> object:
    return json.loads(streams(execute(client, f"import json; print(json.dumps({expression}))"),
                              "stdout"))


def test_output_at_once_then_the_component_behind(kernel) -> None:
    manager, client = kernel
    nonce = uuid.uuid4().hex
    cell = (f"%%wasi --result R\nimport json, statistics\n"
            f"print(json.dumps(statistics.mean([1, 2, 3])), {nonce!r})\n")
    msg_id = client.execute(cell)
    kept: list[dict] = []
    first = []
    while True:
        msg = client.get_iopub_msg(timeout=600)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        first.append(msg)
    assert streams(first, "stdout") == f"2 {nonce}\n", first
    assert RAN.match(statuses(first)[-1]), statuses(first)
    assert show(client, "[R.steps['build'], R.steps['background'], R.pending.done()]") == \
        ["runner", "building", False]  # (reading R.artifact now would wait for the build)

    # Interrupt while the build runs stops the kernel's cell, not the build.
    assert show(client, "__import__('wasi_magic.builder').builder.running_build_pids() != []") \
        or show(client, "__import__('wasi_magic.background').background.default_builder().busy()")
    messages, _ = run_and_interrupt(manager, client,
                                    "import time\nprint('sleeping', flush=True)\ntime.sleep(120)",
                                    when="sleeping")
    assert errors(messages)[0]["ename"] == "KeyboardInterrupt"

    wait_for_builds(client, kept)
    late = statuses(kept, parent=msg_id)
    assert late and BUILT.match(late[-1]), late
    steps, artifact = show(client, "[R.steps, str(R.artifact)]")
    assert steps["background"] == "built" and Path(artifact).is_file()
    assert show(client, "__import__('wasi_magic.builder').builder.running_build_pids()") == []

    again = execute(client, cell)
    assert streams(again, "stdout") == f"2 {nonce}\n"
    assert statuses(again)[-1].startswith("wasi: cached · ")
    steps = show(client, "R.steps")
    # Built and compiled behind the first run: the second one only loads it.
    assert steps["build"] == "cached" and steps["component"] in ("deserialized", "memory"), steps


def test_the_runner_gives_the_build_mode_traceback_and_messages(kernel) -> None:
    _, client = kernel
    nonce = uuid.uuid4().hex
    cell = (f"%%wasi --result R\nimport importlib\nname = '_ctypes'\nx = {nonce!r}\n"
            f"importlib.import_module(name)\n")
    messages = execute(client, cell)
    err = streams(messages, "stderr")
    assert 'File "<cell>", line 4, in <module>' in err
    # As in a built component: the plain message, not quick mode's advice.
    assert "ModuleNotFoundError: No module named '_ctypes'\n" in err, err
    assert "wasi_magic" not in err and err.rstrip().endswith("[exit status 1]")
    assert show(client, "R.steps['build']") == "runner"
    wait_for_builds(client, [])


def test_syntax_newer_than_the_kernels_runs_at_once_and_a_typo_is_one_message(kernel) -> None:
    """Binder's kernel runs Python 3.11, the guest 3.14: the guest's Python reads the cell's
    imports, so a build-mode cell in 3.12 syntax runs in the runner at once; a real syntax
    error is one message with its line, before any build."""
    _, client = kernel
    nonce = uuid.uuid4().hex
    messages = execute(client, f"%%wasi --result R\nrow = {{'n': {nonce!r}}}\n"
                               f"print(f\"{{row[\"n\"]}}\")\n")
    assert streams(messages, "stdout") == f"{nonce}\n", messages
    assert not errors(messages) and show(client, "R.steps['build']") == "runner"
    wait_for_builds(client, [])
    typo = execute(client, f"%%wasi\nrow = {{'n': {nonce!r}}}\nprint(f\"{{row[\"n\"]}}\"\n")
    (error,) = errors(typo)
    assert error["ename"] == "BuildError" and "line 2: '(' was never closed" in error["evalue"]
    assert "wasi_magic" not in "".join(error["traceback"]) + streams(typo, "stderr")
    assert streams(execute(client, "print('alive')"), "stdout") == "alive\n"


def test_o_waits_for_the_built_component(kernel) -> None:
    _, client = kernel
    nonce = uuid.uuid4().hex
    messages = execute(client, f"%%wasi --result R -o saved.wasm\nprint('out', {nonce!r})\n")
    assert streams(messages, "stdout") == f"out {nonce}\n"
    assert re.match(r"wasi: ran in the runner in \d+ ms · cell\.wasm built in \d+\.\d s · "
                    r"saved to .*saved\.wasm$", statuses(messages)[-1]), statuses(messages)
    saved, built = show(client, "[__import__('os').path.abspath('saved.wasm'), str(R.artifact)]")
    data = Path(saved).read_bytes()
    assert data[:8] == b"\0asm\x0d\x00\x01\x00"  # a component, the cell's own
    assert hashlib.sha256(data).digest() == hashlib.sha256(Path(built).read_bytes()).digest()
    assert Path(built).stat().st_size != show(client, "__import__('wasi_magic.quick').quick"
                                                      ".built_sandbox().size")


def test_the_setting_turns_background_builds_off(kernel) -> None:
    _, client = kernel
    said = streams(execute(client, "%wasi config --background-builds off"), "stdout")
    assert "background builds = off" in said
    try:
        messages = execute(client, f"%%wasi --result R\nprint('waited', {uuid.uuid4().hex!r})\n")
        assert streams(messages, "stdout").startswith("waited ")
        assert not any("runner" in text for text in statuses(messages))
        assert show(client, "R.steps['build']") == "built"
    finally:
        execute(client, "%wasi config --background-builds on")
    assert show(client, "get_ipython().magics_manager.registry['WasiMagics'].background_builds")
    bad = execute(client, "%wasi config --background-builds maybe")
    said = streams(bad, "stderr") + "".join(e["evalue"] for e in errors(bad))
    assert "--background-builds 'maybe': expected on or off" in said, bad


def test_a_cell_that_needs_more_than_the_runner_waits(kernel, tmp_path: Path) -> None:
    _, client = kernel
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "helper.py").write_text("WORD = 'local'\n")
    nonce = uuid.uuid4().hex
    messages = execute(client, f"%%wasi --result R --path {tmp_path / 'mine'}\n"
                               f"import helper\nprint(helper.WORD, {nonce!r})\n")
    assert streams(messages, "stdout") == f"local {nonce}\n"
    assert show(client, "R.steps['build']") == "built"
    assert not any("runner" in text for text in statuses(messages))


def test_a_dead_kernel_leaves_no_build_behind(shared_cache: Path, quick_ready,
                                              tmp_path: Path) -> None:
    with kernel_in(tmp_path, shared_cache) as (manager, client):
        execute(client, f"%%wasi -q\nprint({uuid.uuid4().hex!r})\n")
        pids: list[int] = []
        for _ in range(600):  # the build starts in the background within moments
            pids = show(client, "__import__('wasi_magic.builder').builder.running_build_pids()")
            if pids:
                break
            time.sleep(0.05)
        assert pids, "no background build started"
        # Leaving the block kills the kernel (SIGKILL: no atexit handler runs).
    for pid in pids:
        for _ in range(200):  # the OS ends it when its parent dies
            if gone(pid):
                break
            time.sleep(0.05)
        assert gone(pid), f"componentize-py {pid} outlived its kernel"


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
