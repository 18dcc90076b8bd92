"""WASI Preview 1: assemble, inspect and run core WebAssembly modules.

A Preview 1 program is a *core module*, the older and simpler kind of
WebAssembly binary (a Preview 2 program is a *component*). It imports its
system calls as plain functions from the module ``wasi_snapshot_preview1``
(``fd_write``, ``path_open``, ``proc_exit``…), exports its linear memory as
``memory`` and its entry point as ``_start``.

- :func:`assemble` turns WebAssembly text (WAT) into a binary module;
- :func:`run_module` runs a module with exactly the given
  :class:`~wasi_magic.capabilities.Capabilities`, like
  :meth:`wasi_magic.runtime.Runtime.run` does for components, and returns the
  same :class:`~wasi_magic.runtime.RunResult`;
- :func:`module_interface` lists what a module imports (grouped by module)
  and exports.

This module does not import IPython.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

from .capabilities import Capabilities
from .errors import BuildError, RuntimeFailure
from .inspect import wasm_kind
from .limits import DEFAULT_TIMEOUT, Limits
from .output import DEFAULT_LIMIT, OutputSink, TextCallback, format_size
from .runtime import (RunResult, _describe_trap, _interrupt_guard, _require_wasmtime, _Watch,
                      wasi_config)

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

#: How many compiled modules :func:`compile_module` keeps in memory.
MODULE_CACHE_SIZE = 32

_LOCATION = re.compile(r"-->\s*<anon>:(\d+):(\d+)")

_engines: dict[bool, Any] = {}
_linkers: dict[bool, Any] = {}
_modules: "OrderedDict[tuple[bool, str], Any]" = OrderedDict()
_lock = threading.Lock()


def errno_name(errno: int) -> str:
    """``8`` -> ``'badf'``; ``'errno N'`` for a number outside the table."""
    return ERRNO_NAMES[errno] if 0 <= errno < len(ERRNO_NAMES) else f"errno {errno}"


def engine(fuel: bool = False) -> Any:
    """The module-level Wasmtime engine for core modules (created on first use).

    It has epoch interruption on, so that a timer or an interrupt can stop a
    guest. ``fuel=True`` gives a second engine that also meters fuel (its
    compiled code differs, so modules are compiled for each engine apart).
    """
    _require_wasmtime()
    with _lock:
        if fuel not in _engines:
            config = wasmtime.Config()
            config.epoch_interruption = True
            config.consume_fuel = fuel
            _engines[fuel] = wasmtime.Engine(config)
            linker = wasmtime.Linker(_engines[fuel])
            linker.define_wasi()
            _linkers[fuel] = linker
        return _engines[fuel]


def assemble(wat: str, *, name: str = "module.wat") -> bytes:
    """Turn WebAssembly text into a binary core module, and validate it.

    A syntax error raises :class:`~wasi_magic.errors.BuildError` whose message
    names the line and column in ``wat`` and shows that line with a caret
    under the column; the full Wasmtime message is in the error's ``log``. A
    module that parses but is not valid WebAssembly (a type mismatch, say)
    raises :class:`BuildError` too. ``name`` labels the text in messages.
    """
    _require_wasmtime()
    try:
        data = bytes(wasmtime.wat2wasm(wat))
    except wasmtime.WasmtimeError as exc:
        raise BuildError(_wat_error(wat, str(exc), name), log=str(exc)) from None
    try:
        wasmtime.Module.validate(engine(), data)
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


WasmSource = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]


def _load(wasm: WasmSource) -> tuple[bytes, Path | None]:
    """The module's bytes, and its path if it was given as one."""
    if isinstance(wasm, (bytes, bytearray, memoryview)):
        return bytes(wasm), None
    path = Path(wasm)
    try:
        return path.read_bytes(), path
    except OSError as exc:
        raise RuntimeFailure(f"Cannot read {str(path)!r}: {exc.strerror or exc}.") from None


