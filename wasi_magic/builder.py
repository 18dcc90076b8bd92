"""Python source -> WASI Preview 2 component, with componentize-py.

:func:`build` generates the guest modules for a cell (see :mod:`.guest`),
runs componentize-py against the package's ``cell`` world (a plain
``wasi:cli`` command) and stores the result in the content-addressed cache.
Builds are not byte-reproducible, so the cache key is made of the *inputs*:
the cell source, the guest runner, the WIT world, the contents of every
``--path`` folder, and the componentize-py and wasi-magic versions.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median
from typing import Callable, Iterable, Iterator, Sequence

from . import guest, path_tree, worlds
from .artifact import Artifact
from .cache import PACKED, Cache, default_cache
from .children import python_code
from .errors import BuildError, GuestImportError
from .text import check_text
from .versions import installed_version

WIT_DIR = Path(__file__).with_name("wit")
CELL_WORLD = "cell"
#: The world of a cell that imports the HTTP helper (``wit/http.wit``).
HTTP_WORLD = "cell-http"
_STATS_FILE = "build-stats.json"
#: One line per componentize-py build: ``<unix time> <key> <seconds>``.
BUILD_LOG = "builds.log"
_COMPONENTIZE = ("import sys, componentize_py; sys.argv[0] = 'componentize-py'; "
                 "sys.exit(componentize_py.script())")
#: The same, for a background build: at low CPU priority, and (on Linux) ended by the
#: kernel if the thread that started it dies, so a killed kernel leaves no orphan build.
_COMPONENTIZE_BACKGROUND = (
    "import os, sys, signal\n"
    "parent = int(sys.argv.pop(1))\n"
    "os.nice(int(sys.argv.pop(1)))\n"
    "try:\n"
    "    import ctypes\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG\n"
    "except Exception:\n"
    "    pass\n"
    "if os.getppid() != parent:\n"
    "    sys.exit(1)\n"
    + _COMPONENTIZE.replace("; ", "\n"))


@dataclass(frozen=True)
class BuildProgress:
    """A progress report: the current stage, seconds spent, and the expected total."""

    stage: str
    elapsed: float
    estimate: float | None


ProgressCallback = Callable[[BuildProgress], None]

_memo: dict[str, Artifact] = {}
_memo_lock = threading.Lock()


def _memo_key(cache: Cache, key: str, name: str = "cell.wasm") -> str:
    """Where this process remembers (and tracks the build of) ``name`` under cache ``key``."""
    return f"{cache.root}:{key}:{name}"


#: Builds under way in this process, by cache key: a second build() of the same cell
#: waits for the first (a background build, or another thread) instead of repeating it.
_inflight: dict[str, threading.Event] = {}
#: The componentize-py processes running now (so that a shutdown can end them).
_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()
_priority = threading.local()


@contextlib.contextmanager
def low_priority(niceness: int = 10) -> Iterator[None]:
    """Builds started by this thread inside the block run at CPU niceness ``niceness``."""
    _priority.niceness = niceness
    try:
        yield
    finally:
        _priority.niceness = 0


def stop_running_builds() -> int:
    """Kill every componentize-py process this process started; how many there were.

    Nothing half-built reaches the cache: components enter it by an atomic rename,
    after componentize-py has finished.
    """
    with _running_lock:
        procs = list(_running)
    for proc in procs:
        with contextlib.suppress(OSError):
            proc.kill()
    for proc in procs:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    return len(procs)


@contextlib.contextmanager
def tracked(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Count ``proc`` among the builds :func:`stop_running_builds` ends, while it runs."""
    with _running_lock:
        _running.add(proc)
    try:
        yield proc
    finally:
        with _running_lock:
            _running.discard(proc)


def running_build_pids() -> list[int]:
    """The process ids of the componentize-py builds running now."""
    with _running_lock:
        return sorted(proc.pid for proc in _running)


def componentize_py_version() -> str:
    """The installed componentize-py version, or a clear error with an install hint."""
    try:
        return installed_version("componentize_py", "componentize-py")
    except ImportError:  # (importlib.metadata.PackageNotFoundError is one)
        raise BuildError("componentize-py is not installed. Install it with: "
                         "pip install 'componentize-py==0.25.*'") from None


