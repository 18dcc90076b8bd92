"""What one run of a guest produced: :class:`RunResult` (no Wasmtime needed to read one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .capabilities import Capabilities
from .limits import Limits


@dataclass
class RunResult:
    """What one run of a guest produced, and how long each step took."""

    status: int
    stdout: str
    stderr: str
    capabilities: Capabilities
    artifact: Path | None = None
    #: Set when the guest trapped or hit a limit: a short human-readable reason.
    trap: str | None = None
    build_seconds: float = 0.0
    compile_seconds: float = 0.0
    instantiate_seconds: float = 0.0
    run_seconds: float = 0.0
    #: How the component was obtained: 'built', 'cached', 'compiled', 'deserialized', 'memory'.
    steps: dict[str, str] = field(default_factory=dict)
    #: Which compiler made the code that ran: 'winch' or 'cranelift' (see
    #: :mod:`wasi_magic.tierup`); None for a Preview 1 module.
    tier: str | None = None
    #: The limits the run had, and what it used of them.
    limits: Limits | None = None
    fuel_used: int | None = None
    #: True if an output stream was cut at ``limits.max_output``.
    truncated: bool = False
    #: A note when a limit (e.g. memory) explains the guest's failure.
    limit_note: str | None = None
    #: A build-mode cell that ran in the quick-mode runner: a Future of its own component,
    #: built in the background (``artifact`` is set when it is done).
    pending: Any = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True if the guest finished with status 0."""
        return self.status == 0 and self.trap is None

    def __repr__(self) -> str:
        out = self.stdout if len(self.stdout) < 60 else self.stdout[:57] + "..."
        extra = f", trap={self.trap!r}" if self.trap else ""
        return (f"RunResult(status={self.status}, stdout={out!r}, "
                f"stderr={len(self.stderr)} chars{extra}, run_seconds={self.run_seconds:.4f})")


class BuildingResult(RunResult):
    """The result of a build-mode cell that ran in the quick-mode runner while its own
    component is built behind it (see :mod:`wasi_magic.background`).

    Reading :attr:`artifact` waits for that build (Interrupt stops the wait) and gives
    the built component's path, or None if the build failed or was stopped.
    """

    @property  # type: ignore[override]
    def artifact(self) -> Path | None:
        pending = self.pending
        if self.__dict__.get("_artifact") is None and pending is not None:
            try:
                built = pending.result()
            except BaseException as exc:  # noqa: BLE001 - failed or stopped: no artifact
                if isinstance(exc, KeyboardInterrupt):
                    raise
                return None
            self.__dict__["_artifact"] = built.path
        return self.__dict__.get("_artifact")

    @artifact.setter
    def artifact(self, value: Path | None) -> None:
        self.__dict__["_artifact"] = value

    @classmethod
    def of(cls, result: RunResult, pending: Any) -> "BuildingResult":
        """``result`` as a BuildingResult whose component is the Future ``pending``."""
        from dataclasses import fields
        values = {f.name: getattr(result, f.name) for f in fields(result)}
        values.update(artifact=None, pending=pending)
        return cls(**values)
