"""Unpack ahead what a notebook's cells will load from a packed cache.

A packed cache (Binder's image, ``python -m wasi_magic cache pack``) keeps each built
component and its compiled forms zstd-compressed; the first cell that uses one unpacks
them (~0.1-0.2 s a cell: the component in the kernel, its compiled form in the sandbox
worker, then a check of each against its seal). When Jupyter starts a kernel for a
notebook it names the notebook in the kernel's environment (``JPY_SESSION_NAME``), so
``%load_ext wasi_magic`` can start one low-priority thread that unpacks, in the order
of the notebook's cells, the entries they will use, while the student reads the first
paragraphs. It never builds or compiles, holds nothing in memory, only unpacks entries
the cache already holds (the user's own or the shared one) and verifies each like any
use would; a cell that gets there first simply unpacks its own.

Off with ``c.WasiMagics.unpack_ahead = False`` (e.g. on a server whose users open many
notebooks they do not run).
"""

from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .cache import PACKED, Cache, default_cache, is_sha256
from .errors import WasiMagicError

if TYPE_CHECKING:
    from .warm import CellToBuild

#: Where Jupyter Server names a kernel's notebook (its full path; see
#: ``SessionManager.get_kernel_env`` in jupyter_server).
SESSION_ENV = "JPY_SESSION_NAME"
#: The thread's nice value: it yields the CPU to the kernel and the sandbox worker.
NICE = 10
#: A cell whose module folders hold more files than this is left to unpack its own
#: entries when it runs (keying it ahead would read every one of them).
MAX_FOLDER_FILES = 1000

_started: set[Path] = set()
_started_lock = threading.Lock()


def kernel_notebook() -> Path | None:
    """The notebook this kernel was started for (``$JPY_SESSION_NAME``), if it is one."""
    name = os.environ.get(SESSION_ENV, "")
    path = Path(name)
    return path if name and path.suffix == ".ipynb" and path.is_file() else None


def start(notebook: Path | None = None) -> threading.Thread | None:
    """Start unpacking ahead for ``notebook`` (default: the kernel's own) in a daemon
    thread; None if there is no notebook or this process already did it for that one."""
    notebook = notebook if notebook is not None else kernel_notebook()
    if notebook is None:
        return None
    with _started_lock:
        if notebook.resolve() in _started:
            return None
        _started.add(notebook.resolve())
    thread = threading.Thread(target=_run, args=(notebook,), name="wasi-magic-unpack-ahead",
                              daemon=True)
    thread.start()
    return thread


def _run(notebook: Path) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)  # this thread only
    except (OSError, AttributeError):
        pass
    try:
        unpack_ahead(notebook)
    except Exception:  # noqa: BLE001 - an optimisation: a cell unpacks what this did not
        pass


def unpack_ahead(notebook: Path, cache: Cache | None = None) -> list[tuple[str, str]]:
    """Unpack, in cell order, the packed entries ``notebook``'s build-mode cells will use:
    each cell's component and its compiled forms. Each is then verified once more after
    it has settled, which records the verdict in its metadata, so that the sandbox worker
    (and its spare) loading it need not hash it again. Returns the ``(section, name)`` of
    the entries unpacked."""
    cache = cache if cache is not None else default_cache()
    roots = _roots(cache)
    if not any(next((root / "builds").glob(f"*{PACKED}"), None) for root in roots):
        return []  # nothing packed (a cache that was never packed): nothing to do
    done: list[tuple[str, str, str]] = []
    for section, name, suffix in planned_entries(notebook, cache):
        if _packed_only(roots, section, name, suffix) and \
                cache.get(section, name, suffix) is not None:
            done.append((section, name, suffix))
    if done:
        time.sleep(0.2)  # until the last one's ctime has settled (see Cache._sha256)
        for section, name, suffix in done:
            cache.get_own(section, name, suffix)
    return [(section, name) for section, name, _ in done]


