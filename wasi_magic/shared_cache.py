"""A read-only cache shared by every user of a server: ``$WASI_MAGIC_SHARED_CACHE``.

On a classroom server thirty kernels would otherwise build (and compile) the same
cells thirty times. A teacher (or the image's ``postBuild``) fills one folder with
``python -m wasi_magic warm --shared DIR lessons/``; every user's cache then looks
there for what it lacks, and builds into its own (writable) cache only what is
not there, or not intact.

Threat model. A compiled entry is native code the sandbox worker maps and runs,
so whoever can write the shared folder can run code as every student. Trust
therefore rests on the file system, checked on every read: the folder, the
folders below it, the key file and each entry file must be owned by root or by
the reading user, and writable by no one else (group or others). A shared cache
that fails the check is not used at all, with one warning; the user's own cache
works as before. Entries are sealed (HMAC-SHA256) like the user's, but with the
shared cache's own key, ``DIR/cache.key``, which every user must read to check
them: the seal proves an entry whole and written by ``warm --shared`` (not
damaged, half-copied or dropped in from another cache), not who wrote it — the
ownership check does that. An entry that fails its seal is never loaded: the
user's kernel builds or compiles it again into the user's own cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

from .artifact import Artifact
from .cache import PACKED, Cache, Entry, no_room, sealed, verified
from .errors import UsageError

ENV_VAR = "WASI_MAGIC_SHARED_CACHE"
KEY_FILE = "cache.key"


def shared_dir() -> Path | None:
    """The shared cache folder (``$WASI_MAGIC_SHARED_CACHE``), or None if not set."""
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value).expanduser() if value else None


def why_untrusted(path: Path) -> str | None:
    """Why ``path`` cannot be trusted in a shared cache, or None if it can: it must be
    owned by root or by this user, and not writable by group or others."""
    info = path.stat()
    if info.st_uid not in (0, os.getuid()):
        return f"is owned by another user (uid {info.st_uid})"
    if info.st_mode & 0o022:
        return "can be written by other users"
    return None


class SharedCache:
    """A read-only layer of sealed entries under a trusted folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._key: bytes | None = None
        self._usable: bool | None = None
        self._warned: set[str] = set()
        #: Why the shared cache is not used, once :meth:`usable` found out.
        self.problem: str | None = None

    def _warn(self, kind: str, text: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(f"wasi-magic: {text}", RuntimeWarning, stacklevel=4)

    def usable(self) -> bool:
        """Whether the folder and its key can be trusted (checked once; warns once if not)."""
        if self._usable is None:
            self._usable = False
            fix = (f"The administrator can fix it with: chown -R root: {self.root} && "
                   f"chmod -R go-w {self.root}")
            where = self.root
            try:
                why = why_untrusted(self.root)
                if why is None:
                    where = self.root / KEY_FILE
                    why = why_untrusted(where)
                if why is None:
                    self._key = where.read_bytes()
                    self._usable = len(self._key) >= 32
                    why = None if self._usable else "holds a key shorter than 32 bytes"
            except OSError as exc:
                why = f"cannot be read ({exc.strerror or exc})"
                fix = f"Fill it with: python -m wasi_magic warm --shared {self.root} NOTEBOOKS"
            if why is not None:
                self.problem = f"{where} {why}"
                self._warn("root", f"the shared cache {where} {why}, so it is not used: cells "
                                   f"are built in your own cache. {fix}.")
        return self._usable

    def get(self, section: str, name: str, suffix: str, into: Cache | None = None,
            depth: int = 0) -> Entry | None:
        """The entry if present, trusted and intact; else None (never removed: read-only).

        A packed entry (see :mod:`wasi_magic.cache_pack`) is unpacked into ``into`` (the
        user's own cache), checked against the shared seal, and stored there sealed with
        the user's key; that copy is returned. Without ``into`` it is not used."""
        if not self.usable():
            return None
        folder = self.root / section
        data, meta_path = folder / f"{name}{suffix}", folder / f"{name}.json"
        packed = folder / f"{name}{suffix}{PACKED}"
        try:
            if not meta_path.exists():
                return None
            is_packed = not data.exists() and packed.exists()
            steps = [self.root / Path(*Path(section).parts[:i + 1])
                     for i in range(len(Path(section).parts))]
            for path in (*steps, packed if is_packed else data, meta_path):
                why = why_untrusted(path)
                if why is not None:
                    self._warn("entry", f"{path} in the shared cache {why}; its entries are "
                                        f"not used (they are built in your own cache).")
                    return None
            if not stat.S_ISREG((packed if is_packed else data).stat().st_mode):
                raise ValueError("not a regular file")
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if is_packed:
                if into is None:
                    return None
                return self._unpack_into(into, section, name, suffix, meta, packed, depth)
            if verified(section, name, data, meta, self._key):
                return Entry(data, meta)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if into is not None and no_room(exc):
                if depth:
                    raise  # a dictionary: the entry that needs it says so, once
                # The user's own cache is full: the shared entry is fine, and stays unused
                # until there is room (the cell is built or compiled without the cache).
                self._warn("room", f"no room in your own cache {into.root} to unpack the "
                                   f"shared cache's entries ({os.strerror(exc.errno)}). Free "
                                   f"space there, e.g. with: python -m wasi_magic cache clear")
                return None
        except (ValueError, KeyError, TypeError):
            pass
        self._warn("damaged", f"the shared cache's entry {section}/{name} is damaged or not "
                              f"sealed by its key; it is not used (built in your own cache "
                              f"instead). Fill the shared cache again with warm --shared.")
        return None

    def _unpack_into(self, into: Cache, section: str, name: str, suffix: str,
                     meta: dict[str, Any], packed: Path, depth: int) -> Entry | None:
        """Unpack a packed shared entry into the user's cache ``into``: only once its
        unpacked bytes match the shared seal is it stored there (under the user's seal).
        Raises ValueError/OSError if it is damaged."""
        from .cache_pack import PackError, decompress, dictionary_path
        if not sealed(section, name, meta, self._key):
            raise PackError("not sealed by the shared cache's key")
        # The dictionary: the user's copy if an earlier unpack made one, else the shared one.
        reference = dictionary_path(
            meta, name, depth, lambda ref: (into.get_own(section, ref, suffix)
                                            or self.get(section, ref, suffix, into, depth + 1)))
        folder = into.folder(section)
        if folder is None:
            return None
        handle, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
        os.close(handle)
        try:
            # Hashed on the way out (the shared frame is not sealed under the user's key).
            if decompress(packed, Path(tmp), meta["size"], reference) != meta["sha256"]:
                raise PackError("unpacks to other bytes than its seal says")
            kept = {k: v for k, v in meta.items() if k not in ("seal", "packed")}
            return into.put_file(section, name, suffix, Path(tmp), kept, move=True)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


_shared: SharedCache | None = None


def shared_cache() -> SharedCache | None:
    """The process's shared cache (re-made if ``$WASI_MAGIC_SHARED_CACHE`` changes)."""
    global _shared
    root = shared_dir()
    if root is None:
        return None
    if _shared is None or _shared.root != root:
        _shared = SharedCache(root)
    return _shared


# --- filling it ---------------------------------------------------------------------------


def open_for_filling(root: Path) -> Cache:
    """The shared cache at ``root`` as a writable cache sealed with its own key (made, and
    the folder too, if missing), its entries readable by every user."""
    root = Path(root).expanduser()
    try:
        root.mkdir(mode=0o755, parents=True, exist_ok=True)
        why = why_untrusted(root)
        if why is None and root.stat().st_uid != os.getuid():
            why = "is owned by another user (root): run warm --shared as root"
    except OSError as exc:
        raise UsageError(f"Cannot use {str(root)!r} as the shared cache: "
                         f"{exc.strerror or exc}.") from None
    if why is not None:
        raise UsageError(f"The shared cache {str(root)!r} {why}: every student would run what "
                         f"others put there. Use a folder only you can write (chmod go-w).")
    key_path = root / KEY_FILE
    if not key_path.exists():
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(os.urandom(32))
    os.chmod(key_path, 0o644)
    return Cache(root, key=key_path.read_bytes(), public=True, layered=False)


def export(artifacts: Iterable[Artifact], root: Path, source: Cache | None = None,
           report: Callable[[str], None] = print) -> int:
    """Copy the build entries of ``artifacts`` and every compiled form of them from the
    user's cache (``source``) into the shared cache at ``root``, sealed with its key.
    Only entries intact in ``source`` are copied. Returns the number of entries copied."""
    from .cache import default_cache
    # Only the user's own entries (not what a shared layer would lend it).
    source = Cache((source if source is not None else default_cache()).root, layered=False)
    target = open_for_filling(root)
    copied = 0

    def copy(section: str, name: str, suffix: str) -> None:
        nonlocal copied
        entry = source.get(section, name, suffix)
        if entry is None:
            return
        meta: dict[str, Any] = {k: v for k, v in entry.meta.items() if k != "seal"}
        if target.put_file(section, name, suffix, entry.path, meta) is not None:
            copied += 1

    for artifact in artifacts:
        copy("builds", artifact.key, ".wasm")
        compiled = source.root / "compiled"
        for tag in sorted(p.name for p in compiled.iterdir()) if compiled.is_dir() else ():
            if (compiled / tag / f"{artifact.sha256}.json").exists():
                copy(f"compiled/{tag}", artifact.sha256, ".cwasm")
    report(f"shared cache {target.root}: {copied} entries written")
    return copied
