"""The private wasmtime-py calls of ``wasi_magic.sandbox.shim``, each tested on its own.

If a wasmtime-py upgrade moves one of them, these tests say which.
"""

from __future__ import annotations

import gc
import threading
import time

import wasmtime

from wasi_magic.sandbox import shim

LOOP = '(module (func (export "spin") (loop br 0)))'
HELLO = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "hi\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 8)) (i32.store (i32.const 4) (i32.const 3))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))))"""


def epoch_engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.epoch_interruption = True
    return wasmtime.Engine(config)


def test_use_winch_selects_a_compiler_that_runs_code() -> None:
    config = wasmtime.Config()
    assert shim.use_winch(config) is True
    engine = wasmtime.Engine(config)
    module = wasmtime.Module(engine, wasmtime.wat2wasm(
        '(module (func (export "add") (param i32 i32) (result i32) '
        'local.get 0 local.get 1 i32.add))'))
    store = wasmtime.Store(engine)
    add = wasmtime.Instance(store, module, []).exports(store)["add"]
    assert add(store, 2, 40) == 42


def test_epoch_deadline_callback_continues_until_told_to_stop() -> None:
    engine = epoch_engine()
    store = wasmtime.Store(engine)
    calls = []
    stop = threading.Event()

    def decide() -> bool:
        calls.append(stop.is_set())
        return calls[-1]

    shim.on_epoch_deadline(store, decide)
    spin = wasmtime.Instance(store, wasmtime.Module(engine, wasmtime.wat2wasm(LOOP)), []) \
        .exports(store)["spin"]

    def ticks() -> None:
        for _ in range(5):  # ticks the guest survives
            time.sleep(0.02)
            engine.increment_epoch()
        stop.set()
        while thread_alive[0]:
            engine.increment_epoch()
            time.sleep(0.02)

    thread_alive = [True]
    ticker = threading.Thread(target=ticks)
    ticker.start()
    try:
        spin(store)
    except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
        trap = str(exc)
    else:  # pragma: no cover - the loop never returns on its own
        trap = ""
    finally:
        thread_alive[0] = False
        ticker.join()
    assert "guest stopped" in trap
    # Asked at the ticks before the stop too, and the guest went on then.
    assert calls[-1] is True and calls.count(False) >= 1


def test_output_callbacks_are_released_after_the_store_is_dropped() -> None:
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    seen: list[bytes] = []
    write = seen.append
    store = wasmtime.Store(engine)
    config = wasmtime.WasiConfig()
    config.stdout_custom = write
    store.set_wasi(config)
    handles = shim.output_handles([write])
    assert handles, "wasmtime-py no longer keeps custom outputs where the shim looks"
    assert shim.outputs_pending() >= len(handles)
    instance = linker.instantiate(store, wasmtime.Module(engine, wasmtime.wat2wasm(HELLO)))
    instance.exports(store)["_start"](store)
    del instance, store, config
    gc.collect()
    assert shim.wait_outputs_released(handles, limit=5.0)
    assert b"".join(seen) == b"hi\n"


def test_live_stores_are_closed_and_release_their_outputs() -> None:
    """What the kernel's exit does with a store the user's code still holds: closes it, so
    that its output callbacks are released while Python is alive."""
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    printed: list[bytes] = []
    write = printed.append
    config = wasmtime.WasiConfig()
    config.stdout_custom = write
    config.stderr_custom = write
    store = wasmtime.Store(engine)
    store.set_wasi(config)
    linker.instantiate(store, wasmtime.Module(engine, wasmtime.wat2wasm(HELLO))) \
        .exports(store)["_start"](store)
    handles = shim.output_handles([write])
    assert len(handles) == 2 and shim.outputs_pending() >= 2
    assert shim.close_live_stores() >= 1
    assert shim.wait_outputs_released(handles, limit=5.0)
    assert b"".join(printed) == b"hi\n"
    assert shim.close_live_stores() >= 1  # a closed store may be closed again: a no-op


def test_a_process_exits_cleanly_with_a_store_still_held(tmp_path) -> None:
    """Lesson 03's kernel: a global store with custom outputs at exit, and one dropped just
    before. Without the exit handler closing the first (it waited for it in vain), Wasmtime's I/O threads call back
    into the finalizing interpreter: a Rust panic ("panic in a function that cannot
    unwind"), in about half of the exits. Ten exits, none panics."""
    import subprocess
    import sys

    script = tmp_path / "held.py"
    script.write_text(f"""
import wasmtime
engine = wasmtime.Engine()
linker = wasmtime.Linker(engine)
linker.define_wasi()
printed = []
config = wasmtime.WasiConfig()
config.stdout_custom = printed.append
store = wasmtime.Store(engine)
store.set_wasi(config)
linker.instantiate(store, wasmtime.Module(engine, wasmtime.wat2wasm({HELLO!r})))\\
    .exports(store)["_start"](store)
dropped = wasmtime.Store(engine)
other = wasmtime.WasiConfig()
other.stdout_custom = printed.append
dropped.set_wasi(other)
del dropped
import wasi_magic.runtime  # after the stores, as in lesson 03 (its exit handler with it)
print(b"".join(printed).decode(), end="")
""")
    for _ in range(10):
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "hi\n" and "panic" not in done.stderr, done.stderr
