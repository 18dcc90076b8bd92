"""The installed versions wasi-magic keys its caches by (Wasmtime's, componentize-py's)."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path


@functools.lru_cache(maxsize=None)
def installed_version(module: str, distribution: str) -> str:
    """The installed version of ``distribution``, the package that provides ``module``.

    Read from the ``<name>-<version>.dist-info`` folder pip put beside the module, else
    from :mod:`importlib.metadata` (which a fresh process pays ~20-30 ms to import, and
    which scans every installed distribution: the sandbox worker starts without it).
    Raises ``importlib.metadata.PackageNotFoundError`` if it is not installed."""
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.origin:
        prefix = distribution.replace("-", "_") + "-"
        found = list(Path(spec.origin).parent.parent.glob(f"{prefix}*.dist-info"))
        if len(found) == 1:
            return found[0].name[len(prefix):-len(".dist-info")]
    from importlib import metadata
    if spec is None:
        raise metadata.PackageNotFoundError(distribution)
    return metadata.version(distribution)
