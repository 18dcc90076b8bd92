"""A kernel with wasi-magic loaded exits promptly when asked to (wasi_magic.kernel_exit).

ipykernel's control thread flushes stdout through the IOPub thread after answering a
shutdown request, racing the main thread's exit handlers that stop that thread; a
lost race hangs the exit until the client kills the kernel. The race is made certain
here by holding the control thread in that flush for 0.3 s (as a descheduled thread
would be); the extension must make the exit wait for it.
"""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_client.manager import start_new_kernel
from kernels import errors, execute

# Runs in the kernel: the control thread's flush after a shutdown request first
# sleeps, then records whether the IOPub thread it flushes through is still running.
HOLD_CONTROL_FLUSH = r'''
import os, sys, threading, time
_kernel = get_ipython().kernel
_stream = sys.stdout
_flush = _stream.flush
def _held_flush():
    if threading.current_thread().name == "Control" and _kernel._shutdown_message is not None:
        del _stream.flush  # once
        time.sleep(0.3)
        alive = _stream.pub_thread.thread.is_alive()
        fd = os.open({record!r}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.write(fd, b"iopub running" if alive else b"iopub stopped")
        os.close(fd)
    _flush()
_stream.flush = _held_flush
'''


def _shut_down_with_held_flush(work: Path, cache: Path, *, load: bool) -> tuple[str, int | None]:
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(work),
                                       env={**os.environ, "WASI_MAGIC_CACHE": str(cache)})
    record = work / "control-flush.txt"
    try:
        if load:
            assert errors(execute(client, "%load_ext wasi_magic")) == []
        assert errors(execute(client, HOLD_CONTROL_FLUSH.format(record=str(record)))) == []
        process = manager.provisioner.process
        manager.shutdown_kernel(now=False)
    finally:
        client.stop_channels()
        if manager.is_alive():  # (a failed step above: do not leave the kernel behind)
            manager.shutdown_kernel(now=True)
    text = record.read_text() if record.exists() else "(the kernel ended first)"
    return text, process.returncode


def test_the_exit_waits_for_the_control_threads_flush(tmp_path):
    text, returncode = _shut_down_with_held_flush(tmp_path, tmp_path / "cache", load=True)
    assert text == "iopub running"
    assert returncode == 0  # it exited by itself: not SIGTERMed (-15) or killed (-9)


def test_without_the_extension_the_flush_loses_the_race(tmp_path):
    # The check above can fail: without wasi-magic, the same held flush finds the
    # kernel already tearing down (what ipykernel alone does with a slow control thread).
    text, _ = _shut_down_with_held_flush(tmp_path, tmp_path / "cache", load=False)
    assert text != "iopub running"


def test_outside_a_kernel_the_exit_handler_waits_for_nothing():
    # pytest is no kernel (a terminal IPython or a script is not either): nothing to wait for.
    from wasi_magic import kernel_exit
    assert kernel_exit.wait_for_control_thread(timeout=30.0) is False
