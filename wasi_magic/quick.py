"""Quick mode: run Python source in a sandbox component built once per installation.

Building a cell takes seconds; quick mode skips it. The quick-mode sandbox is
a ``wasi:cli`` command that componentize-py built once with a broad set of
standard-library modules imported (:data:`wasi_magic.guest.QUICK_MODULES`) and
every other pure-Python standard-library module compiled into its snapshot
(``_guest/wasi_magic_stdlib.py``); the source
to run is handed to it at run time in the environment variable
``WASI_MAGIC_SOURCE``, which the guest removes before running it. Every run
is a fresh instance, so nothing leaks between cells, and the capabilities and
limits are exactly those of build mode.
"""

from __future__ import annotations

from typing import Any

from .artifact import Artifact
from .builder import ProgressCallback, build
from .capabilities import Capabilities
from .errors import UsageError
from .limits import Limits
from .result import RunResult

SOURCE_VAR = "WASI_MAGIC_SOURCE"


def quick_sandbox(progress: ProgressCallback | None = None) -> Artifact:
    """The quick-mode sandbox component (built on first use, then cached)."""
    return build("", quick=True, progress=progress)


def with_source(capabilities: Capabilities, source: str) -> Capabilities:
    """``capabilities`` plus the variable that carries ``source`` into the sandbox."""
    if any(name == SOURCE_VAR for name, _ in capabilities.env):
        raise UsageError(f"--env {SOURCE_VAR} is reserved for quick mode.")
    if "\0" in source:
        raise UsageError("The cell contains a NUL character, which quick mode cannot pass.")
    return capabilities.replace(env=capabilities.env + ((SOURCE_VAR, source),))


def run_quick(source: str, capabilities: Capabilities | None = None, *,
              progress: ProgressCallback | None = None, limits: Limits | None = None,
              **options: Any) -> RunResult:
    """Run ``source`` in the quick-mode sandbox with ``capabilities``.

    ``limits`` (or ``timeout``, ``fuel``, ``max_memory``, ``output_limit``) bound the
    run; ``stdout``/``stderr`` receive its output as it is written. A syntax error is
    reported before anything runs, with the cell line, as in build mode.
    """
    from .limits import DEFAULT_TIMEOUT
    from .output import DEFAULT_LIMIT
    from .session import run_cell
    stdout, stderr = options.pop("stdout", None), options.pop("stderr", None)
    if limits is None:
        limits = Limits(timeout=options.pop("timeout", DEFAULT_TIMEOUT) or None,
                        fuel=options.pop("fuel", None), max_memory=options.pop("max_memory", None),
                        max_output=options.pop("output_limit", DEFAULT_LIMIT))
    if options:
        raise TypeError(f"run_quick() got unexpected options: {', '.join(sorted(options))}")
    return run_cell(source, capabilities, limits, quick=True, stdout=stdout, stderr=stderr,
                    progress=progress)
