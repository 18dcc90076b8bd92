"""What a guest may touch: directories, environment variables, arguments, stdin, HTTP origins.

Nothing is granted unless it is named. The flags are spelled like the
``wasmtime run`` command line, so a cell's first line can be pasted into a
terminal (see :meth:`Capabilities.wasmtime_command`).
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from .errors import BuildError, CapabilityError, UsageError
from .text import check_text

if TYPE_CHECKING:
    from .outbound import Origin

#: Flags shared by every front end (``%%wasi``, ``%wasi run``, ``python -m
#: wasi_magic run``): ``(names, argparse keyword arguments)``.
CAPABILITY_ARGUMENTS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--dir",), dict(
        action="append", default=[], metavar="HOST[::GUEST[::ro]]",
        help="Grant a host directory to the guest at GUEST (default: the same "
             "name). Read-write unless it ends in ::ro. HOST is relative to the "
             "current working directory.")),
    (("--env",), dict(
        action="append", default=[], metavar="NAME[=VALUE]",
        help="Set an environment variable in the guest; a bare NAME passes the "
             "host's value through. Nothing else of the host environment is visible.")),
    (("--stdin",), dict(
        default=None, metavar="FILE", dest="stdin_file",
        help="Feed FILE to the guest's standard input (default: empty).")),
    (("--stdin-text",), dict(
        default=None, metavar="TEXT", dest="stdin_text",
        help="Feed TEXT to the guest's standard input.")),
    (("--allow-http",), dict(
        action="append", default=[], metavar="URL", dest="allow_http",
        help="Let the guest make HTTP requests to this origin, scheme://host[:port] "
             "(repeatable). Needs the guest helper: from wasi_magic_http import get.")),
]


def host_path(text: str, cwd: Path, flag: str) -> Path:
    """The host path ``text`` names (relative to ``cwd``), walked as the OS walks it.

    Refuses, with a message showing where it points, a path that passes through a
    symbolic link at any step the user wrote (a guest with a read-write grant can
    plant links; a later grant, ``--stdin`` or ``-o`` must not follow them). The
    working directory itself is trusted.
    """
    raw = Path(os.path.expanduser(text))
    # (strings, not Paths, from here: this runs for every grant of every cell)
    current = raw.anchor if raw.is_absolute() else os.fspath(cwd)
    for part in raw.parts[1:] if raw.is_absolute() else raw.parts:
        if part in ("", "."):
            continue
        if part == "..":
            current = os.path.dirname(current)  # no link was followed to get here: as the OS goes
            continue
        current = os.path.join(current, part)
        try:
            link = stat.S_ISLNK(os.lstat(current).st_mode)
        except (OSError, ValueError):
            link = False  # (missing: the caller says so)
        if link:
            target = os.path.realpath(current)
            raise CapabilityError(
                f"{flag} {text!r}: {current!r} is a symbolic link to {target!r}. "
                f"wasi-magic does not follow links in host paths (a guest could have planted "
                f"it); to use the target, name it: {flag} {target}")
    return Path(os.path.normpath(current))


def _mode(path: str | os.PathLike[str], what: str) -> int | None:
    """``os.stat(path).st_mode``, or None if nothing is there. Any other OS error (a name
    too long for the file system, a folder that cannot be searched) is a
    :class:`CapabilityError` that starts with ``what`` and gives the OS's reason."""
    try:
        return os.stat(path).st_mode
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise CapabilityError(f"{what}: {exc.strerror or exc}.") from None


def write_host_file(text: str, data: bytes | Path, cwd: Path | None = None,
                    flag: str = "-o") -> Path:
    """Write ``data`` (bytes, or a file's contents) to the host path ``text``, for ``-o``.

    The path is walked as :func:`host_path` walks it (no symbolic links, the file
    itself included), and the file is opened with ``O_NOFOLLOW``, so a link a
    guest planted in a read-write grant never redirects the write.
    """
    target = host_path(text, cwd if cwd is not None else Path.cwd(), flag)
    mode = _mode(target.parent, f"{flag} {text!r}: cannot write into {str(target.parent)!r}")
    if mode is None or not stat.S_ISDIR(mode):
        raise CapabilityError(f"{flag} {text!r}: the folder {str(target.parent)!r} does not exist.")
    payload = data if isinstance(data, bytes) else Path(data).read_bytes()
    not_a_file = CapabilityError(
        f"{flag} {text!r}: {str(target)!r} is not a regular file (a FIFO, a device or a "
        f"folder): writing there could wait forever or reach a device. Give a file name.")
    mode = _mode(target, f"{flag} {text!r}: cannot write {str(target)!r}")
    if mode is not None and not stat.S_ISREG(mode):
        raise not_a_file
    try:
        # O_NONBLOCK: a FIFO swapped in meanwhile fails at once instead of waiting for a reader.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise not_a_file from None
        raise CapabilityError(f"{flag} {text!r}: cannot write {str(target)!r}: "
                              f"{exc.strerror or exc}.") from None
    with os.fdopen(fd, "wb") as out:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise not_a_file
        os.set_blocking(fd, True)
        out.truncate(0)  # (only now that it is known to be a regular file)
        out.write(payload)
    return target


