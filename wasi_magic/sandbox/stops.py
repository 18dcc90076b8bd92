"""What the host says, and how long it waits, when a guest does not stop when told to.

Wasmtime's epoch stops wasm code, never a host call: a guest blocked in
``select``, a FIFO ``open`` or a real sleep can only be ended with its process.
The supervisor (for the kernel) and the command line (a disposable process)
both wait :data:`GRACE` seconds, then end the process and say so in one line.
No Wasmtime import here: the kernel side uses it.
"""

from __future__ import annotations

#: How long a guest may take to stop after its deadline or an Interrupt before its
#: process is ended (it is then blocked in a host call).
GRACE = 0.4


def blocked_text(why: str, seconds: float | None, timeout: float | None, then: str) -> str:
    """The one line for a guest that did not stop when told to (it was blocked in a host
    call): ``why`` is 'timeout' or 'interrupt'; ``then`` says what the host did about it."""
    if why == "timeout":
        ran = f"ran {seconds:.1f} s of" if seconds is not None else "past"
        return (f"stopped by the time limit: {ran} --timeout {timeout:g} s; the guest was "
                f"blocked in a host call, so {then}")
    ran = f" after {seconds:.2f} s" if seconds is not None else ""
    return f"guest interrupted{ran}: it was blocked in a host call, so {then}"
