"""Call a component's typed exports from Python: the host side of a WIT world.

::

    from wasi_magic import Capabilities, build
    from wasi_magic.host import load

    art = build(plugin_source, wit="transform.wit", world="transform")
    plugin = load(art, Capabilities.parse(dirs=["tenants/alice::/data::ro"]),
                  timeout=2, max_memory=64 << 20)
    plugin.transform(b"hello")      # the ok value, or GuestError(err) raised

Every function the component exports becomes a Python callable under its
snake_case name; an exported interface becomes a namespace
(``guest.text.shout("hi")``); ``guest["name"]`` also works, for names that
clash with the attributes below. Values follow :mod:`wasi_magic.values`:
records come back as :class:`~wasi_magic.values.Record` objects, variants as
``Variant(tag, payload)``, and a ``result`` return value is either returned
(ok) or raised as :class:`~wasi_magic.errors.GuestError` (err).

*Isolation.* With ``fresh=True`` (the default) every call gets a new Store
and instance: nothing a call does (globals, memory, files opened) survives
into the next. With ``fresh=False`` one instance keeps its state between
calls (a fresh one replaces it after a trap).

*Limits.* ``timeout`` is wall-clock seconds per call (epoch interruption),
``max_memory`` caps the guest's linear memory (bytes, or a size such as
``"64MiB"``). A trap, an exception escaping the guest function, or a limit
raises :class:`~wasi_magic.errors.GuestTrap`; the host process carries on.

*Threads.* Calls on one :class:`~wasi_magic.runtime.Runtime` are serialized:
a timeout bumps the engine's epoch, which would also stop any other store
running on that engine. :func:`load` therefore uses its own runtime by
default, separate from the one ``%%wasi`` runs use; compiled components are
shared through the on-disk cache.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import wasmtime
from wasmtime import component as wc

from .artifact import Artifact
from .capabilities import Capabilities
from .errors import GuestError, GuestTrap, RuntimeFailure, UsageError
from .limits import Limits
from .output import DEFAULT_LIMIT, OutputSink, TextCallback, format_size
from .runtime import Runtime
from .sandbox.store import Deadline, interrupt_guard, new_store
from .values import Record, ValType, Variant, describe, lift, lift_case, lower, snake

__all__ = ["DEFAULT_CALL_TIMEOUT", "ExportedFunction", "Guest", "GuestError", "GuestTrap",
           "Interface", "Record", "Variant", "host_runtime", "load"]

#: Default wall-clock limit of one call, in seconds.
DEFAULT_CALL_TIMEOUT = 10.0
#: componentize-py's own bookkeeping export, not part of the user's world.
_INTERNAL_EXPORT = "exports"


# --- the exported functions of a component ---------------------------------------------------


@dataclass(frozen=True)
class FunctionSpec:
    """One exported function: its names, its type and where to find it in an instance."""

    name: str
    wit_name: str
    interface: Optional[str]
    params: tuple[tuple[str, ValType], ...]
    result: Optional[ValType]
    index: Any

    @property
    def qualname(self) -> str:
        """``transform`` or ``text.shout`` (interface short name, then function)."""
        return f"{_short(self.interface)}.{self.name}" if self.interface else self.name

    @property
    def signature(self) -> str:
        """The function in WIT-like spelling: ``shout: func(s: string) -> string``."""
        params = ", ".join(f"{name}: {describe(ty)}" for name, ty in self.params)
        result = f" -> {describe(self.result)}" if self.result is not None else ""
        return f"{self.wit_name}: func({params}){result}"

    def lower_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
        """Positional and keyword arguments in wasmtime-py's spelling, or a clear UsageError."""
        names = [snake(name) for name, _ in self.params]
        if len(args) > len(names):
            raise UsageError(f"{self.qualname}() takes {len(names)} argument(s), "
                             f"got {len(args)}: {self.signature}")
        values = dict(zip(names, args))
        for key, value in kwargs.items():
            key = snake(key)
            if key not in names:
                raise UsageError(f"{self.qualname}() has no parameter {key!r}: {self.signature}")
            if key in values:
                raise UsageError(f"{self.qualname}() got two values for {key!r}")
            values[key] = value
        missing = [name for name in names if name not in values]
        if missing:
            raise UsageError(f"{self.qualname}() is missing {', '.join(missing)}: {self.signature}")
        lowered = []
        for (wit_name, ty), name in zip(self.params, names):
            try:
                lowered.append(lower(ty, values[name]))
            except (TypeError, ValueError) as exc:
                raise UsageError(f"{self.qualname}(): argument {name!r} ({describe(ty)}): "
                                 f"{exc}") from None
        return lowered

    def lift_result(self, raw: Any) -> Any:
        """The Python return value; the err case of a ``result`` is raised as GuestError."""
        if isinstance(self.result, wc.ResultType):
            tag, payload = lift_case(self.result, raw)
            if tag == "err":
                raise GuestError(payload, self.qualname)
            return payload
        return lift(self.result, raw)


