"""A guest's stdout through an OS pipe instead of Wasmtime's custom-output callback.

With ``WasiConfig.stdout_custom`` every guest write is a round trip: the guest waits
while Wasmtime's output thread takes the GIL and calls Python (measured ~0.07 ms a
write; the first write of a run ~0.2 ms). With a file as stdout, Wasmtime writes it in
the guest's own thread and the guest goes on at once. Here that file is the write end
of a pipe (opened by path, ``/proc/self/fd/N``); a reader thread takes what arrives and
hands it to the run's sink, so output still streams while the guest runs, and the
sink's cap applies to every byte exactly as before.

One :class:`StdoutPipe` serves one run at a time (its :class:`~wasi_magic.runtime.Runtime`
holds a lock for the whole run). Every guest write has reached the pipe by the time the
guest's call returns (Wasmtime writes a file synchronously), so :meth:`StdoutPipe.finish`
reading the pipe empty delivers all of a run's output before the next run can begin:
nothing carries over. stderr keeps the callback; each stderr write first delivers the
stdout already written (:meth:`StdoutPipe.drain`), so the two streams stay in order.
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time
import traceback
from typing import Any, Callable

Sink = Callable[[bytes], Any]

#: Bytes taken from the pipe at a time.
_CHUNK = 1 << 16
#: After delivering a little output, the reader waits this long before it looks again, so
#: that the next lines of a short cell wake no thread (each wake cost the guest ~0.02 ms,
#: measured; :meth:`StdoutPipe.finish` delivers them). The first output of a wait is
#: delivered at once, later output at most this late; a guest writing a lot (a full
#: chunk) is read without waiting.
_BATCH_SECONDS = 0.005


class StdoutPipe:
    """A pipe whose write end guests get as stdout, and the thread that reads it."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        #: What Wasmtime opens as the guest's stdout (a new descriptor per store).
        self.path = f"/proc/self/fd/{self._write}"
        self._lock = threading.Lock()  # one reader of the pipe at a time, in order
        self._sink: Sink | None = None
        self._thread = threading.Thread(target=self._serve, name="wasi-magic-stdout",
                                        daemon=True)
        self._thread.start()

    def start(self, sink: Sink) -> None:
        """Deliver what guests write from now on to ``sink`` (bytes, in order).

        Anything still in the pipe (a run cut short before :meth:`finish`) is dropped
        first: one run's output never reaches another's sink.
        """
        with self._lock:
            self._sink = None
            self._take()
            self._sink = sink

    def drain(self) -> int:
        """Deliver everything in the pipe now (the reader thread may be asleep); returns
        how many bytes that was."""
        with self._lock:
            return self._take()

    def finish(self) -> None:
        """The run's guest has returned: deliver the rest of its output, then detach."""
        with self._lock:
            try:
                self._take()
            finally:
                self._sink = None

    def _take(self) -> int:
        # Read the pipe empty, passing each chunk to the sink (hold self._lock).
        taken = 0
        while True:
            try:
                data = os.read(self._read, _CHUNK)
            except BlockingIOError:
                return taken
            if not data:  # pragma: no cover - the write end is never closed
                return taken
            taken += len(data)
            if self._sink is not None:
                try:
                    self._sink(data)
                except Exception:  # noqa: BLE001 - as Wasmtime's callback path: report, go on
                    # (a sink that raised must not leave this run's output in the pipe).
                    traceback.print_exc(file=sys.stderr)

    def _serve(self) -> None:
        poller = select.poll()
        poller.register(self._read, select.POLLIN)
        while True:
            poller.poll()
            if self.drain() < _CHUNK:
                time.sleep(_BATCH_SECONDS)


def available() -> StdoutPipe | None:
    """A new :class:`StdoutPipe` if this system can hand one to Wasmtime by path
    (Linux: ``/proc/self/fd``), else None (guests then write through the callback)."""
    if not sys.platform.startswith("linux"):
        return None
    read, write = os.pipe()
    try:
        os.close(os.open(f"/proc/self/fd/{write}", os.O_WRONLY))
    except OSError:
        return None
    finally:
        os.close(read)
        os.close(write)
    return StdoutPipe()
