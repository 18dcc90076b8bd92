"""The files of a ``--path`` folder that a build carries: walked without following links.

A build hashes a ``--path`` folder for its cache key and copies it privately for
componentize-py, whose guest can read (and, while it pre-initializes, write) the copy.
A guest with a read-write grant could have planted a symbolic link there (``root -> /``)
or a FIFO; following the link would copy, and hand the guest, any file the kernel can
read, and a FIFO or ``/proc/kmsg`` would hang the build. So the tree is walked through
directory descriptors, every file is opened with ``O_NOFOLLOW`` and checked to be a
regular file on the descriptor it is read from, and a link or a special file is
refused, named, with its target.

Dotfiles, ``__pycache__`` folders and compiled ``.pyc`` files are left out (as the
cache key always did). A tree larger than :data:`MAX_FILES` files or :data:`MAX_BYTES`
is refused too: ``--path`` is for the modules a cell imports, and ``--path ~`` would
fill a shared server's disk. (Folders the host keeps secret, ``/proc`` among them, are
refused before any walk: :func:`wasi_magic.capabilities.check_carried_folder`.)
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from pathlib import Path
from typing import Callable

from .cache import remembered_sha256
from .errors import BuildError

#: Opening a file to read: never through a link, never waiting on a FIFO.
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_OPEN_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)

#: ``visit(relative path, descriptor, stat)`` for each regular file; ``enter(relative path)``
#: for each folder below the top.
FileVisitor = Callable[[str, int, os.stat_result], None]

#: The most files, and bytes, a build carries from one ``--path`` folder.
MAX_FILES = 20_000
MAX_BYTES = 512 << 20


def _skipped(name: str, is_dir: bool) -> bool:
    if name.startswith("."):
        return True
    return name == "__pycache__" if is_dir else name.endswith((".pyc", ".pyo"))


def carries(relative: str) -> bool:
    """Whether a walk of a folder reaches the folder at ``relative`` inside it (no dot
    folder or ``__pycache__`` on the way)."""
    return not any(_skipped(part, True) for part in Path(relative).parts)


def walk(folder: Path, visit: FileVisitor, enter: Callable[[str], None] | None = None,
         what: str | None = None) -> None:
    """Call ``visit`` for every regular file under ``folder``, in sorted order, with the
    file open; ``enter`` for every folder. Raises :class:`BuildError` naming a symbolic
    link (and its target) or a special file (FIFO, device, socket) anywhere in the tree.
    ``what`` names the folder in messages (default ``--path '<folder>'``)."""
    what = what or f"--path {str(folder)!r}"
    try:
        top = os.open(folder, _OPEN_DIR)
    except OSError as exc:
        raise BuildError(f"{what}: cannot open it: {exc.strerror or exc}.") from None
    try:
        _walk(what, top, "", visit, enter, [0, 0])
    finally:
        os.close(top)


def _walk(what: str, dir_fd: int, prefix: str, visit: FileVisitor,
          enter: Callable[[str], None] | None, seen: list[int]) -> None:
    with os.scandir(dir_fd) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    for entry in entries:
        relative = prefix + entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if _skipped(entry.name, is_dir):
            continue
        if entry.is_symlink():
            _refuse_link(what, relative, dir_fd, entry.name)
        try:
            fd = os.open(entry.name, _OPEN_DIR if is_dir else _OPEN_FILE, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a link swapped in meanwhile
                _refuse_link(what, relative, dir_fd, entry.name)
            raise BuildError(f"{what}: cannot read {relative!r}: "
                             f"{exc.strerror or exc}.") from None
        try:
            info = os.fstat(fd)
            if is_dir and stat.S_ISDIR(info.st_mode):
                if enter is not None:
                    enter(relative)
                _walk(what, fd, relative + "/", visit, enter, seen)
            elif not is_dir and stat.S_ISREG(info.st_mode):
                seen[0] += 1
                seen[1] += info.st_size
                if seen[0] > MAX_FILES or seen[1] > MAX_BYTES:
                    raise BuildError(
                        f"{what} holds more than {MAX_FILES:,} files or "
                        f"{MAX_BYTES >> 20} MiB (at {relative!r}); --path is for the modules "
                        f"a cell imports: name a folder that holds only them.")
                try:
                    visit(relative, fd, info)
                except OSError as exc:
                    raise BuildError(f"{what}: cannot read {relative!r}: "
                                     f"{exc.strerror or exc}.") from None
            else:
                raise BuildError(
                    f"{what}: {relative!r} is not a regular file or folder (a "
                    f"FIFO, a device or a socket), which a build could wait on forever. "
                    f"Remove it, or keep the modules in a folder of their own.")
        finally:
            os.close(fd)


def _refuse_link(what: str, relative: str, dir_fd: int, name: str) -> None:
    try:
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError:
        target = "?"
    raise BuildError(
        f"{what}: {relative!r} is a symbolic link to {target!r}. wasi-magic does not "
        f"follow links in the folders a build carries (a guest could have planted one, and "
        f"the build would hand it whatever the link reaches); copy the module in, or name "
        f"its own folder with --path.")


def hash_tree(digest: "hashlib._Hash", folder: Path, what: str | None = None) -> None:
    """Add every file of ``folder`` a build carries to ``digest``: its relative path and its
    contents' sha256 (remembered per file while it does not change). ``what``: as for
    :func:`walk`."""

    def visit(relative: str, fd: int, info: os.stat_result) -> None:
        digest.update(relative.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(remembered_sha256(fd, info).encode() + b"\0")
    walk(folder, visit, what=what)


def copy_tree(folder: Path, target: Path, what: str | None = None) -> Path:
    """A private copy of what :func:`hash_tree` hashes, read through the descriptors the
    walk opened (so a link swapped in meanwhile is never followed)."""
    target.mkdir(parents=True)

    def enter(relative: str) -> None:
        (target / relative).mkdir()

    def visit(relative: str, fd: int, info: os.stat_result) -> None:
        with os.fdopen(os.dup(fd), "rb") as source, open(target / relative, "xb") as copy:
            shutil.copyfileobj(source, copy, 1 << 20)
    walk(folder, visit, enter, what)
    return target
