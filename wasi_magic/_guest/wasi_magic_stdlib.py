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
#: module name -> the modules its top-level code imports outside any ``try`` block.
_imports = {}


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
            package = file == "__init__.py"
            _modules[name] = (package, path, zlib.compress(marshal.dumps(code), 6))
            _imports[name] = _hard_imports(code, name if package else name.rpartition(".")[0])


def _hard_imports(code, package):
    """The modules ``code`` imports at its top level, outside any ``try`` block (an import
    that can fail there is a module that cannot be imported)."""
    import dis
    try:
        guarded = [(entry.start, entry.end) for entry in dis.Bytecode(code).exception_entries]
    except Exception:  # noqa: BLE001 - no table: count every import
        guarded = []
    found = []
    before = []
    for instruction in dis.get_instructions(code):
        if instruction.opname == "IMPORT_NAME" and \
                not any(start <= instruction.offset < end for start, end in guarded):
            level = before[-2].argval if len(before) >= 2 else 0
            target = instruction.argval
            if isinstance(level, int) and level > 0:
                base = package.rsplit(".", level - 1)[0] if level > 1 else package
                target = f"{base}.{target}" if target else base
            found.append(target)
        before.append(instruction)
    return tuple(found)


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
    """Every module name quick mode can import: imported at build time, or in the snapshot
    and importing (at its top level) only modules that are there too."""
    verdicts = {}

    def importable(name, seen):
        if name in sys.modules or name in sys.builtin_module_names:
            return True
        if name not in _modules:
            return False
        if name in verdicts:
            return verdicts[name]
        if name in seen:
            return True  # an import cycle: decided by its other members
        seen.add(name)
        parent = name.rpartition(".")[0]
        verdict = (not parent or importable(parent, seen)) and all(
            all(importable(".".join(dep.split(".")[:i + 1]), seen)
                for i in range(dep.count(".") + 1))
            for dep in _imports.get(name, ()))
        verdicts[name] = verdict
        return verdict

    return sorted(set(sys.modules) | {name for name in _modules if importable(name, set())})


def install():
    """Collect the standard library (at pre-initialization) and put the finder in place."""
    # Not os.__file__: os is frozen, and its __file__ names a folder that is not there.
    import json
    collect(os.path.dirname(os.path.dirname(json.__file__)))
    index = next((i for i, finder in enumerate(sys.meta_path) if finder is PathFinder),
                 len(sys.meta_path))
    sys.meta_path.insert(index, StdlibFinder)