@functools.lru_cache(maxsize=2)
def _builder_digest(quick: bool) -> "hashlib._Hash":
    """The part of every cell key that is fixed for this installation (computed once)."""
    digest = hashlib.sha256()
    for part in (
        "wasi-magic-build/1" + ("-quick" if quick else ""),
        componentize_py_version(),
        sys.version,  # the host's stdlib decides which helper modules are included
        guest.RUNNER_PATH.read_text(encoding="utf-8"),
        guest.SHARED_PATH.read_text(encoding="utf-8"),
        guest.STDLIB_PATH.read_text(encoding="utf-8"),
        guest.SCAN_PATH.read_text(encoding="utf-8"),  # which modules a build carries
        Path(guest.__file__).read_text(encoding="utf-8"),
        (WIT_DIR / "cell.wit").read_text(encoding="utf-8"),
        (WIT_DIR / "deps" / "cli" / "run.wit").read_text(encoding="utf-8"),
    ):
        digest.update(part.encode() + b"\0\0")
    return digest


def _check_source(source: str, filename: str) -> None:
    check_text(source, "The cell" if filename == "<cell>" else repr(filename))


def build_key(source: str, paths: Sequence[Path] = (), filename: str = "<cell>",
              quick: bool = False) -> str:
    """The cache key of a cell: a hash of every input that shapes the component. Text no
    guest can be given is refused here, before any build looks for it."""
    _check_source(source, filename)
    digest = _builder_digest(quick).copy()
    if not quick and guest.uses_http(source, filename):
        # Only HTTP cells depend on these, so other cells keep their keys.
        for part in (HTTP_WORLD, (WIT_DIR / "http.wit").read_text(encoding="utf-8"),
                     guest.HTTP_PATH.read_text(encoding="utf-8")):
            digest.update(part.encode() + b"\0\0")
    for part in (filename, source):
        digest.update(part.encode() + b"\0\0")
    _hash_folders(digest, paths, filename)
    return digest.hexdigest()[:32]


@functools.lru_cache(maxsize=1)
def _quick_key() -> str:
    """The quick-mode sandbox's cache key (fixed for this installation)."""
    return build_key("", (), "<cell>", True)


def _resolve_paths(paths: Iterable[str | os.PathLike[str]], cwd: Path) -> tuple[Path, ...]:
    """The ``--path`` folders, each walked as the OS will (no symbolic link followed, as
    for ``--dir``: a guest could have planted one), made absolute."""
    return tuple(_carried_folder(os.fspath(item), cwd, f"--path {os.fspath(item)!r}")
                 for item in paths)


def _carried_folder(text: str, cwd: Path, what: str) -> Path:
    """The folder ``text`` names (relative to ``cwd``) that a build carries into its guest:
    reached without a link, and holding none of the host's secrets."""
    from .capabilities import check_carried_folder, host_path
    folder = host_path(text, cwd.resolve(), "--path")
    if not folder.is_dir():
        raise BuildError(f"{what}: no such folder ({str(folder)!r}).")
    check_carried_folder(folder, what, path_tree.carries)
    return folder


def build(
    source: str | os.PathLike[str],
    *,
    paths: Iterable[str | os.PathLike[str]] = (),
    cache: Cache | None = None,
    progress: ProgressCallback | None = None,
    cwd: str | os.PathLike[str] | None = None,
    quick: bool = False,
    wit: str | os.PathLike[str] | None = None,
    world: str | None = None,
) -> Artifact:
    """Build Python code into a ``wasi:cli`` command component (or take it from the cache).

    ``source`` is the program's text, or a path to a ``.py`` file (whose
    folder is then importable too). ``paths`` are folders of pure-Python
    modules the program may import. ``progress`` is called about four times a
    second while componentize-py runs.

    With ``wit`` (WIT text, or a path to a ``.wit`` file or folder) and
    ``world`` (its name; optional if the WIT has one world) the source instead
    implements that world's typed exports; see :mod:`wasi_magic.worlds` for
    the conventions, and :func:`wasi_magic.host.load` to call them.

    Raises :class:`BuildError` (syntax errors, imports that cannot be in a
    guest, componentize-py failures) with a message naming the cell line.
    """
    cache = cache if cache is not None else default_cache()
    key, name, world, make = _plan(source, paths, cwd, quick, wit, world, cache, progress)
    return _cached_or_built(key, name, world, cache, make)


