"""Sessions: one sandboxed interpreter that remembers across cells.

A ``%%wasi`` cell runs in a fresh instance: nothing survives it. A
:class:`Session` instead keeps one instance of the *session component* (CPython
with the quick-mode module set, built once per installation) in the sandbox
worker, and runs cell after cell in it: globals, imports and open files stay::

    from wasi_magic import Capabilities, Session

    s = Session("demo", Capabilities.parse(dirs=["data::/data::ro"]), max_memory=64 << 20)
    s.run("import json; rows = json.load(open('/data/rows.json'))")
    s.run("print(len(rows))").stdout          # '3\\n'
    s.close()

Capabilities, the memory limit and whether fuel is metered belong to the store,
so they are fixed when the session starts; the time limit, fuel (in a session
that meters it) and the output cap apply per cell.
An exception in a cell is that cell's failure: the session goes on. A trap (a
limit, Interrupt, ``os._exit``) ends the instance, and a restarted sandbox
worker takes every session in it along: the next cell then says so in one line
and does not start a fresh session on its own (:meth:`Session.reset` does).

:class:`Sessions` is the registry of named sessions the ``%%wasi --session
NAME`` magic adapts; sessions never share anything but the worker process.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from . import guest
from .artifact import Artifact
from .builder import ProgressCallback, _cached_or_built, _componentize, _explain_failure
from .builder import componentize_py_version
from .cache import cache_dir, default_cache
from .capabilities import Capabilities
from .errors import RuntimeFailure, UsageError
from .limits import Limits
from .output import TextCallback, format_size
from .result import RunResult
from .text import check_text
from .sandbox.supervisor import Sandbox, Stopped, _key, _stopped_text, _target, default_sandbox
from .worlds import WitSource

#: The world of the session component: the host calls ``run-cell`` once per cell.
SESSION_WIT = """\
package wasi-magic:session@0.1.0;

world session {
  /// Run one cell in the kept interpreter; its exit status (0: it ended normally).
  export run-cell: func(source: string) -> s32;
}
"""
SESSION_WORLD = "session"
SESSION_APP = "wasi_magic_session"
SESSION_APP_PATH = Path(__file__).with_name("_guest") / f"{SESSION_APP}.py"
#: How many named sessions one kernel may hold (each is an interpreter in the worker).
MAX_SESSIONS = 16
#: A session's name: what ``%%wasi --session NAME`` accepts.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


# --- the session component ----------------------------------------------------------------


def session_key() -> str:
    """The cache key of the session component: every input that shapes it."""
    digest = hashlib.sha256()
    for part in ("wasi-magic-session/1", componentize_py_version(), sys.version,
                 SESSION_APP_PATH.read_text(encoding="utf-8"),
                 guest.SHARED_PATH.read_text(encoding="utf-8"),
                 Path(guest.__file__).read_text(encoding="utf-8"), SESSION_WIT):
        digest.update(part.encode() + b"\0\0")
    return digest.hexdigest()[:32]


def session_component(progress: ProgressCallback | None = None) -> Artifact:
    """The session component (built on first use, then cached): CPython with the quick-mode
    modules (:data:`wasi_magic.guest.QUICK_MODULES`), exporting ``run-cell``."""
    cache = default_cache()
    key = session_key()
    name = "session.wasm"

    def make() -> Artifact:
        generated = guest.generate("", quick=True)  # the quick runner's module set
        files = {file: text for file, text in generated.files.items()
                 if file != f"{guest.APP_MODULE}.py"}
        files[f"{SESSION_APP}.py"] = SESSION_APP_PATH.read_text(encoding="utf-8")
        generated = guest.GuestSource(files=files, imports=generated.imports)
        return _componentize(generated, (), key, name, cache, progress,
                             wit=WitSource(text=SESSION_WIT).materialize, world=SESSION_WORLD,
                             app_module=SESSION_APP,
                             explain=lambda log, wit_path: _explain_failure(log, generated),
                             artifact_world=SESSION_WORLD)

    return _cached_or_built(key, name, SESSION_WORLD, cache, make)


# --- one session --------------------------------------------------------------------------


@dataclass(repr=False)
class SessionResult(RunResult):
    """What one cell of a session produced (a :class:`RunResult`), and the session's state."""

    #: The session's name, and which of its cells this was (1, 2, …).
    session: str = ""
    cell: int = 0
    #: Whether the session survived the cell (False after a trap, a limit or Interrupt).
    alive: bool = True
    #: Why the session ended, if it did.
    ended: str | None = None
    #: Whether this cell started the session (its first cell, or the first after a reset).
    started: bool = False
    #: Seconds the worker took to start the session (compile/load and instantiate).
    start_seconds: float = 0.0

    def __repr__(self) -> str:
        state = "alive" if self.alive else f"ended: {self.ended}"
        return f"{super().__repr__()[:-1]}, session={self.session!r} cell {self.cell} ({state}))"


