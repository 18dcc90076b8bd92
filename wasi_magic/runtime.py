"""Run components in-process with Wasmtime's Python embedding.

One :class:`Runtime` holds a Wasmtime engine, a linker with WASI Preview 2,
and two caches of compiled components: in memory (a re-run costs only a new
store and instance) and on disk (a new kernel deserializes instead of
compiling). Each run gets a fresh :class:`wasmtime.Store` and instance, so
nothing a guest does survives into the next run.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import heapq
import importlib.metadata
import itertools
import os
import platform
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .builder import Artifact, default_cache
from .cache import Cache, file_sha256
from .capabilities import Capabilities
from .errors import RuntimeFailure
from .limits import DEFAULT_TIMEOUT, Limits
from .output import DEFAULT_LIMIT, OutputSink, TextCallback, format_size

try:
    import wasmtime
    from wasmtime import component as wcomponent
except ImportError:  # pragma: no cover - exercised by the install-hint test
    wasmtime = None  # type: ignore[assignment]
    wcomponent = None  # type: ignore[assignment]

RUN_EXPORT = "wasi:cli/run@0.2.9"
#: Compilers Wasmtime offers: Winch (baseline, fast to compile) and Cranelift (optimizing).
STRATEGIES = ("winch", "cranelift")
_WINCH = 2  # wasmtime_strategy_t: AUTO=0, CRANELIFT=1, WINCH=2


def _require_wasmtime() -> None:
    if wasmtime is None:
        raise RuntimeFailure("The wasmtime package is not installed. Install it with: "
                             "pip install 'wasmtime==50.*'")


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
    #: The limits the run had, and what it used of them.
    limits: Limits | None = None
    fuel_used: int | None = None
    #: True if an output stream was cut at ``limits.max_output``.
    truncated: bool = False
    #: A note when a limit (e.g. memory) explains the guest's failure.
    limit_note: str | None = None

    @property
    def ok(self) -> bool:
        """True if the guest finished with status 0."""
        return self.status == 0 and self.trap is None

    def __repr__(self) -> str:
        out = self.stdout if len(self.stdout) < 60 else self.stdout[:57] + "..."
        extra = f", trap={self.trap!r}" if self.trap else ""
        return (f"RunResult(status={self.status}, stdout={out!r}, "
                f"stderr={len(self.stderr)} chars{extra}, run_seconds={self.run_seconds:.4f})")


class _Flavor:
    """One engine configuration (with or without fuel metering) and its caches."""

    def __init__(self, strategy: str, fuel: bool) -> None:
        config = wasmtime.Config()
        # Epoch interruption lets a timer (or an interrupt) stop a running guest.
        config.epoch_interruption = True
        config.consume_fuel = fuel
        self.strategy = strategy
        if strategy == "winch":
            # Winch compiles a Python component ~4x faster than Cranelift. The
            # Python API does not expose it yet; fall back to the default if the
            # C API refuses.
            try:
                wasmtime._ffi.wasmtime_config_strategy_set(config.ptr(), _WINCH)
            except Exception:  # noqa: BLE001
                self.strategy = "cranelift"
        self.engine = wasmtime.Engine(config)
        self.linker = wcomponent.Linker(self.engine)
        self.linker.add_wasip2()
        self.components: dict[str, Any] = {}
        version = importlib.metadata.version("wasmtime")
        self.tag = (f"wasmtime-{version}-{self.strategy}-epoch{'-fuel' if fuel else ''}-"
                    f"{platform.machine()}")


class Runtime:
    """A Wasmtime engine with WASI Preview 2 and caches of compiled components.

    Components run on a plain engine; runs with ``fuel`` use a second engine
    that meters fuel (its compiled code differs, so it has its own caches).
    """

    def __init__(self, *, strategy: str = "winch", cache: Cache | None = None) -> None:
        _require_wasmtime()
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
        self._flavors = {False: _Flavor(strategy, fuel=False)}
        plain = self._flavors[False]
        self.strategy = plain.strategy
        self.engine = plain.engine
        self.linker = plain.linker
        self.tag = plain.tag
        self._cache = cache
        self._lock = threading.RLock()

    @property
    def cache(self) -> Cache:
        """The on-disk cache (the default one unless given)."""
        return self._cache if self._cache is not None else default_cache()

    def _flavor(self, fuel: bool) -> _Flavor:
        with self._lock:
            if fuel not in self._flavors:
                self._flavors[fuel] = _Flavor(self.strategy, fuel)
            return self._flavors[fuel]

    def forget(self) -> None:
        """Drop compiled components held in memory."""
        with self._lock:
            for flavor in self._flavors.values():
                flavor.components.clear()

    def component(self, artifact: Artifact | str | os.PathLike[str], *,
                  fuel: bool = False) -> tuple[Any, float, str]:
        """The compiled component for ``artifact``: ``(component, seconds, how)``.

        ``how`` is 'memory', 'deserialized' (from the disk cache) or 'compiled'.
        """
        started = time.perf_counter()
        flavor = self._flavor(fuel)
        if isinstance(artifact, Artifact):
            path, digest = artifact.path, artifact.sha256
        else:
            path = Path(artifact)
            try:
                digest = _file_digest(path)
            except OSError as exc:
                raise RuntimeFailure(f"Cannot read {str(path)!r}: {exc.strerror or exc}.") from None
        with self._lock:
            found = flavor.components.get(digest)
            if found is not None:
                return found, time.perf_counter() - started, "memory"
            section = f"compiled/{flavor.tag}"
            entry = self.cache.get(section, digest, ".cwasm")
            how = "deserialized"
            component = None
            if entry is not None:
                try:
                    component = wcomponent.Component.deserialize_file(flavor.engine, str(entry.path))
                except wasmtime.WasmtimeError:
                    self.cache.discard(section, digest, ".cwasm")
            if component is None:
                how = "compiled"
                component = _compile(flavor.engine, path)
                try:
                    self.cache.put_bytes(section, digest, ".cwasm", bytes(component.serialize()),
                                         {"source": str(path)})
                except wasmtime.WasmtimeError:
                    pass
            flavor.components[digest] = component
            return component, time.perf_counter() - started, how

    def run(
        self,
        artifact: Artifact | str | os.PathLike[str],
        capabilities: Capabilities | None = None,
        *,
        stdout: TextCallback | None = None,
        stderr: TextCallback | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        output_limit: int = DEFAULT_LIMIT,
        fuel: int | None = None,
        max_memory: int | None = None,
        limits: Limits | None = None,
    ) -> RunResult:
        """Run a ``wasi:cli`` command component with exactly ``capabilities``.

        ``stdout``/``stderr`` receive text as the guest writes it (from
        Wasmtime's I/O thread). Limits: ``timeout`` in wall-clock seconds
        (None or 0: none), ``fuel`` units, ``max_memory`` bytes of linear
        memory, ``output_limit`` bytes kept per stream — or all of them as
        ``limits``. Guest failures and limits are reported in the result, not
        raised. An interrupt (SIGINT, the notebook's Interrupt button) stops
        the guest at once and raises :class:`KeyboardInterrupt` afterwards.
        """
        if limits is None:
            limits = Limits(timeout=timeout or None, fuel=fuel, max_memory=max_memory,
                            max_output=output_limit)
        caps = capabilities if capabilities is not None else Capabilities()
        name = artifact.name if isinstance(artifact, Artifact) else Path(artifact).name
        flavor = self._flavor(bool(limits.fuel))
        component, compile_seconds, how = self.component(artifact, fuel=bool(limits.fuel))
        out = OutputSink("stdout", stdout, limits.max_output)
        err = OutputSink("stderr", stderr, limits.max_output)
        result = RunResult(status=0, stdout="", stderr="", capabilities=caps,
                           artifact=artifact.path if isinstance(artifact, Artifact) else Path(artifact),
                           compile_seconds=compile_seconds, steps={"component": how},
                           limits=limits)
        watch = _Watch(flavor.engine, limits.timeout)
        with self._lock, tempfile.TemporaryDirectory(prefix="wasi-magic-stdin-") \
                if caps.stdin is not None else _nothing() as stdin_dir:
            store = wasmtime.Store(flavor.engine)
            store.set_wasi(wasi_config(caps, name, out.write, err.write, stdin_dir))
            if limits.max_memory:
                store.set_limits(memory_size=limits.max_memory)
            if limits.fuel:
                store.set_fuel(limits.fuel)
            started = time.perf_counter()
            try:
                watch.attach(store)
                with _interrupt_guard(watch):
                    instance = flavor.linker.instantiate(store, component)
                    result.instantiate_seconds = time.perf_counter() - started
                    func = _run_function(instance, store, name)
                    watch.start()
                    started = time.perf_counter()
                    try:
                        value = func(store)
                        func.post_return(store)
                        result.status = 0 if getattr(value, "tag", "ok") == "ok" else 1
                    except wasmtime.ExitTrap as exc:
                        result.status = exc.code
                    except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
                        result.status = 1
                        result.trap = _describe_trap(exc, watch, limits,
                                                     time.perf_counter() - started)
                    result.run_seconds = time.perf_counter() - started
                    if limits.fuel:
                        result.fuel_used = limits.fuel - store.get_fuel()
            except wasmtime.WasmtimeError as exc:
                raise RuntimeFailure(f"Wasmtime could not instantiate {name}: "
                                     f"{str(exc).strip().splitlines()[0]}") from None
            finally:
                watch.cancel()
                # Drop the store now, while Python is alive: its output streams
                # call back into Python when they close.
                del store
        out.close()
        err.close()
        result.stdout, result.stderr = out.text(), err.text()
        result.truncated = out.truncated or err.truncated
        if limits.max_memory and result.status and "MemoryError" in result.stderr[-2000:]:
            result.limit_note = (f"the guest ran out of memory under --max-memory "
                                 f"{format_size(limits.max_memory)}")
        if watch.interrupted:
            raise KeyboardInterrupt(f"guest interrupted after {result.run_seconds:.2f} s")
        return result


def wasi_config(caps: Capabilities, name: str, stdout: Callable[[bytes], Any],
                stderr: Callable[[bytes], Any], stdin_dir: str | None = None) -> Any:
    """A :class:`wasmtime.WasiConfig` granting exactly ``caps`` and nothing else.

    ``name`` is ``argv[0]``; ``stdout``/``stderr`` receive the guest's bytes
    (returning None, which Wasmtime reads as "all written"); ``--stdin-text``
    is written to a file in ``stdin_dir``. Used for components, Preview 1
    modules and typed worlds alike.
    """
    config = wasmtime.WasiConfig()
    config.argv = [name, *caps.args]
    config.env = [list(pair) for pair in caps.env]
    for grant in caps.dirs:
        config.preopen_dir(str(grant.host), grant.guest, not grant.read_only)
    if caps.stdin_file is not None:
        config.stdin_file = str(caps.stdin_file)
    elif caps.stdin is not None and stdin_dir is not None:
        path = Path(stdin_dir, "stdin")
        path.write_bytes(caps.stdin)
        config.stdin_file = str(path)
    config.stdout_custom = stdout
    config.stderr_custom = stderr
    return config


#: sha256 of component files run by path, keyed by what ``stat`` says of the file.
_DIGESTS: dict[tuple[int, ...], str] = {}
_DIGESTS_MAX = 256


def _file_digest(path: Path) -> str:
    """The sha256 of ``path``, hashed again only when the file changed.

    Hashing a 20 MiB Python component takes ~15 ms, several times longer than
    running it, so re-running ``run("x.wasm")`` remembers the digest per
    device, inode, size, modification and change time (as make and git do).
    """
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = _DIGESTS.get(key)
    if digest is None:
        digest = file_sha256(path)
        if len(_DIGESTS) >= _DIGESTS_MAX:
            _DIGESTS.clear()
        _DIGESTS[key] = digest
    return digest


def _run_function(instance: Any, store: Any, name: str) -> Any:
    run_index = instance.get_export_index(store, RUN_EXPORT)
    if run_index is None:
        raise RuntimeFailure(f"{name} does not export {RUN_EXPORT}: it is not a wasi:cli command.")
    return instance.get_func(store, instance.get_export_index(store, "run", run_index))


def _compile(engine: Any, path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RuntimeFailure(f"Cannot read {str(path)!r}: {exc.strerror or exc}.") from None
    if data[:4] != b"\0asm":
        raise RuntimeFailure(f"{str(path)!r} is not a WebAssembly binary.")
    if data[4:8] == b"\x01\x00\x00\x00":
        raise RuntimeFailure(
            f"{str(path)!r} is a core WebAssembly module (WASI Preview 1), "
            f"not a component. This runtime runs Preview 2 components.")
    try:
        return wcomponent.Component(engine, data)
    except wasmtime.WasmtimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid component"
        raise RuntimeFailure(f"Wasmtime cannot load {str(path)!r}: {first}") from None


class _Watch:
    """Decides, for one store, whether an epoch tick stops its guest.

    Timers and interrupts bump the engine's epoch, which every store on that
    engine notices. Each store gets a deadline callback that traps only if
    *its* run timed out or was interrupted, and otherwise lets the guest carry
    on, so runs on other threads (the panel, a server) are not disturbed.
    """

    def __init__(self, engine: Any, timeout: float | None) -> None:
        self.engine = engine
        self.timed_out = False
        self.interrupted = False
        self._timeout = timeout
        self._alarm: list[Any] | None = None
        self._callback: Any = None

    def attach(self, store: Any) -> None:
        """Install the deadline callback on ``store`` and arm it for the next tick."""
        from wasmtime import _bindings, _ffi as ffi
        raw = _bindings._wasmtime_store_epoch_deadline_callback
        callback_type, finalizer_type = raw.argtypes[1], raw.argtypes[3]

        def on_deadline(context: Any, data: Any, delta: Any, kind: Any) -> int:
            if self.timed_out or self.interrupted:
                error = ffi.wasmtime_error_new(b"wasi-magic: guest stopped")
                return ctypes.cast(error, ctypes.c_void_p).value or 0
            delta[0] = 1
            kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
            return 0

        self._callback = callback_type(on_deadline)  # kept alive as long as the store
        ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), self._callback, None,
                                                   finalizer_type())
        store.set_epoch_deadline(1)

    def _expire(self) -> None:
        self.timed_out = True
        self.engine.increment_epoch()

    def interrupt(self) -> None:
        self.interrupted = True
        self.engine.increment_epoch()

    def start(self) -> None:
        if self._timeout:
            self._alarm = _alarms.add(self._timeout, self._expire)

    def cancel(self) -> None:
        if self._alarm is not None:
            _alarms.cancel(self._alarm)


class _Alarms:
    """One daemon thread that calls functions at deadlines.

    A :class:`threading.Timer` per run would start a thread per run (~0.4 ms).
    """

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._queue: list[list[Any]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, delay: float, action: Callable[[], None]) -> list[Any]:
        """Call ``action`` in ``delay`` seconds unless cancelled; returns a handle."""
        entry = [time.monotonic() + delay, next(self._order), action, True]
        with self._ready:
            heapq.heappush(self._queue, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="wasi-magic-alarms",
                                                daemon=True)
                self._thread.start()
            self._ready.notify()
        return entry

    @staticmethod
    def cancel(entry: list[Any]) -> None:
        """Make sure the action of ``entry`` is not called (if it has not been yet)."""
        entry[3] = False

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not self._queue or not self._queue[0][3]:
                    if self._queue:
                        heapq.heappop(self._queue)  # a cancelled alarm
                    else:
                        self._ready.wait()
                wait = self._queue[0][0] - time.monotonic()
                if wait > 0:
                    self._ready.wait(wait)
                    continue
                entry = heapq.heappop(self._queue)
            if entry[3]:
                entry[2]()


_alarms = _Alarms()


class _Interrupts:
    """Turns SIGINT into an epoch bump while a guest runs on the main thread.

    A Python signal handler cannot run while the main thread is inside
    Wasmtime. During a run, SIGINT's wakeup fd points at a pipe; a watchdog
    thread reads it and interrupts the guest's engine. The Python-level
    handler only records the interrupt; :meth:`Runtime.run` raises
    KeyboardInterrupt once the store is cleaned up.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._active: _Watch | None = None
        self._thread = threading.Thread(target=self._serve, name="wasi-magic-interrupts",
                                        daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data = os.read(self._read, 64)
            except OSError:  # pragma: no cover
                return
            watch = self._active
            if watch is not None and signal.SIGINT in data:
                watch.interrupt()

    @contextlib.contextmanager
    def guard(self, watch: _Watch) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        def record(signum: int, frame: Any) -> None:
            watch.interrupted = True
        previous = signal.signal(signal.SIGINT, record)
        old_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._active = watch
        try:
            yield
        finally:
            self._active = None
            signal.set_wakeup_fd(old_fd)
            signal.signal(signal.SIGINT, previous)


_interrupts: _Interrupts | None = None


def _interrupt_guard(watch: _Watch) -> Any:
    """Route SIGINT to ``watch`` while a guest runs (created on first use)."""
    global _interrupts
    if _interrupts is None:
        _interrupts = _Interrupts()
    return _interrupts.guard(watch)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _describe_trap(exc: Exception, watch: _Watch, limits: Limits, seconds: float) -> str:
    """A short message: which limit stopped the guest, or the trap and its top frames."""
    text = str(exc)
    if watch.interrupted:
        return f"interrupted after {seconds:.2f} s"
    if watch.timed_out:
        return f"stopped by the time limit: ran {seconds:.1f} s of --timeout {limits.timeout:g} s"
    if "all fuel consumed" in text and limits.fuel:
        return f"stopped by the fuel limit: used all {limits.fuel:,} units of --fuel"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    cause = next((line for line in reversed(lines) if line.startswith("wasm trap:")), None)
    frames = [line for line in lines if line[:1].isdigit()][:4]
    head = (cause or (lines[0] if lines else type(exc).__name__)).removeprefix("wasm trap: ")
    if limits.max_memory and "memory" in text.lower():
        head += f" (under --max-memory {format_size(limits.max_memory)})"
    return "guest trapped: " + head + "".join("\n    " + f for f in frames)


_default: Runtime | None = None
_default_lock = threading.Lock()


def default_runtime() -> Runtime:
    """The process-wide runtime, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Runtime()
        return _default


def run(artifact: Artifact | str | os.PathLike[str], capabilities: Capabilities | None = None,
        **options: Any) -> RunResult:
    """Run a component with the default runtime; see :meth:`Runtime.run`."""
    return default_runtime().run(artifact, capabilities, **options)


@atexit.register
def _drain_streams() -> None:
    # Wasmtime closes a store's output streams on its I/O threads, calling back
    # into Python; at interpreter exit that would abort the process with a Rust
    # panic. Let those callbacks finish while Python is still alive.
    if wasmtime is None:
        return
    gc.collect()
    try:
        from wasmtime._wasi import CUSTOM_OUTPUTS
    except ImportError:  # pragma: no cover
        return
    deadline = time.monotonic() + 1.0
    while getattr(CUSTOM_OUTPUTS, "handles", None) and time.monotonic() < deadline:
        time.sleep(0.01)
