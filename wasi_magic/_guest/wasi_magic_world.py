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

import linecache
import sys
import types

import wasi_magic_guest as _guest
import wasi_magic_world_source as _source


def _load_source() -> types.ModuleType:
    """Execute the user's source as module ``_source.MODULE``."""
    text = _source.SOURCE
    linecache.cache[_source.FILENAME] = (len(text), None, text.splitlines(True), _source.FILENAME)
    module = types.ModuleType(_source.MODULE)
    module.__file__ = _source.FILENAME
    sys.modules[_source.MODULE] = module
    exec(compile(text, _source.FILENAME, "exec", dont_inherit=True), module.__dict__)
    return module


_guest.install_sliced_sleep()
_guest.install_whole_writes()
_guest.preload(_source.REQUIRED, _source.OPTIONAL)
_user = _load_source()
globals().update({name: value for name, value in vars(_user).items() if not name.startswith("_")})