def compile_module(wasm: WasmSource, *, fuel: bool = False) -> tuple[Any, float, str]:
    """The compiled :class:`wasmtime.Module` for ``wasm``: ``(module, seconds, how)``.

    ``how`` is ``'memory'`` (found in the in-memory cache, keyed by the
    module's sha256) or ``'compiled'``. A component, or a file that is not
    WebAssembly, raises :class:`RuntimeFailure`.
    """
    started = time.perf_counter()
    data, path = _load(wasm)
    label = repr(str(path)) if path is not None else "the module"
    try:
        kind = wasm_kind(data)
    except RuntimeFailure as exc:
        raise RuntimeFailure(f"{label} is {exc}.") from None
    if kind != "module":
        raise RuntimeFailure(f"{label} is a component (WASI Preview 2), not a core module: "
                             f"run it with wasi_magic.run (or %%wasi, %wasi run).")
    key = (fuel, hashlib.sha256(data).hexdigest())
    eng = engine(fuel)
    with _lock:
        found = _modules.get(key)
        if found is not None:
            _modules.move_to_end(key)
            return found, time.perf_counter() - started, "memory"
    try:
        module = wasmtime.Module(eng, data)
    except wasmtime.WasmtimeError as exc:
        text = str(exc).strip()
        detail = text.splitlines()[-1].strip() if text else "invalid module"
        raise RuntimeFailure(f"Wasmtime cannot load {label}: {detail}") from None
    with _lock:
        _modules[key] = module
        while len(_modules) > MODULE_CACHE_SIZE:
            _modules.popitem(last=False)
    return module, time.perf_counter() - started, "compiled"


def forget() -> None:
    """Drop the compiled modules held in memory."""
    with _lock:
        _modules.clear()


def run_module(
    wasm: WasmSource,
    caps: Capabilities | None = None,
    *,
    stdout: TextCallback | None = None,
    stderr: TextCallback | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    output_limit: int = DEFAULT_LIMIT,
    name: str | None = None,
    limits: Limits | None = None,
) -> RunResult:
    """Run a WASI Preview 1 command module with exactly ``caps``.

    ``wasm`` is the binary (bytes, e.g. from :func:`assemble`) or a path to a
    ``.wasm`` file. The guest sees ``name`` as ``argv[0]`` (default: the
    file's name, or ``module.wasm`` for bytes), then ``caps.args``; the
    variables in ``caps.env``; the directories in ``caps.dirs`` as preopens
    from fd 3 on (read-only grants stay read-only); and stdin from
    ``caps.stdin_file`` or ``caps.stdin`` (empty otherwise).

    ``stdout``/``stderr`` receive text as the guest writes it; at most
    ``output_limit`` bytes per stream are kept. ``timeout`` stops the guest
    after that many wall-clock seconds (None or 0: no limit). ``limits``, if
    given, replaces ``timeout`` and ``output_limit`` and may add ``fuel`` and
    ``max_memory``.

    The status is what the guest passed to ``proc_exit``, or 0 if ``_start``
    returned. A trap or a limit sets ``result.trap`` (and status 1); it is
    reported, not raised. A module that cannot start (an import WASI does not
    provide, no ``_start``) raises :class:`RuntimeFailure`. An interrupt stops
    the guest and raises :class:`KeyboardInterrupt` once it is cleaned up.
    """
    if limits is None:
        limits = Limits(timeout=timeout or None, max_output=output_limit)
    caps = caps if caps is not None else Capabilities()
    data, path = _load(wasm)
    if name is None:
        name = path.name if path is not None else "module.wasm"
    fuel = bool(limits.fuel)
    module, compile_seconds, how = compile_module(data, fuel=fuel)
    eng = engine(fuel)
    linker = _linkers[fuel]
    out = OutputSink("stdout", stdout, limits.max_output)
    err = OutputSink("stderr", stderr, limits.max_output)
    # Keep the exact callables handed to Wasmtime, to know when it lets go of them.
    write_out, write_err = out.write, err.write
    result = RunResult(status=0, stdout="", stderr="", capabilities=caps, artifact=path,
                       compile_seconds=compile_seconds, steps={"module": how}, limits=limits)
    watch = _Watch(eng, limits.timeout)
    with tempfile.TemporaryDirectory(prefix="wasi-magic-stdin-") \
            if caps.stdin is not None else _no_directory() as stdin_dir:
        store = instance = start = None
        config = wasi_config(caps, name, write_out, write_err, stdin_dir)
        handles = _output_handles(write_out, write_err)
        started = time.perf_counter()
        try:
            store = wasmtime.Store(eng)
            store.set_wasi(config)
            if limits.max_memory:
                store.set_limits(memory_size=limits.max_memory)
            if limits.fuel:
                store.set_fuel(limits.fuel)
            watch.attach(store)
            with _interrupt_guard(watch):
                watch.start()
                try:
                    instance = linker.instantiate(store, module)
                    result.instantiate_seconds = time.perf_counter() - started
                    start = _start_function(instance, store, name)
                    started = time.perf_counter()
                    start(store)
                    result.status = 0
                except wasmtime.ExitTrap as exc:
                    result.status = exc.code
                except wasmtime.Trap as exc:
                    result.status = 1
                    result.trap = _trap_message(exc, watch, limits, time.perf_counter() - started)
                except wasmtime.WasmtimeError as exc:
                    if instance is None and not (watch.timed_out or watch.interrupted):
                        raise _link_failure(exc, name) from None
                    result.status = 1
                    result.trap = _trap_message(exc, watch, limits, time.perf_counter() - started)
                result.run_seconds = time.perf_counter() - started
                if limits.fuel:
                    result.fuel_used = limits.fuel - store.get_fuel()
        finally:
            watch.cancel()
            # Drop the store now, while Python is alive, and wait until
            # Wasmtime has released our output callbacks: it closes the
            # guest's streams on its own I/O threads, and a callback into a
            # finalizing interpreter aborts the process with a Rust panic.
            del store, instance, start, config
            _wait_released(handles)
    out.close()
    err.close()
    result.stdout, result.stderr = out.text(), err.text()
    result.truncated = out.truncated or err.truncated
    if watch.interrupted:
        raise KeyboardInterrupt(f"guest interrupted after {result.run_seconds:.2f} s")
    return result