def planned_entries(notebook: Path, cache: Cache) -> Iterator[tuple[str, str, str]]:
    """``(section, name, suffix)`` of the cache entries ``notebook``'s build-mode cells
    will load. First, in cell order, each cell's built component and the compiled form
    the sandbox worker runs it with (Cranelift, with epoch checks only beside a session
    or a typed world); then the other compiled forms ``warm`` made for them (for a
    component the notebook saves and loads itself, or compiles with Winch)."""
    from .builder import build_key_of
    from .warm import wasi_cells
    roots = _roots(cache)
    sections = _compiled_sections(roots)
    later: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for cell in wasi_cells(notebook):
        if cell.quick:
            continue  # the quick-mode runner: %load_ext has the new worker load it
        if not _few_files(cell):
            continue  # keying it reads every file of its folders: left to the cell
        try:
            key = build_key_of(cell.source, paths=cell.paths, cwd=cell.notebook.parent,
                               wit=cell.wit, world=cell.world)
        except (WasiMagicError, OSError, ValueError):
            continue  # the cell will say what is wrong when it runs
        if key in seen:
            continue
        seen.add(key)
        yield "builds", key, ".wasm"
        sha256 = _component_sha256(cache, roots, key)
        if sha256 is None:
            continue
        runs_with = "-cranelift-epoch-" if cell.world or cell.after_kept else "-cranelift-noepoch-"
        for section in sections:
            if runs_with in section:
                yield section, sha256, ".cwasm"
            else:
                later.append((section, sha256, ".cwasm"))
    yield from later


def _few_files(cell: "CellToBuild") -> bool:
    """Whether the module folders a cell's key covers (``--path``, a built file's folder)
    hold at most :data:`MAX_FOLDER_FILES` files: keying a cell reads them all."""
    folders = [cell.notebook.parent / os.path.expanduser(path) for path in cell.paths]
    if isinstance(cell.source, Path):
        folders.append((cell.notebook.parent / cell.source).parent)
    count = 0
    for folder in folders:
        for _, dirs, files in os.walk(folder):
            dirs[:] = [name for name in dirs if not name.startswith(".")]
            count += len(files)
            if count > MAX_FOLDER_FILES:
                return False
    return True


def _roots(cache: Cache) -> list[Path]:
    """The user's cache folder, then the shared cache's (if there is one)."""
    from .shared_cache import shared_dir
    shared = shared_dir()
    return [cache.root] + ([shared] if shared is not None and shared != cache.root else [])


def _compiled_sections(roots: list[Path]) -> list[str]:
    """The compiled-code sections of this Wasmtime and machine in either cache."""
    from .versions import installed_version
    prefix = f"wasmtime-{installed_version('wasmtime', 'wasmtime')}-"
    suffix = f"-{platform.machine()}"
    found: list[str] = []
    for root in roots:
        try:
            names = sorted(path.name for path in (root / "compiled").iterdir() if path.is_dir())
        except OSError:
            continue
        found += [f"compiled/{name}" for name in names
                  if name.startswith(prefix) and name.endswith(suffix)
                  and f"compiled/{name}" not in found]
    return found


def _component_sha256(cache: Cache, roots: list[Path], key: str) -> str | None:
    """The sha256 of the component built under ``key`` (its compiled forms' name), from
    its metadata: the user's (sealed), else the shared cache's. Only a name to look
    for: whatever is found under it is verified as every use verifies it."""
    meta = cache.sealed_meta("builds", key)
    if meta is None and len(roots) > 1:
        import json
        try:
            meta = json.loads((roots[1] / "builds" / f"{key}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
    sha256 = meta.get("sha256") if isinstance(meta, dict) else None
    return sha256 if is_sha256(sha256) else None


def _packed_only(roots: list[Path], section: str, name: str, suffix: str) -> bool:
    """Whether the entry is packed (in either cache: ``roots``, the user's first) and not
    unpacked in the user's."""
    if (roots[0] / section / f"{name}{suffix}").exists():
        return False
    return any((root / section / f"{name}{suffix}{PACKED}").exists() for root in roots)
