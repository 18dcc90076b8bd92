"""How a cell's cache key covers the folders it may import from (``--path``, or the folder
of ``%wasi build FILE.py``): every file counts, each read again only when it changed, and
no file is read that could block the kernel. No build runs here."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import wasi_magic.cache as cache_module
from wasi_magic.errors import BuildError
from wasi_magic.builder import build_key_of


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "helper.py").write_text("VALUE = 1\n")
    (folder / "data.csv").write_text("a,b\n1,2\n" * 1000)
    return folder


def test_each_file_is_read_once_until_it_changes(tmp_path: Path, monkeypatch) -> None:
    folder = _folder(tmp_path)
    read: list[str] = []
    real = cache_module.file_sha256
    def name(path) -> str:  # (the walk hands an open descriptor)
        return Path(os.readlink(f"/proc/self/fd/{path}") if isinstance(path, int) else path).name
    monkeypatch.setattr(cache_module, "file_sha256",
                        lambda path: read.append(name(path)) or real(path))
    first = build_key_of("import helper", paths=[folder])
    assert sorted(read) == ["data.csv", "helper.py"]
    read.clear()
    assert build_key_of("import helper", paths=[folder]) == first
    assert build_key_of("import helper  # edited", paths=[folder]) != first
    assert read == []  # the folder did not change: nothing read again
    (folder / "helper.py").write_text("VALUE = 2\n")
    changed = build_key_of("import helper", paths=[folder])
    assert read == ["helper.py"] and changed != first
    (folder / "data.csv").write_text("a,b\n")
    assert build_key_of("import helper", paths=[folder]) not in (first, changed)


def test_a_fifo_in_the_folder_is_refused_never_opened(tmp_path: Path) -> None:
    """Opening a FIFO for reading waits for a writer: keying (or copying) the folder would
    hang the kernel. It is refused, named, at once."""
    folder = _folder(tmp_path)
    os.mkfifo(folder / "pipe")
    outcome: list[BaseException] = []

    def key() -> None:
        try:
            build_key_of("x = 1", paths=[folder])
        except BuildError as exc:
            outcome.append(exc)
    worker = threading.Thread(target=key, daemon=True)
    worker.start()
    worker.join(30)
    if worker.is_alive():  # unblock the thread before failing
        with open(folder / "pipe", "w"):
            pass
    assert outcome, "keying a folder that holds a FIFO blocked (or let it in)"
    assert "'pipe' is not a regular file or folder" in str(outcome[0])


def test_links_anywhere_in_the_tree_are_refused_and_the_copy_is_exact(tmp_path: Path) -> None:
    """What is hashed is what is copied: regular files and folders, no dotfiles, no
    __pycache__; a symbolic link at any depth (to a file or a folder) is refused."""
    from wasi_magic.path_tree import copy_tree
    folder = _folder(tmp_path)
    (folder / "pkg" / "__pycache__").mkdir(parents=True)
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"skip")
    (folder / ".hidden").write_text("skip")
    copy = copy_tree(folder, tmp_path / "copy")
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*")) == \
        ["data.csv", "helper.py", "pkg", "pkg/__init__.py"]
    assert (copy / "data.csv").read_bytes() == (folder / "data.csv").read_bytes()
    for link, target in (("pkg/up", ".."), ("secret.py", "/etc/hostname")):
        os.symlink(target, folder / link)
        for action in (lambda: build_key_of("x = 1", paths=[folder]),
                       lambda: copy_tree(folder, tmp_path / link.replace("/", "-"))):
            with pytest.raises(BuildError, match=f"'{link}' is a symbolic link to '{target}'"):
                action()
        os.unlink(folder / link)


def test_a_tree_too_large_for_a_module_folder_is_refused(tmp_path: Path) -> None:
    """--path is for modules: ``--path /proc`` (kcore claims terabytes) or a huge folder
    would fill a shared server's disk with the build's private copy."""
    from wasi_magic.path_tree import MAX_BYTES
    folder = _folder(tmp_path)
    with open(folder / "big.bin", "wb") as sparse:  # (sparse: no disk used)
        sparse.truncate(MAX_BYTES + 1)
    with pytest.raises(BuildError, match=r"holds more than [\d,]+ files or \d+ MiB \(at 'big.bin'\)"):
        build_key_of("x = 1", paths=[folder])
    with pytest.raises(BuildError, match=r"^--path '/proc': '/proc' is the host's running"):
        build_key_of("x = 1", paths=["/proc"])  # (before its size is even looked at)


def test_a_carried_folder_never_holds_the_hosts_secrets(tmp_path: Path, monkeypatch) -> None:
    """A build copies its --path folders (and the folder of ``build FILE.py``) where the
    guest reads them: the folder of the cache's sealing key is refused whether it is the
    folder, lies under it or is inside it; a dot folder (never carried) is not in the way;
    folders of code (site-packages) stay allowed."""
    import sys
    from wasi_magic.builder import build
    home = tmp_path / "home"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    settings = home / "config" / "wasi-magic"
    settings.mkdir(parents=True)
    (settings / "cache.key").write_bytes(b"k" * 32)
    (settings / "mine.py").write_text("print(1)\n")
    for given, where in ((settings, "is"), (home, "contains"), (home / "config", "contains")):
        with pytest.raises(BuildError, match=rf"^--path '{given}': '{given}' {where} the "
                                             r"wasi-magic settings \(the key that seals"):
            build_key_of("x = 1", paths=[given])
    (settings / "inner").mkdir()
    with pytest.raises(BuildError, match=r"is inside the wasi-magic settings"):
        build_key_of("x = 1", paths=[settings / "inner"])
    with pytest.raises(BuildError, match=r"^the folder of 'mine.py': .* is the wasi-magic settings"):
        build(settings / "mine.py")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))  # a dot folder: never carried
    (home / ".config").mkdir()
    settings.rename(home / ".config" / "wasi-magic")
    assert build_key_of("x = 1", paths=[home])
    code = Path(pytest.__file__).parent  # in site-packages, under sys.prefix
    assert code.is_relative_to(Path(sys.prefix).resolve()) and build_key_of("x = 1", paths=[code])


def test_the_folder_of_a_built_file_is_named_as_such(tmp_path: Path) -> None:
    """``build FILE.py`` carries the file's folder: a problem there names that folder, not a
    ``--path`` the student never gave; a ``--path`` folder after it is named as given."""
    from wasi_magic.builder import build
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.py").write_text("print(1)\n")
    (project / "up").symlink_to("..")
    with pytest.raises(BuildError, match=r"^the folder of 'app.py': 'up' is a symbolic link"):
        build(project / "app.py")
    (project / "up").unlink()
    mods = _folder(tmp_path)
    os.mkfifo(mods / "pipe")
    with pytest.raises(BuildError, match=rf"^--path '{mods}': 'pipe' is not a regular file"):
        build_key_of(project / "app.py", paths=[mods])
