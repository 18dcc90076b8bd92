"""Frames between the kernel (supervisor) and a sandbox worker process.

A frame is a 4-byte big-endian length and a pickle. The worker trusts what its
supervisor sends; the supervisor does not trust the worker (a process that runs
untrusted WebAssembly), so it reads frames with :class:`SafeUnpickler`, which
builds only plain data and the few value classes listed in :data:`ALLOWED`.

Messages are tuples ``(kind, request_id, *payload)``. Kernel -> worker:
``run``, ``prepare``, ``imports``, ``load``, ``call``, ``close``, ``forget``,
``interrupt``. Worker -> kernel: ``ready``, ``started``, ``out``, ``done``,
``error``, ``interrupted``, and ``exiting`` (the worker ends after its next reply).
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import select
import signal
import struct
import threading
import time
from typing import Any, BinaryIO, Iterator

_HEADER = struct.Struct("!I")
#: The largest frame either side accepts (a typed-world value, or an output chunk).
MAX_FRAME = 256 << 20

#: The only classes a worker's frames may contain, besides plain data.
ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"),
    ("builtins", "complex"),
    ("wasmtime._component._types", "Variant"), ("wasmtime.component._types", "Variant"),
    ("wasmtime._component._types", "Record"), ("wasmtime.component._types", "Record"),
    ("wasi_magic.values", "Record"),
})


class ProtocolError(Exception):
    """The other side sent something that is not a frame (or closed the pipe)."""


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global outside :data:`ALLOWED`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        raise ProtocolError(f"the sandbox worker sent a forbidden object: {module}.{name}")


def encode(message: Any) -> bytes:
    """One frame holding ``message``."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"a message of {len(payload)} bytes is larger than {MAX_FRAME}")
    return _HEADER.pack(len(payload)) + payload


class Writer:
    """Writes frames to a pipe; safe to call from several threads."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: Any) -> None:
        frame = encode(message)
        with self._lock:
            self._stream.write(frame)
            self._stream.flush()

    def close(self) -> None:
        with self._lock:
            try:
                self._stream.close()
            except OSError:
                pass


@contextlib.contextmanager
def _no_sigint() -> Iterator[None]:
    """SIGINT held back (pending, delivered at the end) for this thread: a KeyboardInterrupt
    raised in here would lose bytes already taken from a pipe."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


#: Bytes read at a time (below glibc's threshold for mmap: a larger read buffer would be
#: mapped and unmapped by every read).
_CHUNK = 1 << 16


class FrameReader:
    """Reads the frames of a pipe in the thread that waits for them (no reader thread).

    The kernel's side of a worker's replies: the thread that sent a request reads its
    answer itself, so each frame wakes one thread, not a reader thread and then the
    waiting one (on a small VM each wake costs tens of microseconds). Safe against
    Interrupt: a KeyboardInterrupt can arise only while :meth:`next` waits for the pipe,
    never between taking bytes from it and keeping them, so no frame is ever cut.
    One thread reads at a time (the caller's lock).
    """

    def __init__(self, fd: int, *, trusted: bool) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._trusted = trusted
        self._buffer = bytearray()
        self._closed = False

    def next(self, timeout: float | None) -> Any | None:
        """The next message, or None if none came within ``timeout`` seconds (None: wait
        as long as it takes). EOFError once the pipe is closed and every frame is read;
        ProtocolError for bytes that are not a frame."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._buffer:  # (frames that came with the last one read)
            with _no_sigint():
                message = self._take()
            if message is not None:
                return message
        while not self._closed:
            wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not select.select([self._fd], [], [], wait)[0]:
                return None  # (select waits at least ``wait``: the deadline has passed)
            with _no_sigint():
                self._fill()
                message = self._take()
            if message is not None:
                return message
        raise EOFError("the other side closed the pipe")

    def detach(self) -> None:
        """Read nothing more (the descriptor is about to be closed, its number reused)."""
        self._fd = -1
        self._closed = True

    def _fill(self) -> None:
        try:
            data = os.read(self._fd, _CHUNK)
        except BlockingIOError:
            return
        if data:
            self._buffer += data
        else:
            self._closed = True

    def _take(self) -> Any | None:
        buffer = self._buffer
        if len(buffer) < _HEADER.size:
            return None
        (size,) = _HEADER.unpack_from(buffer)
        if size > MAX_FRAME:
            raise ProtocolError(f"a frame of {size} bytes is larger than {MAX_FRAME}")
        end = _HEADER.size + size
        if len(buffer) < end:
            return None
        payload = bytes(buffer[_HEADER.size:end])
        del buffer[:end]
        return _loads(payload, self._trusted)


def _loads(payload: bytes, trusted: bool) -> Any:
    if trusted:
        return pickle.loads(payload)
    return SafeUnpickler(io.BytesIO(payload)).load()


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read(fd: int, *, trusted: bool) -> Any:
    """The next message on ``fd`` (EOFError when the pipe is closed).

    ``trusted=False`` (the kernel reading a worker) unpickles with
    :class:`SafeUnpickler`.
    """
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    if size > MAX_FRAME:
        raise ProtocolError(f"a frame of {size} bytes is larger than {MAX_FRAME}")
    return _loads(_read_exactly(fd, size), trusted)