class SessionLost(RuntimeFailure):
    """The session's instance is gone (a trap, Interrupt, or its worker was restarted)."""


_ids = itertools.count(1)


def describe(caps: Capabilities) -> str:
    """Grants in one line: ``env GREETING=hello; dir /home/me/data -> /data (read-only)``."""
    return "; ".join(" ".join(line.split()) for line in caps.describe())


def check_name(name: str) -> str:
    """``name`` if it can name a session, else a UsageError saying what can."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise UsageError(f"session name {name!r}: use 1-64 letters, digits, '_', '-' or '.', "
                         f"starting with a letter or '_' (e.g. --session lab1).")
    return name


class Session:
    """One sandboxed interpreter kept between cells (see the module doc).

    ``caps``, ``max_memory`` (bytes) and ``fuel_metering`` are fixed when the
    session starts (at its first :meth:`run`, or :meth:`start`). Only a session
    that meters fuel accepts a per-cell ``fuel`` budget; metering makes guest
    code about 2.3x slower, so it is off unless asked for. ``sandbox`` defaults
    to the process-wide one, whose worker holds the instance.
    """

    def __init__(self, name: str = "session", caps: Capabilities | None = None, *,
                 max_memory: int | None = None, fuel_metering: bool = False,
                 sandbox: Sandbox | None = None) -> None:
        self.name = check_name(name)
        self.caps = caps if caps is not None else Capabilities()
        Limits(max_memory=max_memory)  # checked once, here
        self.max_memory = max_memory
        self.fuel_metering = bool(fuel_metering)
        #: Cells run in the current instance.
        self.cells = 0
        #: Why the session can no longer run cells (None while it can, or before it starts).
        self.ended: str | None = None
        self._sandbox = sandbox if sandbox is not None else default_sandbox()
        self._sid: str | None = None
        self._pid: int | None = None
        self._finalizer: weakref.finalize | None = None
        self._lock = threading.RLock()

    # --- state ---------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether the session has an instance (or had one that ended)."""
        return self._sid is not None

    @property
    def state(self) -> str:
        """'new' (no instance yet), 'alive', or 'ended: why'."""
        if self.ended is not None:
            return f"ended: {self.ended}"
        if self._sid is None:
            return "new"
        self._notice_loss()
        return "alive" if self.ended is None else f"ended: {self.ended}"

    def grants(self) -> str:
        """The session's capabilities and memory limit, in one line."""
        text = describe(self.caps)
        memory = format_size(self.max_memory) if self.max_memory else "no limit"
        metering = "; fuel metered" if self.fuel_metering else ""
        return f"{text}; max memory {memory}{metering}"

    def _notice_loss(self) -> None:
        """If the worker that held the instance is gone, the session ended with it."""
        if self._sid is not None and self.ended is None and self._sandbox.pid != self._pid:
            why = self._sandbox.worker_end(self._pid) if self._pid else None
            self.ended = (f"its sandbox worker was restarted ({why})" if why
                          else "its sandbox worker was restarted")

    def _lost(self) -> SessionLost:
        return SessionLost(f"session {self.name!r} ended ({self.ended}); its state is gone. "
                           f"Reset it to start a fresh one: `%wasi session reset {self.name}` "
                           f"(Python: session.reset()).")

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Start the instance now (``run`` does on first use): ``{"seconds", "how"}``."""
        with self._lock:
            if self._sid is not None:
                self._notice_loss()
                if self.ended is not None:
                    raise self._lost()
                return {"seconds": 0.0, "how": "running"}
            artifact = session_component(progress)
            target, _ = _target(artifact)
            sid = f"{self.name}#{next(_ids)}"
            cache = str(cache_dir())
            started = time.perf_counter()
            fuel = self.fuel_metering
            reply = self._sandbox.request(
                ("session_start", sid, target, self.caps, self.max_memory, fuel, cache),
                # (A spare worker loads it as sessions run it: kept, with epoch checks.)
                remember=(("prepare-kept", _key(target), fuel),
                          ("prepare", 0, target, fuel, cache, True)))
            if isinstance(reply, Stopped):
                raise RuntimeFailure(f"the sandbox worker died while starting session "
                                     f"{self.name!r} ({reply.death}); run the cell again")
            self._sid, self._pid = sid, self._sandbox.pid
            # Dropped without close(): the worker lets go of the instance all the same.
            self._finalizer = weakref.finalize(self, self._sandbox.close_later, self._pid, sid)
            self.cells = 0
            self.ended = None
            return dict(reply, seconds=time.perf_counter() - started)

    def run(self, source: str, limits: Limits | None = None, *,
            stdout: TextCallback | None = None, stderr: TextCallback | None = None,
            progress: ProgressCallback | None = None, **options: Any) -> SessionResult:
        """Run ``source`` in the session under ``limits`` (or ``timeout``, ``fuel``,
        ``output_limit``): a :class:`SessionResult`.

        A syntax error is reported before anything runs (BuildError, with the cell
        line). If the session ended (see :attr:`ended`), raises :class:`SessionLost`.
        Interrupt raises KeyboardInterrupt once the cell has stopped; its message says
        whether the session survived.
        """
        limits = _limits(limits, options)
        with self._lock:
            if self.ended is not None:
                raise self._lost()
            if limits.max_memory not in (None, self.max_memory):
                raise UsageError(f"session {self.name!r}: the memory limit is fixed when a "
                                 f"session starts; give max_memory to Session().")
            if limits.fuel and not self.fuel_metering:
                raise UsageError(
                    f"session {self.name!r} does not meter fuel (metering slows guest code "
                    f"~2x, so a session chooses it when it starts): `%wasi session reset "
                    f"{self.name}`, then give --fuel on its first cell "
                    f"(Python: Session(..., fuel_metering=True)).")
            check_text(source, "The cell")  # (the guest's Python compiles it: its errors are its own)
            info = self.start(progress)
            first = self.cells == 0
            try:
                reply = self._sandbox.request(("session_cell", self._sid, source, limits),
                                              timeout=limits.timeout, stdout=stdout,
                                              stderr=stderr)
            except KeyboardInterrupt as exc:
                # Interrupt, and the guest was blocked in a host call: the supervisor killed
                # the worker (or Interrupt came before the cell reached it).
                self._notice_loss()
                survived = "it goes on" if self.ended is None else "it ended with the worker"
                raise KeyboardInterrupt(f"{exc}; session {self.name!r}: {survived}") from None
            except RuntimeFailure as exc:
                if "no such session" in str(exc):
                    self._notice_loss()
                    self.ended = self.ended or "its sandbox worker no longer holds it"
                    raise self._lost() from None
                raise
            return self._result(reply, limits, first, info)

    def _result(self, reply: Any, limits: Limits, first: bool,
                info: dict[str, Any]) -> SessionResult:
        result = SessionResult(status=1, stdout="", stderr="", capabilities=self.caps,
                               limits=limits, session=self.name, started=first,
                               start_seconds=info.get("seconds", 0.0) if first else 0.0)
        result.steps = {"build": "session", "session": "started" if first else "kept"}
        if isinstance(reply, Stopped):
            self.ended = ("the cell was blocked in a host call past its time limit"
                          if reply.why == "timeout" else f"the sandbox worker died ({reply.death})")
            if reply.why == "died" and reply.seconds is None:  # it died before the cell ran
                result.trap = (f"the sandbox process had died ({reply.death}) before the cell "
                               f"ran; session {self.name!r} ended with it")
            else:
                result.trap = (_stopped_text(reply, limits)
                               + f"; session {self.name!r} ended with it")
            result.alive, result.ended, result.cell = False, self.ended, self.cells + 1
            self.cells += 1
            return result
        for name in ("status", "stdout", "stderr", "trap", "run_seconds", "fuel_used",
                     "truncated", "limit_note"):
            if name in reply:
                setattr(result, name, reply[name])
        self.cells = result.cell = int(reply["cell"])
        result.alive = bool(reply["alive"])
        if not result.alive:
            self.ended = result.ended = str(reply["ended"])
            note = (f"session {self.name!r} ended (a stopped instance cannot run again); "
                    f"reset it to start a fresh one: `%wasi session reset {self.name}`")
            result.trap = f"{result.trap}\n{note}" if result.trap else \
                f"the cell exited the interpreter (status {result.status})\n{note}"
        if reply.get("interrupted"):
            survived = "it goes on" if result.alive else "it ended"
            raise KeyboardInterrupt(f"guest interrupted after {result.run_seconds:.2f} s; "
                                    f"session {self.name!r}: {survived}")
        return result

    def reset(self) -> None:
        """End the current instance; the next :meth:`run` starts a fresh one (same grants)."""
        with self._lock:
            self._drop()
            self.ended = None
            self.cells = 0

    def close(self) -> None:
        """End the session: its instance and state are dropped in the worker."""
        with self._lock:
            self._drop()
            self.ended = "closed"

    def _drop(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._sid is not None and self._sandbox.pid == self._pid and self._pid is not None:
            try:
                self._sandbox.request(("session_close", self._sid))
            except RuntimeFailure:
                pass
        self._sid = self._pid = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Session {self.name!r} ({self.state}, {self.cells} cells): {self.grants()}>"


def _limits(limits: Limits | None, options: dict[str, Any]) -> Limits:
    from .limits import DEFAULT_TIMEOUT
    from .output import DEFAULT_LIMIT
    if limits is None:
        limits = Limits(timeout=options.pop("timeout", DEFAULT_TIMEOUT) or None,
                        fuel=options.pop("fuel", None),
                        max_output=options.pop("output_limit", DEFAULT_LIMIT))
    if options:
        raise TypeError(f"Session.run() got unexpected options: {', '.join(sorted(options))}")
    return limits


# --- named sessions (what the magic adapts) -----------------------------------------------


class Sessions:
    """Named sessions of one kernel: ``%%wasi --session NAME`` and ``%wasi session …``."""

    def __init__(self, sandbox: Sandbox | None = None) -> None:
        self._sandbox = sandbox
        self._sessions: dict[str, Session] = {}

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._sessions

    def get(self, name: str) -> Session | None:
        """The session called ``name``, if there is one."""
        return self._sessions.get(name)

    def for_cell(self, name: str, caps: Capabilities, max_memory: int | None, *,
                 grants_given: bool, memory_given: bool, fuel: bool = False) -> Session:
        """The session a cell runs in: an existing one (whose grants the cell may repeat
        but not change) or a new one with the cell's grants; it meters fuel if the cell
        that starts it gives ``--fuel`` (``fuel``)."""
        check_name(name)
        session = self._sessions.get(name)
        if session is None:
            if len(self._sessions) >= MAX_SESSIONS:
                raise UsageError(f"at most {MAX_SESSIONS} sessions at a time (each holds an "
                                 f"interpreter in the sandbox worker): close one with "
                                 f"`%wasi session close NAME` (see `%wasi session list`).")
            session = Session(name, caps, max_memory=max_memory, fuel_metering=fuel,
                              sandbox=self._sandbox)
            self._sessions[name] = session
            return session
        if not session.started:  # reset: the next cell's grants start it
            if grants_given:
                session.caps = caps
            if memory_given:
                session.max_memory = max_memory
            session.fuel_metering = fuel
            return session
        session.state  # notices a restarted worker: a lost session says so, not "grants"
        changed = []
        if grants_given and caps != session.caps:
            changed.append("capabilities " + describe(caps))
        if memory_given and max_memory != session.max_memory:
            changed.append(f"max memory {format_size(max_memory) if max_memory else 'no limit'}")
        if changed and session.ended is None:
            raise UsageError(
                f"session {name!r} was started with {session.grants()}; this cell asks for "
                f"{' and '.join(changed)}. Grants are fixed when a session starts: "
                f"`%wasi session reset {name}` (or close) to change them.")
        return session

    def reset(self, name: str) -> Session:
        """End ``name``'s instance; its next cell starts a fresh one (with that cell's grants,
        if it gives any)."""
        session = self._named(name)
        session.reset()
        return session

    def close(self, name: str) -> None:
        """End ``name`` and forget it."""
        self._named(name).close()
        del self._sessions[name]

    def close_all(self) -> None:
        """End every session."""
        for name in list(self._sessions):
            self.close(name)

    def _named(self, name: str) -> Session:
        session = self._sessions.get(check_name(name))
        if session is None:
            known = ", ".join(sorted(self._sessions)) or "none"
            raise UsageError(f"no session named {name!r} (sessions: {known}).")
        return session
