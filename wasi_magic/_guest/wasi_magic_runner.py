"""The guest side of a ``%%wasi`` cell: runs inside the component (CPython in WASI).

componentize-py imports this module while it pre-initializes the component.
Everything done at import time is frozen into the component's snapshot, so
this module compiles the cell and imports every module the cell needs, but it
runs the cell only when the host calls ``wasi:cli/run``.
"""

import builtins
import importlib
import linecache
import sys
import traceback
import types

import wasi_magic_cell as _cell
from componentize_py_types import Err
from wit_world import exports

# Tracebacks show the cell's own lines: the source lives in linecache.
linecache.cache[_cell.FILENAME] = (
    len(_cell.SOURCE), None, _cell.SOURCE.splitlines(True), _cell.FILENAME)
_CODE = compile(_cell.SOURCE, _cell.FILENAME, "exec", dont_inherit=True)

_MARKER = "WASI_MAGIC_IMPORT_FAILURES:"


def _preload() -> None:
    """Import what the cell imports, so those modules are in the snapshot.

    Only modules imported during pre-initialization exist at run time. A
    required module that fails is reported to the host (via the build log) with
    the cell line that asked for it; optional helpers are best effort.
    """
    failures = []
    for name, line in _cell.REQUIRED:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - reported to the host
            failures.append((name, line, f"{type(exc).__name__}: {exc}"))
    for name in _cell.OPTIONAL:
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - helpers are best effort
            pass
    if failures:
        raise ImportError(_MARKER + repr(failures))


_preload()


def _status_of(code: object) -> int:
    """The exit status ``sys.exit(code)`` means, printing a message as CPython does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


class Run(exports.Run):
    """The ``wasi:cli/run`` export: execute the cell as ``__main__``."""

    def run(self) -> None:
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = main
        try:
            exec(_CODE, main.__dict__)
            status = 0
        except SystemExit as exc:
            status = _status_of(exc.code)
        except BaseException as exc:  # noqa: BLE001 - the guest reports its own errors
            # Skip this frame: the student sees only the cell's lines.
            traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
            status = 1
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except BaseException:  # noqa: BLE001 - a closed stream must not trap
                    pass
        if status != 0:
            # wasi:cli/run returns result<_, _>: a command reports only failure.
            raise Err(None)
