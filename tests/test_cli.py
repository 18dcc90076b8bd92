"""``python -m wasi_magic``: the same operations from a shell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import GUESTS


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wasi_magic", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_build_inspect_run(sandbox: Path) -> None:
    (sandbox / "probe.py").write_text((GUESTS / "probe.py").read_text())
    built = cli("build", "probe.py", "-o", "probe.wasm", cwd=sandbox)
    assert built.returncode == 0, built.stderr
    assert "probe.wasm" in built.stdout and "MiB" in built.stdout
    looked = cli("inspect", "probe.wasm", cwd=sandbox)
    assert "component (WASI Preview 2" in looked.stdout
    assert "wasi:cli/environment@0.2.9" in looked.stdout
    ran = cli("run", "probe.wasm", "--dir", "data::/data::ro", "--", "read", "/data/input.txt",
              cwd=sandbox)
    assert (ran.returncode, ran.stdout) == (0, "read: ok hello file\n")
    failed = cli("run", "probe.wasm", "--", "raise", cwd=sandbox)
    assert failed.returncode == 1 and "ValueError: the probe raised on purpose" in failed.stderr


def test_bad_input_is_one_line_not_a_traceback(sandbox: Path) -> None:
    for args, words in [
        (("run", "nothing.wasm"), "no such file"),
        (("run", "data/input.txt"), "not a WebAssembly binary"),
        (("inspect", "data/input.txt"), "not a WebAssembly binary"),
        (("build", "missing.py"), "expected an existing Python file"),
        (("frob",), "invalid choice"),
        (("run", "n" * 300 + ".wasm"), "File name too long"),
        (("build", "n" * 300 + ".py"), "File name too long"),
        (("run", "data/input.txt", "--dir", "n" * 300), "File name too long"),
    ]:
        done = cli(*args, cwd=sandbox)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("error: ") and words in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_core_module_is_named_as_such(sandbox: Path) -> None:
    import wasmtime
    (sandbox / "p1.wasm").write_bytes(wasmtime.wat2wasm('(module (func (export "_start")))'))
    looked = cli("inspect", "p1.wasm", cwd=sandbox)
    assert "core module (WASI Preview 1)" in looked.stdout and "_start" in looked.stdout
    ran = cli("run", "p1.wasm", cwd=sandbox)  # run as a Preview 1 command (wasi_magic.preview1)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "", "")


def test_inspect_core_shows_preview1_inside_a_component(probe, sandbox: Path) -> None:
    looked = cli("inspect", "--core", str(probe.path), cwd=sandbox)
    assert looked.returncode == 0, looked.stderr
    assert "core modules inside the component" in looked.stdout
    assert "libpython3.14.so" in looked.stdout
    assert "from wasi_snapshot_preview1   <- WASI Preview 1" in looked.stdout
    assert "wasi:filesystem/types@0.2.0" in looked.stdout


def test_build_a_typed_world_from_a_file(sandbox: Path) -> None:
    plugins = Path(__file__).resolve().parent.parent / "guest_src" / "plugins"
    built = cli("build", str(plugins / "upper.py"), "--wit", str(plugins / "transform.wit"),
                "--world", "transform", "-o", "upper.wasm", cwd=sandbox)
    assert built.returncode == 0, built.stderr
    called = subprocess.run(
        [sys.executable, "-c", "from wasi_magic import load; "
         "print(load('upper.wasm').transform(b'two words'))"],
        cwd=sandbox, capture_output=True, text=True, timeout=120)
    assert called.stdout == "b'TWO WORDS\\n-- 2 words\\n'\n", called.stderr
    lonely = cli("build", str(plugins / "upper.py"), "--world", "transform", cwd=sandbox)
    assert lonely.returncode == 2 and "--world NAME needs --wit FILE" in lonely.stderr


def test_words_after_the_module_go_to_the_guest_as_with_wasmtime_run(probe, sandbox: Path) -> None:
    ran = cli("run", str(probe.path), "args", "a", "--b", "c d", cwd=sandbox)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == f"argv: ['{probe.path.name}', 'args', 'a', '--b', 'c d']\n"
    # Our flags may still come first, or right after the module; `--` still works.
    granted = cli("run", "--env", "A=1", str(probe.path), "--env", "B=2", "env", cwd=sandbox)
    assert granted.stdout == "env: [('A', '1'), ('B', '2')]\n", granted.stderr
    dashed = cli("run", str(probe.path), "--", "args", "--env", "X=1", cwd=sandbox)
    assert dashed.stdout == f"argv: ['{probe.path.name}', 'args', '--env', 'X=1']\n"


def test_a_trap_exits_134_as_the_wasmtime_cli_does(sandbox: Path) -> None:
    (sandbox / "trap.wat").write_text('(module (func (export "_start") unreachable))')
    done = cli("run", "trap.wat", cwd=sandbox)
    assert done.returncode == 134
    assert done.stderr.startswith("guest trapped: wasm `unreachable` instruction executed")
    (sandbox / "spin.wat").write_text('(module (func (export "_start") (loop br 0)))')
    limit = cli("run", "--timeout", "0.2", "spin.wat", cwd=sandbox)
    assert limit.returncode == 134 and "stopped by the time limit" in limit.stderr


CONTROL = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\\1b]52;c;cHduZWQ=\\07\\1b[2Jok\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 23))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


def test_control_sequences_are_shown_not_obeyed_in_a_terminal(sandbox: Path) -> None:
    import os
    import pty
    (sandbox / "control.wat").write_text(CONTROL)
    raw = b"\x1b]52;c;cHduZWQ=\x07\x1b[2Jok\n"
    piped = subprocess.run([sys.executable, "-m", "wasi_magic", "run", "control.wat"],
                           cwd=sandbox, capture_output=True, timeout=120)
    assert piped.stdout == raw  # a pipe or a file gets the guest's bytes as they are
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "wasi_magic", "run", "control.wat"],
                            cwd=sandbox, stdout=secondary, stderr=secondary, stdin=subprocess.DEVNULL)
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the terminal closed: the program ended
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert proc.wait(timeout=60) == 0
    assert b"\x1b" not in seen and b"\x07" not in seen  # nothing for the terminal to act on
    assert b"\\x1b]52;c;cHduZWQ=\\x07\\x1b[2Jok" in seen


def nested_component(depth: int) -> bytes:
    """A component holding a component holding … ``depth`` deep (header: \\0asm, 0d 00 01 00)."""
    inner = b"\0asm\x0d\x00\x01\x00"
    for _ in range(depth):
        size = len(inner)
        leb = bytearray()
        while True:
            byte, size = size & 0x7F, size >> 7
            leb.append(byte | (0x80 if size else 0))
            if not size:
                break
        inner = b"\0asm\x0d\x00\x01\x00" + bytes([4]) + bytes(leb) + inner
    return inner


def test_inspect_any_file_gives_one_line(probe, sandbox: Path) -> None:
    import os
    component = probe.path.read_bytes()
    (sandbox / "truncated.wasm").write_bytes(component[: len(component) // 2])
    (sandbox / "garbage.wasm").write_bytes(b"\0asm\x0d\x00\x01\x00" + b"\x01\xff\xff\xff\xff\x0f")
    (sandbox / "deep.wasm").write_bytes(nested_component(5_000))
    (sandbox / "cut.wasm").write_bytes(b"\0asm\x01\x00\x00\x00\x01\x05\x01")  # a module cut short
    os.symlink("/dev/zero", sandbox / "zero.wasm")
    os.mkfifo(sandbox / "fifo.wasm")
    for args, words in [
        (("inspect", "--core", "truncated.wasm"), "not a well-formed component"),
        (("inspect", "--core", "garbage.wasm"), "not a well-formed component"),
        (("inspect", "--core", "deep.wasm"), "nested more than 64 deep"),
        (("inspect", "cut.wasm"), "not a valid module"),
        (("inspect", "truncated.wasm"), "Wasmtime cannot load"),
        (("inspect", "zero.wasm"), "not a regular file"),
        (("inspect", "fifo.wasm"), "not a regular file"),
        (("inspect", "--core", "fifo.wasm"), "not a regular file"),
        (("run", "fifo.wasm"), "not a regular file"),
    ]:
        done = cli(*args, cwd=sandbox)  # the CLI's own 600 s bound tells "hung" from "answered"
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("error: ") and words in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 3, done.stderr


# A Preview 1 guest that prints "running" and then sleeps 100 s in one poll_oneoff call:
# a host call, where Wasmtime's epoch cannot stop it.
SLEEPER = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 200) "running\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 200)) (i32.store (i32.const 4) (i32.const 8))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    ;; one clock subscription at 64: tag 0 (clock) at 72, timeout (ns) at 88
    (i64.store (i32.const 88) (i64.const 100000000000))
    (drop (call $poll (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 12)))))"""


def test_a_guest_blocked_in_a_host_call_is_ended_at_its_deadline(sandbox: Path) -> None:
    (sandbox / "sleeper.wat").write_text(SLEEPER)
    done = subprocess.run([sys.executable, "-m", "wasi_magic", "run", "--timeout", "1",
                           "sleeper.wat"], cwd=sandbox, capture_output=True, text=True,
                          timeout=60)  # the guest alone would sleep 100 s
    assert done.stdout == "running\n"
    assert done.returncode == 134, done
    assert done.stderr.startswith("stopped by the time limit: ran 1."), done.stderr
    assert "blocked in a host call, so wasi-magic ended it" in done.stderr
    assert "Traceback" not in done.stderr


def test_ctrl_c_ends_a_guest_blocked_in_a_host_call(sandbox: Path) -> None:
    import signal
    (sandbox / "sleeper.wat").write_text(SLEEPER)
    proc = subprocess.Popen([sys.executable, "-m", "wasi_magic", "run", "--timeout", "0",
                             "sleeper.wat"], cwd=sandbox, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "running\n"  # the guest is in its sleep now
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, (out, err)
    assert err.startswith("guest interrupted after "), err
    assert "blocked in a host call, so wasi-magic ended it" in err
