"""Frames between the kernel and a sandbox worker, read as the kernel reads them.

:class:`~wasi_magic.sandbox.protocol.FrameReader` reads a worker's replies in the thread
that waits for them. These cases use real pipes and a real SIGINT: frames cut into
pieces arrive whole, Interrupt while a frame is half-read loses nothing, and what is
not a frame (too large, a forbidden object) is refused.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import threading
import time

import pytest

from wasi_magic.sandbox import protocol


@pytest.fixture
def pipe():
    read, write = os.pipe()
    yield protocol.FrameReader(read, trusted=False), write
    for fd in (read, write):
        try:
            os.close(fd)
        except OSError:
            pass


def later(seconds: float, action) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()), daemon=True)
    thread.start()
    return thread


def test_frames_written_in_pieces_arrive_whole_and_in_order(pipe) -> None:
    reader, write = pipe
    data = b"".join(protocol.encode(("out", 7, "stdout", "x" * n)) for n in (0, 3, 70_000))

    def trickle() -> None:
        for start in range(0, len(data), 4099):  # pieces that cut headers and payloads
            os.write(write, data[start:start + 4099])
            time.sleep(0.001)
    later(0, trickle)
    got = [reader.next(5.0) for _ in range(3)]
    assert got == [("out", 7, "stdout", "x" * n) for n in (0, 3, 70_000)]


def test_a_wait_with_nothing_written_returns_none_after_its_timeout(pipe) -> None:
    reader, _ = pipe
    started = time.monotonic()
    assert reader.next(0.05) is None
    assert time.monotonic() - started >= 0.05
    assert reader.next(0.0) is None


def test_interrupt_while_a_frame_is_half_read_loses_no_byte(pipe) -> None:
    """SIGINT (the notebook's Interrupt) during a wait raises KeyboardInterrupt, and the
    frame whose first half was already taken from the pipe still arrives whole."""
    reader, write = pipe
    frame = protocol.encode(("done", 3, {"status": 0, "stdout": "é" * 5000}))
    os.write(write, frame[:2000])
    assert reader.next(0.05) is None  # half a frame: taken from the pipe, kept
    later(0.05, lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        reader.next(5.0)
    os.write(write, frame[2000:])
    assert reader.next(5.0) == ("done", 3, {"status": 0, "stdout": "é" * 5000})


def test_a_closed_pipe_gives_its_last_frames_then_eof(pipe) -> None:
    reader, write = pipe
    os.write(write, protocol.encode(("done", 1, None)) + protocol.encode(("done", 2, None)))
    os.close(write)
    assert reader.next(1.0) == ("done", 1, None)
    assert reader.next(1.0) == ("done", 2, None)
    with pytest.raises(EOFError):
        reader.next(1.0)


def test_a_detached_reader_reads_nothing_more(pipe) -> None:
    reader, write = pipe
    os.write(write, b"\0\0")
    reader.next(0.0)
    reader.detach()  # (its descriptor may now be closed and its number reused)
    os.write(write, protocol.encode(("done", 1, None)))
    with pytest.raises(EOFError):
        reader.next(1.0)


def test_a_frame_larger_than_the_limit_is_refused_before_it_is_read(pipe) -> None:
    reader, write = pipe
    os.write(write, struct.pack("!I", protocol.MAX_FRAME + 1))
    with pytest.raises(protocol.ProtocolError, match="larger than"):
        reader.next(1.0)


def test_a_forbidden_object_is_refused(pipe) -> None:
    reader, write = pipe
    payload = pickle.dumps(("done", 1, os.system), protocol=pickle.HIGHEST_PROTOCOL)
    os.write(write, struct.pack("!I", len(payload)) + payload)
    with pytest.raises(protocol.ProtocolError, match="forbidden object: posix.system"):
        reader.next(1.0)
