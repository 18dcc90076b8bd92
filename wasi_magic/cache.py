"""The on-disk cache: built components and compiled (serialized) components.

Layout under :func:`cache_dir` (``$WASI_MAGIC_CACHE`` or the user cache dir)::

    builds/<key>.wasm        component built by componentize-py
    builds/<key>.json        its metadata: sha256, size, build seconds
    compiled/<tag>/<sha>.cwasm  a component compiled by Wasmtime, by engine tag
    compiled/<tag>/<sha>.json   its sha256 and size

An entry may also be *packed* (``python -m wasi_magic cache pack``): ``<name><suffix>.zst``
instead of the data file, unpacked on first use (see :mod:`wasi_magic.cache_pack`).

Entries are written to a temporary file and renamed into place, so two
kernels filling the same entry never see half a file. Every read checks the
size and sha256 recorded in the metadata; an entry that does not match is
deleted and rebuilt. If the cache directory cannot be written, the cache is
switched off with a single warning and everything still works, only slower.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import hmac
import json
import os
import re
import shutil
import stat
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import platformdirs

ENV_VAR = "WASI_MAGIC_CACHE"
#: Seconds a use of a packed entry waits for another process unpacking it (~0.1 s).
UNPACK_WAIT = 30.0
#: A file last changed longer ago than this (ns) has a ctime that no later write can repeat.
_SETTLED_NS = 100_000_000
#: The packed form of ``<name><suffix>`` is ``<name><suffix>.zst`` (:mod:`.cache_pack`).
PACKED = ".zst"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: object) -> bool:
    """Whether ``value`` is a sha256 in hex, as compiled entries are named (metadata that
    names anything else is never followed: it could be a path)."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


#: The folders of entries under a cache's root (the rest: its own bookkeeping).
SECTIONS = ("builds", "compiled")
#: How large a user's cache may grow (``$WASI_MAGIC_CACHE_LIMIT``: a size, or 0 for no limit).
LIMIT_VAR = "WASI_MAGIC_CACHE_LIMIT"
DEFAULT_LIMIT = 5 << 30
#: Entries used this recently (seconds) are never evicted, whatever the limit: a kernel may
#: be about to load what it just built.
RECENT = 600.0


def cache_limit() -> int:
    """The most bytes the user's cache keeps (``$WASI_MAGIC_CACHE_LIMIT``, default 5 GiB;
    0: no limit). A value that is not a size is reported once and the default kept."""
    from .errors import UsageError
    from .limits import parse_size
    text = os.environ.get(LIMIT_VAR, "").strip()
    if not text:
        return DEFAULT_LIMIT
    if text in ("0", "none"):
        return 0
    try:
        return parse_size(text, LIMIT_VAR)
    except UsageError as exc:
        warnings.warn(f"wasi-magic: {exc} Keeping the default, 5GiB.", RuntimeWarning,
                      stacklevel=2)
        return DEFAULT_LIMIT


def cache_dir() -> Path:
    """Where the cache lives: ``$WASI_MAGIC_CACHE`` or the platform's user cache dir."""
    get = os.environ.get
    # Asked several times a cell: remembered per value of each variable it depends on.
    return _cache_dir(get(ENV_VAR), get("XDG_CACHE_HOME"), get("HOME"), get("USERPROFILE"),
                      get("LOCALAPPDATA"))


@functools.lru_cache(maxsize=8)
def _cache_dir(override: str | None, *where: str | None) -> Path:
    """:func:`cache_dir` for these values of ``$WASI_MAGIC_CACHE`` and of the variables
    platformdirs reads (``where``: only the memo's key)."""
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("wasi-magic", appauthor=False))


def file_sha256(path: Path | int) -> str:
    """Hex sha256 of a file's bytes (``path``, or an open descriptor, read from where it is)."""
    digest = hashlib.sha256()
    with open(path, "rb", closefd=not isinstance(path, int)) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: sha256 of files hashed before, keyed by what ``stat`` said of them.
_DIGESTS: dict[tuple[int, ...], str] = {}
_DIGESTS_MAX = 4096


def remembered_sha256(path: Path | int, info: os.stat_result) -> str:
    """:func:`file_sha256` of the regular file ``path`` (or open descriptor) whose
    ``os.stat`` is ``info``,
    hashed again only when the file changed: remembered per device, inode, size,
    modification and change time (as make and git do). Re-running a 20 MiB component, or
    building again from a folder of data files, then costs a ``stat``, not a read."""
    key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    digest = _DIGESTS.get(key)
    if digest is None:
        digest = file_sha256(path)
        if len(_DIGESTS) >= _DIGESTS_MAX:
            _DIGESTS.clear()
        _DIGESTS[key] = digest
    return digest