def build_key_of(source: str | os.PathLike[str], *, paths: Iterable[str | os.PathLike[str]] = (),
                 cwd: str | os.PathLike[str] | None = None,
                 wit: str | os.PathLike[str] | None = None, world: str | None = None) -> str:
    """The cache key :func:`build` would use for these arguments (reading the source file,
    the ``--path`` folders and the WIT as it would); never builds. Raises BuildError as
    :func:`build` would for a missing file or folder."""
    return _plan(source, paths, cwd, False, wit, world, default_cache(), None)[0]


def _plan(source: str | os.PathLike[str], paths: Iterable[str | os.PathLike[str]],
          cwd: str | os.PathLike[str] | None, quick: bool, wit: str | os.PathLike[str] | None,
          world: str | None, cache: Cache, progress: ProgressCallback | None,
          ) -> tuple[str, str, str | None, Callable[[], Artifact]]:
    """What :func:`build` needs before it looks in the cache: the key, the component's
    name, its world, and how to build it fresh."""
    if quick and source == "" and not paths and wit is None and world is None:
        # The quick-mode sandbox, asked for by every quick cell: its key never changes.
        key = _quick_key()
        return key, "cell.wasm", None, lambda: _build_fresh(
            "", (), "<cell>", key, "cell.wasm", cache, progress, True)
    base = Path(cwd) if cwd is not None else Path.cwd()
    name, filename = "cell.wasm", "<cell>"
    extra = list(paths)
    own: Path | None = None
    if isinstance(source, os.PathLike):
        from .capabilities import host_path  # (no link followed: a guest could have planted it)
        file = host_path(os.fspath(source), base.resolve(), "build")
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise BuildError(f"Cannot read {str(file)!r}: {exc.strerror or exc}.") from None
        name, filename = file.with_suffix(".wasm").name, file.name
        source = text
        # (its own folder is importable, as for `python FILE.py`)
        own = _carried_folder(str(file.parent), base, f"the folder of {file.name!r}")
    folders = (own,) if own is not None else ()
    folders += _resolve_paths(extra, base)
    if wit is not None or world is not None:
        if quick:
            raise BuildError("Quick mode builds commands only; a world needs a full build.")
        spec = worlds.resolve_wit(wit, base)
        if filename == "<cell>":
            name = f"{world or 'world'}.wasm"
        key = world_build_key(source, spec, world, folders, filename)
        text, world_name = source, world
        return key, name, world, lambda: _build_world_fresh(
            text, folders, filename, key, name, spec, world_name, cache, progress)
    if quick:  # the quick-mode sandbox: one component for every cell
        source, folders = "", ()
    key = build_key(source, folders, filename, quick)
    text = source
    return key, name, None, lambda: _build_fresh(
        text, folders, filename, key, name, cache, progress, quick)


def _cached_or_built(key: str, name: str, world: str | None, cache: Cache,
                     make: Callable[[], Artifact]) -> Artifact:
    """The artifact for ``key``: from this process's memo, the disk cache, or ``make()``."""
    memo_key = _memo_key(cache, key, name)
    with _memo_lock:
        known = _memo.get(memo_key)
    if known is not None and known.path.exists():
        if not known.cached:
            known = replace(known, cached=True)
            with _memo_lock:
                _memo[memo_key] = known
        return known
    while True:
        entry = cache.get("builds", key, ".wasm")
        if entry is not None:
            artifact = Artifact(entry.path, key, entry.meta["sha256"], entry.meta["size"],
                                float(entry.meta.get("build_seconds", 0.0)), True, name, world)
            break
        with _memo_lock:
            other = _inflight.get(memo_key)
            if other is None:
                mine = _inflight[memo_key] = threading.Event()
        if other is not None:
            # The same component is being built (in the background, or by another
            # thread): wait for it, then take it from the cache (or build it, if that
            # build failed or was stopped). Interrupt stops the wait, not that build.
            while not other.wait(0.1):
                pass
            continue
        try:
            artifact = make()
        finally:
            with _memo_lock:
                _inflight.pop(memo_key, None)
            mine.set()
        break
    with _memo_lock:
        _memo[memo_key] = artifact
    return artifact


