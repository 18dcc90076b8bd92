"""A typed-world component loaded in the sandbox worker, called from the kernel.

:func:`load` returns a :class:`RemoteGuest`: the same interface as
:class:`wasi_magic.host.Guest` (functions as attributes, interfaces as
namespaces, ``last_stdout``, ``signatures()``…), but every call crosses to the
worker process, where the component really runs. Values cross as plain data
(records, variants, bytes, sets); the worker converts them, so argument errors,
guest errors and traps arrive as the same exceptions.

If the worker is restarted (a call blocked past its deadline, Interrupt, a
crash), the component is loaded again in the new worker at the next call: a
``fresh=True`` guest notices nothing; a ``fresh=False`` guest has lost its kept
instance, and its next call says so once.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Optional

from ..artifact import Artifact
from ..cache import cache_dir
from ..capabilities import Capabilities
from ..errors import GuestTrap, RuntimeFailure
from ..output import DEFAULT_LIMIT, TextCallback
from ..host import Exports, Interface
from .supervisor import Sandbox, Stopped, _target, default_sandbox

#: Default wall-clock limit of one call, in seconds.
DEFAULT_CALL_TIMEOUT = 10.0


class RemoteFunction:
    """One exported function, callable from the kernel; ``signature`` shows its WIT type."""

    def __init__(self, guest: "RemoteGuest", qualname: str, signature: str,
                 params: list[str]) -> None:
        self._guest = guest
        self.qualname = qualname
        self.signature = signature
        self.params = params
        self.__name__ = qualname.rpartition(".")[2]
        self.__qualname__ = qualname
        self.__doc__ = signature

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._guest._call(self.qualname, args, kwargs)

    def __repr__(self) -> str:
        return f"<guest function {self.qualname}: {self.signature}>"


class RemoteGuest(Exports):
    """A component loaded in the sandbox worker; its exports are Python callables."""

    def __init__(self, sandbox: Sandbox, artifact: Any, caps: Capabilities, options: dict,
                 stdout: Optional[TextCallback], stderr: Optional[TextCallback]) -> None:
        self.caps = caps
        self.fresh = bool(options.get("fresh", True))
        self.timeout = options.get("timeout")
        self.max_memory = options.get("max_memory")
        #: Calls made, and what the last one wrote and took.
        self.calls = 0
        self.last_stdout = ""
        self.last_stderr = ""
        self.last_seconds = 0.0
        self._sandbox = sandbox
        self._target, _ = _target(artifact)
        self._options = dict(options, caps=caps)
        self._forward = (stdout, stderr)
        self._lock = threading.Lock()
        self._gid: int | None = None
        self._worker_pid: int | None = None
        self._functions: dict[str, RemoteFunction] = {}
        self._interfaces: dict[str, Interface] = {}
        self.name = "component"
        self._load()

    # --- loading in the worker ----------------------------------------------------------------

    def _load(self) -> None:
        reply = self._sandbox.request(("load", self._target, self._options, str(cache_dir())),
                                      timeout=self.timeout)
        if isinstance(reply, Stopped):
            raise RuntimeFailure(f"the sandbox worker was restarted while loading the component "
                                 f"({reply.death}); load it again")
        self._gid, self._worker_pid = reply["guest"], self._sandbox.pid
        self.name = reply["name"]
        if not self._functions:
            grouped: dict[str, dict[str, RemoteFunction]] = {}
            for qualname, signature, params in reply["functions"]:
                function = RemoteFunction(self, qualname, signature, params)
                head, dot, tail = qualname.partition(".")
                if dot:
                    grouped.setdefault(head, {})[tail] = function
                else:
                    self._functions[qualname] = function
            self._interfaces = {name: Interface(name, functions)
                                for name, functions in grouped.items()}

    # --- calls ----------------------------------------------------------------------------------

    def _call(self, qualname: str, args: tuple, kwargs: dict) -> Any:
        with self._lock:
            lost = self._gid is None or self._sandbox.pid != self._worker_pid
            if lost:
                self._load()
                if not self.fresh and self.calls:
                    raise RuntimeFailure(f"{self.name}: the sandbox was restarted, so the kept "
                                         f"instance and its state are gone; a new one is "
                                         f"loaded, call again")
            out: list[str] = []
            err: list[str] = []
            try:
                reply = self._sandbox.request(
                    ("call", self._gid, qualname, args, kwargs), timeout=self.timeout,
                    stdout=_tee(out, self._forward[0]), stderr=_tee(err, self._forward[1]))
            finally:
                self.calls += 1
                self.last_stdout, self.last_stderr = "".join(out), "".join(err)
            if isinstance(reply, Stopped):
                self._gid = None
                self.last_seconds = reply.seconds or 0.0
                if reply.why == "timeout":
                    raise GuestTrap(f"{qualname}: stopped by the time limit after "
                                    f"{self.last_seconds:.2f} s (timeout={self.timeout:g} s): "
                                    f"the guest was blocked in a host call, so the sandbox was "
                                    f"restarted", kind="timeout", stderr=self.last_stderr,
                                    function=qualname)
                raise GuestTrap(f"{qualname}: the sandbox process died ({reply.death}) during "
                                f"the call; a fresh one was started", kind="crash",
                                stderr=self.last_stderr, function=qualname)
            self.last_stdout, self.last_stderr = reply["stdout"], reply["stderr"]
            self.last_seconds = reply["seconds"]
            return reply["value"]

    # --- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Unload the component from the worker."""
        with self._lock:
            if self._gid is not None and self._sandbox.pid == self._worker_pid:
                self._sandbox.request(("close", self._gid))
            self._gid = None

    def __enter__(self) -> "RemoteGuest":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tee(parts: list[str], forward: Optional[TextCallback]) -> TextCallback:
    def write(text: str) -> None:
        parts.append(text)
        if forward is not None:
            forward(text)
    return write


def load(artifact: Artifact | str | os.PathLike[str], caps: Optional[Capabilities] = None, *,
         fresh: bool = True, timeout: Optional[float] = DEFAULT_CALL_TIMEOUT,
         max_memory: int | str | None = None, fuel: Optional[int] = None,
         stdout: Optional[TextCallback] = None, stderr: Optional[TextCallback] = None,
         output_limit: int = DEFAULT_LIMIT, sandbox: Optional[Sandbox] = None) -> RemoteGuest:
    """Load a component in the sandbox worker so that its exports can be called from Python.

    ``caps`` are the capabilities every call gets; nothing else is granted.
    ``fresh``: a new instance per call (default) or one kept instance.
    ``timeout`` (seconds per call, None: no limit), ``max_memory`` (bytes or
    ``"64MiB"``), ``fuel`` (units per call) and ``output_limit`` (bytes kept per
    stream and call) bound every call. ``stdout``/``stderr`` receive the guest's
    output as it is written; each call's output is also in ``last_stdout``/``last_stderr``.

    The component is instantiated once here, so one that cannot start fails now
    with :class:`~wasi_magic.errors.RuntimeFailure`.
    """
    from ..host import _size
    caps = caps if caps is not None else Capabilities()
    options = {"fresh": fresh, "timeout": timeout or None, "max_memory": _size(max_memory),
               "fuel": fuel or None, "output_limit": output_limit}
    return RemoteGuest(sandbox if sandbox is not None else default_sandbox(), artifact, caps,
                       options, stdout, stderr)