def key_path() -> Path:
    """Where the cache's sealing key lives: the user's config folder, not the cache."""
    return Path(platformdirs.user_config_dir("wasi-magic", appauthor=False)) / "cache.key"


_key: bytes | None = None


def _cache_key() -> bytes:
    """The secret that seals cache entries (made on first use, readable by its owner only)."""
    global _key
    if _key is None:
        path = key_path()
        try:
            _key = path.read_bytes()
        except FileNotFoundError:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            secret = os.urandom(32)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:  # another process made it first
                _key = path.read_bytes()
            else:
                with os.fdopen(fd, "wb") as out:
                    out.write(secret)
                _key = secret
    return _key


def sealed(section: str, name: str, meta: Any, key: bytes | None = None) -> bool:
    """True if ``meta`` is a dict whose seal is over (section, name, its size, its sha256);
    the size must be a non-negative int and the sha256 a string (its data is not read)."""
    return (isinstance(meta, dict) and type(meta.get("size")) is int and meta["size"] >= 0
            and isinstance(meta.get("sha256"), str)
            and hmac.compare_digest(str(meta.get("seal", "")),
                                    seal(section, name, meta["size"], meta["sha256"], key)))


def keyed_digest(key: bytes | None, *fields: object) -> str:
    """HMAC-SHA256 of ``fields`` (as text, NUL-separated) under ``key`` (None: this
    user's cache key): what every seal and recorded verdict in a cache is made of."""
    message = "\0".join(map(str, fields)).encode()
    return hmac.new(key if key is not None else _cache_key(), message, "sha256").hexdigest()


def seal(section: str, name: str, size: int, sha256: str, key: bytes | None = None) -> str:
    """The keyed digest that says wasi-magic wrote this entry (with this user's key, or
    ``key``: a shared cache's own, see :mod:`wasi_magic.shared_cache`)."""
    return keyed_digest(key, section, name, size, sha256)


def verified(section: str, name: str, data: Path, meta: dict[str, Any],
             key: bytes | None = None) -> bool:
    """True if ``meta`` carries the seal over (section, name, size, sha256) and ``data``
    has that size and sha256. Raises KeyError/TypeError/OSError on malformed entries."""
    return (sealed(section, name, meta, key)
            and data.stat().st_size == meta["size"]
            and file_sha256(data) == meta["sha256"])


