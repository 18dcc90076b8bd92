"""Tier-up: recompile with Cranelift, in the background, what first ran under Winch.

Winch compiles a Python component ~4x faster than Cranelift, but its code runs
a CPU-bound cell ~1.6x slower. So a component's first run uses Winch, and then
a separate process, at the lowest CPU priority (``nice 19``) and on one core,
compiles it with Cranelift into the compiled-component cache
(``compiled/wasmtime-…-cranelift-…/<sha256>.cwasm``, sealed and renamed into
place like every entry). The runtime's next run of that component finds it
there and swaps it in; so does every later kernel.

Why a process, not a thread: a compile holds no lock the guest needs, but a
thread would share the worker's memory cap and its crash would be the
worker's; and the OS scheduler, told ``nice 19``, gives the guest and the
kernel the CPU first. The process dies with its parent (``PR_SET_PDEATHSIG``);
killed at any point it leaves no entry, or a whole one (a temporary file is
renamed into place only when complete; a leftover ``.tmp-*`` is never read).

Off with ``WASI_MAGIC_TIER_UP=0`` (every run then uses Winch, as before).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Iterator

from .children import python_module

ENV_VAR = "WASI_MAGIC_TIER_UP"
_ON, _OFF = ("1", "on", "true", "yes", ""), ("0", "off", "false", "no")
#: Compiles queued at most; a run of a component left out asks again.
MAX_QUEUED = 4
#: Exit status of the compile process when the component file changed under it.
_CHANGED = 3


def enabled() -> bool:
    """Whether tier-up is on (``$WASI_MAGIC_TIER_UP``; default on)."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in _OFF:
        return False
    if value not in _ON:
        warnings.warn(f"wasi-magic: {ENV_VAR}={value!r} is not one of 1/0/on/off; "
                      f"keeping tier-up on.", RuntimeWarning, stacklevel=2)
    return True


@dataclass(frozen=True)
class Job:
    """One background compile: a component file, its sha256, fuel or not, the cache, and
    whether the code has epoch checks (see :meth:`~wasi_magic.runtime.Runtime.compiled`)."""

    path: Path
    digest: str
    fuel: bool
    cache_root: Path
    epochs: bool = True

    @property
    def key(self) -> tuple[str, bool, bool]:
        return self.digest, self.fuel, self.epochs


class TierUp:
    """A queue of Cranelift compiles run one at a time by a background thread."""

    def __init__(self) -> None:
        self._jobs: "queue.Queue[Job]" = queue.Queue()
        self._lock = threading.Condition()
        self._pending: set[tuple[str, bool]] = set()
        self._failed: set[tuple[str, bool]] = set()
        self._thread: threading.Thread | None = None
        #: Keys compiled by this process's background compiles, in order (for tests).
        self.done: list[tuple[str, bool, bool]] = []

    def pending(self, digest: str, fuel: bool, epochs: bool = True) -> bool:
        """True while a compile of this component is queued or running."""
        with self._lock:
            return (digest, fuel, epochs) in self._pending

    def request(self, path: Path, digest: str, fuel: bool, cache_root: Path, *,
                epochs: bool = True) -> bool:
        """Queue a Cranelift compile of ``path`` (whose sha256 is ``digest``) into the
        cache at ``cache_root`` (``epochs``: with epoch checks); False if it is queued
        already, failed before, or the queue is full."""
        job = Job(Path(path), digest, fuel, Path(cache_root), epochs)
        with self._lock:
            if (job.key in self._pending or job.key in self._failed
                    or len(self._pending) >= MAX_QUEUED):
                return False
            self._pending.add(job.key)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="wasi-magic-tier-up",
                                                daemon=True)
                self._thread.start()
        self._jobs.put(job)
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or compiling (True) or ``timeout`` s (False)."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending, timeout)

    def _serve(self) -> None:
        # Linux: priority is per thread, and a child inherits its forking thread's, so
        # the compile process runs at the lowest priority from its first instruction.
        _lowest_priority(threading.get_native_id())
        while True:
            job = self._jobs.get()
            ok = run_job(job)
            with self._lock:
                self._pending.discard(job.key)
                (self.done.append if ok else self._failed.add)(job.key)
                self._lock.notify_all()


