"""The kernel side of the sandbox: start, watch, interrupt and replace worker processes.

Guests never run in the kernel. :class:`Sandbox` sends each run or call to a
worker process (:mod:`.worker`) and streams the guest's output back as it is
written. It enforces deadlines and Interrupt from outside:

- the worker stops a guest itself (epoch interruption) at its time limit or on
  an ``interrupt`` request;
- if the guest has not stopped :data:`GRACE` seconds later, it is blocked in a
  host call (``select``, a FIFO, a real sleep) that no epoch can end: the
  supervisor kills the worker, says so in the result, and carries on with a
  spare worker that was started beforehand;
- a worker that dies (a signal, out of memory) is reported in one line; the
  kernel never dies with it;
- a worker whose guest runs code without epoch checks stops it by ending itself
  after its reply (it says ``exiting`` first): the spare takes over.

One request is in flight per worker; callers on other threads (the edge
server, the panel) wait their turn.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from pathlib import Path

from ..artifact import Artifact
from ..cache import cache_dir
from ..children import python_module
from ..capabilities import Capabilities
from ..errors import GuestError, GuestTrap, RuntimeFailure, UsageError, WasiMagicError
from ..errors import require_wasmtime as _require_wasmtime
from ..limits import Limits
from ..result import RunResult
from . import protocol
from .stops import GRACE, blocked_text
from .worker import MEMORY_ENV

#: The worker's cap on private writable memory (RLIMIT_DATA), unless
#: ``$WASI_MAGIC_WORKER_MEMORY`` says otherwise (bytes).
DEFAULT_WORKER_MEMORY = 4 << 30
#: How long a new worker may take to say it is ready.
START_TIMEOUT = 60.0
#: Components a new spare worker loads ahead, so a cell after a restart does not wait.
PRELOAD = 4

TextCallback = Callable[[str], None]

_ERRORS: dict[str, type[WasiMagicError]] = {
    cls.__name__: cls for cls in (RuntimeFailure, UsageError, WasiMagicError)}


def _send_preload(worker: WorkerProcess, sha256: str, fuel: bool) -> None:
    """Ask ``worker`` to load a compiled component from the cache, without waiting.
    Request id 0: its answer is nobody's (the request waiting next ignores it)."""
    worker.send(("preload", 0, sha256, fuel, str(cache_dir())))


@dataclass
class Stopped:
    """How a request ended when its worker had to be killed or died."""

    #: 'timeout' (blocked past its deadline), 'interrupt' (blocked after Interrupt)
    #: or 'died' (the worker ended on its own: a signal, out of memory).
    why: str
    #: Seconds the guest ran (from its start), if it had started.
    seconds: float | None
    #: The worker's end, in words (``killed by signal 9 (SIGKILL)``).
    death: str


