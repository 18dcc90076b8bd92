"""Turn a cell's Python source into the files componentize-py builds.

A cell becomes two guest modules: ``wasi_magic_cell`` (generated here: the
cell's source and the modules it imports) and ``wasi_magic_runner`` (fixed,
shipped in ``_guest/``), which implements ``wasi:cli/run``.

componentize-py snapshots the interpreter after importing the app, and only
modules imported by then exist at run time. So this module finds every import
in the cell (anywhere: top level, functions, ``from`` forms) and the standard
library helpers those modules import lazily, and the runner imports them all
at build time.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ._guest.wasi_magic_imports import ImportRef, find_imports
from .errors import BuildError, GuestImportError

APP_MODULE = "wasi_magic_runner"
CELL_MODULE = "wasi_magic_cell"
RUNNER_PATH = Path(__file__).with_name("_guest") / f"{APP_MODULE}.py"
#: Guest helpers shared by the cell runner and the world app (preload, sliced sleep).
SHARED_MODULE = "wasi_magic_guest"
SHARED_PATH = Path(__file__).with_name("_guest") / f"{SHARED_MODULE}.py"
#: Quick mode's standard library, compiled into the snapshot (see the module).
STDLIB_MODULE = "wasi_magic_stdlib"
STDLIB_PATH = Path(__file__).with_name("_guest") / f"{STDLIB_MODULE}.py"
#: The guest's HTTP helper: a cell that imports it is built against the ``cell-http``
#: world, which imports wasi-magic's checked HTTP interface (see ``wit/http.wit``).
HTTP_MODULE = "wasi_magic_http"
HTTP_PATH = Path(__file__).with_name("_guest") / f"{HTTP_MODULE}.py"

#: Always in the component: what tracebacks, text I/O and common codecs need
#: at run time, so that reading a latin-1 file or printing a traceback never
#: hits a module that was left out of the snapshot.
BASE_MODULES: tuple[str, ...] = (
    "encodings", "encodings.utf_8", "encodings.utf_8_sig", "encodings.ascii",
    "encodings.latin_1", "encodings.cp1252", "encodings.utf_16", "encodings.utf_32",
    "encodings.idna", "encodings.punycode", "encodings.unicode_escape",
    "encodings.raw_unicode_escape", "encodings.aliases",
    "traceback", "linecache", "tokenize", "textwrap", "reprlib", "warnings",
)

#: Host-side packages that we know are C extensions, for a friendlier message.
_C_EXTENSION_HINTS = {"numpy", "pandas", "scipy", "matplotlib", "lxml", "PIL", "torch",
                      "cryptography", "pydantic_core", "yaml", "ujson", "orjson", "regex"}


@dataclass(frozen=True)
class GuestSource:
    """The generated guest modules: file name -> text."""

    files: dict[str, str]
    imports: tuple[ImportRef, ...]


#: The guest's CPython (componentize-py 0.25's): cells are written for it, not for the
#: kernel's Python, which may be older (``tests/test_quick.py`` checks the two agree).
GUEST_PYTHON = (3, 14)


def cell_imports(source: str, filename: str = "<cell>") -> list[ImportRef]:
    """Every module the cell imports (see :func:`find_imports`), read as the guest's
    Python reads the cell.

    The kernel's Python parses it here. If it cannot and is older than the guest's
    (``f"{d["k"]}"`` and ``type X = int`` are Python 3.12; Binder's kernel runs 3.11), the
    guest's Python parses it instead, in the quick-mode sandbox, with this same scan (a
    run of a few milliseconds, remembered per cell). A syntax error, found by whichever
    Python decides, is a :class:`BuildError` with the cell line.
    """
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        if sys.version_info[:2] >= GUEST_PYTHON:
            raise _syntax_error(exc.msg, exc.lineno, exc.offset, exc.text) from None
        return list(_guest_imports(source, filename))
    return find_imports(tree)


def _syntax_error(message: str, line: int | None, offset: int | None,
                 text: str | None) -> BuildError:
    """The error for a cell that is not valid Python: its line, and a caret under the spot."""
    where = f"line {line}" if line else "the cell"
    text = (text or "").rstrip("\n")
    pointer = ""
    if text and offset:
        pointer = "\n    " + text + "\n    " + " " * max(offset - 1, 0) + "^"
    return BuildError(f"SyntaxError in the cell at {where}: {message}{pointer}")


#: The scan's own source, run in the guest before the line that prints its answer.
SCAN_PATH = Path(__file__).with_name("_guest") / "wasi_magic_imports.py"


@functools.lru_cache(maxsize=64)
def _guest_imports(source: str, filename: str) -> tuple[ImportRef, ...]:
    """:func:`cell_imports` by the guest's Python: :data:`SCAN_PATH` and the cell, run in
    the quick-mode sandbox (nothing granted; the cell is parsed, never run)."""
    from .quick import ask_sandbox
    program = (SCAN_PATH.read_text(encoding="utf-8")
               + f"\n\n_answer = scan({source!r}, {filename!r})\n")
    reply = _parse_scan(ask_sandbox(program, "_answer"))
    if "syntax" in reply:
        raise _syntax_error(*reply["syntax"])
    return tuple(ImportRef(name, line, required) for name, line, required in reply["imports"])


def _parse_scan(text: str | None) -> dict:
    """The guest's answer, checked field by field (a malformed one is an error, not data)."""
    try:
        reply = json.loads(text) if text is not None else None
    except ValueError:
        reply = None
    if isinstance(reply, dict) and len(reply) == 1:
        syntax = reply.get("syntax")
        if isinstance(syntax, list) and len(syntax) == 4 and isinstance(syntax[0], str) \
                and all(v is None or type(v) is int for v in syntax[1:3]) \
                and (syntax[3] is None or isinstance(syntax[3], str)):
            return reply
        imports = reply.get("imports")
        if isinstance(imports, list) and all(
                isinstance(ref, list) and len(ref) == 3 and isinstance(ref[0], str)
                and type(ref[1]) is int and type(ref[2]) is bool for ref in imports):
            return reply
    kernel = ".".join(map(str, sys.version_info[:2]))
    raise BuildError(f"The kernel's Python {kernel} cannot parse this cell, and the guest's "
                     f"Python (in the quick-mode sandbox) gave no answer about it. Run the cell "
                     f"again; if this repeats, run it with --quick.")


