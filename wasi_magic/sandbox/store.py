"""One way to turn (Capabilities, Limits) into a Wasmtime store, and to stop what runs in it.

Every kind of guest (a ``wasi:cli`` component, a Preview 1 module, a typed
world, the quick runner, the edge handler) gets its store from
:func:`new_store`, its deadline from :class:`Deadline`, and its trap text from
:func:`describe_trap`.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ..capabilities import Capabilities
from ..limits import Limits
from ..output import format_size
from . import shim

try:
    import wasmtime
except ImportError:  # pragma: no cover - exercised by the install-hint test
    wasmtime = None  # type: ignore[assignment]

#: Store limits that hold for every guest, whatever its flags: no guest may create more
#: instances, memories or tables than this, nor a table with more elements (each element
#: costs the host 8 bytes). Measured: a componentize-py component instantiates 14 core
#: instances, 1 memory and 2 tables, the largest of 5,670 elements.
MAX_INSTANCES = 100
MAX_MEMORIES = 4
MAX_TABLES = 16
MAX_TABLE_ELEMENTS = 100_000


#: A guest output stream: a function that receives its bytes, or (stdout only) the path
#: of a pipe Wasmtime opens and writes itself (see :mod:`.stdout_pipe`).
Output = Callable[[bytes], Any] | str


def wasi_config(caps: Capabilities, name: str, stdout: Output,
                stderr: Callable[[bytes], Any], stdin_dir: str | None = None) -> Any:
    """A :class:`wasmtime.WasiConfig` granting exactly ``caps`` and nothing else.

    ``name`` is ``argv[0]``; ``stdout``/``stderr`` receive the guest's bytes
    (returning None, which Wasmtime reads as "all written"), or ``stdout`` is the path
    of a :class:`~.stdout_pipe.StdoutPipe`; ``--stdin-text`` is written to a file in
    ``stdin_dir`` (see :func:`stdin_folder`).
    """
    config = wasi_streams((name, *caps.args), stdout, stderr)
    add_grants(config, caps, stdin_dir)
    return config


def wasi_streams(argv: tuple[str, ...], stdout: Output, stderr: Callable[[bytes], Any]) -> Any:
    """The part of a :func:`wasi_config` that no grant changes: ``argv`` and the output
    streams. :func:`add_grants` completes it (a run's ``argv`` must equal ``argv``)."""
    config = wasmtime.WasiConfig()
    config.argv = list(argv)
    if isinstance(stdout, str):
        config.stdout_file = stdout
    else:
        config.stdout_custom = stdout
    config.stderr_custom = stderr
    return config


def add_grants(config: Any, caps: Capabilities, stdin_dir: str | None = None) -> None:
    """Add the environment, folders and stdin of ``caps`` to ``config`` (made by
    :func:`wasi_streams`, with no grant yet). Folders are opened now, at the run."""
    config.env = [list(pair) for pair in caps.env]
    for grant in caps.dirs:
        config.preopen_dir(str(grant.host), grant.guest, not grant.read_only)
    if caps.stdin_file is not None:
        config.stdin_file = str(caps.stdin_file)
    elif caps.stdin is not None and stdin_dir is not None:
        path = Path(stdin_dir, "stdin")
        path.write_bytes(caps.stdin)
        config.stdin_file = str(path)


@contextlib.contextmanager
def stdin_folder(caps: Capabilities) -> Iterator[str | None]:
    """A private folder for ``--stdin-text`` while a store uses it (None when not needed)."""
    if caps.stdin is None:
        yield None
        return
    import tempfile  # here, not at the top: `python -m wasi_magic run` starts faster
    with tempfile.TemporaryDirectory(prefix="wasi-magic-stdin-") as folder:
        yield folder


def new_store(engine: Any, caps: Capabilities, limits: Limits, name: str,
              stdout: Output, stderr: Callable[[bytes], Any],
              stdin_dir: str | None = None, *, wasi: bool = True) -> Any:
    """A store on ``engine`` with exactly ``caps`` (as WASI) and ``limits`` applied.

    The memory limit applies to each linear memory; the counts of instances,
    memories and tables, and the size of every table, are capped for every
    guest (:data:`MAX_INSTANCES` …), so no module can multiply its memory or
    grow a table without bound. Fuel is set when ``limits.fuel`` is. HTTP grants
    (``--allow-http``) become the store's data, where the host's HTTP function
    reads them (:mod:`.outbound_host`). ``wasi=False``: no WASI yet (see
    :func:`grant_wasi`).
    """
    data = None
    if caps.http:
        from .outbound_host import StoreGrants
        data = StoreGrants(caps.http)
    store = wasmtime.Store(engine, data)
    if wasi:
        grant_wasi(store, caps, name, stdout, stderr, stdin_dir)
    store.set_limits(memory_size=limits.max_memory or -1, table_elements=MAX_TABLE_ELEMENTS,
                     instances=MAX_INSTANCES, tables=MAX_TABLES, memories=MAX_MEMORIES)
    if limits.fuel:
        store.set_fuel(limits.fuel)
    return store


def grant_wasi(store: Any, caps: Capabilities, name: str, stdout: Output,
               stderr: Callable[[bytes], Any], stdin_dir: str | None = None, *,
               streams: Any = None) -> None:
    """Give ``store`` exactly ``caps`` as WASI (replacing what it had).

    A store made with ``new_store(..., wasi=False)`` for an instance made ahead of its run
    gets its grants here, just before the guest's first call: instantiating runs no
    guest code, so the guest never sees any other grants. ``streams``: a config from
    :func:`wasi_streams` made ahead for this run's ``(name, *caps.args)`` (then
    ``stdout``/``stderr`` are not used); only the grants are added now.
    """
    if streams is None:
        store.set_wasi(wasi_config(caps, name, stdout, stderr, stdin_dir))
        return
    add_grants(streams, caps, stdin_dir)
    store.set_wasi(streams)


def instantiate(make: Callable[[], Any]) -> Any:
    """``make()`` (an instantiation), tried again if Wasmtime could not set up the
    copy-on-write memory image for a moment.

    Measured in CI under load: the memfd behind a memory image once refused its seals
    (``cannot add seals to the memfd``); a second try a little later succeeds, and
    every instance after that shares the image. Other failures are raised at once.
    """
    for attempt in range(3):
        try:
            return make()
        except wasmtime.WasmtimeError as exc:
            if "memfd" not in str(exc) or attempt == 2:
                raise
            time.sleep(0.1 * (attempt + 1))


class Deadline:
    """When a store's guest must stop: its time limit, or an interrupt.

    Timers and interrupts bump the engine's epoch, which every store on that
    engine notices; each store's callback traps only if *its* run timed out or
    was interrupted, so runs on other threads (the panel, a server) go on.

    Code compiled without epoch checks (the sandbox worker's tier-up code, see
    :meth:`~wasi_magic.runtime.Runtime.compiled`) never notices an epoch: its
    deadline is given ``on_fire``, which is called once, on the timer's or the
    interrupt's thread, if the guest is still running when the deadline fires
    (the worker reports the run and ends its process).
    """

    def __init__(self, engine: Any, timeout: float | None, *,
                 on_fire: Callable[["Deadline"], None] | None = None) -> None:
        self.engine = engine
        self.timeout = timeout or None
        self.timed_out = False
        self.interrupted = False
        #: When the guest started, and when it was told to stop (``time.monotonic()``).
        self.started: float | None = None
        self.fired_at: float | None = None
        self._alarm: list[Any] | None = None
        self._on_fire = on_fire
        self._over = False  # cancelled: on_fire must not run any more
        self._fire_lock = threading.Lock()

    @property
    def fired(self) -> bool:
        """Whether the guest was told to stop (time limit or interrupt)."""
        return self.timed_out or self.interrupted

    def attach(self, store: Any) -> None:
        """Install the deadline callback on ``store``."""
        shim.on_epoch_deadline(store, lambda: self.fired)

    def start(self) -> None:
        """Start the clock (call just before the guest runs)."""
        self.started = time.monotonic()
        with _running_lock:
            _running.add(self)
        if self.timeout:
            self._alarm = _alarms.add(self.timeout, self._expire)
        if _start_hook is not None:
            _start_hook(self)

    def cancel(self) -> None:
        """Stop the clock (the guest is done)."""
        with self._fire_lock:  # (waits for an on_fire that started, which never returns)
            self._over = True
        with _running_lock:
            _running.discard(self)
        if self._alarm is not None:
            _alarms.cancel(self._alarm)
            self._alarm = None

    def interrupt(self) -> None:
        """Stop the guest now (the notebook's Interrupt)."""
        self.interrupted = True
        self.fired_at = self.fired_at or time.monotonic()
        self._fire()

    def _expire(self) -> None:
        self.timed_out = True
        self.fired_at = self.fired_at or time.monotonic()
        self._fire()

    def _fire(self) -> None:
        if self._on_fire is None:
            self.engine.increment_epoch()
            return
        with self._fire_lock:
            if not self._over and self.started is not None:
                self._over = True
                self._on_fire(self)

    def __enter__(self) -> "Deadline":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


_running: set[Deadline] = set()
_running_lock = threading.Lock()
_start_hook: Callable[[Deadline], None] | None = None


def interrupt_running() -> int:
    """Interrupt every guest running in this process now; returns how many."""
    with _running_lock:
        running = list(_running)
    for deadline in running:
        deadline.interrupt()
    return len(running)


def on_guest_start(hook: Callable[[Deadline], None] | None) -> None:
    """Call ``hook(deadline)`` whenever a guest starts running (the sandbox worker
    tells its supervisor, whose own clock starts then)."""
    global _start_hook
    _start_hook = hook


class _Alarms:
    """One daemon thread that calls functions at deadlines (a Timer per run costs ~0.4 ms)."""

    #: Longest single wait: the thread never asks the OS for a timeout it cannot represent.
    _MAX_WAIT = 3600.0

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
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="wasi-magic-alarms",
                                                daemon=True)
                self._thread.start()
            if self._queue[0] is entry:
                # Only an alarm due before every other needs the thread woken: otherwise it
                # wakes for an earlier one anyway (a run's alarm is usually later than the
                # cancelled alarms of the runs before it, so a run wakes no thread).
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
                    self._ready.wait(min(wait, self._MAX_WAIT))
                    continue
                entry = heapq.heappop(self._queue)
            if entry[3]:
                try:
                    entry[2]()
                except Exception:  # noqa: BLE001 - one failing action must not end every alarm
                    pass


