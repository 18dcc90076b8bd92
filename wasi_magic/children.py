"""Commands that start wasi-magic's own Python processes without the current folder on
their import path: the sandbox worker, componentize-py, tier-up and background compiles.

``python -m`` and ``python -c`` put the current folder first on ``sys.path``. A kernel's
current folder is the notebook's, and a guest granted it read-write (``--dir .::/w``)
can write files there: a ``resource.py`` it wrote would run, outside the sandbox, in
the next of these processes to start (the spare worker starts as the cell ends). So
they import only from the Python environment (and ``$PYTHONPATH``), never from the
folder they start in.
"""

from __future__ import annotations

import sys

#: Drops the current folder ('' first on sys.path under ``-c``) before anything else is
#: imported. (Under ``-P`` or ``$PYTHONSAFEPATH`` Python never added it.)
_SAFE_PATH = "import sys\nif sys.path and sys.path[0] == '':\n    del sys.path[0]\n"


def python_code(code: str, *args: str) -> list[str]:
    """The command ``python -c code args``, without the current folder on its import path."""
    return [sys.executable, "-c", _SAFE_PATH + code, *args]


def python_module(module: str, *args: str) -> list[str]:
    """The command ``python -m module args``, without the current folder on its import
    path (the module runs as ``__main__``; ``sys.argv[1:]`` are ``args``)."""
    return python_code(f"import runpy\nrunpy.run_module({module!r}, run_name='__main__', "
                       f"alter_sys=True)\n", *args)
