"""Run components in-process with Wasmtime's Python embedding.

One :class:`Runtime` holds a Wasmtime engine, a linker with WASI Preview 2,
and two caches of compiled components: in memory (a re-run costs only a new
store and instance) and on disk (a new kernel deserializes instead of
compiling). Each run gets a fresh :class:`wasmtime.Store` and instance, so
nothing a guest does survives into the next run.
"""

from __future__ import annotations

import atexit
import gc
import importlib.metadata
import os
import platform
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .builder import Artifact, default_cache
from .cache import Cache, file_sha256
from .capabilities import Capabilities
from .errors import RuntimeFailure
from .output import DEFAULT_LIMIT, OutputSink, TextCallback

try:
    import wasmtime
    from wasmtime import component as wcomponent
except ImportError:  # pragma: no cover - exercised by the install-hint test
    wasmtime = None  # type: ignore[assignment]
    wcomponent = None  # type: ignore[assignment]

RUN_EXPORT = "wasi:cli/run@0.2.9"
#: Default wall-clock limit of one run, in seconds (0 disables it).
DEFAULT_TIMEOUT = 60.0
#: Compilers Wasmtime offers: Winch (baseline, fast to compile) and Cranelift (optimizing).
STRATEGIES = ("winch", "cranelift")
_WINCH = 2  # wasmtime_strategy_t: AUTO=0, CRANELIFT=1, WINCH=2
_FOREVER = 1 << 62


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

    @property
    def ok(self) -> bool:
        """True if the guest finished with status 0."""
        return self.status == 0 and self.trap is None

    def __repr__(self) -> str:
        out = self.stdout if len(self.stdout) < 60 else self.stdout[:57] + "..."
        extra = f", trap={self.trap!r}" if self.trap else ""
        return (f"RunResult(status={self.status}, stdout={out!r}, "
                f"stderr={len(self.stderr)} chars{extra}, run_seconds={self.run_seconds:.4f})")


