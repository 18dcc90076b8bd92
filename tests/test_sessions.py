"""Issue 16: sessions, a sandbox that remembers across cells.

Real parts throughout: the session component is built by componentize-py
(once, into the shared test cache), cells run in a real sandbox worker, and
the notebook behaviour is driven through a real kernel.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from pathlib import Path

import nbformat
import pytest

from kernels import errors, execute, kernel_in, run_and_interrupt, streams
from wasi_magic import Capabilities
from wasi_magic.errors import UsageError
from wasi_magic.quick import quick_sandbox, with_source
from wasi_magic.sandbox.supervisor import Sandbox
from wasi_magic.sessions import MAX_SESSIONS, Session, SessionLost, Sessions


@pytest.fixture(scope="module")
def sandbox(session_ready):
    """A sandbox of this module's own (no spare worker: one process is enough here)."""
    box = Sandbox(spare=False)
    yield box
    box.close()


# --- the Python API ------------------------------------------------------------------------


def test_state_persists_and_a_cell_exception_keeps_the_session(sandbox, tmp_path) -> None:
    (tmp_path / "rows.txt").write_text("a\nb\nc\n")
    caps = Capabilities.parse(dirs=[f"{tmp_path}::/data::ro"])
    with Session("api", caps, sandbox=sandbox) as s:
        first = s.run("import json\nrows = open('/data/rows.txt')\ncount = 0\n"
                      "def grow(n):\n    global count\n    count += n\n    return 1 / (n - 3)\n")
        assert first.ok and first.started and first.cell == 1
        assert s.run("grow(1); print(rows.readline().strip(), count)").stdout == "a 1\n"
        failed = s.run("grow(3)")  # ZeroDivisionError inside a function of cell 1
        assert failed.status == 1 and failed.alive and failed.trap is None
        assert '<session cell 1>", line 7, in grow' in failed.stderr
        assert "return 1 / (n - 3)" in failed.stderr and "ZeroDivisionError" in failed.stderr
        again = s.run("print(rows.readline().strip(), count, json.dumps([count]))")
        assert again.stdout == "b 4 [4]\n" and not again.started and again.cell == 4
        assert s.run("import sys; sys.exit(7)").status == 7
        assert s.run("print('still here')").stdout == "still here\n"
        # The guest's Python reads the cell, whatever the kernel's version.
        typo = s.run("def (:")
        assert (typo.status, typo.alive, typo.stdout) == (1, True, "")
        assert '<session cell 7>", line 1' in typo.stderr and "SyntaxError" in typo.stderr
        assert s.run("type Row = list[int]\nprint(Row.__value__, count)").stdout == \
            "list[int] 4\n"
        for bad in ("print(1)\0", "x = '\ud800'", b"print(1)"):
            with pytest.raises(UsageError):
                s.run(bad)
        assert s.cells == 8 and s.state == "alive"


def test_two_sessions_share_nothing(sandbox) -> None:
    one, two = Session("one", sandbox=sandbox), Session("two", sandbox=sandbox)
    try:
        one.run("import sys\nsecret = 'one'\nsys.modules['planted'] = sys\nimport os\n"
                "os.environ['LEAK'] = '1'")
        seen = two.run("import sys, os\nprint('secret' in globals(), 'planted' in sys.modules, "
                       "'LEAK' in os.environ)")
        assert seen.stdout == "False False False\n"
        assert one.run("print(secret)").stdout == "one\n"
    finally:
        one.close()
        two.close()


def test_a_session_dropped_without_close_lets_go_of_its_instance(sandbox) -> None:
    before = sandbox.request(("ping",))["sessions"]
    dropped = Session("dropped", sandbox=sandbox)
    assert dropped.run("big = bytearray(8 << 20)\nprint(len(big))").stdout == "8388608\n"
    assert sandbox.request(("ping",))["sessions"] == before + 1
    del dropped
    gc.collect()
    # The next request (any) first closes it in the worker.
    assert sandbox.request(("ping",))["sessions"] == before
    with Session("after", sandbox=sandbox) as kept:
        assert kept.run("print('fine')").stdout == "fine\n"


def test_as_many_sessions_as_the_kernel_allows_run_side_by_side(sandbox) -> None:
    # Sessions keep their instances outside the worker's pool (which holds 8 memories,
    # sized for one run at a time): measured before, the 9th session failed to start.
    sessions = [Session(f"many{index}", sandbox=sandbox) for index in range(MAX_SESSIONS)]
    try:
        for index, session in enumerate(sessions):
            assert session.run(f"mine = {index}").ok
        assert [s.run("print(mine)").stdout for s in sessions] == \
            [f"{index}\n" for index in range(MAX_SESSIONS)]
        quick = sandbox.run(quick_sandbox(), with_source(Capabilities(), "print('quick')"))
        assert quick.stdout == "quick\n"  # cells still find a slot in the pool
    finally:
        for session in sessions:
            session.close()