def _trap_message(exc: Exception, watch: _Watch, limits: Limits, seconds: float) -> str:
    """Why the guest stopped, as :func:`wasi_magic.runtime._describe_trap` says, plus
    a hint for the one WASI failure students meet first."""
    if "missing required memory export" in str(exc) and not (watch.timed_out or watch.interrupted):
        return ("guest trapped: missing required memory export: a module that calls "
                f"{WASI_P1} functions must export its memory as \"memory\"")
    return _describe_trap(exc, watch, limits, seconds)


def _start_function(instance: Any, store: Any, name: str) -> Any:
    start = instance.exports(store).get("_start")
    if not isinstance(start, wasmtime.Func):
        raise RuntimeFailure(f"{name} does not export a function _start: it is not a WASI "
                             f"command (a library module, a 'reactor', exports other functions).")
    return start


def _link_failure(exc: Exception, name: str) -> RuntimeFailure:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if first.startswith("unknown import"):
        return RuntimeFailure(f"{name} cannot start: {first}. Only the {WASI_P1} functions "
                              f"are provided.")
    return RuntimeFailure(f"Wasmtime could not instantiate {name}: {first}")


def _output_handles(*callbacks: Callable[[bytes], None]) -> set[int]:
    """The wasmtime-py slab handles that hold ``callbacks`` (by identity)."""
    try:
        from wasmtime._wasi import CUSTOM_OUTPUTS
    except ImportError:  # pragma: no cover - another wasmtime-py layout
        return set()
    return {index for index, value in list(CUSTOM_OUTPUTS.handles.items())
            if any(value is callback for callback in callbacks)}