def cached_artifact(source: str, *, paths: Iterable[str | os.PathLike[str]] = (),
                    cache: Cache | None = None,
                    cwd: str | os.PathLike[str] | None = None) -> Artifact | None:
    """The built component of a cell, if this process or the cache has it; never builds."""
    cache = cache if cache is not None else default_cache()
    folders = _resolve_paths(paths, Path(cwd) if cwd is not None else Path.cwd())
    return cached_artifact_by_key(build_key(source, folders), "cell.wasm", cache)


def cached_artifact_by_key(key: str, name: str, cache: Cache | None = None) -> Artifact | None:
    """The component cached under ``key``, from this process's memo or the disk cache."""
    cache = cache if cache is not None else default_cache()
    with _memo_lock:
        known = _memo.get(_memo_key(cache, key, name))
    if known is not None and known.path.exists():
        return replace(known, cached=True)
    entry = cache.get("builds", key, ".wasm")
    if entry is None:
        return None
    return Artifact(entry.path, key, entry.meta["sha256"], entry.meta["size"],
                    float(entry.meta.get("build_seconds", 0.0)), True, name, None)


def packed_sha256(source: str, cache: Cache | None = None) -> str | None:
    """The sha256 of the component of ``source`` (a cell without ``--path`` folders) if
    the cache holds it packed only, so that :func:`build` will first unpack it; else
    None. Reads the sealed metadata alone (see :meth:`Sandbox.preload`)."""
    cache = cache if cache is not None else default_cache()
    key = build_key(source)
    with _memo_lock:
        if _memo_key(cache, key) in _memo:
            return None
    folder = cache.root / "builds"
    if (folder / f"{key}.wasm").exists() or not (folder / f"{key}.wasm{PACKED}").exists():
        return None
    meta = cache.sealed_meta("builds", key)
    return meta["sha256"] if meta is not None else None


def building(source: str, *, paths: Iterable[str | os.PathLike[str]] = (),
             cache: Cache | None = None, cwd: str | os.PathLike[str] | None = None) -> bool:
    """True while this process builds the component of ``source`` (e.g. in the background)."""
    cache = cache if cache is not None else default_cache()
    folders = _resolve_paths(paths, Path(cwd) if cwd is not None else Path.cwd())
    with _memo_lock:
        return _memo_key(cache, build_key(source, folders)) in _inflight


def forget_memo() -> None:
    """Drop the in-process memo of built artifacts (after ``cache clear``)."""
    with _memo_lock:
        _memo.clear()


def estimate_seconds(cache: Cache) -> float | None:
    """The median of recent build times on this machine, or None before the first build."""
    stats = cache.read_json(_STATS_FILE)
    if isinstance(stats, list) and stats:
        return float(median(stats))
    return None


def _record_seconds(cache: Cache, seconds: float, key: str = "") -> None:
    stats = cache.read_json(_STATS_FILE)
    stats = stats if isinstance(stats, list) else []
    cache.write_json(_STATS_FILE, (stats + [round(seconds, 2)])[-20:])
    cache.append_text(BUILD_LOG, f"{time.time():.0f} {key or '-'} {seconds:.2f}\n")


def builds_logged(cache: Cache | None = None) -> int:
    """How many componentize-py builds this cache has seen (one line each in ``builds.log``)."""
    cache = cache if cache is not None else default_cache()
    try:
        return len((cache.root / BUILD_LOG).read_text(encoding="utf-8").splitlines())
    except OSError:
        return 0


