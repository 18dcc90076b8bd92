"""The on-disk cache: built components and compiled (serialized) components.

Layout under :func:`cache_dir` (``$WASI_MAGIC_CACHE`` or the user cache dir)::

    builds/<key>.wasm        component built by componentize-py
    builds/<key>.json        its metadata: sha256, size, build seconds
    compiled/<tag>/<sha>.cwasm  a component compiled by Wasmtime, by engine tag
    compiled/<tag>/<sha>.json   its sha256 and size

Entries are written to a temporary file and renamed into place, so two
kernels filling the same entry never see half a file. Every read checks the
size and sha256 recorded in the metadata; an entry that does not match is
deleted and rebuilt. If the cache directory cannot be written, the cache is
switched off with a single warning and everything still works, only slower.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import platformdirs

ENV_VAR = "WASI_MAGIC_CACHE"


def cache_dir() -> Path:
    """Where the cache lives: ``$WASI_MAGIC_CACHE`` or the platform's user cache dir."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("wasi-magic", appauthor=False))


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Entry:
    """A verified cache entry: the data file and its metadata."""

    path: Path
    meta: dict[str, Any]


class Cache:
    """A directory of content-addressed entries, grouped in sections."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir()
        self.enabled = True
        self._warned = False

    def _section(self, section: str) -> Path | None:
        if not self.enabled:
            return None
        folder = self.root / section
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(f"{folder} is not writable")
        except OSError as exc:
            self._disable(exc)
            return None
        return folder

    def _disable(self, exc: OSError) -> None:
        self.enabled = False
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"wasi-magic: cannot use the cache directory {self.root} ({exc}); "
                f"continuing without a cache, so every cell is rebuilt. Set "
                f"{ENV_VAR} to a writable folder to fix this.", RuntimeWarning, stacklevel=3)

    def get(self, section: str, name: str, suffix: str) -> Entry | None:
        """The entry ``section/name`` if present and intact; a damaged one is removed."""
        folder = self._section(section)
        if folder is None:
            return None
        data, meta_path = folder / f"{name}{suffix}", folder / f"{name}.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if data.stat().st_size == meta["size"] and file_sha256(data) == meta["sha256"]:
                return Entry(data, meta)
        except FileNotFoundError:
            if not meta_path.exists() and not data.exists():
                return None
        except (OSError, ValueError, KeyError, TypeError):
            pass
        self.discard(section, name, suffix)
        return None

    def put_file(self, section: str, name: str, suffix: str, source: Path,
                 meta: dict[str, Any], *, move: bool = False) -> Entry | None:
        """Store ``source`` as ``section/name`` (atomically) and return the entry."""
        folder = self._section(section)
        if folder is None:
            return None
        data = folder / f"{name}{suffix}"
        meta = dict(meta, size=source.stat().st_size, sha256=meta.get("sha256") or file_sha256(source))
        try:
            with _temp_path(folder, suffix) as tmp:
                if move:
                    shutil.move(str(source), tmp)
                else:
                    shutil.copyfile(source, tmp)
                os.replace(tmp, data)
            self._write_meta(folder / f"{name}.json", meta)
        except OSError as exc:
            self._disable(exc)
            return None
        return Entry(data, meta)

    def put_bytes(self, section: str, name: str, suffix: str, payload: bytes,
                  meta: dict[str, Any]) -> Entry | None:
        """Store ``payload`` as ``section/name`` (atomically) and return the entry."""
        folder = self._section(section)
        if folder is None:
            return None
        data = folder / f"{name}{suffix}"
        meta = dict(meta, size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
        try:
            with _temp_path(folder, suffix) as tmp:
                Path(tmp).write_bytes(payload)
                os.replace(tmp, data)
            self._write_meta(folder / f"{name}.json", meta)
        except OSError as exc:
            self._disable(exc)
            return None
        return Entry(data, meta)

    @staticmethod
    def _write_meta(path: Path, meta: dict[str, Any]) -> None:
        with _temp_path(path.parent, ".json") as tmp:
            Path(tmp).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, path)

    def discard(self, section: str, name: str, suffix: str) -> None:
        """Remove an entry (data and metadata), ignoring what is already gone."""
        folder = self.root / section
        for path in (folder / f"{name}{suffix}", folder / f"{name}.json"):
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
        """Where the cache is, how many entries of each kind and how many bytes."""
        sections: dict[str, dict[str, int]] = {}
        total = 0
        for section in ("builds", "compiled"):
            count = size = 0
            folder = self.root / section
            if folder.exists():
                for path in folder.rglob("*"):
                    if path.is_file() and path.suffix in (".wasm", ".cwasm"):
                        count += 1
                        size += path.stat().st_size
            sections[section] = {"entries": count, "bytes": size}
            total += size
        return {"path": str(self.root), "enabled": self.enabled, "bytes": total, **sections}

    def clear(self) -> int:
        """Delete every entry; returns the bytes freed."""
        freed = self.info()["bytes"]
        for section in ("builds", "compiled"):
            shutil.rmtree(self.root / section, ignore_errors=True)
        return freed


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
    if _default_cache is None or _default_cache.root != root:
        _default_cache = Cache(root)
    return _default_cache