class WorkerProcess:
    """One worker process and its pipes: requests in, interrupts in, frames out.

    No thread reads the worker's frames: the thread that sent a request reads them while
    it waits (:class:`~.protocol.FrameReader`), so each frame wakes one thread. Interrupts
    travel on a pipe of their own, which only the worker's interrupt thread reads, so the
    worker's main thread takes requests straight from its stdin.
    """

    def __init__(self) -> None:
        env = dict(os.environ)
        env.setdefault(MEMORY_ENV, str(DEFAULT_WORKER_MEMORY))
        env.pop("VIRTUAL_ENV", None)
        interrupts_in, interrupts_out = os.pipe()
        try:
            # A session of its own: Jupyter's Interrupt signals the kernel's process
            # group, and the supervisor, not the signal, decides what Interrupt does.
            self.proc = subprocess.Popen(
                python_module("wasi_magic.sandbox.worker", str(interrupts_in)),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, env=env,
                start_new_session=True, pass_fds=(interrupts_in,))
        except BaseException:
            os.close(interrupts_out)
            raise
        finally:
            os.close(interrupts_in)
        self.writer = protocol.Writer(self.proc.stdin)  # type: ignore[arg-type]
        self.interrupts = protocol.Writer(os.fdopen(interrupts_out, "wb"))
        self.frames = protocol.FrameReader(self.proc.stdout.fileno(),  # type: ignore[union-attr]
                                           trusted=False)
        self.info: dict[str, Any] = {}
        self.loaded: set[tuple] = set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def next(self, timeout: float | None) -> tuple | None:
        """The worker's next message (None if none came within ``timeout`` seconds);
        ``("dead", 0, why)`` once its pipe is closed or it sent what is not a frame."""
        try:
            message = self.frames.next(timeout)
        except Exception as exc:  # noqa: BLE001 - EOF, a broken or hostile frame
            return ("dead", 0, str(exc) or type(exc).__name__)
        if message is None:
            return None
        if not (isinstance(message, tuple) and len(message) >= 2
                and isinstance(message[0], str) and isinstance(message[1], int)):
            return ("dead", 0, "the sandbox worker sent a message that is not one")
        if message[0] == "ready" and len(message) > 2 and isinstance(message[2], dict):
            self.info = message[2]
        return message

    def send(self, message: tuple) -> bool:
        """Send a request; False if the worker is gone."""
        try:
            self.writer.send(message)
            return True
        except (OSError, ValueError):
            return False

    def interrupt(self, rid: int) -> None:
        """Ask the worker to stop its running guest (it may be gone: then nothing)."""
        try:
            self.interrupts.send(("interrupt", rid))
        except (OSError, ValueError):
            pass

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the worker can take requests, or raise RuntimeFailure saying why not."""
        deadline = time.monotonic() + timeout
        while not self.info:
            message = self.next(max(deadline - time.monotonic(), 0.0))
            if message is None or message[0] == "dead":
                break
        if not self.info:
            self.kill()
            raise RuntimeFailure(f"the sandbox worker did not start ({self.death()}); see the "
                                 f"kernel's log for its error. Is wasmtime installed? "
                                 f"pip install 'wasmtime==50.*'")

    def kill(self) -> None:
        """End the worker now (SIGKILL) and reap it."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process in D state
            pass
        self.writer.close()
        self.interrupts.close()
        self.frames.detach()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def death(self) -> str:
        """How the worker ended, in words."""
        try:
            code = self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return "still running"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "an unknown signal"
            return f"killed by signal {-code} ({name})"
        return f"exited with status {code}"


