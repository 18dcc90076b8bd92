"""Guest output: decode bytes as they arrive, keep a bounded copy, pass text on."""

from __future__ import annotations

import codecs
import threading
from typing import Callable

#: Default cap on what one stream keeps and shows.
DEFAULT_LIMIT = 1 << 20

TextCallback = Callable[[str], None]


def format_size(size: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


class OutputSink:
    """Receives one guest stream's bytes (on any thread).

    Invalid UTF-8 is replaced, never fatal. Up to ``limit`` bytes are kept and
    forwarded to ``forward``; past that the rest is counted and dropped, and a
    single note says so.
    """

    def __init__(self, name: str, forward: TextCallback | None = None,
                 limit: int = DEFAULT_LIMIT) -> None:
        self.name = name
        self.forward = forward
        self.limit = limit
        self.total = 0
        self._parts: list[str] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._lock = threading.Lock()
        self._truncated = False

    @property
    def truncated(self) -> bool:
        """Whether the guest wrote more than ``limit`` bytes to this stream."""
        return self._truncated

    def write(self, data: bytes) -> None:
        """Take a chunk from the guest. Returns None: Wasmtime reads that as 'all written'."""
        with self._lock:
            room = self.limit - self.total
            self.total += len(data)
            if room <= 0:
                return
            if len(data) > room:
                data = data[:room]
                self._truncated = True
            text = self._decoder.decode(data)
            if self._truncated:
                text += self._decoder.decode(b"", final=True) + self._note()
            self._emit(text)

    def close(self) -> None:
        """The stream has ended: flush a dangling partial character."""
        with self._lock:
            if not self._truncated:
                self._emit(self._decoder.decode(b"", final=True))

    def _note(self) -> str:
        return (f"\n[wasi-magic: {self.name} truncated after {format_size(self.limit)}; "
                f"the rest was discarded]\n")

    def _emit(self, text: str) -> None:
        if not text:
            return
        self._parts.append(text)
        if self.forward is not None:
            self.forward(text)

    def text(self) -> str:
        """Everything kept so far."""
        with self._lock:
            return "".join(self._parts)


class Relay:
    """A stream callback whose receiver is chosen later: for a WASI config made ahead of
    the run whose output it carries (see :meth:`wasi_magic.runtime.Runtime.tidy`).
    Bytes arriving while no receiver is set are dropped."""

    def __init__(self) -> None:
        self.target: Callable[[bytes], None] | None = None

    def __call__(self, data: bytes) -> None:
        target = self.target
        if target is not None:
            target(data)