def _identity(info: os.stat_result) -> tuple[int, ...]:
    """What identifies a file's bytes between two looks at it: device, inode, size, mtime,
    ctime (any write changes the last two, and no one can set a ctime)."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


@dataclass(frozen=True)
class Entry:
    """A verified cache entry: the data file and its metadata."""

    path: Path
    meta: dict[str, Any]


class Cache:
    """A directory of content-addressed entries, grouped in sections."""

    def __init__(self, root: Path | None = None, *, key: bytes | None = None,
                 public: bool = False, layered: bool = True) -> None:
        #: The folder asked for; ``root`` is where entries really go (a private
        #: temporary folder if the asked one is not safe to trust).
        self.requested = Path(root) if root is not None else cache_dir()
        self.root = self.requested
        self.enabled = True
        #: The sealing key (None: this user's); ``public``: entries readable by every
        #: user (a shared cache being filled); ``layered``: look in the shared cache
        #: (``$WASI_MAGIC_SHARED_CACHE``) for what this one lacks.
        self._key, self._public, self._layered = key, public, layered
        self._warned = False
        self._checked = False
        #: sha256 of data files this process hashed (or unpacked) already, by the file's
        #: identity: device, inode, size, mtime and ctime. Entries are never rewritten in
        #: place (a new one is a new file, renamed in), and no one can set a file's ctime,
        #: so a file that still has that identity still has those bytes.
        self._hashed: dict[Path, tuple[tuple[int, ...], str]] = {}

    def _check_root(self) -> None:
        """Use the cache folder only if no one else can write it; else a private one.

        Anyone who can write the cache can make the sandbox load their compiled
        code, so a folder owned by another user, or writable by group or others,
        is not used: a private temporary cache replaces it, with one warning.
        """
        self._checked = True
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.root.stat()
        except OSError:
            return  # _section reports it (and disables the cache)
        if info.st_uid == os.getuid() and not info.st_mode & 0o022:
            if self._public:
                self.root.chmod(0o755)
            return
        why = ("is owned by another user" if info.st_uid != os.getuid()
               else "can be written by other users")
        self.root = Path(tempfile.mkdtemp(prefix="wasi-magic-cache-"))
        warnings.warn(f"wasi-magic: the cache folder {self.requested} {why}, so it cannot be "
                      f"trusted; using a private cache in {self.root} for this session. "
                      f"Fix it with: chmod go-w {self.requested} (or set {ENV_VAR}).",
                      RuntimeWarning, stacklevel=4)

    def _section(self, section: str) -> Path | None:
        if not self.enabled:
            return None
        if not self._checked:
            self._check_root()
        folder = self.root / section
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if self._public:  # every reader checks that no one else can write them
                for part in (folder, *folder.parents):
                    if part == self.root.parent:
                        break
                    part.chmod(0o755)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(f"{folder} is not writable")
        except OSError as exc:
            self._disable(exc)
            return None
        return folder

    def folder(self, section: str) -> Path | None:
        """The folder of ``section`` (made if missing), or None if the cache is off."""
        return self._section(section)

    def _disable(self, exc: OSError) -> None:
        self.enabled = False
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"wasi-magic: cannot use the cache directory {self.root} ({exc}); "
                f"continuing without a cache, so every cell is rebuilt. Set "
                f"{ENV_VAR} to a writable folder to fix this.", RuntimeWarning, stacklevel=3)

    def get(self, section: str, name: str, suffix: str) -> Entry | None:
        """The entry ``section/name`` if present and intact (a damaged one is removed),
        else the shared cache's, if there is one and it holds it intact."""
        entry = self._get_own(section, name, suffix)
        if entry is None and self._layered:
            from .shared_cache import shared_cache
            shared = shared_cache()
            if shared is not None and shared.root != self.root:
                entry = shared.get(section, name, suffix, into=self)
        return entry

    def get_own(self, section: str, name: str, suffix: str) -> Entry | None:
        """The entry ``section/name`` of this cache alone (never the shared layer's), if
        present and intact (unpacked first if it is packed); a damaged one is removed."""
        return self._get_own(section, name, suffix)

    def _get_own(self, section: str, name: str, suffix: str, depth: int = 0) -> Entry | None:
        folder = self._section(section)
        if folder is None:
            return None
        data, meta_path = folder / f"{name}{suffix}", folder / f"{name}.json"
        packed = folder / f"{name}{suffix}{PACKED}"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            unpacked = None
            if not data.exists() and packed.exists():
                with _unpacking(packed):
                    # One unpacker at a time (the kernel's cell, the worker, unpacking
                    # ahead): the one that waited takes what the other one unpacked.
                    if not data.exists():
                        unpacked = self._unpack(folder, section, name, suffix, depth)
            # The metadata must carry our own seal over (section, name, size, sha256), and
            # the data must have that sha256: an entry written by anything but wasi-magic
            # (which would need the key, kept outside the cache) is rebuilt, never loaded.
            if (sealed(section, name, meta, self._key)
                    and self._sha256(data, meta["size"], unpacked,
                                     (section, name, meta, meta_path)) == meta["sha256"]):
                self._used(meta_path)
                return Entry(data, meta)
        except _NoRoom:
            if depth:
                raise  # a dictionary: the entry that needs it is kept too, not dropped
            return None  # the entry may be fine: the disk is full (or read-only) now
        except FileNotFoundError:
            if not meta_path.exists() and not data.exists() and not packed.exists():
                return None
        except (OSError, ValueError, KeyError, TypeError):
            pass
        self.discard(section, name, suffix)
        return None

    def _sha256(self, data: Path, size: int,
                unpacked: tuple[str, tuple[int, ...]] | None = None,
                entry: tuple[str, str, dict[str, Any], Path] | None = None) -> str | None:
        """The sha256 of ``data`` if it is ``size`` bytes long (else None). Not read again
        if its hash is known while the file keeps its identity: ``unpacked`` (``(sha256,
        identity)`` of the file just unpacked), an earlier hash in this process, or (for
        ``entry``: section, name, metadata and its path) one an earlier process recorded
        in the entry's metadata under this cache's key."""
        info = data.stat()
        if info.st_size != size:
            return None
        identity = _identity(info)
        if unpacked is not None and unpacked[1] == identity:
            return unpacked[0]
        known = self._hashed.get(data)
        if known is not None and known[0] == identity:
            return known[1]
        if entry is not None and self._checked_at(entry, identity):
            return entry[2]["sha256"]
        digest = file_sha256(data)
        # Kept only for a file last changed well before it was hashed: a later write then
        # gets a later ctime (timestamps advance in ticks of a few ms), never the same.
        if time.time_ns() - info.st_ctime_ns > _SETTLED_NS:
            if len(self._hashed) >= 4096:  # a bound, never reached by a course's cells
                self._hashed.clear()
            self._hashed[data] = (identity, digest)
            if entry is not None and digest == entry[2]["sha256"]:
                self._record_checked(entry, identity)
        return digest

    # A data file found intact keeps that verdict, across processes, while its identity
    # (device, inode, size, mtime, ctime) is unchanged: recorded in its metadata with a
    # keyed digest, so that only wasi-magic (holding the key, kept outside the cache) can
    # vouch for a file. Each kernel and worker would otherwise hash the same 20-45 MiB
    # files again when it first uses them (~30-50 ms each).

    def _checked_mac(self, section: str, name: str, sha256: str,
                     identity: tuple[int, ...]) -> str:
        return keyed_digest(self._key, "checked", section, name, sha256, identity)

    def _checked_at(self, entry: tuple[str, str, dict[str, Any], Path],
                    identity: tuple[int, ...]) -> bool:
        section, name, meta, _ = entry
        checked = meta.get("checked")
        return (isinstance(checked, dict) and checked.get("identity") == list(identity)
                and hmac.compare_digest(str(checked.get("mac", "")), self._checked_mac(
                    section, name, meta["sha256"], identity)))

    def _record_checked(self, entry: tuple[str, str, dict[str, Any], Path],
                        identity: tuple[int, ...]) -> None:
        section, name, meta, meta_path = entry
        if not self._own():
            return  # a shared cache is read-only to its users
        meta["checked"] = {"identity": list(identity),
                           "mac": self._checked_mac(section, name, meta["sha256"], identity)}
        with contextlib.suppress(OSError):
            self._write_meta(meta_path, meta)

    def sealed_meta(self, section: str, name: str) -> dict[str, Any] | None:
        """The metadata of ``section/name`` if it carries this cache's seal (the data is
        not checked), else None."""
        try:
            meta = json.loads((self.root / section / f"{name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return meta if sealed(section, name, meta, self._key) else None

    def _unpack(self, folder: Path, section: str, name: str, suffix: str,
                depth: int) -> tuple[str, tuple[int, ...]] | None:
        """Unpack the packed entry ``section/name`` into its data file (atomically; two
        kernels doing it at once both succeed). Its dictionary, if it has one, is taken
        with :meth:`_get_own` first, so it is verified (and unpacked) too. The caller
        verifies the result: returned is ``(sha256, identity)`` of the file unpacked (None
        if the file in place is another by now). Raises PackError (or OSError) if it
        cannot be unpacked."""
        from .cache_pack import PackError, decompress, dictionary_path
        # Read again: `cache pack` may have packed it since the caller read it.
        meta = self.sealed_meta(section, name)
        if meta is None:
            raise PackError("its metadata is not sealed")
        reference = dictionary_path(
            meta, name, depth, lambda ref: self._get_own(section, ref, suffix, depth + 1))
        # Kept after unpacking: in a Binder image the .zst is in a read-only image layer
        # (deleting it frees nothing), and with it `cache pack` again only deletes the
        # data file. (Unpacked: ~+10% on disk, for entries in use.)
        packed = folder / f"{name}{suffix}{PACKED}"
        try:
            frame = self._sealed_frame(section, name, suffix, meta, packed)
            with _temp_path(folder, suffix) as tmp:
                # A frame checked against its own seal (and a verified dictionary) can
                # unpack to one thing only: the sealed bytes, not hashed again (~10-20 ms
                # per entry). A frame without one is hashed on the way out instead.
                digest = decompress(frame if frame is not None else packed, Path(tmp),
                                    meta["size"], reference, hashed=frame is None)
                digest = digest if frame is None else meta["sha256"]
                self._publish(tmp)
                written = os.stat(tmp)
                target = folder / f"{name}{suffix}"
                os.replace(tmp, target)
                # The hash of what was written holds for the file now in place if it is
                # still that file (the rename changed its ctime, nothing else); if not,
                # the caller's check hashes it again.
                found = target.stat()
                if _identity(found)[:4] == _identity(written)[:4]:
                    return digest, _identity(found)
        except OSError as exc:
            if no_room(exc):
                raise _NoRoom() from exc
            raise
        return None

    def _frame_seal(self, section: str, name: str, suffix: str, size: int, sha256: str) -> str:
        """The seal over a packed entry's frame (its ``.zst`` file's size and sha256)."""
        return seal(section, f"{name}{suffix}{PACKED}", size, sha256, self._key)

    def _sealed_frame(self, section: str, name: str, suffix: str, meta: dict[str, Any],
                      packed: Path) -> bytes | None:
        """The bytes of ``packed`` if its metadata seals the frame (``cache pack`` records
        the frame's size and sha256 under the key) and they match; None if the metadata
        seals no frame (packed before frames were sealed). Raises PackError if it seals
        another frame than the one on disk."""
        from .cache_pack import PackError
        info = meta.get("packed")
        size, sha256 = info.get("frame_size"), info.get("frame_sha256")
        if type(size) is not int or not isinstance(sha256, str) or not hmac.compare_digest(
                str(info.get("frame_seal", "")),
                self._frame_seal(section, name, suffix, size, sha256)):
            return None
        with open(packed, "rb") as source:
            frame = source.read(size + 1)
        if len(frame) != size or hashlib.sha256(frame).hexdigest() != sha256:
            raise PackError("its frame is not the one sealed")
        return frame

    def pack_entry(self, section: str, name: str, suffix: str, entry: Entry,
                   dictionary: Any, ref: dict[str, str] | None,
                   reference: Path | None) -> bool:
        """Pack the intact ``entry``: write ``<name><suffix>.zst`` (zstd, with
        ``dictionary``: the entry ``ref`` names, whose data is at ``reference``), record
        it in the metadata, then delete the data file. True if done. A .zst already
        there that unpacks to the entry with that dictionary is kept as it is."""
        from .cache_pack import compress, unpacked_sha256
        folder = self.root / section
        packed = folder / f"{name}{suffix}{PACKED}"
        size, sha = entry.meta["size"], entry.meta["sha256"]
        meta = dict(entry.meta, packed={"format": "zstd", "dictionary": ref})
        meta.pop("checked", None)  # (about the data file, which packing deletes)
        try:
            old = entry.meta.get("packed")
            if not (isinstance(old, dict) and old.get("dictionary") == ref and packed.exists()
                    and unpacked_sha256(packed, size, reference) == sha):
                with _temp_path(folder, suffix + PACKED) as tmp:
                    compress(entry.path, Path(tmp), dictionary)
                    # Never trade a verified file for one that does not unpack to it.
                    if unpacked_sha256(Path(tmp), size, reference) != sha:
                        return False
                    self._publish(tmp)
                    os.replace(tmp, packed)
            self._seal_frame(section, name, suffix, meta, packed)
            self._write_meta(folder / f"{name}.json", meta)
            with contextlib.suppress(FileNotFoundError):
                entry.path.unlink()
        except OSError:
            return False
        return True

    def _seal_frame(self, section: str, name: str, suffix: str, meta: dict[str, Any],
                    packed: Path) -> None:
        """Record the size and sha256 of the frame at ``packed`` in ``meta["packed"]``, with
        their seal. (Called once the frame is known to unpack to the entry.)"""
        size, sha256 = packed.stat().st_size, file_sha256(packed)
        meta["packed"] = dict(meta["packed"], frame_size=size, frame_sha256=sha256,
                              frame_seal=self._frame_seal(section, name, suffix, size, sha256))

    def seal_frame(self, section: str, name: str, suffix: str) -> None:
        """Seal the frame of a packed entry packed before frames were sealed (its frame
        checked first by the caller: see :func:`~wasi_magic.cache_pack.pack_cache`)."""
        meta = self.sealed_meta(section, name)
        packed = self.root / section / f"{name}{suffix}{PACKED}"
        if meta is None or not isinstance(meta.get("packed"), dict):
            return
        with contextlib.suppress(OSError):
            self._seal_frame(section, name, suffix, meta, packed)
            self._write_meta(self.root / section / f"{name}.json", meta)

    def put_file(self, section: str, name: str, suffix: str, source: Path,
                 meta: dict[str, Any], *, move: bool = False) -> Entry | None:
        """Store ``source`` as ``section/name`` (atomically) and return the entry."""
        if not self.enabled:
            return None  # (before hashing ``source``; _store checks the folder)
        size, sha256 = source.stat().st_size, meta.get("sha256") or file_sha256(source)

        def write(tmp: str) -> None:
            if move:
                shutil.move(str(source), tmp)
            else:
                shutil.copyfile(source, tmp)
        return self._store(section, name, suffix, write, dict(meta, size=size, sha256=sha256))

    def put_bytes(self, section: str, name: str, suffix: str, payload: bytes,
                  meta: dict[str, Any]) -> Entry | None:
        """Store ``payload`` as ``section/name`` (atomically) and return the entry."""
        meta = dict(meta, size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
        return self._store(section, name, suffix, lambda tmp: Path(tmp).write_bytes(payload),
                           meta)

    def _store(self, section: str, name: str, suffix: str, write: Callable[[str], Any],
               meta: dict[str, Any]) -> Entry | None:
        """Write a data file with ``write(temporary path)``, seal ``meta`` (which holds its
        size and sha256), and publish both: the data renamed into place, then its metadata."""
        folder = self._section(section)
        if folder is None:
            return None
        data = folder / f"{name}{suffix}"
        meta["seal"] = seal(section, name, meta["size"], meta["sha256"], self._key)
        try:
            with _temp_path(folder, suffix) as tmp:
                write(tmp)
                self._publish(tmp)
                os.replace(tmp, data)
            self._write_meta(folder / f"{name}.json", meta)
            _drop_packed(data)
        except OSError as exc:
            self._disable(exc)
            return None
        self._trim_if_full()
        return Entry(data, meta)

    def _publish(self, tmp: str) -> None:
        """Make a file about to be renamed into a public (shared) cache readable by all."""
        if self._public:
            os.chmod(tmp, 0o644)

    def _write_meta(self, path: Path, meta: dict[str, Any]) -> None:
        with _temp_path(path.parent, ".json") as tmp:
            Path(tmp).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
            self._publish(tmp)
            os.replace(tmp, path)

    def discard(self, section: str, name: str, suffix: str) -> None:
        """Remove an entry (data, packed data and metadata), ignoring what is already gone."""
        folder = self.root / section
        for path in (folder / f"{name}{suffix}", folder / f"{name}{suffix}{PACKED}",
                     folder / f"{name}.json"):
            try:
                path.unlink()
            except OSError:
                pass

    def read_json(self, name: str) -> Any:
        """A small JSON document at the cache root (e.g. build statistics), or None."""
        try:
            return json.loads((self.root / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def write_json(self, name: str, value: Any) -> None:
        """Write a small JSON document at the cache root, atomically; errors are ignored."""
        if self._section(".") is None:
            return
        try:
            self._write_meta(self.root / name, value)
        except OSError:
            pass

    def append_text(self, name: str, text: str) -> None:
        """Append a short line to a log at the cache root; errors are ignored."""
        if self._section(".") is None:
            return
        try:
            with open(self.root / name, "a", encoding="utf-8") as handle:
                handle.write(text)
        except OSError:
            pass

    def info(self) -> dict[str, Any]:
        """Where the cache is, and per section: how many entries (packed or not) and how
        many bytes on disk (``bytes``), of which in packed files (``packed_bytes``) and in
        unpacked data files (``unpacked_bytes``)."""
        names: dict[str, set[Path]] = {section: set() for section in SECTIONS}
        sizes = {section: {"packed_bytes": 0, "unpacked_bytes": 0} for section in SECTIONS}
        for section, path, info in self._files():
            data = path.with_suffix("") if path.suffix == PACKED else path
            if data.suffix not in (".wasm", ".cwasm"):
                continue
            names[section].add(data)
            sizes[section]["packed_bytes" if path.suffix == PACKED else "unpacked_bytes"] += \
                info.st_size
        sections = {section: {"entries": len(names[section]),
                              "bytes": sum(sizes[section].values()), **sizes[section]}
                    for section in SECTIONS}
        total = sum(section["bytes"] for section in sections.values())
        return {"path": str(self.root), "enabled": self.enabled, "bytes": total, **sections}

    # --- a bounded size: the least recently used entries go first ------------------------

    def _own(self) -> bool:
        """Whether this is a user's own cache (not a shared one, filled or read)."""
        return self._key is None and not self._public

    def _used(self, meta_path: Path) -> None:
        """Mark an entry as used now (its metadata's mtime), for :meth:`trim`."""
        if self._own():
            with contextlib.suppress(OSError):
                os.utime(meta_path)

    def _trim_if_full(self) -> None:
        if self._own():
            limit = cache_limit()
            if limit:
                self.trim(limit)

    def trim(self, limit: int) -> int:
        """Evict the least recently used entries until the cache holds at most ``limit``
        bytes; returns the bytes freed. Of a packed entry only its unpacked copy goes (the
        packed file stays, and is unpacked again when next used). Entries used in the last
        :data:`RECENT` seconds stay, even over the limit. One process trims at a time."""
        groups = self._groups()
        total = sum(size for size, _, _ in groups.values())
        if total <= limit:
            return 0
        freed = 0
        with contextlib.suppress(OSError), open(self.root / ".trim.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another process is trimming this cache
            now = time.time()
            for (folder, name), (size, used, files) in sorted(groups.items(),
                                                               key=lambda item: item[1][1]):
                if total - freed <= limit or now - used < RECENT:
                    break
                packed = any(path.name.endswith(PACKED) for path in files)
                for path in files:
                    if packed and (path.name.endswith(PACKED) or path.suffix == ".json"):
                        continue  # a packed entry keeps its packed file
                    with contextlib.suppress(OSError):
                        freed += path.stat().st_size
                        path.unlink()
        return freed

    def _files(self) -> Iterator[tuple[str, Path, os.stat_result]]:
        """Every regular file of the cache's sections, with its section and ``lstat``;
        temporary and lock files (names starting with '.') are left out."""
        for section in SECTIONS:
            folder = self.root / section
            if not folder.is_dir():
                continue
            for path in folder.rglob("*"):
                if path.name.startswith("."):
                    continue
                try:
                    info = path.lstat()
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode):
                    yield section, path, info

    def _groups(self) -> dict[tuple[Path, str], tuple[int, float, list[Path]]]:
        """Every entry of the cache: (folder, name) -> (bytes it takes, when it was last
        used, its files). Temporary and lock files (names starting with '.') are left out."""
        groups: dict[tuple[Path, str], tuple[int, float, list[Path]]] = {}
        for _, path, info in self._files():
            key = (path.parent, path.name.split(".", 1)[0])
            size, used, files = groups.get(key, (0, 0.0, []))
            groups[key] = (size + info.st_size, max(used, info.st_mtime), files + [path])
        return groups

    def clear(self) -> int:
        """Delete every entry; returns the bytes freed."""
        freed = self.info()["bytes"]
        for section in SECTIONS:
            shutil.rmtree(self.root / section, ignore_errors=True)
        return freed


def no_room(exc: OSError) -> bool:
    """Whether ``exc`` says the disk is full (or over quota, or read-only): the entry being
    written may be fine, so it is kept, and the user is told how to make room."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class _NoRoom(OSError):
    """An entry could not be unpacked for want of disk space (not because it is damaged)."""


@contextlib.contextmanager
def _unpacking(packed: Path) -> Iterator[None]:
    """Hold an exclusive lock on a packed entry's frame while it is unpacked. Waits at most
    :data:`UNPACK_WAIT` seconds for another unpacker (then unpacks beside it, as two
    unpackers safely can); without a frame to lock, unpacking fails as it would have."""
    try:
        frame = open(packed, "rb")
    except OSError:
        yield
        return
    with frame:
        deadline = time.monotonic() + UNPACK_WAIT
        while True:
            try:
                fcntl.flock(frame, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            except OSError:
                break
        yield


def _drop_packed(data: Path) -> None:
    """Delete the packed form of an entry just rewritten unpacked (now stale)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{data}{PACKED}")


@contextlib.contextmanager
def _temp_path(folder: Path, suffix: str) -> Iterator[str]:
    """A temporary file in ``folder`` to be renamed into place; removed if that never happens.

    Whatever stops the write half-way (an error, an Interrupt) leaves nothing behind.
    """
    handle, name = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(handle)
    try:
        yield name
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


_default_cache: Cache | None = None


def default_cache() -> Cache:
    """The process-wide cache (re-created if ``$WASI_MAGIC_CACHE`` changes)."""
    global _default_cache
    root = cache_dir()
    if _default_cache is None or _default_cache.requested != root:
        _default_cache = Cache(root)
    return _default_cache
