"""WASI Preview 1 core modules: the hand-written WAT guests in guest_src/p1/, run for real.

Each guest runs with and without the grants it needs; what it prints, the
status it ends with and the errno it is refused with are checked exactly.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, python_child
from wasi_magic import preview1
from wasi_magic.capabilities import Capabilities
from wasi_magic.errors import BuildError, RuntimeFailure
from wasi_magic.limits import Limits
from wasi_magic.preview1 import assemble, errno_name, module_interface, run_module

P1 = ROOT / "guest_src" / "p1"


@functools.lru_cache(maxsize=None)
def guest(name: str) -> bytes:
    """guest_src/p1/NAME.wat, assembled."""
    return assemble((P1 / f"{name}.wat").read_text(), name=f"{name}.wat")


def run(name: str, sandbox: Path | None = None, *, dirs=(), env=(), args=(), **options):
    caps = Capabilities.parse(dirs=dirs, env=env, args=args, cwd=sandbox, host_env={})
    return run_module(guest(name), caps, name=f"{name}.wasm", **options)


# --- hello ------------------------------------------------------------------------------------


def test_hello_writes_stdout_and_stderr() -> None:
    seen: list[str] = []
    result = run_module(guest("hello"), stdout=seen.append)
    assert (result.status, result.trap, result.ok) == (0, None, True)
    assert result.stdout == "Hello from WASI Preview 1!\n"
    assert result.stderr == "(this line went to stderr)\n"
    assert "".join(seen) == result.stdout  # streamed to the callback as well
    assert result.artifact is None and result.capabilities == Capabilities()


def test_compiled_module_is_reused_from_memory() -> None:
    preview1.forget()
    first = run_module(guest("hello"))
    again = run_module(guest("hello"))
    assert first.steps == {"module": "compiled"} and again.steps == {"module": "memory"}


def test_output_limit_cuts_a_stream() -> None:
    result = run_module(guest("hello"), output_limit=5)
    assert result.truncated and result.stdout.startswith("Hello\n[wasi-magic: stdout truncated")


# --- arguments and environment -----------------------------------------------------------------


def test_args_env_without_grants_sees_only_its_name() -> None:
    result = run("args_env")
    assert result.status == 0
    assert result.stdout == "argc: 1\nargv[0]: args_env.wasm\nenviron count: 0\n"


def test_args_env_with_args_and_env() -> None:
    result = run("args_env", args=["one", "two words", ""], env=["MY_VAR=hello", "EQ=a=b"])
    assert result.status == 0
    assert result.stdout == (
        "argc: 4\n"
        "argv[0]: args_env.wasm\n"
        "argv[1]: one\n"
        "argv[2]: two words\n"
        "argv[3]: \n"
        "environ count: 2\n"
        "environ[0]: MY_VAR=hello\n"
        "environ[1]: EQ=a=b\n")


def test_args_env_grows_memory_for_long_arguments() -> None:
    long = ["x" * 5000] * 30  # 150 KB of text: more than the module's one page of memory
    result = run("args_env", args=long)
    assert result.status == 0 and result.stdout.count("x" * 5000) == 30


def test_argv0_defaults_to_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "tool.wasm"
    path.write_bytes(guest("args_env"))
    result = run_module(path)
    assert result.stdout.splitlines()[1] == "argv[0]: tool.wasm" and result.artifact == path
    assert run_module(guest("args_env")).stdout.splitlines()[1] == "argv[0]: module.wasm"


# --- cat: a preopened directory -----------------------------------------------------------------


def test_cat_reads_a_granted_file(sandbox: Path) -> None:
    for spelling in ("input.txt", "/data/input.txt"):
        result = run("cat", sandbox, dirs=["data::/data"], args=[spelling])
        assert (result.status, result.stdout, result.stderr) == (0, "hello file\n", ""), spelling


def test_cat_reads_through_a_read_only_grant(sandbox: Path) -> None:
    result = run("cat", sandbox, dirs=["data::/data::ro"], args=["input.txt"])
    assert (result.status, result.stdout) == (0, "hello file\n")


def test_cat_copies_a_file_larger_than_its_buffer(sandbox: Path) -> None:
    text = "".join(f"line {i}\n" for i in range(3000))  # ~26 KB, several 4 KiB reads
    (sandbox / "data" / "big.txt").write_text(text)
    result = run("cat", sandbox, dirs=["data::/data"], args=["big.txt"])
    assert result.status == 0 and result.stdout == text


def test_cat_without_a_grant_is_refused(sandbox: Path) -> None:
    result = run("cat", sandbox, args=["/data/input.txt"])
    assert (result.status, result.stdout) == (1, "")
    assert result.stderr == "cat: no directory was granted: fd_prestat_get(3) failed with errno 8\n"


def test_cat_cannot_leave_its_grant_or_open_missing_files(sandbox: Path) -> None:
    escaped = run("cat", sandbox, dirs=["data::/data"], args=["../secret.txt"])
    assert (escaped.status, escaped.stdout) == (1, "")
    assert escaped.stderr == "cat: cannot open ../secret.txt: errno 63\n"  # perm
    assert "canary" not in escaped.stdout + escaped.stderr
    missing = run("cat", sandbox, dirs=["data::/data"], args=["nope.txt"])
    assert (missing.status, missing.stderr) == (1, "cat: cannot open nope.txt: errno 44\n")  # noent


def test_cat_without_a_file_name_shows_usage(sandbox: Path) -> None:
    result = run("cat", sandbox, dirs=["data::/data"])
    assert result.status == 2 and result.stderr.startswith("usage: cat.wasm FILE")


# --- refused_open: the errno of a refused open -------------------------------------------------


def test_refused_open_without_a_grant_gets_badf() -> None:
    result = run("refused_open")
    assert result.status == 0
    assert result.stdout == ("open input.txt: failed, errno 8 (badf)\n"
                             "open ../secret.txt: failed, errno 8 (badf)\n")


def test_refused_open_with_a_grant_opens_inside_but_not_outside(sandbox: Path) -> None:
    result = run("refused_open", sandbox, dirs=["data::/data"])
    assert result.stdout == ("open input.txt: ok, got fd 4\n"
                             "open ../secret.txt: failed, errno 63 (perm)\n")


def test_errno_names_match_the_specification() -> None:
    assert [errno_name(n) for n in (0, 2, 8, 28, 44, 54, 63, 76)] == [
        "success", "acces", "badf", "inval", "noent", "notdir", "perm", "notcapable"]
    assert errno_name(77) == "errno 77"
    # The guest's own small table agrees with ours.
    wat = (P1 / "refused_open.wat").read_text()
    for number in (2, 8, 28, 44, 54, 63, 76):
        assert f'"{errno_name(number)}")' in wat and f";; {number:>2}: " in wat


# --- exit status -------------------------------------------------------------------------------


def test_exit_status_is_reported() -> None:
    result = run("exit_status")
    assert (result.status, result.trap, result.ok) == (3, None, False)
    assert result.stdout == "exiting with status 3\n"
    assert "never printed" not in result.stdout


def test_proc_exit_zero_is_success() -> None:
    wasm = assemble("""
        (module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start") (call $exit (i32.const 0)) unreachable))""")
    result = run_module(wasm)
    assert (result.status, result.trap, result.ok) == (0, None, True)