def test_limits_apply_per_cell(sandbox) -> None:
    with Session("limits", fuel_metering=True, sandbox=sandbox) as s:
        s.run("x = 'kept'")
        loud = s.run("print('y' * 5000)", output_limit=100)
        assert loud.truncated and len(loud.stdout) < 300
        quiet = s.run("print('y' * 5000)")
        assert not quiet.truncated and quiet.stdout == "y" * 5000 + "\n"
        small = s.run("print(sum(range(100)))", fuel=50_000_000)
        assert small.ok and 0 < small.fuel_used < 50_000_000
        spent = s.run("while True: pass", fuel=1_000_000)
        assert "fuel limit" in spent.trap and not spent.alive and "ended" in spent.trap
        with pytest.raises(SessionLost, match="session reset limits"):
            s.run("print(x)")


def test_fuel_needs_a_metering_session(sandbox) -> None:
    with Session("plain", sandbox=sandbox) as s:
        s.run("x = 1")
        with pytest.raises(UsageError, match="does not meter fuel"):
            s.run("print(x)", fuel=10**6)
        assert s.run("print(x)").stdout == "1\n"  # refused before anything ran


def test_a_deadline_ends_the_session_and_reset_starts_afresh(sandbox) -> None:
    s = Session("deadline", sandbox=sandbox)
    s.run("x = 1")
    stopped = s.run("import time\nwhile True: time.sleep(0.01)", timeout=0.5)
    assert stopped.trap.startswith("stopped by the time limit") and not stopped.alive
    assert s.state.startswith("ended: stopped by the time limit")
    s.reset()
    fresh = s.run("print('x' in globals())")
    assert fresh.stdout == "False\n" and fresh.started
    s.close()
    with pytest.raises(SessionLost, match="closed"):
        s.run("pass")


def test_memory_limit_is_the_sessions(sandbox) -> None:
    with Session("memory", max_memory=64 << 20, sandbox=sandbox) as s:
        big = s.run("blob = bytearray(200 * 1024 * 1024)")
        assert big.status == 1 and "MemoryError" in big.stderr and big.alive
        assert "64.0 MiB" in big.limit_note
        assert s.run("blob = bytearray(1024); print(len(blob))").stdout == "1024\n"
        with pytest.raises(UsageError, match="fixed when a session starts"):
            s.run("pass", limits=__import__("wasi_magic").Limits(max_memory=1 << 30))


def test_exit_ends_the_session(sandbox) -> None:
    with Session("exit", sandbox=sandbox) as s:
        gone = s.run("import os\nprint('bye', flush=True)\nos._exit(3)")
        # WASI 0.2's exit carries only ok/err: any non-zero code arrives as 1.
        assert gone.status == 1 and not gone.alive and gone.stdout == "bye\n"
        assert "exited the interpreter" in gone.ended


def test_a_blocked_cell_kills_the_worker_and_every_session_in_it_is_lost(session_ready) -> None:
    box = Sandbox(spare=False)
    try:
        blocked, bystander = Session("blocked", sandbox=box), Session("bystander", sandbox=box)
        bystander.run("kept = 1")
        result = blocked.run("import select\nselect.select([], [], [], 1e9)", timeout=0.5)
        assert "blocked in a host call, so the sandbox was restarted" in result.trap
        assert "session 'blocked' ended with it" in result.trap and not result.alive
        with pytest.raises(SessionLost, match="its sandbox worker was restarted "
                                              r"\(killed by the supervisor\)"):
            bystander.run("print(kept)")
        bystander.reset()
        assert bystander.run("print('kept' in globals())").stdout == "False\n"
    finally:
        box.close()


def test_names_and_grants_are_checked() -> None:
    for bad in ("", "a b", "../x", "x" * 65, "1st", "a;b"):
        with pytest.raises(UsageError, match="session name"):
            Session(bad)
    registry = Sessions(sandbox=Sandbox(spare=False))
    caps = Capabilities.parse(env=["A=1"])
    first = registry.for_cell("g", caps, None, grants_given=True, memory_given=False)
    assert registry.for_cell("g", Capabilities(), None, grants_given=False,
                             memory_given=False) is first
    with pytest.raises(UsageError, match="no session named 'nope'"):
        registry.reset("nope")
    for index in range(MAX_SESSIONS - 1):
        registry.for_cell(f"s{index}", caps, None, grants_given=True, memory_given=False)
    with pytest.raises(UsageError, match=f"at most {MAX_SESSIONS} sessions"):
        registry.for_cell("one_more", caps, None, grants_given=True, memory_given=False)
    registry.close("s0")  # never started: closing needs no worker
    registry.for_cell("one_more", caps, None, grants_given=True, memory_given=False)


