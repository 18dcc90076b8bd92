"""The vocabulary of WASI Preview 1, and WebAssembly text (WAT) turned into modules.

Names for the ``wasi_snapshot_preview1`` functions and errno values, for
readable listings and messages; :func:`assemble` for WAT. Nothing here runs a
guest (see :mod:`wasi_magic.preview1` and the sandbox worker for that).
"""

from __future__ import annotations

import re
import threading
from typing import Any

from .errors import BuildError, RuntimeFailure
from .text import check_text

try:
    import wasmtime
except ImportError:  # pragma: no cover - exercised by the install-hint test
    wasmtime = None  # type: ignore[assignment]

#: The module every WASI Preview 1 system call is imported from.
WASI_P1 = "wasi_snapshot_preview1"

#: WASI Preview 1 errno values by number (the witx ``errno`` type): a failing
#: system call returns one of these instead of 0.
ERRNO_NAMES: tuple[str, ...] = (
    "success", "2big", "acces", "addrinuse", "addrnotavail", "afnosupport", "again",
    "already", "badf", "badmsg", "busy", "canceled", "child", "connaborted",
    "connrefused", "connreset", "deadlk", "destaddrreq", "dom", "dquot", "exist",
    "fault", "fbig", "hostunreach", "idrm", "ilseq", "inprogress", "intr", "inval",
    "io", "isconn", "isdir", "loop", "mfile", "mlink", "msgsize", "multihop",
    "nametoolong", "netdown", "netreset", "netunreach", "nfile", "nobufs", "nodev",
    "noent", "noexec", "nolck", "nolink", "nomem", "nomsg", "noprotoopt", "nospc",
    "nosys", "notconn", "notdir", "notempty", "notrecoverable", "notsock", "notsup",
    "notty", "nxio", "overflow", "ownerdead", "perm", "pipe", "proto",
    "protonosupport", "prototype", "range", "rofs", "spipe", "srch", "stale",
    "timedout", "txtbsy", "xdev", "notcapable",
)

#: What each ``wasi_snapshot_preview1`` function gives a guest, for readable listings.
WASI_P1_FUNCTIONS: dict[str, str] = {
    "args_get": "read the program arguments (args after --)",
    "args_sizes_get": "how many program arguments there are, and their size",
    "environ_get": "read the environment variables (--env)",
    "environ_sizes_get": "how many environment variables there are, and their size",
    "clock_res_get": "the resolution of a clock",
    "clock_time_get": "the time of a clock (date and time, or a timer)",
    "fd_advise": "hint how a file will be read",
    "fd_allocate": "reserve space in a file",
    "fd_close": "close a file descriptor",
    "fd_datasync": "flush a file's data to disk",
    "fd_fdstat_get": "what a file descriptor is and what it may do",
    "fd_fdstat_set_flags": "change a file descriptor's flags (append, non-blocking)",
    "fd_fdstat_set_rights": "give up rights on a file descriptor",
    "fd_filestat_get": "a file's size, type and times",
    "fd_filestat_set_size": "truncate or extend a file",
    "fd_filestat_set_times": "set a file's access and modification times",
    "fd_pread": "read from a file at an offset",
    "fd_prestat_get": "whether a file descriptor is a directory granted with --dir",
    "fd_prestat_dir_name": "the guest name of a directory granted with --dir",
    "fd_pwrite": "write to a file at an offset",
    "fd_read": "read from a file descriptor (stdin or an open file)",
    "fd_readdir": "list a directory",
    "fd_renumber": "move a file descriptor to another number",
    "fd_seek": "move a file's read/write position",
    "fd_sync": "flush a file's data and metadata to disk",
    "fd_tell": "a file's read/write position",
    "fd_write": "write to a file descriptor (stdout, stderr or an open file)",
    "path_create_directory": "create a directory inside a grant",
    "path_filestat_get": "a file's size, type and times, by path",
    "path_filestat_set_times": "set a file's times, by path",
    "path_link": "create a hard link inside a grant",
    "path_open": "open a file relative to a granted directory",
    "path_readlink": "read a symbolic link",
    "path_remove_directory": "remove an empty directory",
    "path_rename": "rename a file or directory",
    "path_symlink": "create a symbolic link",
    "path_unlink_file": "delete a file",
    "poll_oneoff": "wait for clocks or file descriptors (sleep)",
    "proc_exit": "end the program with an exit status",
    "proc_raise": "send the program a signal (unsupported)",
    "sched_yield": "let other threads run",
    "random_get": "secure random bytes",
    "sock_accept": "accept a connection on a socket it was given (never granted here)",
    "sock_recv": "receive from a socket",
    "sock_send": "send on a socket",
    "sock_shutdown": "shut a socket down",
}

_LOCATION = re.compile(r"-->\s*<anon>:(\d+):(\d+)")
_validator_engine: Any = None
_validator_lock = threading.Lock()


def errno_name(errno: int) -> str:
    """``8`` -> ``'badf'``; ``'errno N'`` for a number outside the table."""
    return ERRNO_NAMES[errno] if 0 <= errno < len(ERRNO_NAMES) else f"errno {errno}"


def _validator() -> Any:
    """A plain engine, only to validate assembled modules (it never runs one)."""
    global _validator_engine
    with _validator_lock:
        if _validator_engine is None:
            _validator_engine = wasmtime.Engine()
        return _validator_engine


def assemble(wat: str, *, name: str = "module.wat") -> bytes:
    """Turn WebAssembly text into a binary core module, and validate it.

    A syntax error raises :class:`~wasi_magic.errors.BuildError` whose message
    names the line and column in ``wat`` and shows that line with a caret
    under the column; the full Wasmtime message is in the error's ``log``. A
    module that parses but is not valid WebAssembly (a type mismatch, say)
    raises :class:`BuildError` too. ``name`` labels the text in messages.
    """
    if wasmtime is None:
        raise RuntimeFailure("The wasmtime package is not installed. Install it with: "
                             "pip install 'wasmtime==50.*'")
    check_text(wat, f"The WebAssembly text {name!r}", nul=True)
    try:
        data = bytes(wasmtime.wat2wasm(wat))
    except wasmtime.WasmtimeError as exc:
        raise BuildError(_wat_error(wat, str(exc), name), log=str(exc)) from None
    try:
        wasmtime.Module.validate(_validator(), data)
    except wasmtime.WasmtimeError as exc:
        text = str(exc).strip()
        raise BuildError(f"{name}: the text is well-formed but not a valid module: "
                         f"{text.splitlines()[0] if text else 'invalid module'}",
                         log=text) from None
    return data


def _wat_error(wat: str, message: str, name: str) -> str:
    """``'hello.wat, line 4, column 5: unknown operator…'`` and the line with a caret."""
    lines = [line for line in message.strip().splitlines()]
    reason = lines[0].strip() if lines else "cannot assemble the text"
    found = _LOCATION.search(message)
    if not found:
        return f"{name}: {reason}"
    number, column = int(found.group(1)), int(found.group(2))
    source = wat.splitlines()
    text = source[number - 1] if 0 < number <= len(source) else ""
    gutter = f"{number:>5} | "
    # Keep tabs under tabs so that the caret lines up however tabs are shown.
    pad = "".join(ch if ch == "\t" else " " for ch in text[:column - 1])
    return (f"{name}, line {number}, column {column}: {reason}\n"
            f"{gutter}{text}\n{' ' * (len(gutter) - 2)}| {pad}^")