def test_a_module_without_memory_cannot_call_wasi() -> None:
    # Even proc_exit fails if the module does not export its memory.
    wasm = assemble("""
        (module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (func (export "_start") (call $exit (i32.const 0))))""")
    result = run_module(wasm)
    assert result.status == 1
    assert result.trap == ("guest trapped: missing required memory export: a module that calls "
                           'wasi_snapshot_preview1 functions must export its memory as "memory"')


# --- stdin -------------------------------------------------------------------------------------

ECHO = """
(module
  ;; Copy stdin (fd 0) to stdout (fd 1), 64 bytes at a time.
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $more
      (i32.store (i32.const 0) (i32.const 64))   ;; iovec: buffer at 64 ...
      (i32.store (i32.const 4) (i32.const 64))   ;; ... of 64 bytes
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (if (i32.load (i32.const 8))
        (then
          (i32.store (i32.const 4) (i32.load (i32.const 8)))
          (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))
          (br $more))))))
"""


def test_stdin_text_and_file_reach_the_guest(sandbox: Path) -> None:
    wasm = assemble(ECHO)
    assert run_module(wasm).stdout == ""  # stdin is empty unless granted
    text = "over sixty-four bytes of text, so that it takes more than one read\n"
    assert run_module(wasm, Capabilities.parse(stdin_text=text)).stdout == text
    caps = Capabilities.parse(stdin_file="data/input.txt", cwd=sandbox)
    assert run_module(wasm, caps).stdout == "hello file\n"


