"""The sandbox worker: the process in which guests run, never the kernel.

Started by :class:`~wasi_magic.sandbox.supervisor.Sandbox` as
``python -m wasi_magic.sandbox.worker`` in a session of its own (so Jupyter's
Interrupt, sent to the kernel's process group, does not reach it). It holds
the Wasmtime engines, the compiled components and the stores. Requests arrive
as frames on stdin; replies, and the guest's output as it is written, leave as
frames on the original stdout (fd 1 is pointed at stderr, so a stray print
cannot corrupt the stream).

Requests are served in order on the main thread, which reads them from stdin
itself. Interrupts come on a pipe of their own (its descriptor is the first
argument), whose thread interrupts the running guest at once through its epoch
deadline. If a guest is blocked in a host call, the epoch cannot stop
it: the supervisor then kills this process and starts another.

Tier-up code has no epoch checks while this worker holds nothing a restart would
lose (no session, no loaded component): a deadline that fires on it sends the
run's result, then an end to this process (:meth:`Worker.end_after`).
"""

from __future__ import annotations

import itertools
import os
import resource
import sys
import threading
import traceback
from typing import Any

from . import protocol

#: The worker's cap on its own data segment (private writable memory), in bytes.
#: Wasmtime's reservations for linear memories are not writable until used, so
#: they do not count; what guests really use does. Set by the supervisor.
MEMORY_ENV = "WASI_MAGIC_WORKER_MEMORY"


def _cap_memory() -> None:
    value = os.environ.get(MEMORY_ENV)
    if not value:
        return
    limit = int(value)
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


