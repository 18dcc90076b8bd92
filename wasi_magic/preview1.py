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

import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

from .capabilities import Capabilities
from .errors import RuntimeFailure
from .binary import wasm_kind
from .limits import DEFAULT_TIMEOUT, Limits
from .output import DEFAULT_LIMIT, OutputSink, TextCallback, format_size
from .result import RunResult
from .errors import require_wasmtime as _require_wasmtime
from .sandbox import shim
from .sandbox.store import (Deadline, describe_trap, instantiate, interrupt_guard, new_store,
                            stdin_folder)
from .wasip1 import ERRNO_NAMES, WASI_P1, WASI_P1_FUNCTIONS, assemble, errno_name  # noqa: F401

try:
    import wasmtime
except ImportError:  # pragma: no cover - exercised by the install-hint test
    wasmtime = None  # type: ignore[assignment]

#: How many compiled modules :func:`compile_module` keeps in memory.
MODULE_CACHE_SIZE = 32

_engines: dict[bool, Any] = {}
_linkers: dict[bool, Any] = {}
_modules: "OrderedDict[tuple[bool, str], Any]" = OrderedDict()
_lock = threading.Lock()


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
    module's bytes) or ``'compiled'``. A component, or a file that is not
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
    # The bytes themselves are the key: a dict compares them in full, so two modules
    # never share an entry (and hashlib's OpenSSL import would cost the CLI ~4 ms).
    key = (fuel, bytes(data))
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
    deadline = Deadline(eng, limits.timeout)
    failure: RuntimeFailure | None = None
    with stdin_folder(caps) as stdin_dir:
        store = instance = start = None
        handles: set[int] = set()
        started = time.perf_counter()
        try:
            store = new_store(eng, caps, limits, name, write_out, write_err, stdin_dir)
            handles = shim.output_handles((write_out, write_err))
            deadline.attach(store)
            with interrupt_guard(deadline):
                deadline.start()
                try:
                    instance = instantiate(lambda: linker.instantiate(store, module))
                    result.instantiate_seconds = time.perf_counter() - started
                    start = _start_function(instance, store, name)
                    started = time.perf_counter()
                    start(store)
                    result.status = 0
                except wasmtime.ExitTrap as exc:
                    result.status = exc.code
                except wasmtime.Trap as exc:
                    result.status = 1
                    result.trap = _trap_message(exc, deadline, limits,
                                                time.perf_counter() - started)
                except wasmtime.WasmtimeError as exc:
                    if instance is None and not deadline.fired:
                        # Raised below, once the store is gone: the exception's traceback
                        # would keep the store (and its output callbacks) alive.
                        failure = _link_failure(exc, name)
                    else:
                        result.status = 1
                        result.trap = _trap_message(exc, deadline, limits,
                                                    time.perf_counter() - started)
                result.run_seconds = time.perf_counter() - started
                if limits.fuel and failure is None:
                    result.fuel_used = limits.fuel - store.get_fuel()
        finally:
            deadline.cancel()
            # Drop the store now, while Python is alive, and wait until
            # Wasmtime has released our output callbacks: it closes the
            # guest's streams on its own I/O threads, and a callback into a
            # finalizing interpreter aborts the process with a Rust panic.
            del store, instance, start
            shim.wait_outputs_released(handles)
    if failure is not None:
        raise failure
    out.close()
    err.close()
    result.stdout, result.stderr = out.text(), err.text()
    result.truncated = out.truncated or err.truncated
    if deadline.interrupted:
        raise KeyboardInterrupt(f"guest interrupted after {result.run_seconds:.2f} s")
    return result


def _trap_message(exc: Exception, deadline: Deadline, limits: Limits, seconds: float) -> str:
    """Why the guest stopped, as :func:`~wasi_magic.sandbox.store.describe_trap` says,
    plus a hint for the one WASI failure students meet first."""
    if "missing required memory export" in str(exc) and not deadline.fired:
        return ("guest trapped: missing required memory export: a module that calls "
                f"{WASI_P1} functions must export its memory as \"memory\"")
    return describe_trap(exc, deadline, limits, seconds)


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
