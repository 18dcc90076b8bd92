"""Wasmtime's own compilation cache, filled ahead of time for notebooks that embed wasmtime.

A notebook that uses wasmtime-py's API directly (lesson 03) makes its engine from
``wasmtime.Config()`` with ``config.cache = True``: wasmtime then keeps every
compiled module and component on disk (``~/.cache/wasmtime`` on Linux), keyed by
the bytes, the compiler's settings and wasmtime's version. :func:`fill` compiles
a component with an engine made exactly so, hence with the same key, so that the
notebook's own compile of the same bytes later is a cache hit.

Wasmtime trusts that folder: what it finds there is machine code it maps and runs.
It lives in the user's home and only they should be able to write it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import wasmtime


def notebook_engine() -> "wasmtime.Engine":
    """An engine made as the lessons make theirs: ``Config()``, ``cache = True``, nothing else
    (any other setting changes the cache key, and the notebook's compile would miss)."""
    import wasmtime
    config = wasmtime.Config()
    config.cache = True
    return wasmtime.Engine(config)


def fill(engine: "wasmtime.Engine", component: str | Path) -> None:
    """Compile the component file ``component`` with ``engine``, which stores it in
    wasmtime's cache (a no-op if it is there already)."""
    import wasmtime
    from wasmtime import component as components

    from .errors import RuntimeFailure
    try:
        components.Component.from_file(engine, str(component))
    except wasmtime.WasmtimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
        raise RuntimeFailure(f"wasmtime could not compile {str(component)!r}: {first}") from None
