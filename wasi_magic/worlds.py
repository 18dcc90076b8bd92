"""Typed component worlds: Python source built against a user's WIT world.

A ``%%wasi`` cell is a command (``wasi:cli/run``). A *world* instead declares
typed functions the component exports, for example::

    package demo:plugins;
    world transform {
      export transform: func(input: list<u8>) -> result<list<u8>, string>;
    }

The source implements the world following componentize-py's conventions for
its generated ``wit_world`` module: ``class WitWorld(wit_world.WitWorld)`` with
one method per function the world exports directly (kebab-case names become
snake_case), and ``class Name(exports.Name)`` (``from wit_world import
exports``) per exported interface. Return an error of a ``result`` type with
``raise Err(value)`` (``from componentize_py_types import Err``); any other
exception escaping an exported function makes the component trap.

This module resolves the WIT (text or a ``.wit`` file or folder), generates the
guest modules and turns componentize-py's failures into short messages. The
build itself is :func:`wasi_magic.builder.build` with ``wit=`` and ``world=``.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import guest
from .errors import BuildError, GuestImportError
from .text import check_text

WORLD_APP = "wasi_magic_world"
SOURCE_MODULE = "wasi_magic_world_source"
WORLD_APP_PATH = Path(__file__).with_name("_guest") / f"{WORLD_APP}.py"
#: Modules componentize-py generates into every build: absent in the host, present in the guest.
BINDING_MODULES = frozenset({"wit_world", "componentize_py_types", "componentize_py_runtime",
                             "componentize_py_async_support", "poll_loop"})
#: The package declared for WIT text that has no ``package`` line.
DEFAULT_PACKAGE = "wasi-magic:user"
_WIT_FILE = "world.wit"
_PACKAGE_LINE = re.compile(r"(?m)^\s*package\s")


@dataclass(frozen=True)
class WitSource:
    """The WIT of a world: text, or a ``.wit`` file or a folder of them."""

    text: str | None = None
    path: Path | None = None
    #: Lines added in front of the user's text (a package header), for error positions.
    added_lines: int = 0

    @property
    def display(self) -> str:
        """How messages name this WIT."""
        return "<wit>" if self.path is None else str(self.path)

    def digest(self) -> str:
        """A hash of the WIT's content (every file of a folder), for the build cache key."""
        digest = hashlib.sha256()
        if self.text is not None:
            digest.update(b"text\0" + self.text.encode())
        elif self.path is not None and self.path.is_dir():
            for file in sorted(self.path.rglob("*.wit")):
                digest.update(str(file.relative_to(self.path)).encode() + b"\0")
                digest.update(file.read_bytes() + b"\0")
        elif self.path is not None:  # the same WIT as text or as a file: the same component
            digest.update(b"text\0" + with_package(self.path.read_text(encoding="utf-8")).encode())
        return digest.hexdigest()

    def materialize(self, work: Path) -> Path:
        """The path to hand to ``componentize-py -d`` (text is written into ``work``)."""
        text = self.text
        if self.path is not None:
            if self.path.is_dir():
                return self.path
            original = self.path.read_text(encoding="utf-8")
            text = with_package(original)
            if text == original:
                return self.path
        target = work / "wit"
        target.mkdir(exist_ok=True)
        (target / _WIT_FILE).write_text(text or "", encoding="utf-8")
        return target / _WIT_FILE


def with_package(text: str) -> str:
    """WIT text with a package header: componentize-py refuses a file without one."""
    if _PACKAGE_LINE.search(_strip_comments(text)):
        return text
    return f"package {DEFAULT_PACKAGE};\n{text}"


def _strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)


def resolve_wit(wit: str | os.PathLike[str] | None, cwd: Path) -> WitSource:
    """Interpret ``wit``: a path (``Path``, or a one-line ``str`` naming a file/folder) or WIT text."""
    if wit is None:
        raise BuildError("A world build needs its WIT: pass wit= (WIT text, or a path to a "
                         ".wit file or folder).")
    if isinstance(wit, os.PathLike) or _looks_like_path(wit, cwd):
        path = (cwd / os.path.expanduser(os.fspath(wit))).resolve()
        if not path.exists():
            raise BuildError(f"WIT {os.fspath(wit)!r}: no such file or folder ({str(path)!r}).")
        if path.is_dir() and not any(path.rglob("*.wit")):
            raise BuildError(f"WIT folder {str(path)!r} holds no .wit file.")
        return WitSource(path=path)
    check_text(wit, "The WIT text")
    if not wit.strip():
        raise BuildError("The WIT text is empty: it must declare a world, e.g. "
                         "world w { export f: func() -> string; }")
    text = with_package(wit)
    return WitSource(text=text, added_lines=text.count("\n") - wit.count("\n"))


def _looks_like_path(text: str, cwd: Path) -> bool:
    one_line = text.strip()
    if not one_line or "\n" in one_line or "{" in one_line:
        return False
    return one_line.endswith(".wit") or (cwd / os.path.expanduser(one_line)).exists()


def module_name(filename: str, taken: Sequence[str] = ()) -> str:
    """The module name the user's source runs as: its file's stem, or ``cell``."""
    stem = Path(filename).stem if not filename.startswith("<") else "cell"
    reserved = (WORLD_APP, SOURCE_MODULE, guest.SHARED_MODULE)
    if not stem.isidentifier() or stem in taken or stem in reserved \
            or stem in BINDING_MODULES or stem in sys.stdlib_module_names:
        return "wasi_magic_user"
    return stem