#: The most :func:`read_guest_file` reads: guest output is untrusted, and so is its size.
MAX_GUEST_FILE = 256 << 20


def read_guest_file(path: str | os.PathLike[str], *, cwd: str | os.PathLike[str] | None = None,
                    limit: int = MAX_GUEST_FILE) -> bytes:
    """The bytes of a file a guest wrote into a read-write grant, read as untrusted input.

    The path is walked as :func:`host_path` walks grants (no symbolic link at any
    step), the file is opened with ``O_NOFOLLOW | O_NONBLOCK`` and must be a regular
    file of at most ``limit`` bytes: a guest that replaced its output by a link to
    a host secret, a FIFO or ``/dev/zero`` gets a clear error, not a host read.
    """
    text = os.fspath(path)
    target = host_path(text, Path(cwd) if cwd is not None else Path.cwd(), "guest file")
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise CapabilityError(f"cannot read the guest's file {text!r}: "
                              f"{exc.strerror or exc}.") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise CapabilityError(f"the guest's file {text!r} is not a regular file (a FIFO "
                                  f"or a device); wasi-magic does not read it.")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise CapabilityError(f"the guest's file {text!r} is larger than {limit:,} bytes; "
                              f"read it yourself if you trust it.")
    return data


def protected_folders() -> dict[Path, str]:
    """Folders no grant may cover or reach into: whoever writes there runs code on the host,
    or reads what the host keeps secret."""
    return {Path(folder): why for folder, _, why, _ in _protected_now()}


def _protected_now() -> tuple[tuple[str, str, str, bool], ...]:
    """:func:`_protected` for the environment as it is now."""
    # Keyed by the environment's raw bytes: decoding every variable (os.environ.items())
    # cost ~15 µs a grant, many times what the lookup saves otherwise.
    raw = getattr(os.environ, "_data", None)
    environment = frozenset(raw.items()) if isinstance(raw, dict) else frozenset(os.environ.items())
    return _protected(environment)


@functools.lru_cache(maxsize=4)
def _protected(environment: frozenset[tuple[Any, Any]]) -> tuple[tuple[str, str, str, bool], ...]:
    """:func:`protected_folders` for this environment, resolved as the OS resolves them:
    ``(folder, folder + separator, why, secret)``; ``secret``: no guest may even read it
    (a ``--path`` folder, which a build copies where its guest reads it, must not carry it).

    Remembered per environment (where they are depends only on it): finding and resolving
    them costs ~0.3 ms, on every grant of every cell otherwise. No guest can change what
    they resolve to: a grant that holds any part of their paths is refused.
    """
    import sys
    from .cache import cache_dir, key_path
    ipython = Path(os.environ.get("IPYTHONDIR") or Path.home() / ".ipython")
    import site
    code = {
        cache_dir(): "the wasi-magic cache (compiled code the sandbox loads)",
        Path(__file__).resolve().parent: "the installed wasi_magic package",
        Path(sys.prefix): "the Python environment the kernel runs from",
        Path(site.getusersitepackages()): "your user site-packages (code Python imports)",
    }
    secret = {
        key_path().parent: "the wasi-magic settings (the key that seals the cache)",
        ipython: "the IPython profile directory (startup code the kernel runs, your history)",
        # The host's processes (their memory and environment), devices and kernel settings.
        Path("/proc"): "the host's running processes (/proc)",
        Path("/sys"): "the host kernel's settings (/sys)",
        Path("/dev"): "the host's devices (/dev)",
    }
    try:
        from jupyter_core.paths import jupyter_config_dir, jupyter_data_dir, jupyter_runtime_dir
    except ImportError:  # pragma: no cover - Jupyter is not installed
        pass
    else:
        secret[Path(jupyter_config_dir())] = "Jupyter's settings (code Jupyter runs)"
        secret[Path(jupyter_data_dir())] = "Jupyter's kernel specs (commands Jupyter runs)"
        secret[Path(jupyter_runtime_dir())] = ("Jupyter's runtime files (the keys of running "
                                               "kernels)")
    found = [(folder, why, False) for folder, why in code.items()]
    found += [(folder, why, True) for folder, why in secret.items()]
    resolved = ((os.path.realpath(folder), why, hidden) for folder, why, hidden in found)
    # The deepest first: a message names the most specific folder (Jupyter's runtime files
    # lie inside its data folder).
    return tuple(sorted(((real, _inside(real), why, hidden) for real, why, hidden in resolved),
                        key=lambda entry: -len(entry[0])))


