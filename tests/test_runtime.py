"""Real runs of a real component (tests/guests/probe.py, built once) in Wasmtime.

Every test checks what the guest saw *and* what happened on the host.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from wasi_magic import Capabilities, RunResult, run


def go(probe, *args: str, cwd: Path, dirs=(), env=(), **kw) -> RunResult:
    caps = Capabilities.parse(dirs, env, args, cwd=cwd, **kw)
    return run(probe, caps)


def tree_digest(folder: Path) -> str:
    """A checksum of every name, mode and content under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(oct(path.stat().st_mode).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_hello_streams_and_argv0(probe, sandbox: Path) -> None:
    seen: list[str] = []
    caps = Capabilities.parse(args=["args", "x y", "z"])
    result = run(probe, caps, stdout=seen.append)
    assert result.ok and result.status == 0
    assert result.stdout == "argv: ['probe.wasm', 'args', 'x y', 'z']\n"
    assert "".join(seen) == result.stdout  # streamed as written


def test_granted_dir_is_readable(probe, sandbox: Path) -> None:
    result = go(probe, "read", "/data/input.txt", cwd=sandbox, dirs=["data::/data"])
    assert result.stdout == "read: ok hello file\n"


def test_without_grant_nothing_is_visible(probe, sandbox: Path) -> None:
    result = go(probe, "read", "/data/input.txt", "input.txt", "data/input.txt", cwd=sandbox)
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all("Error" in line for line in lines), result.stdout


@pytest.mark.parametrize("path", [
    "/data/../secret.txt", "/data/../../etc/passwd", "/etc/passwd", "/secret.txt",
    "../secret.txt", "/data/sub/../../secret.txt",
])
def test_paths_outside_the_grant_are_refused(probe, sandbox: Path, path: str) -> None:
    before = tree_digest(sandbox)
    result = go(probe, "read", path, cwd=sandbox, dirs=["data::/data"])
    assert result.stdout.startswith("read: ") and "Error" in result.stdout, result.stdout
    assert "canary" not in result.stdout and "root:" not in result.stdout
    assert tree_digest(sandbox) == before


def test_read_write_grant_allows_writes(probe, sandbox: Path) -> None:
    result = go(probe, "write", "/data/new.txt", cwd=sandbox, dirs=["data::/data"])
    assert result.stdout == "write: ok\n"
    assert (sandbox / "data" / "new.txt").read_text() == "guest was here\n"


@pytest.mark.parametrize("op, args", [
    ("write", ["/data/input.txt"]),
    ("write", ["/data/new.txt"]),
    ("append", ["/data/input.txt"]),
    ("truncate", ["/data/input.txt"]),
    ("unlink", ["/data/input.txt"]),
    ("mkdir", ["/data/newdir"]),
    ("rmdir", ["/data/sub"]),
    ("rename", ["/data/input.txt", "/data/moved.txt"]),
])
def test_read_only_grant_refuses_every_write(probe, sandbox: Path, op: str, args: list[str]) -> None:
    before = tree_digest(sandbox)
    result = go(probe, op, *args, cwd=sandbox, dirs=["data::/data::ro"])
    assert result.stdout.startswith(f"{op}: PermissionError"), result.stdout
    assert tree_digest(sandbox) == before


def test_read_only_grant_still_reads(probe, sandbox: Path) -> None:
    result = go(probe, "listdir", "/data", cwd=sandbox, dirs=["data::/data::ro"])
    assert result.stdout == "listdir: ok ['input.txt', 'sub']\n"


def test_env_only_what_is_granted(probe, sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST_ONLY", "secret")
    monkeypatch.setenv("PASS_ME", "through")
    assert go(probe, "env", cwd=sandbox).stdout == "env: []\n"
    result = go(probe, "env", cwd=sandbox, env=["MY_VAR=hello", "PASS_ME"])
    assert result.stdout == "env: [('MY_VAR', 'hello'), ('PASS_ME', 'through')]\n"


def test_guest_env_changes_stay_in_the_guest(probe, sandbox: Path) -> None:
    before = dict(os.environ)
    assert go(probe, "setenv", cwd=sandbox).stdout == "setenv: ok 1\n"
    assert dict(os.environ) == before
    assert go(probe, "env", cwd=sandbox).stdout == "env: []\n"  # nothing leaks into the next run


def test_stdin(probe, sandbox: Path) -> None:
    assert go(probe, "stdin", cwd=sandbox).stdout == "stdin: ''\n"
    assert go(probe, "stdin", cwd=sandbox, stdin_text="typed\ntext").stdout == "stdin: 'typed\\ntext'\n"
    result = go(probe, "stdin", cwd=sandbox, stdin_file="data/input.txt")
    assert result.stdout == "stdin: 'hello file\\n'\n"


def test_stderr_is_separate(probe, sandbox: Path) -> None:
    out: list[str] = []
    err: list[str] = []
    result = run(probe, Capabilities.parse(args=["stderr"]), stdout=out.append, stderr=err.append)
    assert (result.stdout, result.stderr) == ("to stdout\n", "to stderr\n")
    assert ("".join(out), "".join(err)) == ("to stdout\n", "to stderr\n")


def test_invalid_utf8_is_replaced(probe, sandbox: Path) -> None:
    result = go(probe, "badutf8", cwd=sandbox)
    assert result.ok and result.stdout == "bad \ufffd\ufffd bytes\n"


@pytest.mark.parametrize("code, status", [("0", 0), ("1", 1), ("3", 1)])
def test_exit_status(probe, sandbox: Path, code: str, status: int) -> None:
    # A wasi:cli/run command can only report success or failure.
    assert go(probe, "exit", code, cwd=sandbox).status == status


def test_guest_exception_shows_the_guest_traceback(probe, sandbox: Path) -> None:
    result = go(probe, "raise", cwd=sandbox)
    assert result.status == 1 and result.trap is None
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert 'probe.py", line' in result.stderr  # the program's own file name
    assert "wasi_magic_runner" not in result.stderr
    assert result.stderr.rstrip().endswith("ValueError: the probe raised on purpose")


def test_runs_are_isolated_and_fast_path_is_used(probe, sandbox: Path) -> None:
    first = go(probe, "hello", cwd=sandbox)
    second = go(probe, "hello", cwd=sandbox)
    assert first.stdout == second.stdout == "hello from the probe ['hello']\n"
    assert second.steps["component"] == "memory"


def test_a_component_file_replaced_in_place_runs_its_new_code(probe, tmp_path: Path) -> None:
    from wasi_magic import build
    other = build("print('the replacement')\n")
    target = tmp_path / "x.wasm"
    target.write_bytes(probe.path.read_bytes())
    first = run(target, Capabilities.parse(args=["hello"]))
    again = run(target, Capabilities.parse(args=["hello"]))
    assert first.stdout == again.stdout == "hello from the probe ['hello']\n"
    assert again.steps["component"] == "memory"  # the remembered digest found it in memory
    target.write_bytes(other.path.read_bytes())  # same path, new content
    assert run(target).stdout == "the replacement\n"


def test_a_traceback_through_the_guest_helpers_shows_only_cell_lines(tmp_path: Path) -> None:
    from wasi_magic import build
    result = run(build("import time\nprint('before')\ntime.sleep(-1)\n"))
    assert result.status == 1 and result.stdout == "before\n"
    assert 'File "<cell>", line 3' in result.stderr
    assert "ValueError: sleep length must be non-negative" in result.stderr
    assert "wasi_magic_guest" not in result.stderr and "wasi_magic_runner" not in result.stderr
