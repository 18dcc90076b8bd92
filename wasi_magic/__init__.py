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

import importlib
import os
from typing import TYPE_CHECKING, Any, Callable

from .capabilities import Capabilities, DirGrant, read_guest_file
from .errors import (BuildError, CapabilityError, GuestImportError, RuntimeFailure, UsageError,
                     WasiMagicError)
from .limits import DEFAULT_TIMEOUT, Limits
from .output import DEFAULT_LIMIT

if TYPE_CHECKING:
    from .artifact import Artifact
    from .result import RunResult

#: Public names imported on first use (PEP 562), so that ``import wasi_magic`` and
#: ``python -m wasi_magic run`` stay fast and do not load Wasmtime or the builder early.
_LAZY = {
    "Artifact": "artifact", "BuildProgress": "builder", "build": "builder", "Cache": "cache",
    "cache_dir": "cache", "WasmInfo": "inspect", "inspect_wasm": "inspect",
    "RunResult": "result", "Runtime": "runtime", "default_runtime": "runtime",
    "load": "sandbox.remote", "run_quick": "quick", "Session": "sessions",
}

__version__ = "0.1.0"

__all__ = [
    "Artifact", "BuildError", "BuildProgress", "Cache", "Capabilities", "CapabilityError",
    "DirGrant", "GuestImportError", "RunResult", "Runtime", "RuntimeFailure", "UsageError",
    "WasiMagicError", "WasmInfo", "build", "cache_dir", "default_runtime", "inspect_wasm",
    "run", "load", "read_guest_file", "run_quick", "Session", "load_ipython_extension",
    "unload_ipython_extension",
]


def run(artifact: "Artifact | str | os.PathLike[str]", capabilities: Capabilities | None = None, *,
        limits: Limits | None = None, stdout: Callable[[str], None] | None = None,
        stderr: Callable[[str], None] | None = None, timeout: float | None = DEFAULT_TIMEOUT,
        fuel: int | None = None, max_memory: int | None = None,
        output_limit: int = DEFAULT_LIMIT) -> "RunResult":
    """Run a ``wasi:cli`` component (or a Preview 1 module) in the sandbox worker.

    Nothing runs in the calling process: a supervised worker process holds the
    engine and the store (see :mod:`wasi_magic.sandbox.supervisor`). The guest
    gets exactly ``capabilities``; ``limits`` (or ``timeout``, ``fuel``,
    ``max_memory``, ``output_limit``) bound it; ``stdout``/``stderr`` receive
    its output as it is written. Guest failures, limits and a restarted worker
    are reported in the result; Interrupt raises KeyboardInterrupt.
    """
    from .artifact import Artifact
    from .binary import is_core_module
    from .sandbox.supervisor import default_sandbox
    if limits is None:
        limits = Limits(timeout=timeout or None, fuel=fuel, max_memory=max_memory,
                        max_output=output_limit)
    module = not isinstance(artifact, Artifact) and is_core_module(artifact)
    return default_sandbox().run(artifact, capabilities, limits=limits, stdout=stdout,
                                 stderr=stderr, module=module)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wasi_magic' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%%wasi`` and ``%wasi`` (called by ``%load_ext wasi_magic``)."""
    from . import kernel_exit
    from .magic import WasiMagics
    from .quick import built_sandbox_sha256
    from .sandbox.supervisor import default_sandbox
    ipython.register_magics(WasiMagics)
    kernel_exit.install()  # a kernel restart must not hang on ipykernel's exit race
    try:  # the quick-mode runner, if built: nearly every notebook's first cell runs in it
        runner = built_sandbox_sha256()
    except (WasiMagicError, OSError):
        runner = None  # (an unusable cache folder: the first cell says what is wrong)
    try:  # the sandbox worker starts in the background while the student reads on
        default_sandbox().start(wait=False, preload=[runner] if runner else [])
    except WasiMagicError:
        pass  # no wasmtime: the first cell says how to install it
    magics = ipython.magics_manager.registry.get("WasiMagics")
    if getattr(magics, "unpack_ahead", False):
        from . import ahead
        ahead.start()  # the notebook's packed cache entries, unpacked while it is read


def unload_ipython_extension(ipython: Any) -> None:
    """Remove ``%%wasi`` and ``%wasi`` (called by ``%unload_ext wasi_magic``)."""
    magics = ipython.magics_manager.magics
    for kind in ("line", "cell"):
        magics[kind].pop("wasi", None)
    ipython.magics_manager.registry.pop("WasiMagics", None)
