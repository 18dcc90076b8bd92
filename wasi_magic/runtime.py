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
import os
import platform
import queue
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .artifact import Artifact
from .cache import Cache, default_cache, is_sha256, remembered_sha256
from .capabilities import Capabilities
from .errors import RuntimeFailure, require_wasmtime
from .limits import DEFAULT_TIMEOUT, Limits
from .output import DEFAULT_LIMIT, OutputSink, Relay, TextCallback, format_size
from .result import RunResult
from .versions import installed_version
from . import tierup
from .sandbox import outbound_host, shim, stdout_pipe
from .sandbox.store import (Deadline, describe_trap, grant_wasi, instantiate, interrupt_guard,
                            new_store, stdin_folder, stop_text, wasi_streams)
from .sandbox.store import wasi_config  # noqa: F401 - re-exported for existing callers

try:
    import wasmtime
    from wasmtime import component as wcomponent
except ImportError:  # pragma: no cover - exercised by the install-hint test
    wasmtime = None  # type: ignore[assignment]
    wcomponent = None  # type: ignore[assignment]

RUN_EXPORT = "wasi:cli/run@0.2.9"
#: Compilers Wasmtime offers: Winch (baseline, fast to compile) and Cranelift (optimizing).
STRATEGIES = ("winch", "cranelift")


_require_wasmtime = require_wasmtime


class _Flavor:
    """One engine configuration (compiler, with or without fuel metering) and its caches."""

    def __init__(self, strategy: str, fuel: bool, pooled: bool = False, *,
                 background: bool = False, epochs: bool = True) -> None:
        config = wasmtime.Config()
        # Epoch interruption lets a timer (or an interrupt) stop a running guest. Its
        # checks, at every function entry and loop head, cost a CPU-bound Python cell
        # ~25 % under Cranelift; code without them is stopped by ending its process.
        config.epoch_interruption = epochs
        self.epochs = epochs
        config.consume_fuel = fuel
        if background:
            # A background (tier-up) compile takes one core, leaving the other to the
            # kernel and the guest; the compiled code is the same (and loads in any
            # engine of this configuration).
            config.parallel_compilation = False
        self.strategy = strategy
        if strategy == "winch" and not shim.use_winch(config):
            # Winch compiles a Python component ~4x faster than Cranelift.
            self.strategy = "cranelift"
        # Instances come from a pool whose memory stays resident between runs: a fresh
        # instance per run then skips ~600 page faults on the snapshot (measured: -25-35%
        # per quick run).
        self.pooled = pooled and shim.use_pooling(config, shim.Pool())
        self.engine = wasmtime.Engine(config)
        self.linker = wcomponent.Linker(self.engine)
        self.linker.add_wasip2()
        # wasi-magic's checked HTTP import: only cells that import it can call it, and
        # only origins their store was granted are reached.
        outbound_host.define(self.linker)
        self.components: dict[str, Any] = {}
        version = installed_version("wasmtime", "wasmtime")
        # (The pool is not in the tag: code compiled without it loads into a pooled engine,
        # so a tier-up compile made in another process serves the worker's pooled runtime.)
        self.tag = (f"wasmtime-{version}-{self.strategy}-{'epoch' if epochs else 'noepoch'}"
                    f"{'-fuel' if fuel else ''}-{platform.machine()}")


