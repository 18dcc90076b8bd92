"""Packed cache entries: zstd-compressed, deduplicated against a reference entry.

A built component (~20 MiB) and its compiled form (~45 MiB) are nearly the same
from one cell to the next (the same CPython; only the heap snapshot differs), so
an entry compressed with *another entry of its section* as a raw-content zstd
dictionary takes ~2.3 MiB instead. ``python -m wasi_magic cache pack`` packs a
cache that way (Binder's ``postBuild`` does, so the image stays small); the first
use of a packed entry unpacks it (0.02-0.05 s) and verifies it like any entry.

A packed entry ``<name><suffix>`` has no data file; ``<name><suffix>.zst`` holds
the zstd frame and its sealed metadata ``<name>.json`` is unchanged (the seal is
over the *unpacked* size and sha256) plus::

    "packed": {"format": "zstd", "dictionary": null | {"name": N, "sha256": S}}

The dictionary is another entry of the same section (same suffix), itself packed
without a dictionary or not packed at all: unpacking never goes deeper than that.
Nothing here trusts the ``.zst`` file or the ``packed`` field: the output is
capped at the sealed size, and the caller checks its sha256 against the seal. Since
the frame is sealed too (``frame_size``, ``frame_sha256`` and ``frame_seal`` in the
``packed`` field, written with the cache's key), the caller checks the ~2 MiB frame
instead: a checked frame and a verified dictionary unpack to one thing only, so the
20-45 MiB output is not hashed again. A frame packed before that is hashed on the way
out as before, and sealed by the next ``cache pack``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import mmap
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import zstandard

from .cache import PACKED

if TYPE_CHECKING:
    from .cache import Cache
#: zstd level 12 with a 128 MiB window: measured the sweet spot (9 packs a cell's
#: component to 4.3 MiB, 12 to 2.0 MiB in 0.8 s, 15 to 2.0 MiB in 6.9 s).
LEVEL = 12
WINDOW_LOG = 27
#: The largest window a frame may ask for when unpacked (bounds the decoder's memory).
MAX_WINDOW = 1 << 28
_CHUNK = 1 << 20
_NAME = re.compile(r"[0-9a-f]{16,64}")


class PackError(ValueError):
    """A packed entry that cannot be unpacked to what its seal says."""


def data_suffix(section: str) -> str:
    """The data file suffix of a section: ``.wasm`` for builds, ``.cwasm`` for compiled."""
    return ".wasm" if section == "builds" else ".cwasm"


def dictionary_of(meta: dict[str, Any], name: str) -> dict[str, str] | None:
    """The dictionary named by a packed entry's metadata (None: packed without one).

    Raises :class:`PackError` if the entry is not packed or names anything but another
    entry of its own section (a name that could leave the folder, or itself)."""
    packed = meta.get("packed")
    if not isinstance(packed, dict) or packed.get("format") != "zstd":
        raise PackError("not a packed entry")
    ref = packed.get("dictionary")
    if ref is None:
        return None
    if (not isinstance(ref, dict) or not _NAME.fullmatch(str(ref.get("name", "")))
            or ref["name"] == name or not _NAME.fullmatch(str(ref.get("sha256", "")))):
        raise PackError("names no valid dictionary")
    return {"name": str(ref["name"]), "sha256": str(ref["sha256"])}


def dictionary_path(meta: dict[str, Any], name: str, depth: int,
                    find: Callable[[str], Any]) -> Path | None:
    """The data file of the dictionary a packed entry's metadata names (None: packed
    without one), found with ``find(name)`` (an :class:`~wasi_magic.cache.Entry`, verified,
    or None). ``depth``: 0 for an entry, 1 for a dictionary. Raises :class:`PackError` if
    it is missing, changed, or a dictionary would need a dictionary of its own."""
    ref = dictionary_of(meta, name)
    if ref is None:
        return None
    if depth:  # a dictionary is never packed with another: no chains, no cycles
        raise PackError("a dictionary packed with a dictionary")
    entry = find(ref["name"])
    if entry is None or entry.meta["sha256"] != ref["sha256"]:
        raise PackError(f"its dictionary {ref['name']} is missing or changed")
    return entry.path


def zstd_dict(reference: Path | None) -> zstandard.ZstdCompressionDict | None:
    """``reference``'s bytes as a raw-content zstd dictionary (None for no dictionary).

    Not kept between calls: a kernel unpacks an entry once, and a kept dictionary would
    hold ~2x its size (~100 MiB) in every kernel and sandbox worker."""
    if reference is None:
        return None
    with open(reference, "rb") as source:
        if os.fstat(source.fileno()).st_size == 0:
            return zstandard.ZstdCompressionDict(b"", dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        # Mapped, not read: the dictionary copies the bytes anyway (one copy, not two).
        mapped = mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return zstandard.ZstdCompressionDict(mapped, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    finally:
        with contextlib.suppress(BufferError):  # (a dictionary that kept a view keeps it)
            mapped.close()


def compress(source: Path, target: Path,
             dictionary: zstandard.ZstdCompressionDict | None) -> None:
    """Write ``source`` zstd-compressed to ``target`` (with ``dictionary`` if given)."""
    params = zstandard.ZstdCompressionParameters.from_level(LEVEL, window_log=WINDOW_LOG)
    kwargs: dict[str, Any] = {"compression_params": params}
    if dictionary is not None:
        kwargs["dict_data"] = dictionary
    frame = zstandard.ZstdCompressor(**kwargs).compress(source.read_bytes())
    target.write_bytes(frame)


def _blocks(packed: Path | bytes, size: int, reference: Path | None) -> Iterator[bytes]:
    """The unpacked bytes of ``packed``, block by block; raises :class:`PackError` if the
    frame is bad or would unpack to more (or fewer) than ``size`` bytes: a frame that
    would make more is stopped there, never written out."""
    kwargs: dict[str, Any] = {"max_window_size": MAX_WINDOW}
    written = 0
    try:
        dictionary = zstd_dict(reference)
        if dictionary is not None:
            kwargs["dict_data"] = dictionary
        with (open(packed, "rb") if isinstance(packed, Path) else io.BytesIO(packed)) as source:
            reader = zstandard.ZstdDecompressor(**kwargs).stream_reader(source)
            while True:
                block = reader.read(_CHUNK)
                if not block:
                    break
                written += len(block)
                if written > size:
                    raise PackError(f"unpacks to more than its sealed {size} bytes")
                yield block
    except zstandard.ZstdError as exc:
        raise PackError(f"bad zstd frame ({exc})") from None
    if written != size:
        raise PackError(f"unpacks to {written} bytes, not its sealed {size}")


def decompress(packed: Path | bytes, target: Path, size: int, reference: Path | None, *,
               hashed: bool = True) -> str | None:
    """Unpack ``packed`` (a frame's file or bytes; with ``reference``'s bytes as its
    dictionary, if given) into ``target``, at most ``size`` bytes; returns the sha256 of
    what it wrote (hashed on the way, so that the caller need not read the file again),
    or None if not ``hashed``. Raises :class:`PackError`."""
    digest = hashlib.sha256() if hashed else None
    with open(target, "wb") as out:
        for block in _blocks(packed, size, reference):
            if digest is not None:
                digest.update(block)
            out.write(block)
    return digest.hexdigest() if digest is not None else None


def unpacked_sha256(packed: Path, size: int, reference: Path | None) -> str | None:
    """The sha256 ``packed`` unpacks to (capped at ``size`` bytes), or None if it does not."""
    digest = hashlib.sha256()
    try:
        for block in _blocks(packed, size, reference):
            digest.update(block)
    except (PackError, OSError):
        return None
    return digest.hexdigest()


# --- packing a cache ---------------------------------------------------------------------


def sections(cache: "Cache") -> list[str]:
    """The sections of ``cache`` on disk: ``builds`` and each ``compiled/<tag>``."""
    found = ["builds"] if (cache.root / "builds").is_dir() else []
    compiled = cache.root / "compiled"
    if compiled.is_dir():
        found += [f"compiled/{p.name}" for p in sorted(compiled.iterdir()) if p.is_dir()]
    return found


def _names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.json") if _NAME.fullmatch(p.stem))


def pack_cache(cache: "Cache", report: Callable[[str], None] = print) -> tuple[int, int]:
    """Pack every intact entry of ``cache`` (see the module's docstring); returns the
    cache's bytes on disk (before, after). Running it again changes nothing."""
    if cache.folder(".") is None:  # the cache is off (or not trusted: then a new one)
        return 0, 0
    before = cache.info()["bytes"]
    for section in sections(cache):
        _pack_section(cache, section, report)
    after = cache.info()["bytes"]
    return before, after


def _pack_section(cache: "Cache", section: str, report: Callable[[str], None]) -> None:
    suffix = data_suffix(section)
    folder = cache.root / section
    metas = {name: meta for name in _names(folder)
             if (meta := cache.sealed_meta(section, name)) is not None}
    reference = _reference(metas, folder, suffix)
    if reference is None:
        return
    ref_entry = cache.get_own(section, reference, suffix)  # unpacked now if it was packed
    if ref_entry is None:
        return  # damaged (and removed): the next `cache pack` picks another reference
    ref = {"name": reference, "sha256": ref_entry.meta["sha256"]}
    dictionary = zstd_dict(ref_entry.path)
    done = 0
    # The reference last: until then its data file is there for the others to read.
    for name in [*sorted(set(metas) - {reference}), reference]:
        wanted = None if name == reference else ref
        meta = metas[name]
        already = isinstance(meta.get("packed"), dict) and meta["packed"].get("dictionary") == wanted
        if already and not (folder / f"{name}{suffix}").exists():
            # Packed as it should be: checked in memory, not unpacked to be packed again.
            if unpacked_sha256(folder / f"{name}{suffix}{PACKED}", meta["size"],
                               None if wanted is None else ref_entry.path) == meta["sha256"]:
                if "frame_seal" not in meta["packed"]:
                    cache.seal_frame(section, name, suffix)
                done += 1
            else:
                cache.discard(section, name, suffix)
            continue
        entry = cache.get_own(section, name, suffix)
        if entry is not None and cache.pack_entry(
                section, name, suffix, entry, None if wanted is None else dictionary, wanted,
                ref_entry.path if wanted is not None else None):
            done += 1
    report(f"{section}: {done} entries packed against {reference}")


def _reference(metas: dict[str, dict[str, Any]], folder: Path, suffix: str) -> str | None:
    """The entry the others are packed against: the one packed entries already name (so
    packing again is cheap), else the most typical one (the median size: a plain cell,
    not the quick-mode sandbox or the session component). None if there is no entry."""
    present = {name: meta for name, meta in metas.items()
               if (folder / f"{name}{suffix}").exists()
               or (folder / f"{name}{suffix}{PACKED}").exists()}
    for name, meta in present.items():
        try:
            ref = dictionary_of(meta, name)
        except PackError:
            continue
        if ref is not None and ref["name"] in present \
                and present[ref["name"]].get("sha256") == ref["sha256"]:
            return ref["name"]
    if not present:
        return None
    sizes = sorted((int(meta["size"]), name) for name, meta in present.items())
    return sizes[(len(sizes) - 1) // 2][1]
