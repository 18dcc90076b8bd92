"""What a ``.wasm`` file is, and what it asks of its host.

:func:`inspect_wasm` reads a file's header to tell a core module (WASI
Preview 1) from a component (Preview 2), then lists its imports and exports.
The imports are what the program *may* ask for; what it actually gets is
decided by the capabilities of each run.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .binary import is_core_module, wasm_kind  # noqa: F401 - re-exported
from .errors import RuntimeFailure
from .output import format_size
from .wasip1 import WASI_P1, WASI_P1_FUNCTIONS, assemble

#: What each WASI interface gives a guest, for readable listings.
WASI_INTERFACES = {
    "wasi-magic:cell/http": "outgoing HTTP, checked by the host (--allow-http)",
    "wasi:cli/environment": "arguments and environment variables (--env, args after --)",
    "wasi:cli/exit": "ending the program with a status",
    "wasi:cli/stdin": "standard input (--stdin, --stdin-text)",
    "wasi:cli/stdout": "standard output",
    "wasi:cli/stderr": "standard error",
    "wasi:cli/terminal-input": "whether stdin is a terminal",
    "wasi:cli/terminal-output": "whether stdout/stderr are terminals",
    "wasi:cli/terminal-stdin": "whether stdin is a terminal",
    "wasi:cli/terminal-stdout": "whether stdout is a terminal",
    "wasi:cli/terminal-stderr": "whether stderr is a terminal",
    "wasi:cli/run": "the program's entry point",
    "wasi:clocks/monotonic-clock": "a clock for measuring time",
    "wasi:clocks/wall-clock": "the date and time",
    "wasi:filesystem/preopens": "the directories granted with --dir",
    "wasi:filesystem/types": "files and directories inside those grants",
    "wasi:io/error": "I/O error values",
    "wasi:io/poll": "waiting for I/O",
    "wasi:io/streams": "byte streams (stdio, files, sockets)",
    "wasi:random/random": "secure random bytes",
    "wasi:random/insecure": "fast random numbers",
    "wasi:random/insecure-seed": "a random seed",
    "wasi:sockets/network": "network access (never granted here)",
    "wasi:sockets/instance-network": "network access (never granted here)",
    "wasi:sockets/tcp": "TCP sockets",
    "wasi:sockets/tcp-create-socket": "creating TCP sockets",
    "wasi:sockets/udp": "UDP sockets",
    "wasi:sockets/udp-create-socket": "creating UDP sockets",
    "wasi:sockets/ip-name-lookup": "DNS lookups",
}


@dataclass(frozen=True)
class WasmInfo:
    """A summary of a WebAssembly binary."""

    path: Path
    #: 'component' (WASI Preview 2) or 'module' (a core module, WASI Preview 1).
    kind: str
    size: int
    imports: tuple[str, ...]
    exports: tuple[str, ...]

    def format(self) -> str:
        """A readable multi-line description."""
        label = ("component (WASI Preview 2 / component model)" if self.kind == "component"
                 else "core module (WASI Preview 1)")
        lines = [f"{self.path.name}: {label}, {format_size(self.size)}",
                 f"imports ({len(self.imports)}):"]
        for name in self.imports:
            module, _, function = name.partition(".")
            meaning = WASI_INTERFACES.get(name.partition("@")[0]) or (
                WASI_P1_FUNCTIONS.get(function) if module == WASI_P1 else None)
            lines.append(f"  {name}" + (f"  - {meaning}" if meaning else ""))
        lines.append(f"exports ({len(self.exports)}):")
        lines += [f"  {name}" for name in self.exports]
        return "\n".join(lines)


def describe_core_modules(path: str | os.PathLike[str]) -> str:
    """The core modules inside a component and what each imports (``inspect --core``).

    A Preview 2 component is built from core modules: the interpreter and libc
    still call WASI Preview 1 style functions, which an adapter module inside
    the component turns into Preview 2 calls.
    """
    from .binary import core_modules
    file = Path(path)
    data = read_regular_file(file)
    if wasm_kind(data) != "component":
        raise RuntimeFailure(f"{str(file)!r} is a core module already: use inspect without --core.")
    modules = core_modules(data)
    lines = [f"{file.name}: {len(modules)} core modules inside the component"]
    for module in modules:
        label = module.name or "(unnamed)"
        lines.append(f"  [{module.index}] {label}, {format_size(module.size)}")
        for source, count in sorted(module.import_modules().items(), key=lambda kv: -kv[1])[:8]:
            mark = "   <- WASI Preview 1" if source == "wasi_snapshot_preview1" else ""
            lines.append(f"        imports {count:4d} from {source or '(instance)'}{mark}")
    return "\n".join(lines)


#: The largest file ``inspect`` and ``run`` read (a Python component is ~25 MiB).
MAX_WASM_BYTES = 1 << 30


def read_regular_file(file: Path, limit: int = MAX_WASM_BYTES) -> bytes:
    """The bytes of ``file`` if it is a regular file of at most ``limit`` bytes.

    Opened without blocking (a FIFO would hang an ordinary open) and checked
    with ``fstat``, so a device (``/dev/zero``), a FIFO or a folder is refused
    in one line, and nothing is read without bound.
    """
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise RuntimeFailure(f"Cannot read {str(file)!r}: {exc.strerror or exc}.") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)  # before fdopen, which refuses a folder with its own error
        raise RuntimeFailure(f"{str(file)!r} is not a regular file (a device, a FIFO or a "
                             f"folder): give the path of a .wasm or .wat file.")
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > limit:
            raise RuntimeFailure(f"{str(file)!r} is {info.st_size:,} bytes, more than the "
                                 f"{limit:,} wasi-magic reads.")
        return handle.read(limit + 1)[:limit]


def read_wasm(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a ``.wasm`` file; a ``.wat`` file is assembled first, as ``wasmtime`` does.

    A WAT syntax error raises :class:`~wasi_magic.errors.BuildError` naming the
    line and column.
    """
    file = Path(path)
    data = read_regular_file(file)
    if file.suffix.lower() in (".wat", ".wast") and not data.startswith(b"\0asm"):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise RuntimeFailure(f"{str(file)!r} is not UTF-8 text, so not WebAssembly text.") from None
        data = assemble(text, name=file.name)
    return data


def inspect_wasm(path: str | os.PathLike[str],
                 interface: Callable[[Path], tuple[tuple[str, ...], tuple[str, ...]]] | None = None,
                 ) -> WasmInfo:
    """Describe a ``.wasm`` (or ``.wat``) file: kind, size, imports and exports.

    ``interface(path)`` reads a component's imports and exports (the sandbox
    worker's, from a kernel); by default Wasmtime in this process does.
    """
    file = Path(path)
    data = read_wasm(file)
    try:
        kind = wasm_kind(data)
    except RuntimeFailure as exc:
        raise RuntimeFailure(f"{str(file)!r} is {exc}.") from None
    import wasmtime
    if kind == "module":
        try:
            module = wasmtime.Module(wasmtime.Engine(), data)
        except wasmtime.WasmtimeError as exc:
            raise RuntimeFailure(f"{str(file)!r} is not a valid module: {str(exc).splitlines()[0]}") from None
        imports = tuple(f"{imp.module}.{imp.name}" for imp in module.imports)
        exports = tuple(exp.name for exp in module.exports)
    elif interface is not None:
        imports, exports = interface(file)
    else:
        from .runtime import default_runtime
        imports, exports = default_runtime().interface(file)
    return WasmInfo(file, kind, len(data), imports, exports)