def _local_module(name: str, paths: Sequence[Path]) -> bool:
    top = name.partition(".")[0]
    return any((p / f"{top}.py").is_file() or (p / top).is_dir() for p in paths)


def check_available(refs: Iterable[ImportRef], paths: Sequence[Path]) -> None:
    """Fail fast, before a 10-second build, on imports that cannot be in a guest.

    The guest has CPython's standard library and the pure-Python modules in
    the ``--path`` folders. Anything else (a typo, a C extension such as numpy,
    a package installed only in the host) is reported with its cell line.
    """
    problems = []
    for ref in refs:
        if not ref.required:
            continue
        top = ref.name.partition(".")[0]
        if top in sys.stdlib_module_names or _local_module(ref.name, paths) or \
                ref.name == HTTP_MODULE:
            continue
        problems.append(f"  line {ref.line}: import {ref.name} - {_why_missing(top, paths)}")
    if problems:
        raise GuestImportError(
            "The cell imports a module that cannot be part of a WASI guest:\n"
            + "\n".join(problems)
            + "\nA %%wasi cell can import the standard library and pure-Python modules "
              "from folders named with --path DIR.")


def _why_missing(top: str, paths: Sequence[Path]) -> str:
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        where = f" or in {', '.join(map(str, paths))}" if paths else ""
        return f"no module named {top!r} in the standard library{where} (a typo?)"
    origin = spec.origin or ""
    locations = list(spec.submodule_search_locations or [])
    if top in _C_EXTENSION_HINTS or origin.endswith((".so", ".pyd")) or \
            any(_has_extension(Path(loc)) for loc in locations):
        return (f"{top!r} is installed on the host but contains compiled C extensions, "
                f"which cannot run inside a WASI guest")
    folder = Path(locations[0]).parent if locations else Path(origin).parent
    return (f"{top!r} is installed on the host, not in the guest; if it is pure Python, "
            f"add its folder with --path {folder}")


