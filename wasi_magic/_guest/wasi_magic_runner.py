"""The guest side of a ``%%wasi`` cell: runs inside the component (CPython in WASI).

componentize-py imports this module while it pre-initializes the component.
Everything done at import time is frozen into the component's snapshot, so
this module compiles the cell and imports every module the cell needs, but it
runs the cell only when the host calls ``wasi:cli/run``.

In quick mode the component is built once with a broad set of standard
library modules, and the cell's source arrives at run time in the
environment variable ``WASI_MAGIC_SOURCE`` (removed before the cell runs).
"""

import builtins
import linecache
import os
import sys
import traceback
import types

import wasi_magic_cell as _cell
import wasi_magic_guest as _guest
from componentize_py_types import Err
from wit_world import exports

_SOURCE_VAR = "WASI_MAGIC_SOURCE"
#: Set (quick mode) when a build-mode cell runs here while its own component is built:
#: a missing module is then reported exactly as the built component would report it.
_AS_BUILD_VAR = "WASI_MAGIC_AS_BUILD"
_as_build = False


def _remember(source: str) -> None:
    # Tracebacks show the cell's own lines: the source lives in linecache.
    linecache.cache[_cell.FILENAME] = (len(source), None, source.splitlines(True), _cell.FILENAME)


class _NotInSandbox:
    """Last finder on sys.meta_path in quick mode: explain a missing module."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if "." in name and name.partition(".")[0] in sys.modules:
            return None
        if _as_build:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        top = name.partition(".")[0]
        if top in sys.stdlib_module_names:
            raise ModuleNotFoundError(
                f"No module named {name!r}: it is part of CPython's standard library, but not "
                f"of the WebAssembly (WASI) build the guest runs (a C extension or a module "
                f"that needs what WASI lacks), so no %%wasi cell can import it.", name=name)
        raise ModuleNotFoundError(
            f"No module named {name!r} in the quick-mode sandbox, which carries the standard "
            f"library only. Run the cell in build mode (without --quick) to include "
            f"pure-Python modules from --path folders.", name=name)


_guest.install_sliced_sleep()
_guest.install_whole_writes(line_buffered_stdout=True)  # flushed at the end of the cell
_guest.preload(_cell.REQUIRED, _cell.OPTIONAL)
if _cell.QUICK:
    import wasi_magic_stdlib as _stdlib

    _stdlib.install()
    _OURS = (__file__, _guest.__file__, _stdlib.__file__)
    sys.meta_path.append(_NotInSandbox)
    _CODE = None
else:
    _remember(_cell.SOURCE)
    _CODE = compile(_cell.SOURCE, _cell.FILENAME, "exec", dont_inherit=True)
    _OURS = (__file__, _guest.__file__)


def _status_of(code: object) -> int:
    """The exit status ``sys.exit(code)`` means, printing a message as CPython does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _cell_code():
    """The code to run: compiled at build time, or (quick mode) from the environment."""
    if _CODE is not None:
        return _CODE
    global _as_build
    source = os.environ.pop(_SOURCE_VAR, "")
    _as_build = os.environ.pop(_AS_BUILD_VAR, None) == "1"
    _remember(source)
    return compile(source, _cell.FILENAME, "exec", dont_inherit=True)


def _print_traceback(exc: BaseException) -> None:
    """Print the guest's traceback without wasi-magic's frames: only the cell's lines."""
    report = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    report.stack = traceback.StackSummary.from_list(
        [frame for frame in report.stack if frame.filename not in _OURS])
    sys.stderr.write("".join(report.format()))


class Run(exports.Run):
    """The ``wasi:cli/run`` export: execute the cell as ``__main__``."""

    def run(self) -> None:
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = main
        try:
            exec(_cell_code(), main.__dict__)
            status = 0
        except SystemExit as exc:
            status = _status_of(exc.code)
        except BaseException as exc:  # noqa: BLE001 - the guest reports its own errors
            _print_traceback(exc)
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


def _warm_up() -> None:
    """Run a cell's path a few times while the snapshot is taken (quick mode).

    Every run starts a fresh instance of the snapshot, so whatever the interpreter
    learns on a path's first runs (CPython specializes the bytecode it runs twice, and
    caches attribute lookups by type) is otherwise learnt again, and paid for, in every
    run. What componentize-py does before each first call (sets ``os.environ``, calls
    ``random.seed()``) and what :meth:`Run.run` does are run here, so that the snapshot
    holds them learnt. Nothing of it is left behind: each run sets all of it anew.
    """
    import random
    sink = _warm_stdout()
    main = sys.modules.get("__main__")
    for _ in range(3):
        os.environ["WASI_MAGIC_WARM"] = "1"
        os.environ[_SOURCE_VAR] = ("import os, sys\nprint(sys.argv[1:], os.environ['WASI_MAGIC_WARM'], "
                                   "file=_sink)\n")
        random.seed()
        builtins._sink = sink
        try:
            Run().run()
        finally:
            del builtins._sink
        os.environ.pop("WASI_MAGIC_WARM", None)
    linecache.cache.pop(_cell.FILENAME, None)
    if main is not None:
        sys.modules["__main__"] = main
    sink.close()


def _warm_stdout():
    """A stream built as the guest's ``sys.stdout`` is (see ``install_whole_writes``), over
    a scratch file in this module's folder, which exists only while the snapshot is
    taken; a :class:`io.StringIO` if that folder cannot be written."""
    import io
    try:
        raw = io.FileIO(os.path.join(os.path.dirname(__file__), ".warm-up"), "w")
    except OSError:
        return io.StringIO()
    whole = _guest.WholeWrites(raw)
    return io.TextIOWrapper(io.BufferedWriter(whole), encoding=sys.stdout.encoding,
                            errors=sys.stdout.errors, line_buffering=True)


if _cell.QUICK:
    _warm_up()