def _short(interface: str) -> str:
    """``test:kinds/text@0.1.0`` -> ``text``; ``incoming-handler`` -> ``incoming_handler``."""
    return snake(interface.split("@", 1)[0].rsplit("/", 1)[-1])


def exported_functions(component: Any, engine: Any) -> list[FunctionSpec]:
    """Every function a component exports, directly or through an exported interface."""
    specs: list[FunctionSpec] = []
    for name, item in component.type.exports(engine).items():
        ty = item.ty
        if isinstance(ty, wc.FuncType):
            specs.append(_spec(name, None, ty, component.get_export_index(name)))
        elif isinstance(ty, wc.ComponentInstanceType):
            members = ty.exports(engine)
            if name == _INTERNAL_EXPORT and "init" in members:
                continue
            parent = component.get_export_index(name)
            for member, member_item in members.items():
                member_ty = member_item.ty
                if isinstance(member_ty, wc.FuncType):
                    specs.append(_spec(member, name, member_ty,
                                       component.get_export_index(member, parent)))
    return specs


def _spec(name: str, interface: Optional[str], ty: Any, index: Any) -> FunctionSpec:
    return FunctionSpec(snake(name), name, interface, tuple(ty.params), ty.result, index)


class ExportedFunction:
    """A guest function as a Python callable; ``signature`` shows its WIT type."""

    def __init__(self, guest: "Guest", spec: FunctionSpec) -> None:
        self._guest = guest
        self.spec = spec
        self.__name__ = spec.name
        self.__qualname__ = spec.qualname
        self.__doc__ = spec.signature

    @property
    def signature(self) -> str:
        """``name: func(param: type, …) -> type``."""
        return self.spec.signature

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._guest._call(self.spec, args, kwargs)

    def __repr__(self) -> str:
        return f"<guest function {self.spec.qualname}: {self.spec.signature}>"


class Interface:
    """The functions of one exported interface, as attributes."""

    def __init__(self, name: str, functions: dict[str, ExportedFunction]) -> None:
        self.name = name
        self._functions = functions

    def __getattr__(self, name: str) -> ExportedFunction:
        try:
            return self.__dict__["_functions"][snake(name)]
        except KeyError:
            raise AttributeError(f"interface {self.name} exports no function {name!r}") from None

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._functions))

    def __repr__(self) -> str:
        lines = "".join(f"\n  {f.signature}" for f in self._functions.values())
        return f"<interface {self.name}:{lines}>"