def generate(source: str, paths: Sequence[Path] = (), filename: str = "<cell>") -> guest.GuestSource:
    """Check the source and generate the guest modules of a world build.

    Like :func:`wasi_magic.guest.generate`, but the source is the app that
    implements the world, and the binding modules componentize-py generates
    (``wit_world``, ``componentize_py_types``) count as available.
    """
    refs = [ref for ref in guest.cell_imports(source, filename)
            if ref.name.partition(".")[0] not in BINDING_MODULES]
    guest.check_available(refs, paths)
    for ref in refs:
        if ref.name == guest.HTTP_MODULE:
            raise GuestImportError(
                f"line {ref.line}: import {guest.HTTP_MODULE} - a typed world has no HTTP "
                f"import; outgoing HTTP (--allow-http) is for %%wasi cells built as commands.")
    required = [(ref.name, ref.line) for ref in refs if ref.required]
    required_names = {name for name, _ in required}
    helpers = guest.stdlib_helpers([ref.name for ref in refs] + list(guest.BASE_MODULES))
    optional = {ref.name for ref in refs if not ref.required}
    optional |= {name for name in helpers if name not in required_names}
    tops = sorted({ref.name.partition(".")[0] for ref in refs})
    data = (
        "# Generated by wasi-magic for a world build. Do not edit.\n"
        f"FILENAME = {filename!r}\n"
        f"MODULE = {module_name(filename, tops)!r}\n"
        f"SOURCE = {source!r}\n"
        f"REQUIRED = {required!r}\n"
        f"OPTIONAL = {sorted(optional)!r}\n"
    )
    files = {f"{SOURCE_MODULE}.py": data,
             f"{WORLD_APP}.py": WORLD_APP_PATH.read_text(encoding="utf-8"),
             f"{guest.SHARED_MODULE}.py": guest.SHARED_PATH.read_text(encoding="utf-8")}
    return guest.GuestSource(files=files, imports=tuple(refs))


# --- componentize-py's failures, in a few words ---------------------------------------

_MISSING_CLASS = re.compile(rf"module '{WORLD_APP}' has no attribute '(\w+)'")
_ABSTRACT = re.compile(r"Can't instantiate abstract class (\w+) without an implementation "
                       r"for abstract methods? (.+)")
_WORLDS = re.compile(r"Unable to resolve `(None|Some\(\"(.*?)\"\))`")


def explain_failure(log: str, wit: WitSource, wit_path: Path | None, world: str | None) -> BuildError:
    """Turn componentize-py's output for a world build into a short :class:`BuildError`."""
    message = _core_message(log)
    if wit_path is not None:
        message = _shift_lines(message.replace(str(wit_path), wit.display), wit.added_lines)
    found = _MISSING_CLASS.search(message)
    if found:
        return BuildError(_missing_class(found.group(1), world), log=log)
    found = _ABSTRACT.search(message)
    if found:
        methods = found.group(2).strip().rstrip(".")
        return BuildError(
            f"class {found.group(1)} lacks a method for {methods}: every function the world "
            f"exports needs one (kebab-case WIT names become snake_case methods).", log=log)
    found = _WORLDS.search(message)
    if found:
        listing = message.split("Available worlds", 1)[-1].split("WIT paths", 1)[0]
        available = re.findall(r'"([^"]+)"', listing)
        names = ", ".join(available) or "none"
        if found.group(1) == "None":
            return BuildError(f"The WIT defines several worlds ({names}): choose one with "
                              f"world=NAME.", log=log)
        return BuildError(f"The WIT has no world named {found.group(2)!r}; it defines: {names}.",
                          log=log)
    if re.search(r"(?m)^\s*--> ", message):
        return BuildError(f"The WIT in {wit.display} has an error:\n" + message, log=log)
    if "Traceback (most recent call last)" in message:
        return BuildError("The source failed while the component was being built (its top "
                          "level runs at build time):\n" + _user_traceback(message), log=log)
    return BuildError(f"componentize-py could not build the world from {wit.display}:\n"
                      + message, log=log)


def _shift_lines(message: str, added: int) -> str:
    """Line numbers of WIT errors as the user wrote the text (before our package header)."""
    if not added:
        return message
    message = re.sub(r"(<wit>:)(\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) - added}", message)
    return re.sub(r"(?m)^(\s*)(\d+)( \|)",
                  lambda m: f"{m.group(1)}{int(m.group(2)) - added:>{len(m.group(2))}}{m.group(3)}",
                  message)


def _core_message(log: str) -> str:
    """componentize-py's own error message, without Rust backtraces."""
    start = log.find("AssertionError: ")
    if start < 0:
        return "\n".join(log.strip().splitlines()[-12:])
    text = log[start + len("AssertionError: "):]
    for end_marker in ("\n\nCaused by:", "\nStack backtrace:"):
        end = text.find(end_marker)
        if end >= 0:
            text = text[:end]
    return text.strip()


def _missing_class(name: str, world: str | None) -> str:
    where = f"world {world!r}" if world else "the world"
    if name == "WitWorld":
        return (f"{where} exports functions, so the source must define "
                f"`class WitWorld(wit_world.WitWorld)` (after `import wit_world`) with one "
                f"method per exported function.")
    return (f"{where} exports an interface, so the source must define "
            f"`class {name}(exports.{name})` (after `from wit_world import exports`) with one "
            f"method per function of the interface.")


def _user_traceback(message: str) -> str:
    """The traceback without the frames of our generated app module."""
    kept: list[str] = []
    skipping = False
    for line in message.splitlines():
        if line.startswith("  File "):
            skipping = f"{WORLD_APP}.py" in line
            if skipping:
                continue
        elif skipping and line.startswith("    "):
            continue
        else:
            skipping = False
        kept.append(line)
    return "\n".join(kept).strip()