# --- WAT errors --------------------------------------------------------------------------------


def test_wat_syntax_error_points_at_the_line() -> None:
    wat = (P1 / "hello.wat").read_text().replace(
        "(i32.store (i32.const 4) (local.get $length))",
        "(i32.store (i32.const 4) (local.get $length)) i32.bogus", 1)
    line = next(n for n, text in enumerate(wat.splitlines(), 1) if "i32.bogus" in text)
    column = wat.splitlines()[line - 1].index("i32.bogus") + 1
    with pytest.raises(BuildError) as caught:
        assemble(wat, name="hello.wat")
    message = str(caught.value)
    head, shown, caret = message.splitlines()
    assert head == f"hello.wat, line {line}, column {column}: unknown operator or unexpected token"
    assert shown == f"{line:>5} | {wat.splitlines()[line - 1]}"
    assert caret.index("^") == shown.index("i32.bogus")
    assert "<anon>" in caught.value.log


def test_wat_error_on_the_first_line_and_with_tabs() -> None:
    with pytest.raises(BuildError, match=r"^module.wat, line 1, column 2: "):
        assemble("(modul)")
    with pytest.raises(BuildError) as caught:
        assemble("(module\n\t(func\n\t\tcall $nowhere))")
    head, shown, caret = str(caught.value).splitlines()
    assert head.startswith("module.wat, line 3, column 8: unknown func")
    assert caret.index("^") == shown.index("$nowhere") and "\t\t" in caret


def test_invalid_module_is_a_build_error() -> None:
    with pytest.raises(BuildError, match="not a valid module: type mismatch"):
        assemble("(module (func (result i32) i64.const 1))")


# --- limits and traps --------------------------------------------------------------------------

LOOP = '(module (func (export "_start") (loop br 0)))'


def test_timeout_stops_an_infinite_loop() -> None:
    result = run_module(assemble(LOOP), timeout=0.5)
    assert result.status == 1 and not result.ok
    assert result.trap.startswith("stopped by the time limit") and "0.5 s" in result.trap


def test_fuel_stops_an_infinite_loop() -> None:
    result = run_module(assemble(LOOP), limits=Limits(timeout=30, fuel=100_000))
    assert result.trap == "stopped by the fuel limit: used all 100,000 units of --fuel"
    assert result.fuel_used == 100_000


def test_a_trap_is_reported_not_raised() -> None:
    result = run_module(assemble('(module (func (export "_start") unreachable))'))
    assert result.status == 1
    assert result.trap.startswith("guest trapped: wasm `unreachable` instruction executed")


def test_modules_that_cannot_start_are_named(tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure, match=r"unknown import: `env::f`.*wasi_snapshot_preview1"):
        run_module(assemble('(module (import "env" "f" (func)) (func (export "_start")))'))
    with pytest.raises(RuntimeFailure, match="does not export a function _start"):
        run_module(assemble('(module (func (export "main")))'))
    with pytest.raises(RuntimeFailure, match="is a component"):
        run_module(b"\0asm\x0d\x00\x01\x00")
    (tmp_path / "x.wasm").write_text("not wasm")
    with pytest.raises(RuntimeFailure, match="not a WebAssembly binary"):
        run_module(tmp_path / "x.wasm")


# --- interface ---------------------------------------------------------------------------------


