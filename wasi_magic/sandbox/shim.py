"""Every call into wasmtime-py's private modules, in one place.

wasmtime-py 50 does not expose three things wasi-magic needs, so they are
reached through its ctypes layer (``wasmtime._ffi``, ``wasmtime._bindings``,
``wasmtime._wasi``). A wasmtime-py upgrade that moves them breaks this module
and ``tests/test_shim.py``, nothing else.

- :func:`use_winch`: select Wasmtime's baseline compiler, Winch
  (``Config.strategy`` accepts only auto/cranelift).
- :func:`use_pooling`: Wasmtime's pooling instance allocator, whose memory slots
  stay resident between instances (a fresh instance per run then takes no page
  faults on its memory image).
- :func:`on_epoch_deadline`: a per-store epoch-deadline callback, so that one
  store's timer or interrupt never stops another store on the same engine.
- :func:`outputs_pending` / :func:`wait_outputs_released`: custom stdout/stderr
  callbacks are finalized by Wasmtime's I/O threads after a store is dropped;
  a callback into a finalizing interpreter aborts the process with a Rust panic.
  :func:`close_live_stores`: at exit, the stores the program still holds are closed
  while Python is alive, so that their callbacks are released before it finalizes.
- :func:`store_data`: a store's data, seen from a component host function (the
  HTTP grants of the run that called it).
"""

from __future__ import annotations

import ctypes
import gc
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

#: wasmtime_strategy_t: AUTO=0, CRANELIFT=1, WINCH=2.
_WINCH = 2


def use_winch(config: Any) -> bool:
    """Make ``config`` (a :class:`wasmtime.Config`) compile with Winch; False if refused."""
    try:
        from wasmtime import _ffi
        _ffi.wasmtime_config_strategy_set(config.ptr(), _WINCH)
    except Exception:  # noqa: BLE001 - another wasmtime-py layout: keep the default compiler
        return False
    return True


@dataclass(frozen=True)
class Pool:
    """Engine-wide totals of the pooling allocator, and what each slot may hold."""

    memories: int = 8
    tables: int = 32
    core_instances: int = 200
    component_instances: int = 32
    memories_per_module: int = 4
    tables_per_module: int = 16
    table_elements: int = 100_000
    #: Bytes of each memory slot kept resident (reset in place, not unmapped) after use.
    keep_resident: int = 48 << 20
    max_memory_size: int = 4 << 30  # wasm32's own limit: the pool adds no limit of its own
    #: Fiber stacks (for async calls, which wasmtime-py never makes): the fewest allowed.
    stacks: int = 1


def use_pooling(config: Any, pool: Pool) -> bool:
    """Make ``config`` allocate instances from a pool sized by ``pool``; False if refused."""
    try:
        from wasmtime import _ffi
        p = _ffi.wasmtime_pooling_allocation_config_new()
        _ffi.wasmtime_pooling_allocation_config_total_memories_set(p, pool.memories)
        _ffi.wasmtime_pooling_allocation_config_total_tables_set(p, pool.tables)
        _ffi.wasmtime_pooling_allocation_config_total_core_instances_set(p, pool.core_instances)
        _ffi.wasmtime_pooling_allocation_config_total_component_instances_set(
            p, pool.component_instances)
        _ffi.wasmtime_pooling_allocation_config_max_memories_per_module_set(
            p, pool.memories_per_module)
        _ffi.wasmtime_pooling_allocation_config_max_memories_per_component_set(
            p, pool.memories_per_module)
        _ffi.wasmtime_pooling_allocation_config_max_tables_per_module_set(p, pool.tables_per_module)
        _ffi.wasmtime_pooling_allocation_config_max_tables_per_component_set(
            p, pool.tables_per_module)
        _ffi.wasmtime_pooling_allocation_config_table_elements_set(p, pool.table_elements)
        _ffi.wasmtime_pooling_allocation_config_max_memory_size_set(p, pool.max_memory_size)
        _ffi.wasmtime_pooling_allocation_config_total_stacks_set(p, pool.stacks)
        _ffi.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(
            p, pool.keep_resident)
        _ffi.wasmtime_pooling_allocation_strategy_set(config.ptr(), p)
        _ffi.wasmtime_pooling_allocation_config_delete(p)
    except Exception:  # noqa: BLE001 - another wasmtime-py layout: keep on-demand allocation
        return False
    return True


