"""How a cell's cache key covers the folders it may import from (``--path``, or the folder
of ``%wasi build FILE.py``): every file counts, each read again only when it changed, and
no file is read that could block the kernel. No build runs here."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import wasi_magic.cache as cache_module
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
    monkeypatch.setattr(cache_module, "file_sha256",
                        lambda path: read.append(Path(path).name) or real(path))
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


def test_a_fifo_in_the_folder_is_never_opened(tmp_path: Path) -> None:
    """Opening a FIFO for reading waits for a writer: keying the cell would hang the kernel."""
    folder = _folder(tmp_path)
    os.mkfifo(folder / "pipe")
    keys: list[str] = []
    worker = threading.Thread(target=lambda: keys.append(build_key_of("x = 1", paths=[folder])),
                              daemon=True)
    worker.start()
    worker.join(30)
    if worker.is_alive():  # unblock the thread before failing
        with open(folder / "pipe", "w"):
            pass
    assert keys, "keying a folder that holds a FIFO blocked"
    os.unlink(folder / "pipe")
    assert build_key_of("x = 1", paths=[folder]) != keys[0]  # the FIFO's name counts