class Runtime:
    """A Wasmtime engine with WASI Preview 2 and caches of compiled components.

    Components run on a plain engine; runs with ``fuel`` use a second engine
    that meters fuel (its compiled code differs, so it has its own caches).
    """

    def __init__(self, *, strategy: str = "winch", cache: Cache | None = None,
                 pooled: bool = False, tier_up: bool | None = None) -> None:
        _require_wasmtime()
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
        #: Instances from a pool that stays resident (see :func:`shim.use_pooling`): for the
        #: one runtime that runs cells one at a time, not for every embedding.
        self._pooled = pooled
        plain = _Flavor(strategy, fuel=False, pooled=pooled)
        self._flavors = {(plain.strategy, False, pooled, True): plain}
        self.strategy = plain.strategy
        self.engine = plain.engine
        self.linker = plain.linker
        self.tag = plain.tag
        self._cache = cache
        self._lock = threading.RLock()
        if tier_up is None:
            tier_up = tierup.enabled()
        #: Set by the sandbox worker, which calls :meth:`tidy` between requests: stores are
        #: dropped, and the next run's instance made, while no cell waits for them.
        self.defer_cleanup = False
        self._retired: list[Any] = []
        #: Components :meth:`preload` loaded and no run has used yet: (sha256, fuel) ->
        #: (seconds, how) of that load.
        self._preloaded: dict[tuple[str, bool], tuple[float, str]] = {}
        self._reaper = _Reaper()
        self._next: tuple[_Flavor, Any] | None = None
        self._ready: tuple[_Flavor, Any, Any, Any, Any] | None = None
        #: argv of the last run (the next one likely has the same), and the WASI config
        #: :meth:`tidy` made ahead for it: ``(argv, config, stderr relay)``.
        self._last_argv: tuple[str, ...] | None = None
        self._streams: tuple[tuple[str, ...], Any, Relay] | None = None
        #: Guests' stdout through a pipe, not a callback (see :mod:`.sandbox.stdout_pipe`):
        #: made on the pooled runtime's first run, for the process's one cell runner.
        self._pipe: stdout_pipe.StdoutPipe | None = None
        self._pipe_checked = not pooled
        #: Set by the sandbox worker while it may end its process to stop a guest (no
        #: session or loaded component would be lost): ``exit_stop(result, interrupted)``
        #: reports a run that its deadline stopped and never returns. Runs of tier-up code
        #: then use code without epoch checks (see :meth:`compiled`).
        self.exit_stop: Callable[[RunResult, str | None], None] | None = None
        #: Recompiles Winch-compiled components with Cranelift in the background (None: off).
        self.tier_up: tierup.TierUp | None = (
            tierup.TierUp() if tier_up and self.strategy == "winch" else None)

    @property
    def cache(self) -> Cache:
        """The on-disk cache (the default one unless given)."""
        return self._cache if self._cache is not None else default_cache()

    def _flavor(self, fuel: bool, strategy: str | None = None,
                pooled: bool | None = None, epochs: bool = True) -> _Flavor:
        key = (strategy or self.strategy, fuel, self._pooled if pooled is None else pooled,
               epochs)
        with self._lock:
            if key not in self._flavors:
                self._flavors[key] = _Flavor(key[0], fuel, key[2], epochs=epochs)
            return self._flavors[key]

    def engine_and_linker(self, fuel: bool = False, *,
                          kept: bool = False) -> tuple[Any, Any]:
        """The engine and linker for runs with (``fuel=True``) or without fuel metering.

        ``kept=True``: for instances kept between calls (sessions), which take no slot of
        the pool: a pool sized for one run at a time would run out after a few sessions.
        """
        flavor = self._flavor(fuel, pooled=False if kept else None)
        return flavor.engine, flavor.linker

    def wait_tier_up(self, timeout: float | None = None) -> bool:
        """Wait until no background Cranelift compile is queued or running (True), or
        ``timeout`` seconds passed (False). True at once if tier-up is off."""
        return self.tier_up.wait(timeout) if self.tier_up is not None else True

    def in_memory(self) -> set[str]:
        """The sha256s of the components this runtime holds compiled in memory (by any of
        its engines)."""
        with self._lock:
            return {digest for flavor in self._flavors.values() for digest in flavor.components}

    def forget(self) -> None:
        """Drop compiled components held in memory."""
        with self._lock:
            for flavor in self._flavors.values():
                flavor.components.clear()
            self._preloaded.clear()
            self.release_stores()

    def release_stores(self) -> None:
        """Drop the stores kept for later: the instance made ahead and finished runs'
        (and wait until the reaper has dropped those handed to it)."""
        with self._lock:
            self._ready = self._next = self._streams = None
            retired, self._retired = self._retired, []
            del retired
            self._reaper.wait()

    def component(self, artifact: Artifact | str | os.PathLike[str], *,
                  fuel: bool = False, kept: bool = False) -> tuple[Any, float, str]:
        """The component for ``artifact`` compiled by this runtime's own compiler (the
        one :attr:`engine` runs): ``(component, seconds, how)``.

        ``how`` is 'memory', 'deserialized' (from the disk cache) or 'compiled'.
        ``kept``: for :meth:`engine_and_linker` ``(kept=True)``.
        """
        started = time.perf_counter()
        path, digest = _source(artifact)
        with self._lock:
            flavor = self._flavor(fuel, pooled=False if kept else None)
            component, how = self._load(flavor, path, digest, fuel)
        return component, time.perf_counter() - started, how

    def loaded(self, artifact: Artifact | str | os.PathLike[str], *, fuel: bool = False,
               kept: bool = False) -> tuple[Any, Any, Any, float, str]:
        """A component to instantiate many times or to read the types of, with the engine
        and linker it belongs to: ``(component, engine, linker, seconds, how)``.

        With tier-up on, the Cranelift one if it is already in memory or in the cache (as
        ``python -m wasi_magic warm`` leaves it); otherwise this runtime's own compiler's,
        compiled now if need be. Unlike :meth:`compiled` it starts no background compile:
        :func:`~wasi_magic.host.load`, sessions and ``%wasi inspect`` use it. ``kept``: as
        for :meth:`engine_and_linker`.
        """
        started = time.perf_counter()
        path, digest = _source(artifact)
        pooled = False if kept else None
        with self._lock:
            tiered = self._tiered(path, digest, fuel, pooled=pooled)
            if tiered is not None:
                flavor, component, how = tiered
            else:
                flavor = self._flavor(fuel, pooled=pooled)
                component, how = self._load(flavor, path, digest, fuel)
        return component, flavor.engine, flavor.linker, time.perf_counter() - started, how

    def interface(self, artifact: Artifact | str | os.PathLike[str]
                  ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """What ``artifact`` imports and exports, by name. Read from any compiled form of it
        already in memory (every compiler's has the same types: after a run, nothing is
        loaded again), else from the one :meth:`loaded` gives."""
        digest = _source(artifact)[1]
        with self._lock:
            for flavor in self._flavors.values():
                component = flavor.components.get(digest)
                if component is not None:
                    return _names(component, flavor.engine)
        component, engine, _, _, _ = self.loaded(artifact)
        return _names(component, engine)

    def compiled(self, artifact: Artifact | str | os.PathLike[str], *,
                 fuel: bool = False) -> tuple[Any, float, str, str]:
        """The best compiled component at hand for running ``artifact``:
        ``(component, seconds, how, tier)``.

        With tier-up on, that is the Cranelift one if it is in memory or in the cache;
        otherwise the Winch one (compiled now if need be), and a Cranelift compile is
        started in the background for the next run. ``tier`` is 'winch' or 'cranelift'.

        While :attr:`exit_stop` is set (in the sandbox worker), the Cranelift code is
        compiled without epoch checks (a CPU-bound cell runs ~25 % faster): a deadline
        cannot stop it in place, so the worker reports the run and ends its process, and
        the supervisor's spare takes over. Runs with fuel keep their epoch checks.
        """
        started = time.perf_counter()
        path, digest = _source(artifact)
        flavor, component, how = self._best(path, digest, fuel)
        seconds = time.perf_counter() - started
        if how == "memory":  # loaded by preload() for this run: say so
            seconds, how = self._preloaded.pop((digest, fuel), (seconds, how))
        return component, seconds, how, flavor.strategy

    def preload(self, digest: str, *, fuel: bool = False) -> str | None:
        """Load into memory the compiled component :meth:`compiled` would run for the
        component with sha256 ``digest``, if the cache holds it; never compiles. Returns
        how it was found ('memory', 'deserialized'), None if not in the cache.

        The sandbox worker does this while the kernel unpacks the component itself from a
        packed cache: the two take ~30-140 ms each, at the same time. The next
        :meth:`compiled` reports the load it saved as its own (``how``, ``seconds``)."""
        if not is_sha256(digest):
            return None  # (a cache entry's name: never a path)
        started = time.perf_counter()
        with self._lock:
            epochs = fuel or self.exit_stop is None
            found = self._tiered(Path(), digest, fuel, epochs=epochs)
            if found is None:
                loaded = self._load(self._flavor(fuel), Path(), digest, fuel, compile=False)
                if loaded is None:
                    return None
                found = (None, *loaded)
            how = found[2]
            if how != "memory":
                if len(self._preloaded) >= 64:  # preloads no run used (cells that failed)
                    self._preloaded.clear()
                self._preloaded[(digest, fuel)] = (time.perf_counter() - started, how)
            return how

    def compile_seconds(self, artifact: Artifact | str | os.PathLike[str], *,
                        fuel: bool = False) -> float | None:
        """How many seconds this runtime's own compiler took to compile ``artifact``, as
        recorded in the cache (or the shared cache) when it was compiled, by this or any
        earlier process (``warm``, a kernel's first run, a tier-up compile); None if the
        cache holds no such record."""
        digest = _source(artifact)[1]
        flavor = self._flavor(fuel)
        section = f"compiled/{flavor.tag}"
        meta = self.cache.sealed_meta(section, digest)
        if meta is None:  # not in this cache: the shared cache's entry, if any
            entry = self.cache.get(section, digest, ".cwasm")
            meta = entry.meta if entry is not None else None
        return recorded_seconds(meta)

    def precompile(self, artifact: Artifact | str | os.PathLike[str], *,
                   fuel: bool = False, epochs: bool = False) -> str:
        """Compile ``artifact`` into the cache as the sandbox worker runs it once tier-up is
        done: Cranelift, without epoch checks unless ``fuel`` or ``epochs`` (the form runs
        use while the worker keeps a session, see :meth:`compiled`). Returns how it was
        found ('memory', 'deserialized' or 'compiled')."""
        path, digest = _source(artifact)
        with self._lock:
            flavor = self._flavor(fuel, "cranelift", epochs=epochs or fuel)
            return self._load(flavor, path, digest, fuel)[1]

    def _best(self, path: Path, digest: str, fuel: bool) -> tuple[_Flavor, Any, str]:
        """``(flavor, component, how)`` to run the component at ``path`` (sha256 ``digest``)
        with now: see :meth:`compiled`."""
        base = self._flavor(fuel)
        with self._lock:
            epochs = fuel or self.exit_stop is None
            tiered = self._tiered(path, digest, fuel, epochs=epochs)
            if tiered is not None:
                base.components.pop(digest, None)  # swapped: the Winch code is not needed
                return tiered
            component, how = self._load(base, path, digest, fuel)
            if self.tier_up is not None and self.cache.enabled:
                self.tier_up.request(path, digest, fuel, self.cache.root, epochs=epochs)
            return base, component, how

    def _tiered(self, path: Path, digest: str, fuel: bool, *, pooled: bool | None = None,
                epochs: bool = True) -> tuple[_Flavor, Any, str] | None:
        """``(flavor, component, how)`` of the Cranelift code tier-up made, if it is in
        memory or in the cache; None if tier-up is off or it is not made yet. Never
        compiles, and never reads an entry the background compile may be writing this
        moment. Hold ``self._lock``."""
        if self.tier_up is None:
            return None
        top = self._flavor(fuel, "cranelift", pooled=pooled, epochs=epochs)
        found = top.components.get(digest)
        if found is not None:
            return top, found, "memory"
        if self.tier_up.pending(digest, fuel, epochs):
            return None
        loaded = self._load(top, path, digest, fuel, compile=False)
        return None if loaded is None else (top, *loaded)

    def _load(self, flavor: _Flavor, path: Path, digest: str, fuel: bool, *,
              compile: bool = True) -> Any:
        """``(component, how)`` from memory, the disk cache or (if ``compile``) Wasmtime;
        None if not compiled yet and ``compile`` is False. Hold ``self._lock``."""
        found = flavor.components.get(digest)
        if found is not None:
            return found, "memory"
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
            if not compile:
                return None
            how = "compiled"
            started = time.perf_counter()
            component = _compile(flavor.engine, path)
            try:
                store_compiled(self.cache, section, digest, component, path,
                               time.perf_counter() - started)
            except wasmtime.WasmtimeError:
                pass
        _prime(flavor, component, fuel)
        flavor.components[digest] = component
        return component, how

    def tidy(self) -> None:
        """Work for the time between runs (the sandbox worker calls it once it has replied):
        drop the stores of finished runs, and instantiate the component that ran last in a
        store of its own, without WASI, and find its ``run`` export, so that its next run
        only has to grant and call. With a stdout pipe, also make the part of the next
        run's WASI config that no grant changes (argv as last time, and the output
        streams); a run with other arguments makes its own."""
        with self._lock:
            self._drop_retired()
            following, self._next = self._next, None
            if following is None or self._ready is not None and self._ready[:2] == following:
                return
            self._ready = None
            flavor, component = following
            # The last run's store must be gone first, so that the instance made ahead takes
            # the slot it freed (the pool reuses a component's most recent free slot):
            # otherwise the runs of a component alternate between two slots, and each slot
            # used stays resident (~23 MiB for the quick-mode runner).
            self._reaper.wait()
            store = new_store(flavor.engine, Capabilities(), Limits(timeout=None), "ahead",
                              _discard, _discard, wasi=False)
            Deadline(flavor.engine, None).attach(store)
            try:
                instance = instantiate(lambda: flavor.linker.instantiate(store, component))
            except wasmtime.WasmtimeError:
                return  # the run itself will instantiate, and report what fails
            self._ready = (flavor, component, store, instance, _run_export(instance, store))
            if self._pipe is not None and self._last_argv is not None:
                relay = Relay()
                self._streams = (self._last_argv,
                                 wasi_streams(self._last_argv, self._pipe.path, relay), relay)

    def _take_ready(self, flavor: _Flavor, component: Any, caps: Capabilities,
                    limits: Limits) -> tuple[Any, Any, Any] | None:
        """``(store, instance, run function or None)`` that :meth:`tidy` made for this
        component, if they suit this run."""
        ready, self._ready = self._ready, None
        if ready is None:
            return None
        if ready[0] is flavor and ready[1] is component and _reusable(caps, limits):
            return ready[2], ready[3], ready[4]
        self._retired.append(ready[2])
        return None

    def _stdout_pipe(self) -> stdout_pipe.StdoutPipe | None:
        """The pipe for guests' stdout, if this runtime uses one (hold ``self._lock``)."""
        if not self._pipe_checked:
            self._pipe_checked = True
            self._pipe = stdout_pipe.available()
        return self._pipe

    def _drop_retired(self) -> None:
        """Drop the stores of finished runs: in the sandbox worker on the reaper's thread
        (dropping one resets its memory slot, ~1 ms, which no run should wait for), else
        here and now."""
        retired, self._retired = self._retired, []
        if retired and self.defer_cleanup:
            self._reaper.drop(retired)
        del retired

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
        Wasmtime's I/O thread, or for stdout on a pooled runtime the thread that reads
        its :mod:`~.sandbox.stdout_pipe`). Limits: ``timeout`` in wall-clock seconds
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
        started = time.perf_counter()
        path, digest = _source(artifact)
        name = artifact.name if isinstance(artifact, Artifact) else path.name
        flavor, component, how = self._best(path, digest, bool(limits.fuel))
        compile_seconds = time.perf_counter() - started
        out = OutputSink("stdout", stdout, limits.max_output)
        err = OutputSink("stderr", stderr, limits.max_output)
        result = RunResult(status=0, stdout="", stderr="", capabilities=caps,
                           artifact=path,
                           compile_seconds=compile_seconds, steps={"component": how},
                           tier=flavor.strategy,
                           limits=limits)
        with self._lock, stdin_folder(caps) as stdin_dir:
            self._drop_retired()
            pipe = self._stdout_pipe()
            on_fire = None if flavor.epochs else _exit_when_stopped(
                self.exit_stop, result, limits, out, err, pipe)
            deadline = Deadline(flavor.engine, limits.timeout, on_fire=on_fire)
            stdout_to: Any = out.write
            err_write = err.write
            if pipe is not None:
                pipe.start(out.write)
                stdout_to = pipe.path

                def err_write(data: bytes) -> None:
                    pipe.drain()  # the stdout written before it, first
                    err.write(data)
            relay: Relay | None = None
            try:
                ready = self._take_ready(flavor, component, caps, limits)
                started = time.perf_counter()
                streams, self._streams = self._streams, None
                argv = (name, *caps.args)
                if ready is not None:
                    store, instance, func = ready
                    if streams is not None and streams[0] == argv and pipe is not None:
                        relay = streams[2]
                        relay.target = err_write
                        grant_wasi(store, caps, name, stdout_to, err_write, stdin_dir,
                                   streams=streams[1])
                    else:
                        grant_wasi(store, caps, name, stdout_to, err_write, stdin_dir)
                    result.steps["instance"] = "made ahead"
                else:
                    store = new_store(flavor.engine, caps, limits, name, stdout_to, err_write,
                                      stdin_dir)
                    instance = func = None
            except BaseException:
                if pipe is not None:
                    pipe.finish()
                if relay is not None:
                    relay.target = None
                raise
            try:
                deadline.attach(store)
                with interrupt_guard(deadline):
                    if instance is None:
                        instance = flavor.linker.instantiate(store, component)
                    result.instantiate_seconds = time.perf_counter() - started
                    if func is None:
                        func = _run_function(instance, store, name)
                    deadline.start()
                    started = time.perf_counter()
                    try:
                        value = func(store)
                        func.post_return(store)
                        result.status = 0 if getattr(value, "tag", "ok") == "ok" else 1
                    except wasmtime.ExitTrap as exc:
                        result.status = exc.code
                    except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
                        result.status = 1
                        result.trap = describe_trap(exc, deadline, limits,
                                                    time.perf_counter() - started)
                    result.run_seconds = time.perf_counter() - started
                    if limits.fuel:
                        result.fuel_used = limits.fuel - store.get_fuel()
            except wasmtime.WasmtimeError as exc:
                raise RuntimeFailure(f"Wasmtime could not instantiate {name}: "
                                     f"{str(exc).strip().splitlines()[0]}") from None
            finally:
                deadline.cancel()
                if pipe is not None:
                    pipe.finish()  # the guest has returned: all its stdout is in the pipe
                if relay is not None:
                    relay.target = None
                instance = func = None
                # Drop the store while Python is alive (its output streams call back into
                # Python when they close) — or, in the sandbox worker, after the reply has
                # gone (:meth:`tidy`): dropping resets its memory slot (~1 ms).
                if self.defer_cleanup:
                    self._retired.append(store)
                    self._next = (flavor, component) if _reusable(caps, limits) else None
                    self._last_argv = argv
                del store
        out.close()
        err.close()
        result.stdout, result.stderr = out.text(), err.text()
        result.truncated = out.truncated or err.truncated
        if limits.max_memory and result.status and "MemoryError" in result.stderr[-2000:]:
            result.limit_note = (f"the guest ran out of memory under --max-memory "
                                 f"{format_size(limits.max_memory)}")
        if deadline.interrupted:
            raise KeyboardInterrupt(f"guest interrupted after {result.run_seconds:.2f} s")
        return result