def _has_extension(folder: Path) -> bool:
    try:
        return any(name.endswith((".so", ".pyd")) for _, _, names in os.walk(folder)
                   for name in names)
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@functools.lru_cache(maxsize=None)
def _stdlib_imports(name: str) -> frozenset[str]:
    """Modules that stdlib module ``name`` imports anywhere in its source (host copy)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return frozenset()
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return frozenset()
    try:
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return frozenset()
    found = set()
    package = name if spec.submodule_search_locations else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            if base:
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names
                             if alias.name != "*" and _is_module(f"{base}.{alias.name}"))
    return frozenset(m for m in found if m.partition(".")[0] in sys.stdlib_module_names)


#: Helpers too large or never usable in a guest; imported only when named.
_NOT_FOLLOWED = frozenset({
    "tkinter", "idlelib", "turtle", "turtledemo", "test", "lib2to3", "pydoc",
    "pydoc_data", "ensurepip", "venv", "distutils", "multiprocessing",
    "concurrent", "asyncio", "unittest", "doctest", "pdb", "curses", "ctypes",
    "sqlite3", "dbm", "xmlrpc", "http", "urllib", "email", "smtplib", "ftplib",
    "imaplib", "poplib", "nntplib", "telnetlib", "webbrowser", "ssl", "mailbox",
})


def stdlib_helpers(names: Iterable[str]) -> list[str]:
    """The standard-library modules that ``names`` may import, followed transitively.

    Lazy imports inside stdlib functions (``json`` -> ``json.decoder``, ``open``
    with an encoding -> ``encodings.*``) would otherwise fail at run time.
    Large subsystems in ``_NOT_FOLLOWED`` are only included when the cell
    imports them by name.
    """
    todo = [n for n in names if n.partition(".")[0] in sys.stdlib_module_names]
    seen: set[str] = set()
    named_tops = {n.partition(".")[0] for n in todo}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for dep in _stdlib_imports(name):
            top = dep.partition(".")[0]
            if top in _NOT_FOLLOWED and top not in named_tops:
                continue
            todo.append(dep)
    return sorted(seen)


#: The standard-library modules of the quick-mode sandbox (see README).
QUICK_MODULES: tuple[str, ...] = (
    "abc", "argparse", "array", "ast", "base64", "binascii", "bisect", "calendar", "cmath",
    "codecs", "collections", "collections.abc", "colorsys", "contextlib", "copy", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "dis", "enum", "errno", "fnmatch",
    "fractions", "functools", "glob", "graphlib", "gzip", "hashlib", "heapq", "hmac", "html",
    "html.parser", "inspect", "io", "ipaddress", "itertools", "json", "keyword", "locale",
    "logging", "math", "numbers", "operator", "os", "os.path", "pathlib", "platform",
    "pprint", "queue", "random", "re", "secrets", "shlex", "shutil", "signal", "socket",
    "sqlite3", "statistics", "string", "struct", "subprocess", "sys", "tarfile", "tempfile",
    "textwrap", "threading", "time", "timeit", "tokenize", "traceback", "types", "typing",
    "unicodedata", "urllib.parse", "uuid", "warnings", "weakref", "xml.dom.minidom",
    "xml.etree.ElementTree", "zipfile", "zlib",
)


def uses_http(source: str, filename: str = "<cell>") -> bool:
    """Whether the cell imports the HTTP helper (and so needs the ``cell-http`` world)."""
    if HTTP_MODULE not in source:
        return False  # (every import find_imports sees names the module literally)
    try:
        refs = cell_imports(source, filename)
    except BuildError:
        return False  # generate() reports it with the cell line
    return any(ref.name == HTTP_MODULE for ref in refs)


def generate(source: str, paths: Sequence[Path] = (), filename: str = "<cell>", *,
             quick: bool = False) -> GuestSource:
    """Check a cell and generate the guest modules for it.

    With ``quick=True`` the source is ignored: the guest is the quick-mode
    sandbox, which carries :data:`QUICK_MODULES` and runs the source it is
    given at run time.

    Raises :class:`BuildError` for a syntax error and
    :class:`GuestImportError` for an import that cannot be satisfied.
    """
    if quick:
        source = "\n".join(f"import {name}" for name in QUICK_MODULES) + "\n"
    refs = cell_imports(source, filename)
    check_available(refs, paths)
    required = [(ref.name, ref.line) for ref in refs if ref.required]
    optional = [ref.name for ref in refs if not ref.required]
    if quick:  # some may be missing in the guest CPython; the sandbox explains at run time
        optional += [name for name, _ in required]
        required = []
    helpers = stdlib_helpers([ref.name for ref in refs] + list(BASE_MODULES))
    required_names = {name for name, _ in required}
    optional += [name for name in helpers if name not in required_names]
    cell = (
        "# Generated by wasi-magic from a %%wasi cell. Do not edit.\n"
        f"FILENAME = {filename!r}\n"
        f"QUICK = {quick!r}\n"
        f"SOURCE = {'' if quick else source!r}\n"
        f"REQUIRED = {required!r}\n"
        f"OPTIONAL = {sorted(set(optional))!r}\n"
    )
    files = {f"{CELL_MODULE}.py": cell, f"{APP_MODULE}.py": RUNNER_PATH.read_text(encoding="utf-8"),
             f"{SHARED_MODULE}.py": SHARED_PATH.read_text(encoding="utf-8")}
    if quick:
        files[f"{STDLIB_MODULE}.py"] = STDLIB_PATH.read_text(encoding="utf-8")
    if not quick and any(ref.name == HTTP_MODULE for ref in refs):
        files[f"{HTTP_MODULE}.py"] = HTTP_PATH.read_text(encoding="utf-8")
    return GuestSource(files=files, imports=tuple(refs))