def _wait_released(handles: set[int], limit: float = 2.0) -> None:
    """Wait (briefly) until Wasmtime's I/O threads have finalized ``handles``."""
    if not handles:
        return
    from wasmtime._wasi import CUSTOM_OUTPUTS
    deadline = time.monotonic() + limit
    while handles & CUSTOM_OUTPUTS.handles.keys() and time.monotonic() < deadline:
        time.sleep(0.001)


class _no_directory:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# --- what a module imports and exports -------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One import or export of a core module."""

    name: str
    #: 'func', 'memory', 'global' or 'table'.
    kind: str
    #: ``'(i32, i32) -> i32'`` for a function, ``'1 page'`` for a memory, else ''.
    signature: str = ""
    #: What a ``wasi_snapshot_preview1`` function is for ('' otherwise).
    meaning: str = ""

    def format(self) -> str:
        """``'fd_write(i32, i32, i32, i32) -> i32  - write to …'``."""
        if self.kind == "func":
            text = f"{self.name}{self.signature}"
        else:
            text = f"{self.name} ({self.kind}{', ' + self.signature if self.signature else ''})"
        return text + (f"  - {self.meaning}" if self.meaning else "")


@dataclass(frozen=True)
class ModuleInterface:
    """A core module's imports, grouped by the module they come from, and its exports."""

    imports: dict[str, tuple[Entry, ...]]
    exports: tuple[Entry, ...]

    @property
    def wasi_functions(self) -> tuple[str, ...]:
        """The names of the ``wasi_snapshot_preview1`` functions it imports."""
        return tuple(entry.name for entry in self.imports.get(WASI_P1, ()))

    @property
    def is_command(self) -> bool:
        """Whether it exports a ``_start`` function (a WASI command)."""
        return any(e.name == "_start" and e.kind == "func" for e in self.exports)

    def format(self) -> str:
        """A readable multi-line listing."""
        lines = []
        for module, entries in self.imports.items():
            lines.append(f"imports from {module} ({len(entries)}):")
            lines += [f"  {entry.format()}" for entry in entries]
        if not self.imports:
            lines.append("imports: none")
        lines.append(f"exports ({len(self.exports)}):")
        lines += [f"  {entry.format()}" for entry in self.exports]
        return "\n".join(lines)


def module_interface(wasm: WasmSource | wasmtime.Module) -> ModuleInterface:
    """List a core module's imports (grouped by module) and exports.

    ``wasm`` is the binary, a path, or an already compiled :class:`wasmtime.Module`.
    """
    module = wasm if wasmtime is not None and isinstance(wasm, wasmtime.Module) \
        else compile_module(wasm)[0]
    grouped: dict[str, list[Entry]] = {}
    for item in module.imports:
        meaning = WASI_P1_FUNCTIONS.get(item.name, "") if item.module == WASI_P1 else ""
        grouped.setdefault(item.module, []).append(
            Entry(item.name or "", *_describe_type(item.type), meaning=meaning))
    exports = tuple(Entry(item.name, *_describe_type(item.type)) for item in module.exports)
    return ModuleInterface({name: tuple(entries) for name, entries in grouped.items()}, exports)


def _describe_type(extern: Any) -> tuple[str, str]:
    """``(kind, signature)`` of an import's or export's type."""
    if isinstance(extern, wasmtime.FuncType):
        params = ", ".join(str(p) for p in extern.params)
        results = [str(r) for r in extern.results]
        arrow = "" if not results else " -> " + (
            results[0] if len(results) == 1 else "(" + ", ".join(results) + ")")
        return "func", f"({params}){arrow}"
    if isinstance(extern, wasmtime.MemoryType):
        low = extern.limits.min
        pages = f"{low} page{'s' if low != 1 else ''}"
        return "memory", f"{pages}, {format_size(low * 65536)}"
    if isinstance(extern, wasmtime.GlobalType):
        return "global", f"{'mut ' if extern.mutable else ''}{extern.content}"
    if isinstance(extern, wasmtime.TableType):
        return "table", str(extern.element)
    return type(extern).__name__.removesuffix("Type").lower(), ""