def _discard(data: bytes) -> None:
    return None


def _exit_when_stopped(exit_stop: Callable[[RunResult, str | None], None] | None,
                       result: RunResult, limits: Limits, out: OutputSink, err: OutputSink,
                       pipe: stdout_pipe.StdoutPipe | None) -> Callable[[Deadline], None]:
    """The ``on_fire`` of a run whose code has no epoch checks: report the run as it
    stands (its output to this moment, the limit's trap text) through ``exit_stop``,
    which ends the process. Called on the timer's or the interrupt's thread while the
    guest still runs."""
    assert exit_stop is not None, "_best picks code without epoch checks only with exit_stop"

    def stop(deadline: Deadline) -> None:
        seconds = time.monotonic() - (deadline.started or time.monotonic())
        if pipe is not None:
            pipe.drain()
        out.close()
        err.close()
        result.status = 1
        result.trap = stop_text(deadline, limits, seconds)
        result.run_seconds = seconds
        result.stdout, result.stderr = out.text(), err.text()
        result.truncated = out.truncated or err.truncated
        result.steps["sandbox"] = "restarted"
        exit_stop(result, f"guest interrupted after {seconds:.2f} s"
                  if deadline.interrupted else None)
    return stop


def _reusable(caps: Capabilities, limits: Limits) -> bool:
    """Whether a run may use an instance made ahead of it: not when its store must differ
    from birth (HTTP grants are the store's data; fuel and a memory cap apply from the
    instance's first page)."""
    return not caps.http and not limits.fuel and limits.max_memory is None


