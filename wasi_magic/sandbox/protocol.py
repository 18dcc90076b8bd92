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

import io
import os
import pickle
import struct
import threading
from typing import Any, BinaryIO

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
    payload = _read_exactly(fd, size)
    if trusted:
        return pickle.loads(payload)
    return SafeUnpickler(io.BytesIO(payload)).load()