class Worker:
    """Serves one supervisor's requests (see :mod:`.protocol` for the messages)."""

    def __init__(self, writer: protocol.Writer) -> None:
        from . import store
        self._send = writer.send
        self._current = 0  # the request being served
        self._guests: dict[int, Any] = {}
        self._guest_ids = itertools.count(1)
        self._sessions: dict[str, Any] = {}  # session id -> KeptInstance (see .kept)
        store.on_guest_start(lambda deadline: self._send(("started", self._current)))

    # --- dispatch -------------------------------------------------------------------------

    def handle(self, message: tuple) -> None:
        from ..errors import GuestError, GuestTrap, WasiMagicError
        kind, rid, *payload = message
        self._current = rid
        try:
            reply = getattr(self, f"_do_{kind}")(rid, *payload)
        except KeyboardInterrupt as exc:
            self._send(("interrupted", rid, str(exc) or "guest interrupted"))
        except GuestError as exc:
            self._send(("error", rid, "GuestError", str(exc),
                        {"value": exc.value, "function": exc.function}))
        except GuestTrap as exc:
            self._send(("error", rid, "GuestTrap", str(exc),
                        {"kind": exc.kind, "stderr": exc.stderr, "function": exc.function}))
        except WasiMagicError as exc:
            self._send(("error", rid, type(exc).__name__, str(exc), {}))
        except Exception as exc:  # noqa: BLE001 - a bug here must not end the worker
            traceback.print_exc()
            self._send(("error", rid, "RuntimeFailure",
                        f"internal error in the sandbox worker: {type(exc).__name__}: {exc}", {}))
        else:
            self._send(("done", rid, reply))
        finally:
            self._current = 0

    def _writer(self, rid: int, stream: str) -> Any:
        def write(text: str) -> None:
            self._send(("out", rid, stream, text))
        return write

    @staticmethod
    def _use_cache(root: str | None) -> None:
        # The kernel's cache setting at the time of the request (it may change).
        if root and os.environ.get("WASI_MAGIC_CACHE") != root:
            os.environ["WASI_MAGIC_CACHE"] = root

    def allow_exit_stops(self) -> None:
        """Let the runtime stop a guest by ending this process while nothing in it would be
        lost (see :attr:`~wasi_magic.runtime.Runtime.exit_stop`)."""
        from ..runtime import default_runtime
        keeps = bool(self._sessions or self._guests)
        default_runtime().exit_stop = None if keeps else self.end_after

    def end_after(self, result: Any, interrupted: str | None) -> None:
        """Reply for a run that its deadline stopped (``interrupted``: the Interrupt's
        message), then end the process: its guest cannot be stopped in place."""
        rid = self._current
        self._send(("exiting", rid))
        if interrupted is not None:
            self._send(("interrupted", rid, interrupted))
        else:
            self._send(("done", rid, {name: getattr(result, name) for name in RESULT_FIELDS}))
        os._exit(0)

    # --- requests -------------------------------------------------------------------------

    def _do_ping(self, rid: int) -> dict:
        """Who answers, and what it holds: sessions, and the sha256s of components in memory."""
        from ..runtime import default_runtime
        return {"pid": os.getpid(), "sessions": len(self._sessions),
                "components": sorted(default_runtime().in_memory())}

    def _do_run(self, rid: int, spec: dict) -> dict:
        """Run a command component or a Preview 1 module; the result's fields."""
        self._use_cache(spec.get("cache"))
        out, err = self._writer(rid, "stdout"), self._writer(rid, "stderr")
        if spec["kind"] == "module":
            from ..preview1 import run_module
            result = run_module(spec["target"], spec["caps"], limits=spec["limits"],
                                name=spec["name"], stdout=out, stderr=err)
        else:
            from ..runtime import default_runtime
            result = default_runtime().run(spec["target"], spec["caps"], limits=spec["limits"],
                                           stdout=out, stderr=err)
        return {name: getattr(result, name) for name in RESULT_FIELDS}

    def _do_prepare(self, rid: int, target: Any, fuel: bool, cache: str | None,
                    kept: bool = False) -> dict:
        """Compile (or load from the cache) a component ahead of its run (``kept``: ahead of
        a session, which keeps its instance)."""
        from ..runtime import default_runtime
        self._use_cache(cache)
        if kept:
            _, _, _, seconds, how = default_runtime().loaded(target, fuel=fuel, kept=True)
            return {"seconds": seconds, "how": how, "strategy": "kept"}
        # The tier it will run with: Winch, or Cranelift once tier-up made it.
        _, seconds, how, tier = default_runtime().compiled(target, fuel=fuel)
        return {"seconds": seconds, "how": how, "strategy": tier}

    def _do_preload(self, rid: int, digest: str, fuel: bool, cache: str | None) -> str | None:
        """Load the compiled component with sha256 ``digest`` from the cache, if it is there
        (see :meth:`~wasi_magic.runtime.Runtime.preload`); never compiles."""
        from ..runtime import default_runtime
        self._use_cache(cache)
        return default_runtime().preload(digest, fuel=fuel)

    def _do_interface(self, rid: int, target: Any, cache: str | None) -> tuple:
        """What a component imports (``wasi:filesystem/preopens@0.2.9`` …) and exports."""
        from ..runtime import default_runtime
        self._use_cache(cache)
        return default_runtime().interface(target)

    def _do_load(self, rid: int, target: Any, options: dict, cache: str | None) -> dict:
        """Load a typed-world component; its exported functions, described."""
        from ..host import load
        self._use_cache(cache)
        gid = next(self._guest_ids)
        guest = load(target, stdout=self._call_writer("stdout"),
                     stderr=self._call_writer("stderr"), **options)
        self._guests[gid] = guest
        functions = [(name, f.spec.signature, [p for p, _ in f.spec.params])
                     for name, f in guest.functions.items()]
        return {"guest": gid, "name": guest.name, "functions": functions}

    def _call_writer(self, stream: str) -> Any:
        def write(text: str) -> None:
            self._send(("out", self._current, stream, text))
        return write

    def _do_call(self, rid: int, gid: int, name: str, args: tuple, kwargs: dict) -> dict:
        guest = self._guest(gid)
        value = guest.functions[name](*args, **kwargs)
        return {"value": value, "stdout": guest.last_stdout, "stderr": guest.last_stderr,
                "seconds": guest.last_seconds}

    def _do_close(self, rid: int, gid: int) -> None:
        guest = self._guests.pop(gid, None)
        if guest is not None:
            guest.close()

    def tidy(self) -> None:
        """Work between requests (see :meth:`~wasi_magic.runtime.Runtime.tidy`); a failure
        here is the next run's to report."""
        from ..runtime import tidy_default
        try:
            tidy_default()
        except Exception:  # noqa: BLE001 - never end the worker between requests
            traceback.print_exc()

    def _do_forget(self, rid: int) -> None:
        from .. import preview1
        from ..host import host_runtime
        from ..runtime import default_runtime
        default_runtime().forget()
        host_runtime().forget()
        preview1.forget()

    # --- sessions: a kept instance per session (see .kept) -------------------------------

    def _do_session_start(self, rid: int, sid: str, target: Any, caps: Any,
                          max_memory: int | None, fuel: bool, cache: str | None) -> dict:
        """Start session ``sid``: a store with ``caps`` (metering fuel if ``fuel``) and an
        instance, kept."""
        from ..errors import RuntimeFailure
        from ..runtime import default_runtime
        from .kept import MAX_KEPT, KeptInstance
        self._use_cache(cache)
        if sid in self._sessions:
            raise ValueError(f"session {sid} is already running")
        if len(self._sessions) >= MAX_KEPT:
            raise RuntimeFailure(f"the sandbox worker already keeps {MAX_KEPT} sessions: close "
                                 f"some (Session.close(), `%wasi session close NAME`)")
        kept = KeptInstance(default_runtime(), target, caps, max_memory, "session", bool(fuel))
        self._sessions[sid] = kept
        return {"how": kept.how, "compile_seconds": kept.compile_seconds,
                "instantiate_seconds": kept.instantiate_seconds}

    def _do_session_cell(self, rid: int, sid: str, source: str, limits: Any) -> dict:
        """Run one cell in session ``sid``; the session is dropped if the cell ended it."""
        from ..errors import RuntimeFailure
        kept = self._sessions.get(sid)
        if kept is None:
            raise RuntimeFailure(f"no such session in this sandbox worker: {sid}")
        reply = kept.run(source, limits, self._writer(rid, "stdout"), self._writer(rid, "stderr"))
        if not reply["alive"]:
            self._sessions.pop(sid, None)
        return reply

    def _do_session_close(self, rid: int, sid: str) -> None:
        kept = self._sessions.pop(sid, None)
        if kept is not None:
            kept.close()

    def _guest(self, gid: int) -> Any:
        from ..errors import RuntimeFailure
        try:
            return self._guests[gid]
        except KeyError:
            raise RuntimeFailure("this component is not loaded in the sandbox (it was "
                                 "restarted): load it again") from None