def test_warm_skips_session_cells_and_builds_the_component(tmp_path) -> None:
    from wasi_magic.warm import wasi_cells
    notebook = tmp_path / "n.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%%wasi --session s\nimport json\n"),
                nbformat.v4.new_code_cell("%%wasi -q\nprint(1)\n")]
    nbformat.write(nb, notebook)
    assert [cell.index for cell in wasi_cells(notebook)] == [1]


# --- through a real kernel -----------------------------------------------------------------


def _wait_dead(pid: int) -> None:
    """Until ``pid`` has exited and its parent (the kernel) can reap it.

    A killed worker's main thread turns zombie first; the process can be reaped only
    once every other thread (Wasmtime's, tearing down large reservations) has gone.
    """
    for _ in range(3000):
        try:
            zombie = "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
            if zombie and len(os.listdir(f"/proc/{pid}/task")) <= 1:
                return
        except OSError:
            return
        time.sleep(0.01)
    raise AssertionError(f"worker {pid} still runs 30 s after SIGKILL")


def _error_lines(messages: list[dict]) -> list[str]:
    """What a cell reported as an error: its error messages, and the UsageError lines
    IPython prints to stderr instead."""
    lines = [f"{e['ename']}: {e['evalue']}" for e in errors(messages)]
    return lines + [line for line in streams(messages, "stderr").splitlines()
                    if line.startswith("UsageError: ")]


@pytest.fixture(scope="module")
def kernel(session_ready, shared_cache, tmp_path_factory):
    work = tmp_path_factory.mktemp("sessions-kernel")
    (work / "data").mkdir()
    (work / "data" / "note.txt").write_text("from the host\n")
    with kernel_in(work, shared_cache) as (manager, client):
        yield manager, client


def test_kernel_session_remembers_and_sessions_are_isolated(kernel) -> None:
    _, client = kernel
    first = execute(client, "%%wasi --session k1 --dir data::/data::ro --max-memory 64MiB\n"
                            "import json\nnote = open('/data/note.txt')\ntotal = 40\n")
    shown = "".join(m["content"]["data"]["text/plain"] for m in first
                    if m["msg_type"] in ("display_data", "update_display_data"))
    assert "session k1 started" in shown and "/data (read-only)" in shown and "64.0 MiB" in shown
    assert not errors(first)
    second = execute(client, "%%wasi --session k1\ntotal += 2\nprint(total, note.read().strip())")
    assert streams(second, "stdout") == "42 from the host\n"
    assert not any(m["msg_type"] == "display_data" for m in second)  # grants shown once
    other = execute(client, "%%wasi --session k2\nprint('total' in globals())\n"
                            "open('/data/note.txt')")
    assert streams(other, "stdout") == "False\n"
    assert "FileNotFoundError" in streams(other, "stderr")  # k2 was granted nothing
    same = execute(client, "%%wasi --session k1 --dir data::/data::ro --max-memory 64MiB\n"
                           "print(json.dumps(total))")
    assert streams(same, "stdout") == "42\n"  # repeating the same grants is fine
    kept = execute(client, "%%wasi --session k1 --quick --out O --result R\nprint(total)")
    assert streams(kept, "stdout") == ""
    described = execute(client, "print(type(R).__name__, R.session, R.cell, R.alive, repr(O))")
    assert streams(described, "stdout") == "SessionResult k1 4 True '42\\n'\n"


def test_kernel_refuses_a_grant_change_and_the_panel(kernel) -> None:
    _, client = kernel
    execute(client, "%%wasi --session k3 --env A=1\nx = 1")
    changed = _error_lines(execute(client, "%%wasi --session k3 --env A=2\nprint(x)"))
    assert len(changed) == 1 and "session 'k3' was started with env" in changed[0]
    assert "`%wasi session reset k3`" in changed[0]
    memory = _error_lines(execute(client, "%%wasi --session k3 --max-memory 1GiB\nprint(x)"))
    assert "max memory 1.0 GiB" in memory[0]
    panel = _error_lines(execute(client, "%%wasi --session k3 --panel\nprint(x)"))
    assert "--panel re-runs a cell in fresh instances" in panel[0]
    build = _error_lines(execute(client, "%%wasi --session k3 --build\nprint(x)"))
    assert "cannot be combined with --build" in build[0]
    assert streams(execute(client, "%%wasi --session k3\nprint(x)"), "stdout") == "1\n"