def _prime(flavor: _Flavor, component: Any, fuel: bool) -> None:
    """Instantiate ``component`` once in a throwaway store, so that Wasmtime sets up its
    copy-on-write memory image now (see :func:`~wasi_magic.sandbox.store.instantiate`).
    A failure is left for the run itself to report."""
    limits = Limits(timeout=None, fuel=(1 << 62) if fuel else None)
    store = new_store(flavor.engine, Capabilities(), limits, "prime", _discard, _discard)
    Deadline(flavor.engine, None).attach(store)
    try:
        instantiate(lambda: flavor.linker.instantiate(store, component))
    except wasmtime.WasmtimeError:
        pass
    finally:
        del store


def _source(artifact: Artifact | str | os.PathLike[str]) -> tuple[Path, str]:
    """The file of ``artifact`` and its sha256 (which keys every compiled copy)."""
    if isinstance(artifact, Artifact):
        return artifact.path, artifact.sha256
    path = Path(artifact)
    try:
        return path, _file_digest(path)
    except OSError as exc:
        raise RuntimeFailure(f"Cannot read {str(path)!r}: {exc.strerror or exc}.") from None


def _file_digest(path: Path) -> str:
    """The sha256 of ``path`` (hashing a 20 MiB Python component takes ~15 ms, several
    times longer than running it: see :func:`~wasi_magic.cache.remembered_sha256`)."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise RuntimeFailure(f"{str(path)!r} is not a regular file (a device, a FIFO or a "
                             f"folder): give the path of a .wasm file.")
    return remembered_sha256(path, info)


def _run_export(instance: Any, store: Any) -> Any:
    """The ``run`` function of ``instance``'s ``wasi:cli/run`` export, or None."""
    run_index = instance.get_export_index(store, RUN_EXPORT)
    if run_index is None:
        return None
    func_index = instance.get_export_index(store, "run", run_index)
    return None if func_index is None else instance.get_func(store, func_index)


