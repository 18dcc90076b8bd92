"""The guest side of a typed world: the app module componentize-py builds.

componentize-py imports this module while it pre-initializes the component,
then looks up, *as attributes of this module*, the classes that implement the
world's exports: ``WitWorld`` for functions the world exports directly, and
one class per exported interface (``Util`` for ``export util``).

Only modules imported during pre-initialization exist at run time, so this
module first imports every module the user's source needs, then executes the
source as a module of its own (tracebacks show the source's own file name and
lines) and re-exports the source's public names, which is where
componentize-py finds the export classes.

An exception escaping an exported function makes componentize-py's runtime
print it and trap; guests should return errors through ``result`` types
(``raise Err(value)``).
"""

import importlib
import linecache
import sys
import time
import types

import wasi_magic_world_source as _source

_MARKER = "WASI_MAGIC_IMPORT_FAILURES:"


def _preload() -> None:
    """Import what the source imports, so those modules are in the snapshot.

    A required module that fails is reported to the host (via the build log)
    with the line that asked for it; optional helpers are best effort.
    """
    failures = []
    for name, line in _source.REQUIRED:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - reported to the host
            failures.append((name, line, f"{type(exc).__name__}: {exc}"))
    for name in _source.OPTIONAL:
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - helpers are best effort
            pass
    if failures:
        raise ImportError(_MARKER + repr(failures))


def _sliced_sleep(seconds: float) -> None:
    """``time.sleep`` in short slices, so that the host's time limit can stop it.

    Wasmtime checks its epoch deadline only while WebAssembly code runs, not
    while the host blocks in one long sleep.
    """
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        _real_sleep(min(left, 0.05))


def _load_source() -> types.ModuleType:
    """Execute the user's source as module ``_source.MODULE``."""
    text = _source.SOURCE
    linecache.cache[_source.FILENAME] = (len(text), None, text.splitlines(True), _source.FILENAME)
    module = types.ModuleType(_source.MODULE)
    module.__file__ = _source.FILENAME
    sys.modules[_source.MODULE] = module
    exec(compile(text, _source.FILENAME, "exec", dont_inherit=True), module.__dict__)
    return module


_real_sleep = time.sleep
time.sleep = _sliced_sleep
_preload()
_user = _load_source()
globals().update({name: value for name, value in vars(_user).items() if not name.startswith("_")})
