"""Errors that wasi-magic reports to the user.

Every error raised on purpose by wasi-magic derives from :class:`WasiMagicError`.
Its message is written for a student: it names what was wrong and how to fix
it. Front ends (the IPython magic, the command line) print the message alone,
never a traceback from inside wasi_magic.
"""

from __future__ import annotations


class WasiMagicError(Exception):
    """Base class of every error wasi-magic reports to the user."""


class UsageError(WasiMagicError):
    """A flag or argument was given a value that cannot be used."""


class CapabilityError(UsageError):
    """A capability flag names something that cannot be granted (e.g. a missing directory)."""


class BuildError(WasiMagicError):
    """componentize-py could not turn the Python source into a component."""

    def __init__(self, message: str, *, log: str = "") -> None:
        super().__init__(message)
        #: Full componentize-py output, for whoever wants to dig deeper.
        self.log = log


class GuestImportError(BuildError):
    """A module the cell imports cannot be part of a WASI guest."""


class RuntimeFailure(WasiMagicError):
    """Wasmtime could not load or run a component (not a guest error)."""


def path_error(exc: OSError) -> UsageError | None:
    """The one-line error for an OS error about a path the user named (a name too long for
    the file system, a folder that cannot be searched …), or None if ``exc`` names no path.

    For the front ends: a check that looks at a user's path through :mod:`pathlib` raises
    such errors as they are, and the user should see the path and the reason, not a
    traceback from inside wasi_magic.
    """
    if exc.filename is None:
        return None
    return UsageError(f"cannot use {str(exc.filename)!r}: {exc.strerror or exc}. "
                      f"Check the path you gave.")


def require_wasmtime() -> None:
    """Raise :class:`RuntimeFailure` with an install hint if wasmtime-py cannot be imported."""
    import importlib.util
    try:
        found = importlib.util.find_spec("wasmtime") is not None
    except ImportError:
        found = False
    if not found:
        raise RuntimeFailure("The wasmtime package is not installed. Install it with: "
                             "pip install 'wasmtime==50.*'")


class GuestError(WasiMagicError):
    """An exported function returned the ``err`` case of its ``result`` type.

    The guest chose to fail (``raise Err(value)``); ``value`` is the err payload.
    """

    def __init__(self, value: object, function: str = "") -> None:
        where = f"{function}: " if function else ""
        super().__init__(f"{where}the guest returned an error: {value!r}")
        self.value = value
        self.function = function


class GuestTrap(WasiMagicError):
    """A guest call was stopped: a trap, the time limit, or the memory limit.

    ``kind`` is ``'timeout'``, ``'memory'`` or ``'trap'``; ``stderr`` holds what
    the guest wrote to standard error during the call (a Python traceback, for
    an exception that escaped an exported function). The host is unharmed.
    """

    def __init__(self, message: str, *, kind: str = "trap", stderr: str = "",
                 function: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.stderr = stderr
        self.function = function
