"""The one "run a cell" pipeline: a cell's source, grants and limits in; a result out.

:func:`prepare_cell` picks the program (the quick-mode sandbox, or the cell's own
component, built if needed) and has the sandbox worker compile or load it;
:func:`run_prepared` runs it with the user's grants. :func:`run_cell` does both.
The ``%%wasi`` magic, the capability panel and :func:`wasi_magic.run_quick` are
thin adapters over these; nothing here imports IPython.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

from .artifact import Artifact
from .builder import ProgressCallback, build, packed_sha256
from .capabilities import Capabilities
from .errors import UsageError
from .guest import uses_http
from .limits import Limits
from .output import TextCallback, format_size
from .quick import quick_sandbox, with_source
from .result import RunResult
from .sandbox.supervisor import Sandbox, default_sandbox


@dataclass(frozen=True)
class PreparedCell:
    """A cell ready to run: its program, compiled in the worker, and how it got there."""

    source: str
    artifact: Artifact
    quick: bool
    limits: Limits
    build_seconds: float
    compile_seconds: float
    #: How the worker got the compiled program: 'compiled', 'deserialized' or 'memory'.
    how: str
    strategy: str
    #: A build-mode cell run in the quick-mode sandbox while its component is built.
    as_build: bool = False

    def guest_capabilities(self, caps: Capabilities) -> Capabilities:
        """What the guest is given for ``caps``: in quick mode, plus the cell's source."""
        return with_source(caps, self.source, as_build=self.as_build) if self.quick else caps

    @property
    def build_step(self) -> str:
        """'quick', 'cached' or 'built'."""
        return "quick" if self.quick else "cached" if self.artifact.cached else "built"

    def summary(self) -> str:
        """The status line a front end shows: ``wasi: cached · 20.6 MiB`` …"""
        made = ("cached" if self.artifact.cached
                else f"built in {self.artifact.build_seconds:.1f} s")
        if self.quick:
            made = "quick mode" + ("" if self.artifact.cached else f" (sandbox {made})")
        text = f"wasi: {made} · {format_size(self.artifact.size)}"
        if self.how == "compiled":
            text += f" · compiled in {self.compile_seconds:.1f} s ({self.strategy})"
        return text


def prepare_cell(source: str, limits: Limits | None = None, *, quick: bool = False,
                 paths: Iterable[str] = (), progress: ProgressCallback | None = None,
                 on_built: Callable[[Artifact], None] | None = None,
                 sandbox: Sandbox | None = None) -> PreparedCell:
    """Build (or find) the program for a cell, and have the worker compile (or load) it.

    ``quick=True`` uses the quick-mode sandbox (no build; the source travels with
    the grants at run time). ``on_built(artifact)`` is called between the build
    and the compile, for a status line. KeyboardInterrupt stops either step and
    leaves nothing half-made behind.
    """
    limits = limits if limits is not None else Limits()
    sandbox = sandbox if sandbox is not None else default_sandbox()
    started = time.perf_counter()
    paths = list(paths)
    if quick:
        if paths:
            raise UsageError("--path needs build mode: the quick-mode sandbox cannot import "
                             "your own modules. Drop --quick.")
        # (No syntax check here: the guest's Python compiles the cell and reports its errors.)
        if uses_http(source):
            raise UsageError("wasi_magic_http needs build mode: the quick-mode sandbox has no "
                             "HTTP import. Drop --quick (and grant origins with --allow-http).")
        artifact = quick_sandbox(progress=progress)
    else:
        # A component packed in the cache (a Binder image): the worker loads its compiled
        # form while this process unpacks the component itself.
        digest = None if paths else packed_sha256(source)
        if digest is not None:
            sandbox.preload(digest, fuel=bool(limits.fuel))
        artifact = build(source, paths=paths, progress=progress)
    build_seconds = time.perf_counter() - started
    if on_built is not None:
        on_built(artifact)
    compiled = _prepare(sandbox, artifact, bool(limits.fuel), quick)
    return PreparedCell(source, artifact, quick, limits, build_seconds, compiled["seconds"],
                        compiled["how"], compiled["strategy"])


#: The quick-mode sandbox as each worker holds it: (sandbox, worker pid, sha256, fuel) ->
#: its compiler. A worker keeps a compiled component until it exits.
_held: dict[tuple[int, int, str, bool], str] = {}


def _prepare(sandbox: Sandbox, artifact: Artifact, fuel: bool, quick: bool) -> dict:
    """Have the worker compile or load ``artifact``; for the quick-mode sandbox, only
    once per worker (a round trip saved on every quick cell)."""
    held = (id(sandbox), sandbox.pid or 0, artifact.sha256, fuel)
    if quick and held in _held:
        return {"seconds": 0.0, "how": "memory", "strategy": _held[held]}
    compiled = sandbox.prepare(artifact, fuel=fuel)
    if quick and sandbox.pid is not None:
        _held[(id(sandbox), sandbox.pid, artifact.sha256, fuel)] = compiled["strategy"]
    return compiled


def run_prepared(prepared: PreparedCell, caps: Capabilities | None = None, *,
                 limits: Limits | None = None, stdout: TextCallback | None = None,
                 stderr: TextCallback | None = None,
                 sandbox: Sandbox | None = None) -> RunResult:
    """Run a prepared cell with exactly ``caps`` (and ``limits``, default: the prepared ones).

    The result says what the user granted (not quick mode's source carrier) and how the
    program was obtained (``steps``).
    """
    caps = caps if caps is not None else Capabilities()
    sandbox = sandbox if sandbox is not None else default_sandbox()
    result = sandbox.run(prepared.artifact, prepared.guest_capabilities(caps),
                         limits=limits if limits is not None else prepared.limits,
                         stdout=stdout, stderr=stderr)
    result.build_seconds = prepared.build_seconds
    result.compile_seconds += prepared.compile_seconds
    result.capabilities = caps
    result.steps["component"] = prepared.how
    result.steps["build"] = prepared.build_step
    return result


def run_cell(source: str, caps: Capabilities | None = None, limits: Limits | None = None, *,
             quick: bool = False, paths: Iterable[str] = (), stdout: TextCallback | None = None,
             stderr: TextCallback | None = None, progress: ProgressCallback | None = None,
             sandbox: Sandbox | None = None) -> RunResult:
    """Run a cell's Python source in the sandbox, end to end: :func:`prepare_cell`, then
    :func:`run_prepared`."""
    prepared = prepare_cell(source, limits, quick=quick, paths=paths, progress=progress,
                            sandbox=sandbox)
    return run_prepared(prepared, caps, stdout=stdout, stderr=stderr, sandbox=sandbox)