def _inside(folder: str) -> str:
    """The prefix of every path inside ``folder`` (resolved, absolute)."""
    return folder.rstrip(os.sep) + os.sep


def _check_not_protected(real: str, spec: str) -> None:
    """``real`` (a grant's host folder, resolved) must not be, hold or lie inside a
    folder whose contents decide what the host runs, or that it keeps secret."""
    real_inside = _inside(real)
    for folder, folder_inside, why, _ in _protected_now():
        # (string tests, not pathlib: this runs for every grant of every cell)
        within = real == folder or real.startswith(folder_inside)
        if within or folder.startswith(real_inside):
            where = "is" if real == folder else "is inside" if within else "contains"
            raise CapabilityError(
                f"--dir {spec!r}: {real!r} {where} {why} ({folder!r}); a guest with "
                f"this grant could change what the host runs or read its secrets. Grant a "
                f"subfolder that holds only the guest's data, e.g. --dir data::/data.")


def check_carried_folder(folder: Path, what: str, carried: Callable[[str], bool]) -> None:
    """A folder a build carries into its guest (``--path``) must not be, lie inside, or
    carry a folder the host keeps secret (the cache's sealing key, the keys of running
    kernels, IPython's history, ``/proc`` …). ``what`` names it in the message
    (``--path 'lib'``); ``carried(relative)``: whether the build would carry the folder
    at that path inside it (dot folders are never carried). Folders of code the guest
    may import (site-packages) are not secret."""
    real = os.path.realpath(folder)
    real_inside = _inside(real)
    for secret, secret_inside, why, hidden in _protected_now():
        if not hidden:
            continue
        if real == secret or real.startswith(secret_inside):
            where = "is" if real == secret else "is inside"
        elif secret.startswith(real_inside) and carried(os.path.relpath(secret, real)):
            where = "contains"
        else:
            continue
        raise BuildError(
            f"{what}: {real!r} {where} {why} ({secret!r}); a build copies the folder where "
            f"its guest can read every file. Give a folder that holds only the modules the "
            f"cell imports.")


@functools.lru_cache(maxsize=4)
def _import_folders(path: tuple[str, ...], cwd: str) -> tuple[tuple[str, str], ...]:
    """The folders ``sys.path`` (as ``path``, in ``cwd``) imports top-level modules from,
    resolved as the OS resolves them: ``(folder, folder + separator)``."""
    resolved = {os.path.realpath(os.path.join(cwd, entry)) for entry in path
                if isinstance(entry, str)}
    return tuple((real, _inside(real)) for real in sorted(resolved))


def _check_not_imported_from(real: str, guest: str, spec: str) -> None:
    """A read-write grant must not be, or hold, a folder this process imports modules from
    (a notebook's own folder is one: IPython puts it on ``sys.path``). A guest could write
    ``ipywidgets.py`` there, and the host's next import of that name would run it."""
    real_inside = _inside(real)
    cwd = os.getcwd()
    for folder, _ in _import_folders(tuple(sys.path), cwd):
        if real == folder or folder.startswith(real_inside):
            where = "is" if real == folder else "contains"
            current = ", the current folder" if folder == os.path.realpath(cwd) else ""
            raise CapabilityError(
                f"--dir {spec!r}: {real!r} {where} a folder Python imports modules from "
                f"({folder!r}{current}); a guest that could write there could plant code the host "
                f"would import. Grant it read-only (--dir {spec.split('::')[0]}::{guest}::ro) "
                f"if the guest only reads, or grant a subfolder for the guest's files, e.g. "
                f"--dir data::/data.")