#: The RunResult fields a worker sends back (the kernel knows the rest).
RESULT_FIELDS = ("status", "stdout", "stderr", "trap", "compile_seconds", "instantiate_seconds",
                 "run_seconds", "steps", "fuel_used", "truncated", "limit_note", "tier")


def main() -> None:
    """Serve requests from stdin until it closes; take interrupts from the descriptor
    named by the first argument (a pipe of their own, see below)."""
    interrupts = int(sys.argv[1])
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # print() and warnings go to stderr, never into the frames
    _cap_memory()
    writer = protocol.Writer(replies)

    def watch_interrupts() -> None:
        # Interrupts have a pipe of their own, read by this thread alone, so that they reach
        # a running guest at once while the main thread reads requests straight from stdin
        # (a thread handing requests over would cost a thread wake per request).
        from . import store
        while True:
            try:
                message = protocol.read(interrupts, trusted=True)
            except (EOFError, OSError, protocol.ProtocolError):
                # The supervisor is gone (the kernel exited or closed us): so is every
                # reason to finish what runs. Leave now, even from inside a guest.
                os._exit(0)
            if message[0] == "interrupt":
                store.interrupt_running()

    # Import what every request needs before saying "ready".
    from .. import runtime
    from . import store
    runtime.defer_default_cleanup()
    store.no_sigint_routing()  # interrupts arrive as messages (watch_interrupts)
    worker = Worker(writer)
    worker.allow_exit_stops()
    threading.Thread(target=watch_interrupts, name="wasi-magic-interrupts", daemon=True).start()
    try:
        writer.send(("ready", 0, {"pid": os.getpid(), "python": sys.version.split()[0]}))
    except BrokenPipeError:  # the supervisor went away while this worker started
        os._exit(0)
    while True:
        try:
            message = protocol.read(0, trusted=True)
        except (EOFError, OSError, protocol.ProtocolError):
            break  # the supervisor closed us
        worker.handle(message)
        worker.allow_exit_stops()  # (a session or a load may have come or gone)
        # The reply has gone: clean up after the run and get the next one ready (if the
        # next request is already waiting, it would have waited for this work anyway).
        worker.tidy()
    writer.close()


if __name__ == "__main__":
    main()