_alarms = _Alarms()


class _Interrupts:
    """Turns SIGINT into :meth:`Deadline.interrupt` while a guest runs on the main thread.

    A Python signal handler cannot run while the main thread is inside
    Wasmtime, so SIGINT's wakeup fd points at a pipe that a watchdog thread
    reads. Used when Wasmtime runs in the caller's own process (the sandbox
    worker is interrupted by its supervisor instead).
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._active: Deadline | None = None
        self._thread = threading.Thread(target=self._serve, name="wasi-magic-interrupts",
                                        daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data = os.read(self._read, 64)
            except OSError:  # pragma: no cover
                return
            active = self._active
            if active is not None and signal.SIGINT in data:
                active.interrupt()

    @contextlib.contextmanager
    def guard(self, deadline: Deadline) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def record(signum: int, frame: Any) -> None:
            deadline.interrupted = True
        previous = signal.signal(signal.SIGINT, record)
        old_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._active = deadline
        try:
            yield
        finally:
            self._active = None
            signal.set_wakeup_fd(old_fd)
            signal.signal(signal.SIGINT, previous)


_interrupts: _Interrupts | None = None
_interrupts_lock = threading.Lock()
_route_sigint = True


def interrupt_guard(deadline: Deadline) -> Any:
    """Route SIGINT to ``deadline`` while a guest runs on the main thread (unless
    :func:`no_sigint_routing` was called)."""
    global _interrupts
    if not _route_sigint:
        return contextlib.nullcontext()
    with _interrupts_lock:
        if _interrupts is None:
            _interrupts = _Interrupts()
    return _interrupts.guard(deadline)


def no_sigint_routing() -> None:
    """Let :func:`interrupt_guard` do nothing from now on: for the sandbox worker, which
    runs in a session of its own (no terminal or notebook SIGINT reaches it) and is
    interrupted by its supervisor's ``interrupt`` message instead. Saves four signal
    system calls around every guest call."""
    global _route_sigint
    _route_sigint = False


def watch_blocked(grace: float, on_blocked: Callable[[Deadline], None]) -> None:
    """Call ``on_blocked(deadline)`` for a guest of this process still running ``grace``
    seconds after it was told to stop.

    For a process that may end itself (the command line): Wasmtime's epoch stops wasm
    code, never a host call, so a guest blocked in ``select`` or a FIFO ``open`` can
    only be ended with its process. ``on_blocked`` is expected not to return.
    """
    def watch() -> None:
        while True:
            time.sleep(min(grace, 0.05))
            now = time.monotonic()
            with _running_lock:
                late = [d for d in _running if d.fired_at is not None and now - d.fired_at > grace]
            if late:
                on_blocked(late[0])
    threading.Thread(target=watch, name="wasi-magic-blocked", daemon=True).start()


def stop_text(deadline: Deadline, limits: Limits, seconds: float) -> str | None:
    """Why ``deadline`` stopped its guest after ``seconds`` (None: it did not)."""
    if deadline.interrupted:
        return f"interrupted after {seconds:.2f} s"
    if deadline.timed_out:
        return f"stopped by the time limit: ran {seconds:.1f} s of --timeout {limits.timeout:g} s"
    return None


def describe_trap(exc: Exception, deadline: Deadline, limits: Limits, seconds: float) -> str:
    """A short message: which limit stopped the guest, or the trap's cause and top frames."""
    text = str(exc)
    stopped = stop_text(deadline, limits, seconds)
    if stopped is not None:
        return stopped
    if "all fuel consumed" in text and limits.fuel:
        return f"stopped by the fuel limit: used all {limits.fuel:,} units of --fuel"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    cause = next((line for line in reversed(lines) if line.startswith("wasm trap:")), None)
    frames = [line for line in lines if line[:1].isdigit()][:4]
    head = (cause or (lines[0] if lines else type(exc).__name__)).removeprefix("wasm trap: ")
    if limits.max_memory and "memory" in text.lower():
        head += f" (under --max-memory {format_size(limits.max_memory)})"
    return "guest trapped: " + head + "".join("\n    " + f for f in frames)
