"""A prompt kernel exit: let ipykernel's control thread finish before its teardown.

ipykernel (7.4.0, the newest release) races with itself at shutdown. The control
thread answers ``shutdown_request``, stops the kernel's loops, and then flushes
``sys.stdout`` through the IOPub thread; meanwhile the main thread leaves its loop
and runs the exit handlers that stop that IOPub thread. When the flush loses the
race it blocks in a zmq send, ``IPKernelApp.close()`` waits for the control thread
for ever, and the client kills the kernel after half its ``shutdown_wait_time``
(2.5 s): a "Restart Kernel" or a closed notebook that hangs for seconds (3 exits in 90
in the lessons, measured).

The extension loads after the kernel started, so an exit handler registered here
runs before ipykernel's (``atexit`` is last in, first out): it waits, briefly, for a
control thread that is finishing a shutdown. This is the one module that reads
ipykernel's internals; it does nothing outside an ipykernel kernel.
"""

from __future__ import annotations

import atexit
import sys
import threading

#: The longest the exit waits for the control thread (its flush takes microseconds;
#: a thread still busy after this is left to ipykernel, as before).
CONTROL_WAIT_SECONDS = 1.0


def install() -> None:
    """Register :func:`wait_for_control_thread` to run at exit (once, however often the
    extension is loaded)."""
    atexit.unregister(wait_for_control_thread)
    atexit.register(wait_for_control_thread)


def wait_for_control_thread(timeout: float = CONTROL_WAIT_SECONDS) -> bool:
    """If this process is an ipykernel kernel that was asked to shut down, wait up to
    ``timeout`` seconds for its control thread to finish; True if it finished."""
    control = _shutting_down_control_thread()
    if control is None:
        return False
    control.join(timeout)
    return not control.is_alive()


def _shutting_down_control_thread() -> threading.Thread | None:
    kernelapp = sys.modules.get("ipykernel.kernelapp")
    if kernelapp is None:  # a terminal IPython, a script: nothing to wait for
        return None
    app_class = kernelapp.IPKernelApp
    if not app_class.initialized():
        return None
    app = app_class.instance()
    kernel = getattr(app, "kernel", None)
    control = getattr(app, "control_thread", None)
    # ``_shutdown_message`` is set by the control thread's shutdown_request handler
    # (restart or not); an exit for any other reason (``exit``, a signal) leaves it
    # None, and its control thread runs on until ipykernel stops it.
    if getattr(kernel, "_shutdown_message", None) is None:
        return None
    if not isinstance(control, threading.Thread) or not control.is_alive():
        return None
    if control is threading.current_thread():
        return None
    return control