class Sandbox:
    """Runs every guest in a supervised worker process (see the module doc)."""

    def __init__(self, *, grace: float = GRACE, spare: bool = True) -> None:
        self.grace = grace
        self.keep_spare = spare
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._active: WorkerProcess | None = None
        self._spare: WorkerProcess | None = None
        #: Components the active worker has loaded, newest last: a new spare loads them too.
        self._warm: "OrderedDict[tuple, tuple]" = OrderedDict()
        #: Workers killed or lost so far (for tests and the curious).
        self.restarts = 0
        #: How recent workers ended, by pid (sessions that lived in one say why they are gone).
        self._ends: "OrderedDict[int, str]" = OrderedDict()
        #: Sessions dropped without ``close()``: (worker pid, session id), closed in that
        #: worker before the next request (see :meth:`close_later`).
        self._orphans: "list[tuple[int, str]]" = []

    # --- workers ----------------------------------------------------------------------------

    def start(self, wait: bool = True, *, preload: Iterable[str] = ()) -> "Sandbox":
        """Start the worker now rather than on first use (``wait=False``: in the background,
        as ``%load_ext wasi_magic`` does, so the first cell finds it ready).

        ``preload``: sha256s of components the worker then loads from the cache as soon
        as it is ready, before any request (it never compiles them), so that the first
        run of each finds it in memory (``%load_ext`` names the quick-mode runner)."""
        with self._lock:
            if wait:
                worker = self._worker()
            else:
                if self._active is None:
                    _require_wasmtime()
                    self._active = WorkerProcess()
                worker = self._active
            for sha256 in preload:  # (queued in the pipe until the worker reads them)
                _send_preload(worker, sha256, False)
        return self

    def _worker(self) -> WorkerProcess:
        worker = self._active
        if worker is None:
            _require_wasmtime()
        if worker is None or not worker.alive():
            if worker is not None:
                self._note_end(worker)
                worker.kill()
            spare, self._spare = self._spare, None
            self._active = worker = spare if spare is not None and spare.alive() else \
                WorkerProcess()
        worker.wait_ready()
        return worker

    def _ensure_spare(self) -> None:
        """Start a spare worker if there is none, loading what the active one has loaded.
        Called once a request is answered, not before: a spare starting (~0.15 s of CPU)
        beside the kernel's first cell would slow that cell on a small machine."""
        if self.keep_spare and (self._spare is None or not self._spare.alive()):
            self._spare = WorkerProcess()
            for key, preload in self._warm.items():
                self._preload(self._spare, key, preload)

    def _preload(self, worker: WorkerProcess, key: tuple, message: tuple) -> None:
        if key not in worker.loaded and worker.send(message):
            worker.loaded.add(key)

    def _remember(self, worker: WorkerProcess, key: tuple, message: tuple) -> None:
        """``message`` loaded something into ``worker``: a spare should load it too."""
        if key in worker.loaded and next(reversed(self._warm), None) == key:
            return  # (every quick cell: the same sandbox again, remembered already)
        worker.loaded.add(key)
        self._warm[key] = message
        self._warm.move_to_end(key)
        while len(self._warm) > PRELOAD:
            self._warm.popitem(last=False)
        if self._spare is not None and self._spare.alive():
            self._preload(self._spare, key, message)

    def _replace(self, worker: WorkerProcess) -> None:
        """Kill ``worker`` (if it still runs); the spare takes over at the next request."""
        self._note_end(worker)
        worker.kill()
        self.restarts += 1
        if self._active is worker:
            self._active = None

    def close(self) -> None:
        """Stop every worker."""
        with self._lock:
            for worker in (self._active, self._spare):
                if worker is not None:
                    worker.kill()
            self._active = self._spare = None

    def _note_end(self, worker: WorkerProcess) -> None:
        """Remember how ``worker`` ended, for sessions that lived in it."""
        ends = self._ends
        try:
            # A worker whose pipe closed is exiting on its own: a moment to reap it and
            # say how it ended (a live one, about to be killed, costs only this wait).
            worker.proc.wait(timeout=0.01)
        except subprocess.TimeoutExpired:
            pass
        ends[worker.pid] = "killed by the supervisor" if worker.alive() else worker.death()
        while len(ends) > 64:
            ends.popitem(last=False)

    def worker_end(self, pid: int) -> str | None:
        """How the worker with ``pid`` ended, if it did (None: unknown, or still running)."""
        active = self._active
        if active is not None and active.pid == pid and not active.alive():
            return active.death()
        return self._ends.get(pid)

    @property
    def pid(self) -> int | None:
        """The active worker's process id (None before the first request)."""
        return self._active.pid if self._active is not None and self._active.alive() else None

    # --- what the front ends call -------------------------------------------------------------

    def run(self, artifact: Any, capabilities: Capabilities | None = None, *,
            limits: Limits | None = None, stdout: TextCallback | None = None,
            stderr: TextCallback | None = None, module: bool = False,
            name: str | None = None) -> RunResult:
        """Run a ``wasi:cli`` component (or, with ``module=True``, a Preview 1 module).

        ``artifact`` is an :class:`~wasi_magic.artifact.Artifact`, a path, or (for a
        module) its bytes. Output reaches ``stdout``/``stderr`` as the guest writes
        it. Guest failures, limits and a killed worker are reported in the result;
        Interrupt raises KeyboardInterrupt once the guest has stopped.
        """
        caps = capabilities if capabilities is not None else Capabilities()
        limits = limits if limits is not None else Limits()
        target, path = _target(artifact)
        if name is None:
            name = getattr(artifact, "name", None) or (path.name if path else "module.wasm")
        spec = {"kind": "module" if module else "component", "target": target, "caps": caps,
                "limits": limits, "name": name, "cache": str(cache_dir())}
        remember = None if module else (("prepare", _key(target), bool(limits.fuel)),
                                        ("prepare", 0, target, bool(limits.fuel), spec["cache"]))
        reply = self.request(("run", spec), timeout=limits.timeout, stdout=stdout,
                             stderr=stderr, remember=remember, again_if_unstarted=True)
        result = RunResult(status=1, stdout="", stderr="", capabilities=caps, artifact=path,
                           limits=limits)
        if isinstance(reply, Stopped):
            result.trap = _stopped_text(reply, limits)
            result.steps = {"sandbox": "restarted"}
            return result
        for field_name, value in reply.items():
            setattr(result, field_name, value)
        return result

    def prepare(self, artifact: Any, *, fuel: bool = False) -> dict[str, Any]:
        """Compile ``artifact`` in the worker (or load it from the cache) ahead of a run:
        ``{"seconds", "how", "strategy"}``. Interrupt stops it (the worker is replaced)."""
        target, _ = _target(artifact)
        message = ("prepare", target, fuel, str(cache_dir()))
        reply = self.request(message, remember=(("prepare", _key(target), fuel),
                                                ("prepare", 0, *message[1:])))
        if isinstance(reply, Stopped):
            raise RuntimeFailure(f"the sandbox worker died while compiling ({reply.death}); "
                                 f"run the cell again")
        return reply

    def preload(self, sha256: str, *, fuel: bool = False) -> None:
        """Have the worker load the compiled component with this sha256 from the cache, if
        it is there, without waiting for it: the next :meth:`prepare` of that component
        finds it loaded. For a component still to be unpacked on this side (the two
        happen at once); it never compiles anything."""
        with self._lock:
            worker = self._worker()
            _send_preload(worker, sha256, fuel)

    def interface(self, artifact: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """What a component imports and exports, as the worker's Wasmtime reads them."""
        target, _ = _target(artifact)
        reply = self.request(("interface", target, str(cache_dir())))
        if isinstance(reply, Stopped):
            raise RuntimeFailure(f"the sandbox worker died ({reply.death}); try again")
        imports, exports = reply
        return tuple(imports), tuple(exports)

    def imports(self, artifact: Any) -> tuple[str, ...]:
        """What a component imports, as the worker's Wasmtime reads it."""
        return self.interface(artifact)[0]

    def forget(self) -> None:
        """Drop the compiled components the workers hold in memory."""
        with self._lock:
            self._warm.clear()
            for worker in (self._active, self._spare):
                if worker is not None and worker.alive():
                    worker.loaded.clear()
                    worker.send(("forget", 0))

    def close_later(self, pid: int, sid: str) -> None:
        """Have worker ``pid`` drop session ``sid`` before the next request.

        For a session object garbage-collected without ``close()``: its finalizer may run
        at any moment, even inside a request on this thread, so it must not talk to the
        worker itself. ``list.append`` is atomic.
        """
        self._orphans.append((pid, sid))

    def _close_orphans(self, worker: WorkerProcess) -> None:
        orphans, self._orphans = self._orphans, []
        for pid, sid in orphans:
            if pid == worker.pid:  # a worker that ended took its sessions with it
                # Its answer has another request id, so the request waiting next ignores it.
                worker.send(("session_close", next(self._ids), sid))

    # --- one request --------------------------------------------------------------------------

    def request(self, message: tuple, *, timeout: float | None = None,
                stdout: TextCallback | None = None, stderr: TextCallback | None = None,
                remember: tuple | None = None, again_if_unstarted: bool = False) -> Any:
        """Send ``(kind, *payload)`` to the worker and wait for its answer.

        ``timeout``: the guest's own limit; the worker is killed if the guest
        has not stopped ``grace`` seconds after it. Returns the reply, or a
        :class:`Stopped` when the worker had to be killed or died. Raises what
        the worker raised (a :class:`WasiMagicError`), or KeyboardInterrupt
        when Interrupt stopped the guest.

        ``again_if_unstarted`` (a run): if the worker died before its guest started (it
        was killed between two cells, say, and the request reached it as it ended), the
        request goes once more to a fresh worker: nothing of it had run.
        """
        with self._lock:
            for attempt in (1, 2):
                reply = self._request_once(message, timeout, stdout, stderr, remember)
                if not (again_if_unstarted and attempt == 1 and isinstance(reply, Stopped)
                        and reply.why == "died" and reply.seconds is None):
                    return reply
            return reply

    def _request_once(self, message: tuple, timeout: float | None,
                      stdout: TextCallback | None, stderr: TextCallback | None,
                      remember: tuple | None) -> Any:
        worker = self._worker()
        try:
            if self._orphans:
                self._close_orphans(worker)
            rid = next(self._ids)
            kind, *payload = message
            if not worker.send((kind, rid, *payload)):
                self._replace(worker)
                return Stopped("died", None, worker.death())
            reply = self._wait(worker, rid, timeout, stdout, stderr)
            if remember is not None and not isinstance(reply, Stopped):
                self._remember(worker, remember[0], remember[1])
            return reply
        finally:
            self._ensure_spare()

    def _wait(self, worker: WorkerProcess, rid: int, timeout: float | None,
              stdout: TextCallback | None, stderr: TextCallback | None) -> Any:
        state = _Waiting(rid, timeout)
        while True:
            try:
                outcome = self._step(worker, state, stdout, stderr)
            except KeyboardInterrupt:
                # Interrupt (SIGINT in the kernel): ask the worker to stop the guest, and
                # kill the worker if it has not within the grace time (or at a second one).
                now = time.monotonic()
                if state.interrupted:
                    state.kill_at = now
                else:
                    state.interrupted = True
                    worker.interrupt(rid)
                    state.kill_at = now + self.grace
                continue
            if outcome is not None:
                kind, value = outcome
                if kind == "raise":
                    raise value
                return value

    def _step(self, worker: WorkerProcess, state: "_Waiting", stdout: TextCallback | None,
              stderr: TextCallback | None) -> tuple[str, Any] | None:
        """Take one message (or notice a deadline); an outcome, or None to go on waiting."""
        now = time.monotonic()
        if state.kill_at is not None and now >= state.kill_at:
            seconds = _since(state.started)
            self._replace(worker)
            if state.interrupted:
                return "raise", KeyboardInterrupt(_blocked_interrupt(seconds))
            return "return", Stopped("timeout", seconds, "killed by the supervisor")
        wait = 0.5 if state.kill_at is None else state.kill_at - now
        message = worker.next(max(wait, 0.0))
        if message is None:
            return None
        kind = message[0]
        if kind == "dead":
            self._replace(worker)
            return "return", Stopped("died", _since(state.started), worker.death())
        if message[1] != state.rid:
            return None  # a preload's answer
        if kind == "out":
            forward = stdout if message[2] == "stdout" else stderr
            if forward is not None:
                forward(message[3])
        elif kind == "exiting":
            state.exiting = True
        elif kind == "started":
            state.started = time.monotonic()
            if state.timeout and state.kill_at is None:
                state.kill_at = state.started + state.timeout + self.grace
        elif kind == "done":
            self._after_exit(worker, state)
            return "return", message[2]
        elif kind == "interrupted":
            self._after_exit(worker, state)
            return "raise", KeyboardInterrupt(message[2])
        elif kind == "error":
            return "raise", _error(*message[2:])
        return None

    def _after_exit(self, worker: WorkerProcess, state: "_Waiting") -> None:
        """The worker said it ends after this reply: the spare serves the next request."""
        if state.exiting:
            self._replace(worker)


@dataclass
class _Waiting:
    """What the supervisor knows about the request it waits for."""

    rid: int
    timeout: float | None
    started: float | None = None
    kill_at: float | None = None
    interrupted: bool = False
    #: The worker ends itself after its reply (its guest could not be stopped in place).
    exiting: bool = False


def _target(artifact: Any) -> tuple[Any, Path | None]:
    """What the worker is sent for ``artifact`` (an Artifact, an absolute path or bytes),
    and the path it names, if any."""
    if isinstance(artifact, (bytes, bytearray, memoryview)):
        return bytes(artifact), None
    if isinstance(artifact, Artifact):
        return artifact, artifact.path
    path = Path(os.path.abspath(os.fspath(artifact)))
    return str(path), path


def _key(target: Any) -> Any:
    return target.sha256 if isinstance(target, Artifact) else target


def _stopped_text(stopped: Stopped, limits: Limits) -> str:
    """The one line a result shows when its worker was killed or died."""
    if stopped.why == "timeout":
        return blocked_text("timeout", stopped.seconds, limits.timeout,
                            "the sandbox was restarted")
    when = "before the guest started" if stopped.seconds is None else "while the guest ran"
    return f"the sandbox process died ({stopped.death}) {when}; a fresh one was started"


def _since(started: float | None) -> float | None:
    return None if started is None else time.monotonic() - started


def _blocked_interrupt(seconds: float | None) -> str:
    return blocked_text("interrupt", seconds, None, "the sandbox was restarted")


def _error(name: str, message: str, attrs: dict) -> Exception:
    """The kernel-side exception for an error the worker reported."""
    if name == "GuestError":
        error: Exception = GuestError(attrs.get("value"), str(attrs.get("function", "")))
        error.args = (message,)
        return error
    if name == "GuestTrap":
        return GuestTrap(message, kind=str(attrs.get("kind", "trap")),
                         stderr=str(attrs.get("stderr", "")),
                         function=str(attrs.get("function", "")))
    if name in ("BuildError", "GuestImportError", "CapabilityError"):
        from .. import errors
        return getattr(errors, name)(message)
    return _ERRORS.get(name, RuntimeFailure)(message)


_default: Sandbox | None = None
_default_lock = threading.Lock()


def forget_everywhere() -> None:
    """After ``cache clear``: the default sandbox's workers forget what they compiled
    (a sandbox that was never started is left alone)."""
    if _default is not None:
        _default.forget()


def default_sandbox() -> Sandbox:
    """The process-wide sandbox (its worker starts on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Sandbox()
        return _default