def _build_fresh(source: str, folders: tuple[Path, ...], filename: str, key: str, name: str,
                 cache: Cache, progress: ProgressCallback | None, quick: bool = False) -> Artifact:
    generated = guest.generate(source, folders, filename, quick=quick)
    world = HTTP_WORLD if f"{guest.HTTP_MODULE}.py" in generated.files else CELL_WORLD
    return _componentize(generated, folders, key, name, cache, progress,
                         wit=lambda work: WIT_DIR, world=world, app_module=guest.APP_MODULE,
                         explain=lambda log, wit_path: _explain_failure(log, generated),
                         artifact_world=None)


def _componentize(generated: guest.GuestSource, folders: tuple[Path, ...], key: str, name: str,
                  cache: Cache, progress: ProgressCallback | None, *,
                  wit: Callable[[Path], Path], world: str | None, app_module: str,
                  explain: Callable[[str, Path], BuildError],
                  artifact_world: str | None) -> Artifact:
    """The one componentize-py pipeline, for cells and typed worlds alike.

    Writes the generated guest modules into a private build folder, runs
    componentize-py there against the WIT that ``wit(work)`` names, and moves
    the component into the cache (or explains the failure with ``explain``).
    """
    with tempfile.TemporaryDirectory(prefix="wasi-magic-build-") as tmp:
        work = Path(tmp)
        app = work / "app"
        app.mkdir()
        for file, text in generated.files.items():
            (app / file).write_text(text, encoding="utf-8")
        wit_path = wit(work)
        out = work / "component.wasm"
        niceness = getattr(_priority, "niceness", 0)
        if niceness:
            command = python_code(_COMPONENTIZE_BACKGROUND, str(os.getpid()), str(niceness), "-q",
                                  "-d", str(wit_path))
        else:
            command = python_code(_COMPONENTIZE, "-q", "-d", str(wit_path))
        if world:
            command += ["-w", world]
        command += ["componentize", "-p", str(app)]
        # componentize-py mounts every -p folder read-write while it pre-initializes the
        # guest, so code that runs at import time could write there: it gets private
        # copies, and the host's folders stay as they were.
        for index, folder in enumerate(folders):
            command += ["-p", str(path_tree.copy_tree(folder, work / "paths" / str(index)))]
        command += [app_module, "-o", str(out)]
        started = time.perf_counter()
        log = _run_componentize(command, work, started, estimate_seconds(cache), progress)
        seconds = time.perf_counter() - started
        if not out.exists():
            raise explain(log, wit_path)
        return _store_build(out, key, name, seconds, cache, artifact_world)


