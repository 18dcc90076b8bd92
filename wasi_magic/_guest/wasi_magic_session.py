"""The guest side of a session: one kept CPython that runs cell after cell.

componentize-py imports this module while it pre-initializes the component,
so the quick-mode module set (``wasi_magic_cell.OPTIONAL``) is imported here
and frozen into the snapshot. The host keeps one instance and calls the
world's ``run-cell`` export once per cell: every cell runs in the same
``__main__`` namespace, so its globals, imports and open files are there for
the next cell.

An exception in a cell is the cell's own failure (printed, status 1): the
interpreter carries on. Only a trap (a time limit, an interrupt, running out
of fuel, ``os._exit``) ends the instance, and with it the session.
"""

import builtins
import linecache
import sys
import traceback
import types

import wasi_magic_cell as _cell
import wasi_magic_guest as _guest
import wit_world

#: Exit statuses travel as WIT ``s32``.
_S32 = (-(1 << 31), (1 << 31) - 1)


class _NotInSession:
    """Last finder on sys.meta_path: explain a module the session does not carry."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if "." in name and name.partition(".")[0] in sys.modules:
            return None
        raise ModuleNotFoundError(
            f"No module named {name!r} in a session, which carries the quick-mode set of "
            f"standard-library modules. Run the cell without --session (build mode) to "
            f"include it.", name=name)


_guest.install_sliced_sleep()
_guest.install_whole_writes(line_buffered_stdout=True)  # flushed at the end of the cell
_guest.preload(_cell.REQUIRED, _cell.OPTIONAL)
sys.meta_path.append(_NotInSession)

_main = None
_cells = 0


def _namespace():
    """The session's ``__main__``, made at the first cell (not in the build's snapshot)."""
    global _main
    if _main is None:
        _main = types.ModuleType("__main__")
        _main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = _main
    return _main.__dict__


def _status_of(code):
    """The exit status ``sys.exit(code)`` means, printing a message as CPython does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return min(max(code, _S32[0]), _S32[1])
    print(code, file=sys.stderr)
    return 1


def _print_traceback(exc):
    """The traceback without this module's frames: only the cells' own lines."""
    report = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    ours = (__file__, _guest.__file__)
    report.stack = traceback.StackSummary.from_list(
        [frame for frame in report.stack if frame.filename not in ours])
    sys.stderr.write("".join(report.format()))


def _report(action, value):
    """``action(value)``, or 1 if the cell broke what reporting needs (say, sys.stderr):
    nothing may escape the export, which would trap and end the session."""
    try:
        return action(value)
    except BaseException:  # noqa: BLE001
        return 1


class WitWorld(wit_world.WitWorld):
    """The ``session`` world: ``run-cell: func(source: string) -> s32``."""

    def run_cell(self, source: str) -> int:
        global _cells
        _cells += 1
        # Each cell its own file name: a traceback through a function defined three
        # cells ago shows that cell's lines.
        filename = f"<session cell {_cells}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            exec(compile(source, filename, "exec", dont_inherit=True), _namespace())
            status = 0
        except SystemExit as exc:
            status = _report(_status_of, exc.code)
        except BaseException as exc:  # noqa: BLE001 - the cell's failure, not the session's
            _report(_print_traceback, exc)
            status = 1
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 - a closed stream must not trap
                pass
        return status