def on_epoch_deadline(store: Any, stop: Callable[[], bool]) -> Any:
    """Call ``stop()`` each time ``store`` reaches its epoch deadline.

    ``stop()`` returning True traps the guest (``wasm trap: … guest stopped``);
    False lets it run until the next epoch tick. The deadline is armed one tick
    ahead. Returns the ctypes callback, which must stay referenced as long as
    the store lives (it is also kept on the store object).
    """
    from wasmtime import _bindings, _ffi

    raw = _bindings._wasmtime_store_epoch_deadline_callback
    callback_type, finalizer_type = raw.argtypes[1], raw.argtypes[3]

    def on_deadline(context: Any, data: Any, delta: Any, kind: Any) -> int:
        if stop():
            error = _ffi.wasmtime_error_new(b"wasi-magic: guest stopped")
            return ctypes.cast(error, ctypes.c_void_p).value or 0
        delta[0] = 1
        kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
        return 0

    callback = callback_type(on_deadline)
    _ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), callback, None, finalizer_type())
    store.set_epoch_deadline(1)
    store._wasi_magic_deadline = callback  # lives exactly as long as the store
    return callback


def _custom_outputs() -> Any:
    try:
        from wasmtime._wasi import CUSTOM_OUTPUTS
    except ImportError:  # pragma: no cover - another wasmtime-py layout
        return None
    return CUSTOM_OUTPUTS


def outputs_pending() -> int:
    """How many custom output callbacks Wasmtime still holds."""
    outputs = _custom_outputs()
    return len(getattr(outputs, "handles", ())) if outputs is not None else 0


def output_handles(callbacks: Iterable[Callable[[bytes], Any]]) -> set[int]:
    """The handles under which Wasmtime holds ``callbacks`` (compared by identity)."""
    outputs = _custom_outputs()
    if outputs is None:
        return set()
    wanted = list(callbacks)
    return {index for index, value in list(outputs.handles.items())
            if any(value is callback for callback in wanted)}


def close_live_stores() -> int:
    """Close every :class:`wasmtime.Store` still alive; how many were open.

    For interpreter exit only, once the program's own code has finished: a store the
    program still references (a notebook's global) would otherwise be dropped while the
    interpreter finalizes, and Wasmtime's I/O threads would call its output callbacks
    back into a dying interpreter (a Rust panic). Closed now, they are released while
    Python is alive. Objects that still refer to a closed store raise ValueError if used.
    """
    import wasmtime

    stores = [thing for thing in gc.get_objects() if isinstance(thing, wasmtime.Store)]
    for store in stores:
        store.close()
    return len(stores)


def wait_outputs_released(handles: set[int] | None = None, limit: float = 1.0) -> bool:
    """Wait (at most ``limit`` s) until Wasmtime let go of ``handles`` (all, if None)."""
    outputs = _custom_outputs()
    if outputs is None:
        return True
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        held = outputs.handles.keys()
        if not (held if handles is None else handles & held):
            return True
        time.sleep(0.001)
    return False


def store_data(context: Any) -> Any:
    """The ``data`` a store was created with, from the context a host function receives.

    wasmtime-py hands a component host function a ``StoreContext``, which has no
    ``data()`` of its own (``Store.data`` reads the same pointer).
    """
    from wasmtime import _ffi, _value

    raw = _ffi.wasmtime_context_get_data(context._context())
    return _value._unintern(raw) if raw else None