def run_job(job: Job) -> bool:
    """Run one compile in its own low-priority process; True if the entry is now cached."""
    command = python_module("wasi_magic.tierup", "--cache", str(job.cache_root),
                            "--parent", str(os.getpid()), *(["--fuel"] if job.fuel else []),
                            *([] if job.epochs else ["--no-epochs"]),
                            str(job.path), job.digest)
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              check=False)
    except OSError as exc:
        print(f"wasi-magic: the tier-up compile could not start: {exc}", file=sys.stderr)
        return False
    return done.returncode == 0


def _lowest_priority(who: int) -> None:
    """Set process or thread ``who`` (0: this one) to nice 19."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, who, 19)


def _lower_priority(parent: int) -> bool:
    """Lowest CPU priority, and (if ``parent``) end when that process ends; False if it
    already has."""
    _lowest_priority(0)
    if not parent:
        return True
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    return os.getppid() == parent


def compile_into_cache(path: Path, digest: str, fuel: bool, cache_root: Path, *,
                       epochs: bool = True,
                       writing: Callable[[], ContextManager[object]] = contextlib.nullcontext
                       ) -> int:
    """Compile ``path`` with Cranelift (``epochs``: with epoch checks) into the cache at
    ``cache_root``: exit status 0 if the entry is there (made now, or by someone else
    first), else non-zero. ``writing()`` surrounds the write of the entry (the one step
    that leaves a file to clean up if it is cut short)."""
    from wasmtime import component as wcomponent

    from .cache import Cache
    from .runtime import _Flavor, store_compiled
    flavor = _Flavor("cranelift", fuel, background=True, epochs=epochs)
    cache = Cache(cache_root)
    section = f"compiled/{flavor.tag}"
    folder = cache.folder(section)
    if folder is None:
        return 1
    # One compile of a component at a time per cache, even across kernels.
    with open(folder / f".{digest}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cache.get(section, digest, ".cwasm") is not None:
            return 0
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            return _CHANGED  # the file changed since it ran: never cache it under that key
        started = time.perf_counter()
        component = wcomponent.Component(flavor.engine, data)
        seconds = time.perf_counter() - started
        with writing():
            entry = store_compiled(cache, section, digest, component, path, seconds,
                                   tier="cranelift")
        return 0 if entry is not None else 1


@contextlib.contextmanager
def _exit_between_writes() -> Iterator[None]:
    """While the entry is written, SIGTERM exits through Python, so that the temporary
    file is removed; after it, at once again."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    """``python -m wasi_magic.tierup [--fuel] [--no-epochs] --cache DIR FILE SHA256`` (run by
    :class:`TierUp`)."""
    parser = argparse.ArgumentParser(prog="python -m wasi_magic.tierup",
                                     description="Compile a component with Cranelift into "
                                                 "the wasi-magic cache.")
    parser.add_argument("--cache", required=True, type=Path)
    parser.add_argument("--fuel", action="store_true")
    parser.add_argument("--no-epochs", action="store_true",
                        help="code without epoch checks (stopped by ending its process)")
    parser.add_argument("--parent", type=int, default=0, help="end when this process ends")
    parser.add_argument("file", type=Path)
    parser.add_argument("sha256")
    args = parser.parse_args(argv)
    # SIGTERM (the parent ended) keeps its default action, ending the process at once:
    # while it imports or compiles there is nothing to clean up, and a Python handler
    # would run only when the compile returns, seconds later (see _exit_between_writes).
    from . import runtime  # noqa: F401
    if not _lower_priority(args.parent):
        return 1
    # The sandbox worker caps its data segment for guests; a compile is not a guest.
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))
    try:
        return compile_into_cache(args.file, args.sha256, args.fuel, args.cache,
                                  epochs=not args.no_epochs, writing=_exit_between_writes)
    except Exception as exc:  # noqa: BLE001 - reported once in the kernel's log
        print(f"wasi-magic: the tier-up compile of {args.file} failed: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
