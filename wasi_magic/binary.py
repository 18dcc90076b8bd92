"""Just enough of the WebAssembly binary formats to look inside a component.

A component built by componentize-py is made of core modules (libpython, the
WASI Preview 1 adapter, glue) wired together. :func:`core_modules` finds them
and lists their imports, without compiling anything, to show that Preview 1
still lives inside a Preview 2 component.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import RuntimeFailure

_CORE_MODULE_SECTION = 1   # in a component: a nested core module
_COMPONENT_SECTION = 4     # in a component: a nested component
_CUSTOM_SECTION = 0
_IMPORT_SECTION = 2        # in a core module


@dataclass(frozen=True)
class CoreModule:
    """A core module embedded in a component: its name (if any), size and imports."""

    index: int
    name: str
    size: int
    imports: tuple[tuple[str, str], ...]

    def import_modules(self) -> dict[str, int]:
        """How many functions (and other items) it imports from each module."""
        counts: dict[str, int] = {}
        for module, _ in self.imports:
            counts[module] = counts.get(module, 0) + 1
        return counts


class _Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError(f"the file ends at byte {len(self.data)}, inside a section")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def leb(self) -> int:
        result = shift = 0
        while True:
            value = self.byte()
            result |= (value & 0x7F) << shift
            if value < 0x80:
                return result
            shift += 7
            if shift > 35:
                raise ValueError(f"a number at byte {self.pos} is longer than 5 bytes")

    def name(self) -> str:
        size = self.leb()
        text = self.data[self.pos:self.pos + size].decode("utf-8", errors="replace")
        self.pos += size
        return text

    def sections(self, end: int):
        while self.pos < end:
            section_id = self.byte()
            size = self.leb()
            start = self.pos
            if start + size > end:
                raise ValueError(f"a section at byte {start} claims {size} bytes, past the end "
                                 f"of its container at byte {end} (a truncated file?)")
            yield section_id, start, start + size
            self.pos = start + size


def _skip_limits(reader: _Reader) -> None:
    flags = reader.byte()
    reader.leb()
    if flags & 1:
        reader.leb()


def module_imports(data: bytes, start: int = 8, end: int | None = None) -> tuple[tuple[str, str], ...]:
    """``(module, name)`` of every import of the core module in ``data[start - 8:end]``."""
    reader = _Reader(data, start)
    found: list[tuple[str, str]] = []
    for section_id, begin, finish in reader.sections(len(data) if end is None else end):
        if section_id != _IMPORT_SECTION:
            continue
        inner = _Reader(data, begin)
        for _ in range(inner.leb()):
            module, name = inner.name(), inner.name()
            kind = inner.byte()
            if kind == 0x00:      # function: type index
                inner.leb()
            elif kind == 0x01:    # table: reference type and limits
                inner.byte()
                _skip_limits(inner)
            elif kind == 0x02:    # memory: limits
                _skip_limits(inner)
            elif kind == 0x03:    # global: value type and mutability
                inner.byte()
                inner.byte()
            elif kind == 0x04:    # tag: attribute and type index
                inner.byte()
                inner.leb()
            else:
                raise ValueError(f"unknown import kind {kind:#x}")
            found.append((module, name))
    return tuple(found)


def _module_name(data: bytes, start: int, end: int) -> str:
    """The module's name from its ``name`` custom section, if it has one."""
    reader = _Reader(data, start)
    for section_id, begin, finish in reader.sections(end):
        if section_id != _CUSTOM_SECTION:
            continue
        inner = _Reader(data, begin)
        if inner.name() != "name":
            continue
        while inner.pos < finish:
            sub_id, size = inner.byte(), inner.leb()
            if sub_id == 0:
                return inner.name()
            inner.pos += size
    return ""


#: How deep components may nest before the file is called malformed.
MAX_NESTING = 64


def core_modules(data: bytes) -> list[CoreModule]:
    """The core modules inside a component binary (nested components included).

    Raises :class:`~wasi_magic.errors.RuntimeFailure` naming the problem for
    any malformed input (truncated, nested deeper than :data:`MAX_NESTING`,
    a section that overruns its container, an unknown import kind).
    """
    found: list[CoreModule] = []

    def walk(start: int, end: int, depth: int) -> None:
        if depth > MAX_NESTING:
            raise ValueError(f"components nested more than {MAX_NESTING} deep")
        if data[start:start + 4] != b"\0asm" or end - start < 8:
            raise ValueError(f"no WebAssembly header at byte {start}")
        reader = _Reader(data, start + 8)
        for section_id, begin, finish in reader.sections(end):
            if section_id == _CORE_MODULE_SECTION:
                if data[begin:begin + 4] != b"\0asm":
                    raise ValueError(f"no core module header at byte {begin}")
                found.append(CoreModule(len(found), _module_name(data, begin + 8, finish),
                                        finish - begin, module_imports(data, begin + 8, finish)))
            elif section_id == _COMPONENT_SECTION:
                walk(begin, finish, depth + 1)

    try:
        walk(0, len(data), 0)
    except (ValueError, IndexError) as exc:
        raise RuntimeFailure(f"not a well-formed component: {exc}") from None
    return found


def wasm_kind(data: bytes) -> str:
    """'component' or 'module' from a binary's 8-byte header."""
    if data[:4] != b"\0asm" or len(data) < 8:
        raise RuntimeFailure("not a WebAssembly binary (it does not start with \\0asm)")
    return "module" if data[4:8] == b"\x01\x00\x00\x00" else "component"


def is_core_module(wasm: bytes | bytearray | memoryview | str | os.PathLike[str]) -> bool:
    """Whether ``wasm`` (bytes, or a file's first 8 bytes) is a core module (Preview 1)."""
    if isinstance(wasm, (bytes, bytearray, memoryview)):
        header = bytes(wasm[:8])
    else:
        try:
            with open(wasm, "rb") as file:
                header = file.read(8)
        except OSError:
            return False  # the runner explains a missing file
    return len(header) == 8 and header[:4] == b"\0asm" and header[4:8] == b"\x01\x00\x00\x00"