def test_kernel_list_reset_close(kernel) -> None:
    _, client = kernel
    execute(client, "%%wasi --session k4 --env A=1\nx = 1")
    listing = streams(execute(client, "%wasi session list"), "stdout")
    assert "k4: alive · 1 cell(s) · env" in listing
    execute(client, "%wasi session reset k4")
    fresh = execute(client, "%%wasi --session k4 --env A=2\nimport os\n"
                            "print('x' in globals(), os.environ['A'])")
    assert streams(fresh, "stdout") == "False 2\n"  # a reset session takes the new grants
    closed = streams(execute(client, "%wasi session close k4"), "stdout")
    assert "session k4 closed" in closed
    assert "k4" not in streams(execute(client, "%wasi session list"), "stdout")
    bad = _error_lines(execute(client, "%wasi session close k4"))
    assert "no session named 'k4'" in bad[0]


def test_kernel_limits_apply_per_cell(kernel) -> None:
    _, client = kernel
    execute(client, "%%wasi --session k5\nx = 1")
    cut = execute(client, "%%wasi --session k5 --max-output 1KiB\nprint('z' * 5000)")
    assert "truncated after 1.0 KiB" in streams(cut, "stdout")
    whole = execute(client, "%%wasi --session k5\nprint('z' * 5000)")
    assert streams(whole, "stdout") == "z" * 5000 + "\n"
    unmetered = _error_lines(execute(client, "%%wasi --session k5 --fuel 1e6\nprint(x)"))
    assert "session 'k5' does not meter fuel" in unmetered[0]
    execute(client, "%%wasi --session k8 --fuel 1e9\ny = 0")  # its first cell: metered
    assert streams(execute(client, "%%wasi --session k8 --fuel 1e9\ny += 1\nprint(y)"),
                   "stdout") == "1\n"
    spent = execute(client, "%%wasi --session k8 --fuel 1e6\nwhile True: y += 1")
    assert "stopped by the fuel limit: used all 1,000,000 units" in streams(spent, "stderr")
    stopped = execute(client, "%%wasi --session k5 --timeout 0.5\nwhile True: pass")
    text = streams(stopped, "stderr")
    assert "stopped by the time limit" in text and "session 'k5' ended" in text
    lost = _error_lines(execute(client, "%%wasi --session k5\nprint(x)"))
    assert len(lost) == 1 and "session 'k5' ended (stopped by the time limit" in lost[0]
    assert "\n" not in lost[0]


def test_kernel_interrupt_stops_the_cell_and_says_the_session_ended(kernel) -> None:
    manager, client = kernel
    execute(client, "%%wasi --session k6\nx = 1")
    messages, _ = run_and_interrupt(manager, client, "%%wasi --session k6\n"
                                    "print('running', flush=True)\nwhile True: pass")
    [error] = errors(messages)
    assert error["ename"] == "GuestInterrupted"
    assert "session 'k6': it ended" in error["evalue"]
    lost = _error_lines(execute(client, "%%wasi --session k6\nprint(x)"))
    assert "session 'k6' ended" in lost[0]
    assert streams(execute(client, "print('kernel fine')"), "stdout") == "kernel fine\n"


def test_kernel_killed_worker_is_reported_and_not_restarted_silently(kernel) -> None:
    _, client = kernel
    execute(client, "%%wasi --session k7\nx = 7")
    pid = int(streams(execute(client, "from wasi_magic.sandbox.supervisor import default_sandbox\n"
                                      "print(default_sandbox().pid)"), "stdout"))
    os.kill(pid, signal.SIGKILL)
    _wait_dead(pid)  # gone before the next cell, as after an OOM kill
    after = execute(client, "%%wasi --session k7\nprint(x)")
    lost = _error_lines(after)
    assert len(lost) == 1 and "\n" not in lost[0], (streams(after, "stdout"),
                                                     streams(after, "stderr"))
    assert "session 'k7' ended (its sandbox worker was restarted (killed by signal 9" in lost[0]
    again = execute(client, "%%wasi --session k7\nprint(x)")
    assert "session 'k7' ended" in _error_lines(again)[0], (streams(again, "stdout"),
                                                            streams(again, "stderr"))
    execute(client, "%wasi session reset k7")
    again = execute(client, "%%wasi --session k7\nprint('x' in globals())")
    assert streams(again, "stdout") == "False\n"