def _run_function(instance: Any, store: Any, name: str) -> Any:
    func = _run_export(instance, store)
    if func is None:
        raise RuntimeFailure(f"{name} does not export {RUN_EXPORT}: it is not a wasi:cli command.")
    return func


def _names(component: Any, engine: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A compiled component's imports and exports, by name."""
    return tuple(component.type.imports(engine)), tuple(component.type.exports(engine))


#: A recorded compile time above this (an hour) is not believed.
_MAX_RECORDED = 3600.0


def store_compiled(cache: Cache, section: str, digest: str, component: Any, source: Path,
                   seconds: float, **meta: Any) -> Any:
    """Write ``component``, compiled from ``source`` in ``seconds``, into ``cache``: the one
    place a compiled form is written, with what its compile cost (read back by
    :func:`recorded_seconds` for whoever later loads it instead of compiling). Returns the
    cache's entry, or None if it could not be written."""
    return cache.put_bytes(section, digest, ".cwasm", bytes(component.serialize()),
                           {"source": str(source), "compile_seconds": round(seconds, 3), **meta})


def recorded_seconds(meta: dict[str, Any] | None) -> float | None:
    """The ``compile_seconds`` an entry's metadata records, if it is a plausible number
    (finite, positive, under an hour: the seal does not cover it), else None."""
    value = meta.get("compile_seconds") if isinstance(meta, dict) else None
    if type(value) not in (int, float) or not 0 < value < _MAX_RECORDED:
        return None  # also NaN (every comparison false) and bool
    return float(value)


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


_default: Runtime | None = None
_default_lock = threading.Lock()


def default_runtime() -> Runtime:
    """The process-wide runtime, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Runtime(pooled=True)
            _default.defer_cleanup = _defer_default
        return _default


_defer_default = False


class _Reaper:
    """Drops stores on a thread of its own, while the next run goes on.

    A Wasmtime store has no thread of its own: dropping one from another thread is safe
    once nothing uses it (a finished run's store is referenced by nothing else), and the
    pooling allocator takes its slot back under its own lock. The drop is a call into
    Wasmtime that releases the GIL.
    """

    def __init__(self) -> None:
        self._queue: "queue.SimpleQueue[list[Any]]" = queue.SimpleQueue()
        self._busy = 0
        self._done = threading.Condition()
        self._thread: threading.Thread | None = None

    #: Stores handed over and not yet dropped, at most (more wait for the thread): each
    #: holds a slot of the pool (8 memories, with the running store and the instance made
    #: ahead), and the thread may wait for the GIL while runs follow each other.
    BACKLOG = 2

    def drop(self, stores: list[Any]) -> None:
        """Drop ``stores`` (the caller keeps no reference to them) soon, on the thread;
        first wait until the backlog leaves room for them (or is empty)."""
        count = len(stores)
        with self._done:
            self._done.wait_for(lambda: self._busy == 0 or self._busy + count <= self.BACKLOG)
            self._busy += count
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="wasi-magic-reaper",
                                                daemon=True)
                self._thread.start()
        self._queue.put(stores)

    def wait(self) -> None:
        """Return once every store handed over has been dropped."""
        with self._done:
            self._done.wait_for(lambda: self._busy == 0)

    def _serve(self) -> None:
        while True:
            stores = self._queue.get()
            count = len(stores)
            try:
                stores.clear()  # the last references: each store is dropped here
                del stores
            finally:
                with self._done:
                    self._busy -= count
                    self._done.notify_all()


def defer_default_cleanup() -> None:
    """The process-wide runtime leaves cleanup to :func:`tidy_default` (the sandbox worker,
    which calls it between requests)."""
    global _defer_default
    _defer_default = True
    if _default is not None:
        _default.defer_cleanup = True


def tidy_default() -> None:
    """:meth:`Runtime.tidy` on the process-wide runtime, if it was ever created."""
    if _default is not None:
        _default.tidy()


def forget_compiled() -> None:
    """Drop the compiled components of the process-wide runtime, if it was ever created."""
    with _default_lock:
        if _default is not None:
            _default.forget()


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
    if _default is not None:
        _default.release_stores()  # (see Runtime.tidy)
    if not shim.outputs_pending():
        # Nothing of Python's is held by Wasmtime to be called back: skip the collection
        # (~0.07 s at a kernel's exit once matplotlib is loaded, say).
        return
    gc.collect()
    # A store the program still holds (a global in a notebook) would be dropped only while
    # the interpreter finalizes, its callbacks then panicking; and waiting for it here
    # would always time out. Close such stores now: the process is ending.
    if shim.outputs_pending():
        shim.close_live_stores()
    shim.wait_outputs_released(limit=1.0)