def _run_componentize(command: list[str], work: Path, started: float,
                      estimate: float | None, progress: ProgressCallback | None) -> str:
    env = dict(os.environ)
    # The guest may import only our app folder and the --path folders (they are
    # in the cache key); componentize-py would add $VIRTUAL_ENV's site-packages.
    # Without Rust backtraces a failure's own message stays in the log's tail.
    env.pop("VIRTUAL_ENV", None)
    env["RUST_BACKTRACE"] = "0"
    env.pop("PYTHONPATH", None)
    log_path = work / "componentize-py.log"
    with open(log_path, "wb") as log:
        # Its own session: Jupyter's Interrupt signals the kernel's whole process
        # group, and the build must stop because we stop it (below), not die
        # half-way on its own.
        proc = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        with _running_lock:
            _running.add(proc)
        try:
            while True:
                try:
                    proc.wait(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    if progress is not None:
                        progress(BuildProgress("componentize-py", time.perf_counter() - started,
                                               estimate))
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            with _running_lock:
                _running.discard(proc)
    return log_path.read_text(encoding="utf-8", errors="replace")


_MARKER = re.compile(r"WASI_MAGIC_IMPORT_FAILURES:(\[.*\])")


def _explain_failure(log: str, generated: guest.GuestSource) -> BuildError:
    """Turn componentize-py's output into a message about the cell."""
    found = _MARKER.search(log)
    if found:
        import ast
        try:
            failures = ast.literal_eval(found.group(1))
        except (ValueError, SyntaxError):
            failures = []
        if failures:
            lines = [f"  line {line}: import {name} - {error}" for name, line, error in failures]
            return GuestImportError(
                "The cell imports a module that is not available inside the WASI guest:\n"
                + "\n".join(lines)
                + "\nThe guest runs CPython compiled to WebAssembly: modules that need C "
                  "extensions, threads or processes the guest lacks cannot be imported.",
                log=log)
    lines = [line for line in log.strip().splitlines()
             if not line.lstrip().startswith(("at /", "Stack backtrace", "stack backtrace"))
             and not line.lstrip()[:1].isdigit()]
    key = [line for line in lines if "panicked at" in line or line.startswith(("Error", "Caused by"))]
    tail = "\n".join((key[:3] + ["..."] if key else []) + lines[-10:])
    return BuildError("componentize-py could not build the cell. Its last words:\n" + tail, log=log)


# --- typed worlds ------------------------------------------------------------------------


def _folder_label(index: int, filename: str) -> str | None:
    """How messages name the ``index``-th folder a build carries: a build of ``FILE.py``
    carries the file's own folder first (see :func:`_plan`); ``--path`` folders follow."""
    return f"the folder of {filename!r}" if index == 0 and filename != "<cell>" else None


def _hash_folders(digest: "hashlib._Hash", paths: Sequence[Path], filename: str) -> None:
    for index, folder in enumerate(paths):
        digest.update(str(folder).encode() + b"\0")
        path_tree.hash_tree(digest, folder, _folder_label(index, filename))


def world_build_key(source: str, wit: worlds.WitSource, world: str | None,
                    paths: Sequence[Path] = (), filename: str = "<cell>") -> str:
    """The cache key of a world build: the source, the WIT's content, the world name and the rest."""
    _check_source(source, filename)
    digest = hashlib.sha256()
    for part in (
        "wasi-magic-world/1",
        componentize_py_version(),
        sys.version,
        worlds.WORLD_APP_PATH.read_text(encoding="utf-8"),
        guest.SHARED_PATH.read_text(encoding="utf-8"),
        Path(worlds.__file__).read_text(encoding="utf-8"),
        Path(guest.__file__).read_text(encoding="utf-8"),
        wit.digest(),
        world or "",
        filename,
        source,
    ):
        digest.update(part.encode() + b"\0\0")
    _hash_folders(digest, paths, filename)
    return digest.hexdigest()[:32]


def _build_world_fresh(source: str, folders: tuple[Path, ...], filename: str, key: str,
                       name: str, spec: worlds.WitSource, world: str | None, cache: Cache,
                       progress: ProgressCallback | None) -> Artifact:
    generated = worlds.generate(source, folders, filename)

    def explain(log: str, wit_path: Path) -> BuildError:
        if _MARKER.search(log):
            return _explain_failure(log, generated)
        return worlds.explain_failure(log, spec, wit_path, world)

    return _componentize(generated, folders, key, name, cache, progress, wit=spec.materialize,
                         world=world, app_module=worlds.WORLD_APP, explain=explain,
                         artifact_world=world)


def _store_build(out: Path, key: str, name: str, seconds: float, cache: Cache,
                 world: str | None) -> Artifact:
    """Move a freshly built component into the cache and describe it."""
    _record_seconds(cache, seconds, key)
    meta = {"build_seconds": round(seconds, 3), "componentize_py": componentize_py_version(),
            "created": time.time(), "world": world}
    entry = cache.put_file("builds", key, ".wasm", out, meta, move=True)
    if entry is None:  # cache disabled: keep the component beside the process
        from .cache import file_sha256
        keep = Path(tempfile.mkdtemp(prefix="wasi-magic-")) / name
        os.replace(out, keep)
        return Artifact(keep, key, file_sha256(keep), keep.stat().st_size, seconds, False, name,
                        world)
    return Artifact(entry.path, key, entry.meta["sha256"], entry.meta["size"], seconds, False,
                    name, world)
