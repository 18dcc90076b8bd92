"""Guest-side helpers shared by the cell runner and the world app.

Both app modules run inside the component and are imported by componentize-py
while it pre-initializes it; whatever they import then is in the snapshot.
"""

import importlib
import io
import sys
import time

#: Prefix of the message the host's builder looks for in componentize-py's log.
MARKER = "WASI_MAGIC_IMPORT_FAILURES:"


def preload(required, optional) -> None:
    """Import what the user's source imports, so those modules are in the snapshot.

    Only modules imported during pre-initialization exist at run time.
    ``required`` holds ``(module, line)`` pairs: one that fails is reported
    to the host (via the build log) with the line that asked for it.
    ``optional`` modules (stdlib helpers imported lazily) are best effort.
    """
    failures = []
    for name, line in required:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - reported to the host
            failures.append((name, line, f"{type(exc).__name__}: {exc}"))
    for name in optional:
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - helpers are best effort
            pass
    if failures:
        raise ImportError(MARKER + repr(failures))


_real_sleep = time.sleep


def sliced_sleep(seconds: float) -> None:
    """``time.sleep`` in 50 ms slices, so that a time limit or an interrupt can stop it.

    Wasmtime checks its epoch deadline only while WebAssembly code runs, not
    while the host blocks in one long sleep.
    """
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        _real_sleep(min(left, 0.05))


def install_sliced_sleep() -> None:
    """Replace ``time.sleep`` with :func:`sliced_sleep` for the whole guest."""
    time.sleep = sliced_sleep


class WholeWrites(io.RawIOBase):
    """A raw output stream whose ``write`` writes all it is given.

    A WASI output stream takes at most 8 KiB per write, and the guest's
    ``sys.stdout`` is unbuffered (a text layer straight over the raw stream),
    which drops what a partial write left over: ``print("x" * 20000)`` showed
    only 8,192 characters. This layer writes the rest.
    """

    def __init__(self, raw) -> None:
        super().__init__()
        self._raw = raw

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._raw.fileno()

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            written = self._raw.write(view[done:])
            if not written:
                raise OSError("the output stream accepted nothing")
            done += written
        return done


def install_whole_writes(line_buffered_stdout: bool = False) -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` write everything (see :class:`WholeWrites`).

    ``line_buffered_stdout``: ``sys.stdout`` writes once per line (as CPython's does on a
    terminal) instead of once per ``write``. Every write is a call into the host, so
    ``print(x)`` then costs one host call, not two. Only for guests that flush at the end of
    every call they serve (a cell, a session cell); ``print(..., flush=True)`` still shows a
    partial line at once.
    """
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        raw = getattr(stream, "buffer", None)
        if not isinstance(raw, io.FileIO):
            continue  # buffered: io.BufferedWriter already writes the rest
        whole = WholeWrites(raw)
        if name == "stdout" and line_buffered_stdout:
            setattr(sys, name, io.TextIOWrapper(
                io.BufferedWriter(whole), encoding=stream.encoding, errors=stream.errors,
                line_buffering=True))
        else:
            setattr(sys, name, io.TextIOWrapper(
                whole, encoding=stream.encoding, errors=stream.errors,
                line_buffering=stream.line_buffering, write_through=True))
