"""wasi-magic: run notebook cells as sandboxed WASI components.

Load the IPython extension with ``%load_ext wasi_magic``, then::

    %%wasi --dir data::/data --env MY_VAR=hello -- /data/input.txt
    import os, sys
    print(os.environ["MY_VAR"], open(sys.argv[1]).read())

The same from Python, without IPython::

    from wasi_magic import Capabilities, build, run
    artifact = build("print('hi')")
    result = run(artifact, Capabilities.parse(dirs=["data::/data"]))
"""

from __future__ import annotations

from typing import Any

from .builder import Artifact, BuildProgress, build
from .cache import Cache, cache_dir
from .capabilities import Capabilities, DirGrant
from .errors import (BuildError, CapabilityError, GuestImportError, RuntimeFailure, UsageError,
                     WasiMagicError)
from .inspect import WasmInfo, inspect_wasm
from .runtime import RunResult, Runtime, default_runtime, run

__version__ = "0.1.0"

__all__ = [
    "Artifact", "BuildError", "BuildProgress", "Cache", "Capabilities", "CapabilityError",
    "DirGrant", "GuestImportError", "RunResult", "Runtime", "RuntimeFailure", "UsageError",
    "WasiMagicError", "WasmInfo", "build", "cache_dir", "default_runtime", "inspect_wasm",
    "run", "load", "run_quick", "load_ipython_extension", "unload_ipython_extension",
]


def __getattr__(name: str) -> Any:
    # The typed-world host and quick mode import wasmtime eagerly; load them on first use
    # so that `import wasi_magic` works (and explains) without it.
    if name == "load":
        from .host import load
        return load
    if name == "run_quick":
        from .quick import run_quick
        return run_quick
    raise AttributeError(f"module 'wasi_magic' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%%wasi`` and ``%wasi`` (called by ``%load_ext wasi_magic``)."""
    from .magic import WasiMagics
    ipython.register_magics(WasiMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove ``%%wasi`` and ``%wasi`` (called by ``%unload_ext wasi_magic``)."""
    magics = ipython.magics_manager.magics
    for kind in ("line", "cell"):
        magics[kind].pop("wasi", None)
    ipython.magics_manager.registry.pop("WasiMagics", None)