def test_module_interface_groups_imports_by_module() -> None:
    info = module_interface(guest("cat"))
    assert list(info.imports) == ["wasi_snapshot_preview1"]
    assert info.wasi_functions == ("args_sizes_get", "args_get", "fd_prestat_get",
                                   "fd_prestat_dir_name", "path_open", "fd_read", "fd_write",
                                   "fd_close", "proc_exit")
    assert info.is_command
    text = info.format()
    assert "imports from wasi_snapshot_preview1 (9):" in text
    assert ("  path_open(i32, i32, i32, i32, i32, i64, i64, i32, i32) -> i32"
            "  - open a file relative to a granted directory") in text
    assert "  proc_exit(i32)  - end the program with an exit status" in text
    assert "  memory (memory, 1 page, 64.0 KiB)" in text and "  _start()" in text
    mixed = module_interface(assemble(
        '(module (import "env" "log" (func (param i32))) (global (export "g") (mut i32) '
        '(i32.const 0)))'))
    assert mixed.format().splitlines() == [
        "imports from env (1):", "  log(i32)", "exports (1):", "  g (global, mut i32)"]
    assert not mixed.is_command


# --- the command line --------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wasi_magic", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_runs_and_inspects_core_modules(sandbox: Path) -> None:
    for name in ("cat", "exit_status"):
        (sandbox / f"{name}.wasm").write_bytes(guest(name))
    ran = cli("run", "cat.wasm", "--dir", "data::/data::ro", "--", "/data/input.txt", cwd=sandbox)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "hello file\n", "")
    refused = cli("run", "cat.wasm", "--", "/data/input.txt", cwd=sandbox)
    assert refused.returncode == 1 and "errno 8" in refused.stderr
    exited = cli("run", "exit_status.wasm", cwd=sandbox)
    assert (exited.returncode, exited.stdout) == (3, "exiting with status 3\n")
    looked = cli("inspect", "cat.wasm", cwd=sandbox)
    assert "core module (WASI Preview 1)" in looked.stdout
    assert ("wasi_snapshot_preview1.fd_prestat_get  - whether a file descriptor is a directory "
            "granted with --dir") in looked.stdout



def test_cli_takes_webassembly_text_as_wasmtime_does(sandbox: Path) -> None:
    (sandbox / "refused_open.wat").write_text((P1 / "refused_open.wat").read_text())
    ran = cli("run", "refused_open.wat", "--dir", "data", cwd=sandbox)
    assert ran.stdout == ("open input.txt: ok, got fd 4\n"
                          "open ../secret.txt: failed, errno 63 (perm)\n")
    looked = cli("inspect", "refused_open.wat", cwd=sandbox)
    assert looked.stdout.startswith("refused_open.wat: core module (WASI Preview 1)")
    assert "wasi_snapshot_preview1.path_open" in looked.stdout
    (sandbox / "broken.wat").write_text("(module\n  (func (export \"_start\") nop nop\n")
    broken = cli("run", "broken.wat", cwd=sandbox)
    assert broken.returncode != 0 and "broken.wat" in broken.stderr and "line" in broken.stderr
    assert "Traceback" not in broken.stderr

# --- clean interpreter exit --------------------------------------------------------------------

EXIT_SCRIPT = """
    import atexit, sys
    from wasi_magic import preview1, runtime
    if {no_drain}:
        # Without the component runtime's exit-time drain, only run_module's own
        # wait for Wasmtime's I/O threads stands between us and a Rust panic.
        atexit.unregister(getattr(runtime, "_drain_streams", None) or (lambda: None))
    wat = open("guest_src/p1/hello.wat").read()
    for _ in range(3):
        result = preview1.run_module(preview1.assemble(wat), stdout=sys.stdout.write)
    exited = preview1.run_module(preview1.assemble(open("guest_src/p1/exit_status.wat").read()))
    trapped = preview1.run_module(preview1.assemble(
        '(module (func (export "_start") unreachable))'))
    print("status", result.status, exited.status, trapped.status)
"""


@pytest.mark.parametrize("no_drain", [False, True], ids=["as-is", "without-atexit-drain"])
def test_a_script_that_runs_a_module_exits_cleanly(no_drain: bool) -> None:
    done = python_child(EXIT_SCRIPT.format(no_drain=no_drain), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello from WASI Preview 1!\n" * 3 + "status 0 3 1\n"
    assert done.stderr == "", done.stderr  # no "panicked at", no "panic in a function …"