def normalize_guest_path(guest: str, spec: str) -> str:
    """``/g/``, ``/g/.`` and ``//g`` -> ``/g``; ``..`` is refused (it names nothing new)."""
    parts = [p for p in guest.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CapabilityError(f"--dir {spec!r}: the guest path {guest!r} contains '..'; give "
                              f"the path the guest should see, e.g. /data.")
    joined = "/".join(parts)
    return ("/" + joined) if guest.startswith("/") else (joined or ".")


@dataclass(frozen=True)
class DirGrant:
    """One preopened directory: ``host`` is seen by the guest as ``guest``."""

    host: Path
    guest: str
    read_only: bool = False

    @property
    def spec(self) -> str:
        """The grant in ``--dir`` spelling."""
        text = f"{self.host}::{self.guest}"
        return text + "::ro" if self.read_only else text

    @classmethod
    def parse(cls, spec: str, cwd: Path) -> "DirGrant":
        """Parse ``HOST``, ``HOST::GUEST`` or ``HOST::GUEST::ro`` (``::rw`` also accepted)."""
        parts = spec.split("::")
        if not spec or len(parts) > 3 or any(p == "" for p in parts):
            raise CapabilityError(
                f"--dir {spec!r}: expected HOST, HOST::GUEST or HOST::GUEST::ro "
                f"(for example --dir data::/data::ro).")
        read_only = False
        if len(parts) == 3:
            mode = parts[2].lower()
            if mode not in ("ro", "rw"):
                raise CapabilityError(
                    f"--dir {spec!r}: the third part must be 'ro' (read-only) or "
                    f"'rw' (read-write), not {parts[2]!r}.")
            read_only = mode == "ro"
        return cls.make(parts[0], parts[1] if len(parts) > 1 else parts[0], read_only, cwd,
                        spec=spec)

    @classmethod
    def make(cls, host: str, guest: str, read_only: bool, cwd: Path, *,
             spec: str | None = None) -> "DirGrant":
        """A grant of the host folder ``host`` (relative to ``cwd``) as ``guest``, checked
        as the OS sees it now (see :meth:`verified`). ``spec`` names it in messages."""
        spec = spec if spec is not None else f"{host}::{guest}" + ("::ro" if read_only else "")
        for label, value in (("HOST", host), ("GUEST", guest)):
            check_text(value, f"--dir {spec!r}: {label}", error=CapabilityError)
        if not host or not guest:
            raise CapabilityError(f"--dir {spec!r}: give both a host folder and a guest path.")
        guest = normalize_guest_path(guest, spec)
        return cls._checked(host_path(host, cwd, "--dir"), guest, read_only, spec, cwd)

    def verified(self) -> "DirGrant":
        """This grant, checked again as the OS sees it now: a guest with a read-write grant
        may have replaced the folder by a symbolic link since it was granted."""
        return self._checked(host_path(str(self.host), Path("/"), "--dir"), self.guest,
                             self.read_only, self.spec, self.host.parent)

    @classmethod
    def _checked(cls, host: Path, guest: str, read_only: bool, spec: str,
                 cwd: Path) -> "DirGrant":
        mode = _mode(host, f"--dir {spec!r}: cannot use the host directory {str(host)!r}")
        if mode is None:
            raise CapabilityError(
                f"--dir {spec!r}: the host directory {str(host)!r} does not exist "
                f"(paths are relative to {str(cwd)!r}). Create it or fix the path.")
        if not stat.S_ISDIR(mode):
            raise CapabilityError(
                f"--dir {spec!r}: {str(host)!r} is a file, not a directory. "
                f"Grant the directory that contains it.")
        real = os.path.realpath(host)  # (resolved once: both checks compare resolved paths)
        _check_not_protected(real, spec)
        if not read_only:
            _check_not_imported_from(real, guest, spec)
        return cls(host=host, guest=guest, read_only=read_only)


@dataclass(frozen=True)
class Capabilities:
    """Everything a guest run is granted. Immutable; build one with :meth:`parse`."""

    dirs: tuple[DirGrant, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()
    stdin: bytes | None = field(default=None, repr=False)
    stdin_file: Path | None = None
    #: Origins the guest may send HTTP requests to (``--allow-http``), in order, no repeats.
    http: tuple[Origin, ...] = ()

    @classmethod
    def parse(
        cls,
        dirs: Iterable[str] = (),
        env: Iterable[str] = (),
        args: Sequence[str] = (),
        stdin_file: str | os.PathLike[str] | None = None,
        stdin_text: str | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        host_env: Mapping[str, str] | None = None,
        http: Iterable[str] = (),
    ) -> "Capabilities":
        """Build capabilities from wasmtime-style flag values.

        ``dirs`` are ``--dir`` values, ``env`` are ``--env`` values, ``http`` are
        ``--allow-http`` origins (``http://127.0.0.1:8000``). Relative
        host paths are resolved against ``cwd`` (default: the current working
        directory). Raises :class:`CapabilityError` naming the bad flag.
        """
        base = Path(cwd) if cwd is not None else Path.cwd()
        host_env = os.environ if host_env is None else host_env
        grants = tuple(DirGrant.parse(spec, base) for spec in dirs)
        pairs = tuple(_parse_env(item, host_env) for item in env)
        if stdin_file is not None and stdin_text is not None:
            raise UsageError("Give either --stdin FILE or --stdin-text TEXT, not both.")
        if stdin_file is not None:
            check_text(os.fspath(stdin_file), "--stdin", error=CapabilityError)
        stdin_path = (host_path(os.fspath(stdin_file), base, "--stdin")
                      if stdin_file is not None else None)
        data = (check_text(stdin_text, "--stdin-text", nul=True).encode()
                if stdin_text is not None else None)
        return cls._make(grants, pairs, args, data, stdin_path,
                         os.fspath(stdin_file) if stdin_file is not None else None,
                         _origins(http))

    @classmethod
    def of(cls, dirs: Iterable[DirGrant] = (), env: Iterable[tuple[str, str]] = (),
           args: Sequence[str] = (), stdin: bytes | None = None,
           stdin_file: Path | None = None, http: Iterable[str | Origin] = ()) -> "Capabilities":
        """Capabilities from values already parsed (the panel keeps these), checked as
        :meth:`parse` checks flags: each folder and the stdin file again as the OS sees
        them now, each variable name, the grants' overlaps, each HTTP origin."""
        if stdin is not None and stdin_file is not None:
            raise UsageError("Give either a stdin file or stdin text, not both.")
        grants = tuple(grant.verified() for grant in dirs)
        pairs = tuple(check_variable(name, value) for name, value in env)
        stdin_path = (host_path(str(stdin_file), Path("/"), "--stdin")
                      if stdin_file is not None else None)
        return cls._make(grants, pairs, args, stdin, stdin_path,
                         str(stdin_file) if stdin_file is not None else None,
                         _origins(str(item) for item in http))

    @classmethod
    def _make(cls, grants: tuple[DirGrant, ...], pairs: tuple[tuple[str, str], ...],
              args: Sequence[str], stdin: bytes | None, stdin_path: Path | None,
              stdin_text: str | None, http: tuple[Origin, ...] = ()) -> "Capabilities":
        _check_overlaps(grants)
        for arg in args:
            check_text(arg, "A program argument")
        if stdin_path is not None:
            mode = _mode(stdin_path, f"--stdin {stdin_text!r}: cannot read {str(stdin_path)!r}")
            if mode is None:
                raise CapabilityError(f"--stdin {stdin_text!r}: no such file ({str(stdin_path)!r}).")
            if not stat.S_ISREG(mode):
                raise CapabilityError(
                    f"--stdin {stdin_text!r}: {str(stdin_path)!r} is not a regular file (a "
                    f"FIFO, a device or a folder), so the guest could wait on it forever or "
                    f"read without end. Save the input to a file and give that.")
        return cls(dirs=grants, env=pairs, args=tuple(args), stdin=stdin, stdin_file=stdin_path,
                   http=http)

    def replace(self, **changes: Any) -> "Capabilities":
        """A copy with some fields changed (e.g. other ``args``)."""
        from dataclasses import replace
        return replace(self, **changes)

    def wasmtime_command(self, wasm: str = "cell.wasm") -> str:
        """The equivalent ``wasmtime run`` command line.

        Read-only grants use the ``HOST::GUEST::ro`` spelling proposed for the
        wasmtime CLI (wasmtime issue 9608). ``--allow-http`` has no equivalent:
        ``wasmtime run -S http`` grants standard ``wasi:http`` to *every* host, and
        a cell's HTTP import is wasi-magic's own, so the line says so in a comment.
        """
        words = ["wasmtime", "run"]
        for grant in self.dirs:
            words += ["--dir", grant.spec]
        for name, value in self.env:
            words += ["--env", f"{name}={value}"]
        words.append(wasm)
        words += list(self.args)
        import shlex
        line = shlex.join(words)
        if self.stdin_file is not None:
            line += " < " + shlex.quote(str(self.stdin_file))
        elif self.stdin is not None:
            line = f"printf %s {shlex.quote(self.stdin.decode(errors='replace'))} | " + line
        if self.http:
            line += ("  # --allow-http " + " ".join(str(o) for o in self.http)
                     + ": no wasmtime equivalent (-S http allows every host)")
        return line

    def describe(self) -> list[str]:
        """One short line per grant, for summaries and the text fallback of the panel."""
        lines = [f"dir  {g.host} -> {g.guest} ({'read-only' if g.read_only else 'read-write'})"
                 for g in self.dirs]
        lines += [f"env  {name}={value}" for name, value in self.env]
        if self.args:
            import shlex
            lines.append("args " + shlex.join(self.args))
        if self.stdin_file is not None:
            lines.append(f"stdin {self.stdin_file}")
        elif self.stdin is not None:
            lines.append(f"stdin {len(self.stdin)} bytes of text")
        lines += [f"http {origin}" for origin in self.http]
        return lines or ["nothing granted"]


def _origins(specs: Iterable[str]) -> tuple[Origin, ...]:
    """``--allow-http`` values parsed, in order, each origin once."""
    specs = list(specs)
    if not specs:
        return ()
    found: list[Origin] = []
    from .outbound import parse_grant  # here: `python -m wasi_magic run` starts faster
    for spec in specs:
        origin = parse_grant(spec)
        if origin not in found:
            found.append(origin)
    return tuple(found)


def _check_overlaps(grants: Sequence[DirGrant]) -> None:
    """Each guest path once; no grant nested in another of a different mode.

    The guest's libc picks the preopen for a path by prefix, so with
    ``--dir a::/x --dir a/b::/x/b::ro`` the path ``/x//b/f.txt`` would reach the
    read-only folder through the read-write grant.
    """
    for index, grant in enumerate(grants):
        for other in grants[:index]:
            if grant.guest == other.guest:
                raise CapabilityError(
                    f"--dir: the guest path {grant.guest!r} is granted twice ({other.spec} and "
                    f"{grant.spec}). Give each grant its own guest path.")
            inner, outer = (grant, other) if _nested(grant.guest, other.guest) else \
                (other, grant) if _nested(other.guest, grant.guest) else (None, None)
            if inner is not None and outer is not None and inner.read_only != outer.read_only:
                raise CapabilityError(
                    f"--dir: {inner.spec} ({'read-only' if inner.read_only else 'read-write'}) "
                    f"lies inside {outer.spec} ({'read-only' if outer.read_only else 'read-write'}"
                    f"): the guest could reach it through either. Give them separate guest "
                    f"paths, e.g. /in and /out.")


def _nested(inner: str, outer: str) -> bool:
    """Whether guest path ``inner`` lies strictly inside ``outer``."""
    return inner != outer and (outer == "/" or inner.startswith(outer.rstrip("/") + "/"))


def check_variable(name: str, value: str) -> tuple[str, str]:
    """``(name, value)`` if WASI can pass it as an environment variable; else a clear error."""
    if not name or not name.replace("_", "a").isalnum() or not name.isascii():
        raise CapabilityError(
            f"--env {name + '=' + value!r}: the name must be letters, digits and underscores "
            f"(for example --env MY_VAR=hello).")
    check_text(value, f"--env {name}: the value", error=CapabilityError)
    return name, value


def _parse_env(item: str, host_env: Mapping[str, str]) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not name or not name.replace("_", "a").isalnum() or not name.isascii():
        raise CapabilityError(
            f"--env {item!r}: expected NAME=VALUE or NAME, where NAME is letters, "
            f"digits and underscores (for example --env MY_VAR=hello).")
    if sep:
        return check_variable(name, value)
    if name not in host_env:
        raise CapabilityError(
            f"--env {name}: the host has no variable {name!r} to pass through. "
            f"Set a value with --env {name}=VALUE.")
    return check_variable(name, host_env[name])