class Exports:
    """Exported functions as attributes and interfaces as namespaces (``guest.text.shout``).

    Shared by :class:`Guest` (in this process) and the sandbox's remote guest; a
    subclass fills ``_functions`` (name -> callable) and ``_interfaces``
    (short name -> :class:`Interface`) and sets ``name`` and ``fresh``.
    """

    name: str
    fresh: bool
    _functions: dict[str, Any]
    _interfaces: dict[str, "Interface"]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        found = self._lookup(name)
        if found is None:
            raise AttributeError(f"{self.name} exports no function or interface {name!r}; "
                                 f"it exports: {', '.join(self._names()) or 'nothing'}")
        return found

    def __getitem__(self, name: str) -> Any:
        found = self._lookup(name)
        if found is None:
            raise KeyError(name)
        return found

    def _lookup(self, name: str) -> Any:
        functions = self.__dict__.get("_functions", {})
        interfaces = self.__dict__.get("_interfaces", {})
        head, dot, rest = name.partition(".")
        if dot:
            interface = interfaces.get(snake(head))
            return None if interface is None else interface._functions.get(snake(rest))
        key = snake(name)
        if key in functions:
            return functions[key]
        if key in interfaces:
            return interfaces[key]
        return next((i for i in interfaces.values() if i.name == name), None)

    def _names(self) -> list[str]:
        return sorted(self._functions) + sorted(self._interfaces)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._names()))

    @property
    def functions(self) -> dict[str, ExportedFunction]:
        """Every exported function by qualified name (``transform``, ``text.shout``)."""
        found = dict(self._functions)
        for short, interface in self._interfaces.items():
            found.update({f"{short}.{n}": f for n, f in interface._functions.items()})
        return found

    def signatures(self) -> list[str]:
        """The exports in WIT-like spelling, one line each."""
        return [f"{name}  ({f.signature})" if "." in name else f.signature
                for name, f in self.functions.items()]

    def __repr__(self) -> str:
        mode = "fresh instance per call" if self.fresh else "one kept instance"
        lines = "".join(f"\n  {line}" for line in self.signatures())
        return f"<Guest {self.name} ({mode}):{lines}>"


# --- running calls ----------------------------------------------------------------------------


_engine_locks: "weakref.WeakKeyDictionary[Runtime, threading.Lock]" = weakref.WeakKeyDictionary()
_engine_locks_guard = threading.Lock()


def _engine_lock(runtime: Runtime) -> threading.Lock:
    """The lock that serializes guest calls on ``runtime``'s engine."""
    with _engine_locks_guard:
        lock = _engine_locks.get(runtime)
        if lock is None:
            lock = _engine_locks[runtime] = threading.Lock()
        return lock


class _Streams:
    """The guest's stdout and stderr; a new pair of sinks for every call."""

    def __init__(self, stdout: Optional[TextCallback], stderr: Optional[TextCallback],
                 limit: int) -> None:
        self._forward = (stdout, stderr)
        self._limit = limit
        self.reset()

    def reset(self) -> None:
        self.out = OutputSink("stdout", self._forward[0], self._limit)
        self.err = OutputSink("stderr", self._forward[1], self._limit)

    def write_out(self, data: bytes) -> None:
        self.out.write(data)

    def write_err(self, data: bytes) -> None:
        self.err.write(data)

    def take(self) -> tuple[str, str]:
        """This call's output, decoded; the sinks start over."""
        out, err = self.out, self.err
        self.reset()
        out.close()
        err.close()
        return out.text(), err.text()


