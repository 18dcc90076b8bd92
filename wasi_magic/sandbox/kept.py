"""Worker side of a session: one kept store and instance of the session component.

The sandbox worker holds one :class:`KeptInstance` per session. Capabilities
and the memory limit are the store's, fixed when the session starts; the time
limit, fuel and output cap are set again before every cell:

- a new :class:`~.store.Deadline` per cell (the store's epoch callback reads
  the current one);
- in a session that meters fuel (chosen at its start: metering makes guest code
  ~2.3x slower, measured), fuel refilled to the cell's ``--fuel``, or to the most
  Wasmtime counts for a cell without one;
- the store's stdout/stderr go through a trampoline to this cell's sinks.

A trap (a limit, an interrupt, ``os._exit``) poisons a component instance:
the session ends, and the reply says so and why.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any, Callable

from ..capabilities import Capabilities
from ..errors import RuntimeFailure
from ..limits import MAX_FUEL, Limits
from ..output import OutputSink, format_size
from . import shim
from .store import Deadline, describe_trap, new_store

try:
    import wasmtime
except ImportError:  # pragma: no cover - the worker needs wasmtime to start at all
    wasmtime = None  # type: ignore[assignment]

#: The one function the session world exports.
RUN_CELL = "run-cell"
#: How long instantiating a session may take (it is a pre-initialized snapshot: ~ms).
START_TIMEOUT = 30.0
#: Sessions one worker keeps at most (~10 MiB each): a Python caller that never closes
#: its sessions meets a clear error, not an out-of-memory worker.
MAX_KEPT = 64

Send = Callable[[str, str], None]


class KeptInstance:
    """One session's store and instance, kept between cells."""

    def __init__(self, runtime: Any, target: Any, caps: Capabilities, max_memory: int | None,
                 name: str, fuel: bool = False) -> None:
        self.caps = caps
        self.max_memory = max_memory
        #: Whether the store meters fuel (then every cell may set --fuel).
        self.fuel = fuel
        self.cells = 0
        #: Why the instance can no longer run cells (None while it can).
        self.ended: str | None = None
        component, self._engine, linker, self.compile_seconds, self.how = runtime.loaded(
            target, fuel=fuel, kept=True)
        self._sinks: tuple[OutputSink | None, OutputSink | None] = (None, None)
        self._deadline: Deadline | None = None
        self._stdin_dir = tempfile.TemporaryDirectory(prefix="wasi-magic-stdin-") \
            if caps.stdin is not None else None
        limits = Limits(timeout=START_TIMEOUT, fuel=MAX_FUEL if fuel else None,
                        max_memory=max_memory)
        self._store = new_store(self._engine, caps, limits, name, self._write_out,
                                self._write_err,
                                self._stdin_dir.name if self._stdin_dir is not None else None)
        shim.on_epoch_deadline(self._store, self._stop)
        started = time.perf_counter()
        self._deadline = Deadline(self._engine, START_TIMEOUT)
        try:
            with self._deadline:
                instance = linker.instantiate(self._store, component)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            self.close()
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            if max_memory and "memory" in text.lower():
                raise RuntimeFailure(f"the session needs more than --max-memory "
                                     f"{format_size(max_memory)} just to start: {first}") from None
            raise RuntimeFailure(f"Wasmtime could not start the session: {first}") from None
        finally:
            self._deadline = None
        self.instantiate_seconds = time.perf_counter() - started
        index = instance.get_export_index(self._store, RUN_CELL)
        if index is None:
            raise RuntimeFailure(f"the session component does not export {RUN_CELL}")
        self._func = instance.get_func(self._store, index)

    # The store's callbacks, fixed at its creation: they follow the current cell.
    def _stop(self) -> bool:
        deadline = self._deadline
        return deadline is not None and deadline.fired

    def _write_out(self, data: bytes) -> None:
        sink = self._sinks[0]
        if sink is not None:
            sink.write(data)

    def _write_err(self, data: bytes) -> None:
        sink = self._sinks[1]
        if sink is not None:
            sink.write(data)

    def run(self, source: str, limits: Limits, stdout: Callable[[str], None],
            stderr: Callable[[str], None]) -> dict[str, Any]:
        """Run one cell under ``limits``; the result's fields, plus ``alive`` and
        ``interrupted``."""
        if self.ended is not None:
            raise RuntimeFailure(f"this session has ended ({self.ended})")
        if limits.fuel and not self.fuel:
            raise RuntimeFailure("this session does not meter fuel")
        out = OutputSink("stdout", stdout, limits.max_output)
        err = OutputSink("stderr", stderr, limits.max_output)
        fuel = limits.fuel or MAX_FUEL
        if self.fuel:
            self._store.set_fuel(fuel)
        self._store.set_epoch_deadline(1)
        deadline = Deadline(self._engine, limits.timeout)
        reply: dict[str, Any] = {"status": 0, "trap": None, "fuel_used": None}
        self._sinks, self._deadline = (out, err), deadline
        self.cells += 1
        started = time.perf_counter()
        try:
            with deadline:
                try:
                    reply["status"] = int(self._func(self._store, source))
                    self._func.post_return(self._store)
                except wasmtime.ExitTrap as exc:
                    reply["status"] = exc.code
                    self.ended = f"the cell exited the interpreter with status {exc.code}"
                except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
                    reply["status"] = 1
                    reply["trap"] = describe_trap(exc, deadline, limits,
                                                  time.perf_counter() - started)
                    self.ended = reply["trap"].splitlines()[0]
        finally:
            reply["run_seconds"] = time.perf_counter() - started
            self._sinks, self._deadline = (None, None), None
        if limits.fuel:
            reply["fuel_used"] = fuel - self._store.get_fuel()
        out.close()
        err.close()
        reply.update(stdout=out.text(), stderr=err.text(), truncated=out.truncated or err.truncated,
                     alive=self.ended is None, interrupted=deadline.interrupted, ended=self.ended,
                     cell=self.cells)
        if self.max_memory and reply["status"] and "MemoryError" in reply["stderr"][-2000:]:
            reply["limit_note"] = (f"the guest ran out of memory under --max-memory "
                                   f"{format_size(self.max_memory)}")
        if self.ended is not None:
            self.close()
        return reply

    def close(self) -> None:
        """Drop the store and instance (the session's state is gone)."""
        self.__dict__.pop("_func", None)
        self.__dict__.pop("_store", None)
        if self._stdin_dir is not None:
            self._stdin_dir.cleanup()
            self._stdin_dir = None
