"""A built component on disk: :class:`Artifact` (what builds produce and runs take)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Artifact:
    """A built component on disk."""

    path: Path
    #: Cache key (a hash of the build inputs).
    key: str
    #: sha256 of the component's bytes (the key of its compiled form).
    sha256: str
    size: int
    #: How long componentize-py took when this component was built.
    build_seconds: float
    #: True if this call found it in the cache instead of building it.
    cached: bool
    #: The program name the guest sees as ``argv[0]``.
    name: str = "cell.wasm"
    #: The WIT world the component implements (None: a ``wasi:cli`` command).
    world: str | None = None
