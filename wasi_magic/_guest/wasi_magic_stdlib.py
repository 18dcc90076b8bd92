"""Quick mode's standard library: every pure-Python module the guest CPython ships.

componentize-py mounts the guest's standard library only while it pre-initializes
the component; at run time a module that was not imported then does not exist
(the component carries no files). So, at pre-initialization, :func:`install`
compiles every standard-library ``.py`` file the guest can see and keeps the
code objects, marshalled and compressed, in memory: they become part of the
snapshot. At run time :class:`StdlibFinder` serves them from there, so an
import costs only its own decompress and execution, and no file system (and
no host path) is ever visible to the guest.
"""

import marshal
import os
import sys
import zlib
from importlib.machinery import ModuleSpec, PathFinder

#: Folders and modules of the standard library that are left out: tests, GUIs,
#: installers. They cannot work in a guest and would only make the snapshot larger.
SKIPPED = frozenset({
    "test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo", "turtle", "ensurepip",
    "venv", "lib2to3", "site-packages", "__pycache__", "__phello__",
})

#: module name -> (is a package, origin as the build saw it, zlib(marshal(code))).
_modules = {}


def _module_name(relative):
    parts = relative[:-3].split(os.sep)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def collect(root):
    """Compile every standard-library ``.py`` under ``root`` not yet imported."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED and "-" not in d and "." not in d)
        for file in sorted(files):
            if not file.endswith(".py") or file[:-3] in SKIPPED:
                continue
            path = os.path.join(folder, file)
            name = _module_name(os.path.relpath(path, root))
            if not name or name in sys.modules or name in _modules:
                continue
            try:
                with open(path, "rb") as handle:
                    code = compile(handle.read(), path, "exec", dont_inherit=True)
            except (SyntaxError, ValueError, OSError, UnicodeDecodeError):
                continue  # not a module this interpreter can load
            _modules[name] = (file == "__init__.py", path, zlib.compress(marshal.dumps(code), 6))


class StdlibLoader:
    """Executes a module's code from the snapshot."""

    @staticmethod
    def create_module(spec):
        return None

    @staticmethod
    def exec_module(module):
        exec(StdlibLoader.get_code(module.__spec__.name), module.__dict__)

    @staticmethod
    def get_code(name):
        return marshal.loads(zlib.decompress(_modules[name][2]))

    @staticmethod
    def is_package(name):
        return _modules[name][0]

    @staticmethod
    def get_source(name):
        return None  # tracebacks show the frame, as for modules imported at build time


class StdlibFinder:
    """Finds standard-library modules in the snapshot (before the path finder)."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        found = _modules.get(name)
        if found is None:
            return None
        package, origin, _ = found
        spec = ModuleSpec(name, StdlibLoader, origin=origin, is_package=package)
        if package:
            spec.submodule_search_locations = [os.path.dirname(origin)]
        spec.has_location = True
        return spec


def available():
    """Every module name quick mode can import: imported at build time, or in the snapshot."""
    return sorted(set(sys.modules) | set(_modules))


def install():
    """Collect the standard library (at pre-initialization) and put the finder in place."""
    # Not os.__file__: os is frozen, and its __file__ names a folder that is not there.
    import json
    collect(os.path.dirname(os.path.dirname(json.__file__)))
    index = next((i for i, finder in enumerate(sys.meta_path) if finder is PathFinder),
                 len(sys.meta_path))
    sys.meta_path.insert(index, StdlibFinder)