class Guest(Exports):
    """A loaded component whose exports are Python callables (see the module doc)."""

    def __init__(self, component: Any, runtime: Runtime, *, name: str,
                 caps: Optional[Capabilities] = None, fresh: bool = True,
                 timeout: Optional[float] = DEFAULT_CALL_TIMEOUT,
                 max_memory: Optional[int] = None, stdout: Optional[TextCallback] = None,
                 stderr: Optional[TextCallback] = None, output_limit: int = DEFAULT_LIMIT,
                 fuel: Optional[int] = None, engine: Any = None, linker: Any = None) -> None:
        self.name = name
        self.caps = caps if caps is not None else Capabilities()
        self.fresh = fresh
        #: The limits of every call: time, fuel, memory and output.
        self.limits = Limits(timeout=timeout or None, fuel=fuel or None,
                             max_memory=max_memory or None, max_output=output_limit)
        self.timeout = self.limits.timeout
        self.max_memory = self.limits.max_memory
        #: Calls made, and what the last one wrote and took.
        self.calls = 0
        self.last_stdout = ""
        self.last_stderr = ""
        self.last_seconds = 0.0
        self._component = component
        self._runtime = runtime
        if engine is None or linker is None:
            engine, linker = runtime.engine_and_linker(fuel=bool(self.limits.fuel))
        self._engine, self._linker = engine, linker
        self._streams = _Streams(stdout, stderr, output_limit)
        self._kept: Optional[tuple[Any, Any]] = None
        self._stdin_dir: Optional[tempfile.TemporaryDirectory] = None
        self._functions: dict[str, ExportedFunction] = {}
        self._interfaces: dict[str, Interface] = {}
        self._index(exported_functions(component, self._engine))

    def _index(self, specs: list[FunctionSpec]) -> None:
        grouped: dict[str, dict[str, ExportedFunction]] = {}
        for spec in specs:
            function = ExportedFunction(self, spec)
            if spec.interface is None:
                self._functions[spec.name] = function
            else:
                grouped.setdefault(spec.interface, {})[spec.name] = function
        for interface, functions in grouped.items():
            self._interfaces[_short(interface)] = Interface(interface, functions)

    # Lifecycle.
    def close(self) -> None:
        """Drop the kept instance (``fresh=False``) and any temporary files."""
        with _engine_lock(self._runtime):
            self._kept = None
        if self._stdin_dir is not None:
            self._stdin_dir.cleanup()
            self._stdin_dir = None

    def __enter__(self) -> "Guest":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Calls.
    def _call(self, spec: FunctionSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        lowered = spec.lower_args(args, kwargs)
        with _engine_lock(self._runtime):
            started = time.perf_counter()
            try:
                raw, failure, fired = self._run(spec, lowered)
            finally:
                self.last_seconds = time.perf_counter() - started
                self.calls += 1
                self.last_stdout, self.last_stderr = self._streams.take()
        if isinstance(failure, UsageError):
            raise failure
        if failure is not None:
            raise self._trap(spec, failure, fired) from None
        return spec.lift_result(raw)

    def _run(self, spec: FunctionSpec,
             lowered: list[Any]) -> tuple[Any, Optional[BaseException], bool]:
        """Call ``spec`` in the kept instance or a new one: ``(raw result, failure, timed out)``.

        A fresh store is dropped when this returns, while Python is alive: its
        output streams flush as it closes.
        """
        store, instance = self._kept if self._kept else (self._new_store(), None)
        self._kept = None
        raw: Any = None
        failure: Optional[BaseException] = None
        deadline = Deadline(self._engine, self.limits.timeout)
        deadline.attach(store)
        if self.limits.fuel:
            store.set_fuel(self.limits.fuel)  # per call, also in a kept instance
        with interrupt_guard(deadline), deadline:
            if instance is None:
                instance = self._instantiate(store)
            func = instance.get_func(store, spec.index)
            try:
                raw = func(store, *lowered)
                func.post_return(store)
            except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
                failure = exc
            except (TypeError, ValueError, NotImplementedError) as exc:
                failure = UsageError(f"{spec.qualname}(): wasmtime-py could not convert the "
                                     f"values: {exc}")
        self._last_deadline = deadline
        if not self.fresh and failure is None:
            self._kept = (store, instance)  # a trap poisons an instance: never keep one
        if deadline.interrupted:
            raise KeyboardInterrupt(f"{spec.qualname}: guest interrupted")
        return raw, failure, deadline.timed_out

    def _new_store(self) -> Any:
        """A Store with this guest's capabilities and limits."""
        return new_store(self._engine, self.caps, self.limits, self.name,
                         self._streams.write_out, self._streams.write_err, self._stdin_folder())

    def _instantiate(self, store: Any) -> Any:
        """An instance of the component in ``store``, or a RuntimeFailure saying why not."""
        try:
            return self._linker.instantiate(store, self._component)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            if self.max_memory and "memory" in text.lower():
                raise RuntimeFailure(
                    f"{self.name} needs more than max_memory={format_size(self.max_memory)} "
                    f"just to start: {first}") from None
            raise RuntimeFailure(f"Wasmtime could not instantiate {self.name}: {first}") from None

    def _start(self) -> None:
        """Instantiate once now: keep it (``fresh=False``) or just prove the component starts."""
        with _engine_lock(self._runtime):
            store = self._new_store()
            deadline = Deadline(self._engine, self.limits.timeout)
            deadline.attach(store)
            with interrupt_guard(deadline), deadline:
                instance = self._instantiate(store)
            self._kept = None if self.fresh else (store, instance)
            del store, instance
            self._streams.take()

    def _stdin_folder(self) -> Optional[str]:
        if self.caps.stdin is None:
            return None
        if self._stdin_dir is None:
            self._stdin_dir = tempfile.TemporaryDirectory(prefix="wasi-magic-stdin-")
        return self._stdin_dir.name

    def _trap(self, spec: FunctionSpec, exc: BaseException, fired: bool) -> GuestTrap:
        """A GuestTrap saying which limit stopped the call, or what the guest did."""
        stderr = self.last_stderr
        where = spec.qualname
        if "all fuel consumed" in str(exc) and self.limits.fuel:
            return GuestTrap(f"{where}: stopped by the fuel limit: used all {self.limits.fuel:,} "
                             f"units (fuel={self.limits.fuel})", kind="fuel", stderr=stderr,
                             function=where)
        if fired:
            return GuestTrap(f"{where}: stopped by the time limit after {self.last_seconds:.2f} s "
                             f"(timeout={self.timeout:g} s)", kind="timeout", stderr=stderr,
                             function=where)
        if self.max_memory and "MemoryError" in stderr[-4000:]:
            return GuestTrap(f"{where}: the guest ran out of memory under "
                             f"max_memory={format_size(self.max_memory)}", kind="memory",
                             stderr=stderr, function=where)
        text = str(exc)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        cause = next((line for line in reversed(lines) if line.startswith("wasm trap:")),
                     lines[0] if lines else type(exc).__name__)
        message = f"{where}: the guest trapped ({cause.removeprefix('wasm trap: ')})"
        traceback = _last_traceback(stderr)
        if traceback:
            message += ("\nAn exception escaped the exported function (return errors through a "
                        "result type with `raise Err(...)` instead):\n" + traceback)
        return GuestTrap(message, kind="trap", stderr=stderr, function=where)


def _last_traceback(stderr: str) -> str:
    """The last Python traceback in the guest's stderr, without runtime noise."""
    start = stderr.rfind("Traceback (most recent call last)")
    if start < 0:
        return ""
    lines = []
    for line in stderr[start:].splitlines():
        if line.startswith("thread '") or "panicked at" in line:
            break
        lines.append(line)
    return "\n".join(lines).strip()


# --- loading ----------------------------------------------------------------------------------


_host_runtime: Optional[Runtime] = None
_host_runtime_lock = threading.Lock()


def host_runtime() -> Runtime:
    """The runtime :func:`load` uses by default (not the one ``%%wasi`` runs use)."""
    global _host_runtime
    with _host_runtime_lock:
        if _host_runtime is None:
            _host_runtime = Runtime()
        return _host_runtime


def _size(value: int | str | None) -> Optional[int]:
    if value is None or isinstance(value, int):
        return value or None
    from .limits import parse_size
    return parse_size(value, "max_memory")


def load(artifact: Artifact | str | os.PathLike[str], caps: Optional[Capabilities] = None, *,
         fresh: bool = True, timeout: Optional[float] = DEFAULT_CALL_TIMEOUT,
         max_memory: int | str | None = None, runtime: Optional[Runtime] = None,
         stdout: Optional[TextCallback] = None, stderr: Optional[TextCallback] = None,
         output_limit: int = DEFAULT_LIMIT, fuel: Optional[int] = None) -> Guest:
    """Load a component so that its exported functions can be called from Python.

    ``caps`` are the capabilities every call gets (directories, environment,
    arguments, stdin); nothing else is granted. ``fresh``: a new instance per
    call (default) or one kept instance. ``timeout``: wall-clock seconds per
    call (None: no limit). ``max_memory``: bytes of linear memory (or
    ``"64MiB"``). ``fuel``: units of fuel per call. ``output_limit``: bytes kept
    per stream and call. ``stdout``/``stderr`` receive the guest's output as it is
    written; each call's output is also kept in ``last_stdout``/``last_stderr``.

    ``runtime`` defaults to :func:`host_runtime`, a private engine: calls on
    the runtime ``%%wasi`` uses would trap when one of its runs times out.

    The component is instantiated once here, so a component that cannot start
    (missing imports, too little memory) fails now with :class:`RuntimeFailure`.
    """
    runtime = runtime if runtime is not None else host_runtime()
    name = artifact.name if isinstance(artifact, Artifact) else Path(artifact).name
    component, engine, linker, _, _ = runtime.loaded(artifact, fuel=bool(fuel))
    guest = Guest(component, runtime, engine=engine, linker=linker, name=name, caps=caps,
                  fresh=fresh, timeout=timeout,
                  max_memory=_size(max_memory), stdout=stdout, stderr=stderr,
                  output_limit=output_limit, fuel=fuel)
    guest._start()
    return guest

