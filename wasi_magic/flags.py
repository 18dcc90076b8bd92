"""The flags of a ``%%wasi`` cell, in one table.

The IPython magic turns :data:`CELL_ARGUMENTS` into its ``magic_arguments``
decorators; :func:`cell_parser` turns the same table into a plain argparse
parser for the code that reads notebooks without a kernel (``warm``), so the
two never disagree about a spelling (``--path=lib``, ``--path lib``, ``-q``…).
"""

from __future__ import annotations

import argparse
from typing import Any

from .capabilities import CAPABILITY_ARGUMENTS
from .errors import UsageError
from .limits import LIMIT_ARGUMENTS

Arguments = list[tuple[tuple[str, ...], dict[str, Any]]]


def variable_name(text: str) -> str:
    """``text`` if it can name a notebook variable that a cell's result is stored in.

    Not a keyword, and not a ``__dunder__`` name: storing guest output in
    ``__builtins__`` or ``__name__`` would break the kernel's namespace.
    """
    import keyword
    if not text.isidentifier() or keyword.iskeyword(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Python variable name (letters, digits and underscores, "
            f"not starting with a digit, not a keyword)")
    if text.startswith("__") and text.endswith("__"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is one of Python's special names, which the kernel itself uses; "
            f"choose another name")
    return text


#: Every ``%%wasi`` flag: ``(names, argparse keyword arguments)``, in help order.
CELL_ARGUMENTS: Arguments = [
    *CAPABILITY_ARGUMENTS,
    (("--path",), dict(action="append", default=[], metavar="DIR",
                       help="A folder of pure-Python modules the cell may import (repeatable).")),
    *LIMIT_ARGUMENTS,
    (("--out",), dict(metavar="VAR", type=variable_name, help="Store the guest's stdout in VAR instead of showing it.")),
    (("--err",), dict(metavar="VAR", type=variable_name, help="Store the guest's stderr in VAR instead of showing it.")),
    (("--result",), dict(metavar="VAR", type=variable_name,
                         help="Store the RunResult (status, output, timings) in VAR.")),
    (("-o", "--output"), dict(metavar="PATH.wasm",
                              help="Also save the built component to PATH.wasm.")),
    (("--raise-error",), dict(action="store_true",
                              help="Raise an error when the guest exits with a non-zero status.")),
    (("-q", "--quiet"), dict(action="store_true", help="Do not show the build summary line.")),
    (("--panel",), dict(action="store_true",
                        help="Show a capability panel: tick and untick grants and re-run the "
                             "built component at once (output appears below the panel).")),
    (("--world",), dict(metavar="NAME",
                        help="Build the cell as a component of the WIT world NAME (from a "
                             "%%%%wit NAME cell or --wit FILE) and bind it, loaded, to a "
                             "variable (see --as).")),
    (("--wit",), dict(metavar="FILE", help="Read the world's WIT from FILE.")),
    (("--as",), dict(dest="as_var", metavar="VAR", type=variable_name,
                     help="With --world: the variable to bind the loaded component to "
                          "(default: NAME).")),
    (("--p1",), dict(action="store_true",
                     help="The cell is WebAssembly text (WAT): assemble it and run it as a "
                          "WASI Preview 1 core module.")),
    (("--quick",), dict(action="store_true", default=None,
                        help="Run in the quick-mode sandbox (no build; the standard library "
                             "only).")),
    (("--build",), dict(action="store_false", dest="quick",
                        help="Build the cell into its own component (the default mode).")),
    (("--session",), dict(metavar="NAME",
                          help="Run the cell in session NAME: a kept sandbox (the quick-mode "
                               "modules) whose globals, imports and open files carry over to "
                               "the next cell of NAME. Grants, --max-memory and fuel "
                               "metering (--fuel) are fixed by its first cell; see "
                               "%%wasi session list|reset|close.")),
]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def cell_parser(prog: str = "%%wasi") -> argparse.ArgumentParser:
    """A parser of ``%%wasi`` flags (program arguments after ``--`` split off first)."""
    parser = _Parser(prog=prog, add_help=False)
    for names, options in CELL_ARGUMENTS:
        parser.add_argument(*names, **options)
    return parser
