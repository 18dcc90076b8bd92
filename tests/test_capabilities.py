"""Capability flags: parsing, validation and the equivalent wasmtime command line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wasi_magic import Capabilities, CapabilityError, UsageError


def test_dir_forms(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    caps = Capabilities.parse(["data::/data", "data::/ro::ro", "data"], cwd=tmp_path)
    rw, ro, bare = caps.dirs
    assert (rw.host, rw.guest, rw.read_only) == (tmp_path / "data", "/data", False)
    assert (ro.guest, ro.read_only) == ("/ro", True)
    assert (bare.host, bare.guest) == (tmp_path / "data", "data")


@pytest.mark.parametrize("spec, words", [
    ("missing::/data", "does not exist"),
    ("data::/data::rx", "must be 'ro'"),
    ("data::", "expected HOST"),
    ("a::b::ro::x", "expected HOST"),
    ("file.txt::/f", "is a file, not a directory"),
])
def test_bad_dirs_name_the_flag(tmp_path: Path, spec: str, words: str) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(CapabilityError) as info:
        Capabilities.parse([spec], cwd=tmp_path)
    assert f"--dir {spec!r}" in str(info.value)
    assert words in str(info.value)


def test_same_guest_path_twice(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(CapabilityError, match="granted twice"):
        Capabilities.parse(["a::/d", "b::/d"], cwd=tmp_path)


def test_env_values_and_passthrough() -> None:
    caps = Capabilities.parse(env=["A=1", "B=", "HOME_ISH"], host_env={"HOME_ISH": "/h", "X": "y"})
    assert caps.env == (("A", "1"), ("B", ""), ("HOME_ISH", "/h"))


@pytest.mark.parametrize("item, words", [
    ("NOT_SET", "has no variable"),
    ("=value", "expected NAME=VALUE"),
    ("BAD-NAME=1", "expected NAME=VALUE"),
])
def test_bad_env(item: str, words: str) -> None:
    with pytest.raises(CapabilityError, match=words):
        Capabilities.parse(env=[item], host_env={})


def test_stdin_options(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("abc")
    assert Capabilities.parse(stdin_text="hi").stdin == b"hi"
    assert Capabilities.parse(stdin_file="in.txt", cwd=tmp_path).stdin_file == tmp_path / "in.txt"
    with pytest.raises(UsageError, match="not both"):
        Capabilities.parse(stdin_file="in.txt", stdin_text="x", cwd=tmp_path)
    with pytest.raises(CapabilityError, match="no such file"):
        Capabilities.parse(stdin_file="nope.txt", cwd=tmp_path)


def test_wasmtime_command(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    caps = Capabilities.parse(["data::/data::ro"], ["MY_VAR=hello world"], ["a b", "c"], cwd=tmp_path)
    assert caps.wasmtime_command("cell.wasm") == (
        f"wasmtime run --dir {tmp_path / 'data'}::/data::ro --env 'MY_VAR=hello world' "
        f"cell.wasm 'a b' c")


def test_nothing_granted_by_default() -> None:
    caps = Capabilities.parse()
    assert (caps.dirs, caps.env, caps.args, caps.stdin) == ((), (), (), None)
    assert caps.describe() == ["nothing granted"]


def test_read_guest_file_reads_only_what_the_guest_wrote(tmp_path: Path) -> None:
    import os

    from wasi_magic import read_guest_file
    (tmp_path / "secret.txt").write_text("host secret")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.json").write_text('{"ok": 1}')
    assert read_guest_file("out/report.json", cwd=tmp_path) == b'{"ok": 1}'
    os.symlink("../secret.txt", tmp_path / "out" / "planted.json")
    with pytest.raises(CapabilityError, match="is a symbolic link to"):
        read_guest_file(tmp_path / "out" / "planted.json")
    os.symlink("..", tmp_path / "out" / "up")
    with pytest.raises(CapabilityError, match="is a symbolic link to"):
        read_guest_file(tmp_path / "out" / "up" / "secret.txt")
    os.mkfifo(tmp_path / "out" / "fifo.json")
    with pytest.raises(CapabilityError, match="not a regular file"):
        read_guest_file(tmp_path / "out" / "fifo.json")  # returns at once: no blocking open
    (tmp_path / "out" / "big").write_bytes(b"x" * 101)
    with pytest.raises(CapabilityError, match="larger than 100 bytes"):
        read_guest_file(tmp_path / "out" / "big", limit=100)


def test_protected_folders_follow_the_environment(tmp_path: Path, monkeypatch) -> None:
    """The folders no grant may cover are found again when the environment changes (they
    are remembered per environment): moving the cache onto a folder protects it at once,
    and moving it away frees it again."""
    (tmp_path / "data").mkdir()
    assert Capabilities.parse(["data::/data"], cwd=tmp_path).dirs  # not protected yet
    monkeypatch.setenv("WASI_MAGIC_CACHE", str(tmp_path / "data"))
    with pytest.raises(CapabilityError, match="the wasi-magic cache"):
        Capabilities.parse(["data::/data"], cwd=tmp_path)
    monkeypatch.setenv("WASI_MAGIC_CACHE", str(tmp_path / "elsewhere"))
    assert Capabilities.parse(["data::/data"], cwd=tmp_path).dirs


@pytest.mark.parametrize("make", [
    lambda long: Capabilities.parse(dirs=[f"{long}::/d"]),
    lambda long: Capabilities.parse(stdin_file=long),
    lambda long: Capabilities.parse(stdin_file=f"/tmp/{long}/input.txt"),
])
def test_a_name_the_os_refuses_is_a_clear_error(make) -> None:
    with pytest.raises(CapabilityError, match="File name too long"):
        make("n" * 300)


def test_an_output_file_is_a_regular_file_or_nothing_yet(tmp_path: Path) -> None:
    """``-o`` onto a FIFO waited for a reader forever (the kernel hung); onto a device it
    wrote to the device. Both are refused, at once; a regular file is replaced whole."""
    from wasi_magic.capabilities import write_host_file
    os.mkfifo(tmp_path / "fifo.wasm")
    for target in (tmp_path / "fifo.wasm", Path("/dev/null"), tmp_path):
        with pytest.raises(CapabilityError, match=r"^-o .* is not a regular file"):
            write_host_file(str(target), b"data")
    (tmp_path / "old.wasm").write_bytes(b"x" * 100)
    write_host_file(str(tmp_path / "old.wasm"), b"new")
    assert (tmp_path / "old.wasm").read_bytes() == b"new"
    write_host_file(str(tmp_path / "fresh.wasm"), b"fresh")
    assert (tmp_path / "fresh.wasm").read_bytes() == b"fresh"


def test_an_output_file_in_a_folder_the_os_refuses(tmp_path: Path) -> None:
    from wasi_magic.capabilities import write_host_file
    with pytest.raises(CapabilityError, match="-o .*File name too long"):
        write_host_file(str(tmp_path / ("n" * 300) / "cell.wasm"), b"")


def test_folders_python_imports_from_are_granted_read_only_at_most(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-write grant of a ``sys.path`` folder (or of one holding it) is refused: a
    guest could plant a module the host imports next. Read-only, or a sibling, is fine."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    for spec in ("lib::/w", f"{tmp_path}::/w", "lib::/w::rw"):
        with pytest.raises(CapabilityError, match="a folder Python imports modules from"):
            Capabilities.parse(dirs=[spec])
    granted = Capabilities.parse(dirs=["lib::/w::ro", "data::/data"]).dirs
    assert [(d.guest, d.read_only) for d in granted] == [("/w", True), ("/data", False)]
    # '' on sys.path is the current folder, wherever that is at the time of the grant.
    monkeypatch.syspath_prepend("")
    with pytest.raises(CapabilityError, match=r"Grant it read-only \(--dir \.::/d::ro\)"):
        Capabilities.parse(dirs=[".::/d"])
    monkeypatch.chdir(tmp_path / "data")
    with pytest.raises(CapabilityError, match="is a folder Python imports"):
        Capabilities.parse(dirs=[".::/d"])


@pytest.mark.parametrize("field, value, words", [
    ("env", ["X=\ud800"], "--env X: the value contains a character that is not valid Unicode"),
    ("env", ["X=a\0b"], "--env X: the value contains a NUL character (at index 1)"),
    ("env", ["PASSED"], "--env PASSED: the value contains a character"),  # from the host
    ("args", ["ok", "\ud800"], "A program argument contains a character"),
    ("args", ["a\0"], "A program argument contains a NUL character"),
    ("dirs", ["/tmp/\ud800::/d"], "HOST contains a character"),
    ("dirs", ["/tmp::/d\0"], "GUEST contains a NUL character"),
    ("stdin_text", "\ud800", "--stdin-text contains a character"),
    ("stdin_file", "/tmp/\ud800", "--stdin contains a character"),
])
def test_text_wasi_cannot_carry_is_refused_naming_the_flag(field: str, value, words: str) -> None:
    from wasi_magic.errors import UsageError
    with pytest.raises(UsageError) as error:
        Capabilities.parse(**{field: value}, host_env={"PASSED": "caf\udce9"})
    assert words in str(error.value)
    str(error.value).encode("utf-8")  # the message itself can be shown anywhere


def test_nul_is_fine_in_stdin_text() -> None:
    assert Capabilities.parse(stdin_text="a\0b").stdin == b"a\0b"
