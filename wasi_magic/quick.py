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
from .text import check_text
from .limits import Limits
from .result import RunResult

SOURCE_VAR = "WASI_MAGIC_SOURCE"
#: Tells the sandbox that a build-mode cell runs in it (see :mod:`wasi_magic.background`).
AS_BUILD_VAR = "WASI_MAGIC_AS_BUILD"


def quick_sandbox(progress: ProgressCallback | None = None) -> Artifact:
    """The quick-mode sandbox component (built on first use, then cached)."""
    return build("", quick=True, progress=progress)


def with_source(capabilities: Capabilities, source: str, *, as_build: bool = False
                ) -> Capabilities:
    """``capabilities`` plus the variable that carries ``source`` into the sandbox
    (and, with ``as_build``, the one that says a build-mode cell runs there)."""
    for name, _ in capabilities.env:
        if name in (SOURCE_VAR, AS_BUILD_VAR):
            raise UsageError(f"--env {name} is reserved for quick mode.")
    check_text(source, "The cell")
    extra = ((SOURCE_VAR, source),) + (((AS_BUILD_VAR, "1"),) if as_build else ())
    return capabilities.replace(env=capabilities.env + extra)


def run_quick(source: str, capabilities: Capabilities | None = None, *,
              progress: ProgressCallback | None = None, limits: Limits | None = None,
              **options: Any) -> RunResult:
    """Run ``source`` in the quick-mode sandbox with ``capabilities``.

    ``limits`` (or ``timeout``, ``fuel``, ``max_memory``, ``output_limit``) bound the
    run; ``stdout``/``stderr`` receive its output as it is written. The guest's Python
    compiles ``source``: a syntax error is the guest's own (status 1, the cell line in
    its traceback, nothing run).
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


#: The modules the quick-mode sandbox can import, by the sandbox's sha256 (asked once).
_modules: dict[str, frozenset[str]] = {}

_LIST_MODULES = ("import json, wasi_magic_stdlib\n"
                 "_answer = json.dumps(wasi_magic_stdlib.available())\n")

# Printed in pieces, each flushed: one write of more than 8 KiB reaches the host cut at 8 KiB.
_PRINT_ANSWER = ("\nimport sys as _sys\n"
                 "for _start in range(0, len({name}), 4096):\n"
                 "    _sys.stdout.write({name}[_start:_start + 4096])\n"
                 "    _sys.stdout.flush()\n")


def ask_sandbox(program: str, answer: str, *, artifact: Artifact | None = None,
                sandbox: Any = None, timeout: float = 30) -> str | None:
    """Run ``program`` (wasi-magic's own code) in the quick-mode sandbox with nothing
    granted, and return the string it leaves in its variable ``answer``: the guest's own
    view of something (its modules, how its Python parses a cell). None if it gave no
    answer (the program failed, or the worker restarted)."""
    from .sandbox.supervisor import default_sandbox
    artifact = artifact if artifact is not None else quick_sandbox()
    sandbox = sandbox if sandbox is not None else default_sandbox()
    sandbox.prepare(artifact)
    result = sandbox.run(artifact, with_source(Capabilities(), program
                                               + _PRINT_ANSWER.format(name=answer)),
                         limits=Limits(timeout=timeout))
    return result.stdout if result.status == 0 and not result.trap else None


def runner_modules(artifact: Artifact, sandbox: Any = None) -> frozenset[str]:
    """Every module ``artifact`` (the quick-mode sandbox) can import: asked of the
    sandbox itself on first use, so the answer is the guest's, not the host's."""
    import json
    known = _modules.get(artifact.sha256)
    if known is not None:
        return known
    try:
        answer = json.loads(ask_sandbox(_LIST_MODULES, "_answer", artifact=artifact,
                                        sandbox=sandbox) or "null")
    except ValueError:
        answer = None
    if not isinstance(answer, list) or not all(isinstance(name, str) for name in answer):
        return frozenset()  # no answer (the worker restarted?): build mode waits; ask again later
    names = _modules[artifact.sha256] = frozenset(answer)
    return names


def built_sandbox() -> Artifact | None:
    """The quick-mode sandbox if it is built already (never builds it)."""
    from .builder import build_key, cached_artifact_by_key
    return cached_artifact_by_key(build_key("", quick=True), "cell.wasm")


def built_sandbox_sha256() -> str | None:
    """The quick-mode sandbox's sha256 if this user's cache holds it built, packed or not:
    read from its sealed metadata alone (never builds, unpacks or reads the component).
    ``%load_ext`` names it to the new sandbox worker, which loads its compiled form."""
    from .builder import _quick_key
    from .cache import default_cache, is_sha256
    cache = default_cache()
    meta = cache.sealed_meta("builds", _quick_key()) if cache.enabled else None
    sha256 = meta.get("sha256") if meta is not None else None
    return sha256 if is_sha256(sha256) else None
