"""Background builds: a cell's own component, built behind the output it already showed.

A build-mode cell whose imports are all in the quick-mode runner runs there at once
(:func:`runner_can_run` decides), and its own component is built behind it by
:class:`BackgroundBuilder`: one componentize-py process at a time, at low CPU
priority, in its own session (Jupyter's Interrupt does not reach it), killed when
this process exits (and, on Linux, by the OS if this process dies first). A
component enters the cache by an atomic rename once it is complete, so nothing
half-built is ever seen. Anything that needs the component meanwhile (``-o``, the
panel, a second run of the same cell, ``%wasi build``) asks :func:`wasi_magic.build`
for it, which waits for the build under way instead of starting another.
"""

from __future__ import annotations

import atexit
import contextvars
import os
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from . import builder
from .artifact import Artifact
from .children import python_code
from .guest import cell_imports

#: CPU niceness of a background componentize-py (0 is normal, 19 the lowest).
NICENESS = 10


@dataclass(frozen=True)
class Job:
    """One background build: the cell's source, the cache it goes to, the folder it ran in."""

    source: str
    cache: Any
    cwd: str

    @property
    def key(self) -> tuple[str, str]:
        return (str(self.cache.root), self.source)


class BackgroundBuilder:
    """Builds cells' components one at a time, in a thread of this process."""

    def __init__(self) -> None:
        self._queue: "queue.Queue[tuple[Job, Future] | None]" = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], Future] = {}
        self._compiling = False
        self._closed = False

    def submit(self, source: str, *, cwd: str | Path,
               on_done: Callable[[Future], None] | None = None) -> Future:
        """Queue the build of ``source``; a Future of its :class:`Artifact`.

        ``on_done(future)`` runs in the builder's thread, in the context of the caller
        (so, in a kernel, its display updates go to the cell that asked).
        """
        from .cache import default_cache
        job = Job(source, default_cache(), str(cwd))
        context = contextvars.copy_context()
        with self._lock:
            if self._closed:
                raise RuntimeError("background builds have been shut down")
            future = self._pending.get(job.key)
            if future is None:
                future = Future()
                self._pending[job.key] = future
                self._queue.put((job, future))
                self._start()
        if on_done is not None:
            future.add_done_callback(lambda done: context.copy().run(on_done, done))
        return future

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._serve, name="wasi-magic-builds",
                                            daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                with builder.low_priority(NICENESS):
                    artifact = _build_in(job)
            except BaseException as exc:  # noqa: BLE001 - reported through the future
                with self._lock:
                    self._pending.pop(job.key, None)
                future.set_exception(exc)
                continue
            with self._lock:
                self._pending.pop(job.key, None)
            future.set_result(artifact)
            # Then compile it too (into the cache), so that the cell's next run loads it
            # in a fraction of a second instead of compiling it for seconds.
            with self._lock:
                self._compiling = True
            try:
                if not self._closed:
                    _precompile(artifact, job)
            except Exception:  # noqa: BLE001 - the next run compiles it, as always
                pass
            finally:
                with self._lock:
                    self._compiling = False

    def busy(self) -> bool:
        """True while a build is queued or running (or its component being compiled)."""
        with self._lock:
            return bool(self._pending) or self._compiling

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no build is queued or running; False if ``timeout`` passed first."""
        end = None if timeout is None else time.monotonic() + timeout
        while self.busy():
            if end is not None and time.monotonic() > end:
                return False
            time.sleep(0.05)
        return True

    def shutdown(self) -> None:
        """Drop queued builds and kill the one running (this process is exiting)."""
        with self._lock:
            self._closed = True
            pending = list(self._pending.values())
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[1].cancel()
        self._queue.put(None)
        builder.stop_running_builds()
        for future in pending:
            future.cancel()


def _build_in(job: Job) -> Artifact:
    return builder.build(job.source, cache=job.cache, cwd=job.cwd)


#: Compiles a component into the cache, as the sandbox worker would (same engine settings).
_PRECOMPILE = (
    "import os, sys\n"
    "os.nice(int(sys.argv[2]))\n"
    "from wasi_magic.runtime import Runtime\n"
    "Runtime(pooled=True).component(sys.argv[1])\n")


def _precompile(artifact: Artifact, job: Job) -> None:
    """Compile ``artifact`` in a low-priority process of its own (never in the kernel,
    which holds no Wasmtime engine, nor in the worker, which serves the cells)."""
    env = dict(os.environ, WASI_MAGIC_CACHE=str(job.cache.requested))
    proc = subprocess.Popen(python_code(_PRECOMPILE, str(artifact.path), str(NICENESS)),
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    with builder.tracked(proc):
        proc.wait()


_default: BackgroundBuilder | None = None
_default_lock = threading.Lock()


def default_builder() -> BackgroundBuilder:
    """The process-wide background builder."""
    global _default
    with _default_lock:
        if _default is None:
            _default = BackgroundBuilder()
        return _default


@atexit.register
def _shutdown() -> None:
    # A kernel that exits must not leave a componentize-py behind.
    if _default is not None:
        _default.shutdown()


def required_imports(source: str) -> list[str]:
    """The modules a cell must be able to import (see :func:`wasi_magic.guest.cell_imports`)."""
    return [ref.name for ref in cell_imports(source) if ref.required]


def runner_can_run(source: str, available: Iterable[str]) -> bool:
    """True if every module ``source`` imports is one of the runner's ``available`` modules."""
    names = set(available)
    return all(name in names for name in required_imports(source))