class Runtime:
    """A Wasmtime engine with WASI Preview 2 and caches of compiled components."""

    def __init__(self, *, strategy: str = "winch", cache: Cache | None = None) -> None:
        _require_wasmtime()
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
        config = wasmtime.Config()
        # Epoch interruption lets a timer (or an interrupt) stop a running guest.
        config.epoch_interruption = True
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
        self._cache = cache
        self._components: dict[str, Any] = {}
        self._lock = threading.RLock()
        version = importlib.metadata.version("wasmtime")
        self.tag = f"wasmtime-{version}-{self.strategy}-epoch-{platform.machine()}"

    @property
    def cache(self) -> Cache:
        """The on-disk cache (the default one unless given)."""
        return self._cache if self._cache is not None else default_cache()

    def forget(self) -> None:
        """Drop compiled components held in memory."""
        with self._lock:
            self._components.clear()

    def component(self, artifact: Artifact | str | os.PathLike[str]) -> tuple[Any, float, str]:
        """The compiled component for ``artifact``: ``(component, seconds, how)``.

        ``how`` is 'memory', 'deserialized' (from the disk cache) or 'compiled'.
        """
        started = time.perf_counter()
        if isinstance(artifact, Artifact):
            path, digest = artifact.path, artifact.sha256
        else:
            path = Path(artifact)
            try:
                digest = file_sha256(path)
            except OSError as exc:
                raise RuntimeFailure(f"Cannot read {str(path)!r}: {exc.strerror or exc}.") from None
        with self._lock:
            found = self._components.get(digest)
            if found is not None:
                return found, time.perf_counter() - started, "memory"
            entry = self.cache.get(f"compiled/{self.tag}", digest, ".cwasm")
            how = "deserialized"
            component = None
            if entry is not None:
                try:
                    component = wcomponent.Component.deserialize_file(self.engine, str(entry.path))
                except wasmtime.WasmtimeError:
                    self.cache.discard(f"compiled/{self.tag}", digest, ".cwasm")
            if component is None:
                how = "compiled"
                component = self._compile(path)
                try:
                    self.cache.put_bytes(f"compiled/{self.tag}", digest, ".cwasm",
                                         bytes(component.serialize()), {"source": str(path)})
                except wasmtime.WasmtimeError:
                    pass
            self._components[digest] = component
            return component, time.perf_counter() - started, how

    def _compile(self, path: Path) -> Any:
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
            return wcomponent.Component(self.engine, data)
        except wasmtime.WasmtimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid component"
            raise RuntimeFailure(f"Wasmtime cannot load {str(path)!r}: {first}") from None

    def run(
        self,
        artifact: Artifact | str | os.PathLike[str],
        capabilities: Capabilities | None = None,
        *,
        stdout: TextCallback | None = None,
        stderr: TextCallback | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        output_limit: int = DEFAULT_LIMIT,
    ) -> RunResult:
        """Run a ``wasi:cli`` command component with exactly ``capabilities``.

        ``stdout``/``stderr`` receive text as the guest writes it (from
        Wasmtime's I/O thread). ``timeout`` is wall-clock seconds (None or 0:
        no limit). Guest failures are reported in the result, not raised.
        """
        caps = capabilities if capabilities is not None else Capabilities()
        name = artifact.name if isinstance(artifact, Artifact) else Path(artifact).name
        component, compile_seconds, how = self.component(artifact)
        out = OutputSink("stdout", stdout, output_limit)
        err = OutputSink("stderr", stderr, output_limit)
        result = RunResult(status=0, stdout="", stderr="", capabilities=caps,
                           artifact=artifact.path if isinstance(artifact, Artifact) else Path(artifact),
                           compile_seconds=compile_seconds, steps={"component": how})
        with self._lock, tempfile.TemporaryDirectory(prefix="wasi-magic-stdin-") \
                if caps.stdin is not None else _nothing() as stdin_dir:
            store = wasmtime.Store(self.engine)
            store.set_wasi(self._wasi_config(caps, name, out, err, stdin_dir))
            timer = None
            if timeout:
                store.set_epoch_deadline(1)
                timer = threading.Timer(timeout, self.engine.increment_epoch)
                timer.daemon = True
            else:
                store.set_epoch_deadline(_FOREVER)
            started = time.perf_counter()
            try:
                instance = self.linker.instantiate(store, component)
                result.instantiate_seconds = time.perf_counter() - started
                run_index = instance.get_export_index(store, RUN_EXPORT)
                if run_index is None:
                    raise RuntimeFailure(
                        f"{name} does not export {RUN_EXPORT}: it is not a wasi:cli command.")
                func = instance.get_func(store, instance.get_export_index(store, "run", run_index))
                if timer is not None:
                    timer.start()
                started = time.perf_counter()
                try:
                    value = func(store)
                    func.post_return(store)
                    result.status = 0 if getattr(value, "tag", "ok") == "ok" else 1
                except wasmtime.ExitTrap as exc:
                    result.status = exc.code
                except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
                    result.status = 1
                    result.trap = _describe_trap(exc, timeout)
                result.run_seconds = time.perf_counter() - started
            except wasmtime.WasmtimeError as exc:
                raise RuntimeFailure(f"Wasmtime could not instantiate {name}: "
                                     f"{str(exc).strip().splitlines()[0]}") from None
            finally:
                if timer is not None:
                    timer.cancel()
                # Drop the store now, while Python is alive: its output streams
                # call back into Python when they close.
                del store
        out.close()
        err.close()
        result.stdout, result.stderr = out.text(), err.text()
        return result

    def _wasi_config(self, caps: Capabilities, name: str, out: OutputSink, err: OutputSink,
                     stdin_dir: str | None) -> Any:
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
        config.stdout_custom = out.write
        config.stderr_custom = err.write
        return config


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _describe_trap(exc: Exception, timeout: float | None) -> str:
    text = str(exc)
    if "interrupt" in text and timeout:
        return f"timed out after {timeout:g} s (the limit set by --timeout)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    cause = next((line for line in reversed(lines) if line.startswith("wasm trap:")), None)
    frames = [line for line in lines if line[:1].isdigit()][:3]
    head = cause or (lines[0] if lines else type(exc).__name__)
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
