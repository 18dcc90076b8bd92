"""Packed cache entries (``cache pack``): real components, packed and unpacked.

A packed cache holds each entry zstd-compressed against a reference entry of its
section; the first use unpacks it and verifies it like any entry. Whatever is
wrong with a packed entry (a tampered frame, a lost or tampered dictionary, a frame
that unpacks to more than its sealed size, a dictionary loop) makes it rebuilt or
compiled again, never loaded, with no traceback.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
import zstandard

from conftest import GUESTS, python_child
from wasi_magic import build
from wasi_magic.cache import Cache
from wasi_magic.capabilities import Capabilities
from wasi_magic.cli import execute
from wasi_magic.runtime import Runtime


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


@pytest.fixture(scope="module")
def components(shared_cache: Path, probe, quick_ready, session_ready,
               tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three real components (the probe, the quick-mode sandbox, the session component)
    and their Winch-compiled forms, copied once into a cache of this module's own (the
    test cache is shared with other test runs, which may replace its entries)."""
    source = tmp_path_factory.mktemp("pack-source")
    runtime = Runtime(tier_up=False, cache=Cache(source))
    for artifact in (probe, quick_ready, session_ready):
        cache = Cache(source, layered=False)
        entry = cache.put_file("builds", artifact.key, ".wasm", artifact.path, {})
        assert entry is not None and entry.meta["sha256"] == artifact.sha256
        runtime.component(artifact)  # compiled (Winch) into `source`
    return {"root": source, "tag": runtime.tag, "artifacts": [probe, quick_ready, session_ready]}


@pytest.fixture()
def packed(cold_cache: Path, components: dict):
    """A cold cache holding the three components and their compiled forms, then packed
    by ``cache pack``."""
    shutil.copytree(components["root"], cold_cache)
    before = Cache(cold_cache).info()
    out = io.StringIO()
    assert execute(["cache", "pack"], out=out) == 0
    return {"root": cold_cache, "tag": components["tag"], "before": before,
            "out": out.getvalue(), "artifacts": components["artifacts"]}


def _meta(root: Path, section: str, name: str) -> dict:
    return json.loads((root / section / f"{name}.json").read_text())


def _reference(root: Path, section: str, name: str) -> str:
    """The dictionary a packed entry names."""
    return _meta(root, section, name)["packed"]["dictionary"]["name"]


def _probe_runs(root: Path, probe) -> str:
    """Run the probe from the cache at ``root``; how its compiled form was got."""
    result = Runtime(tier_up=False, cache=Cache(root)).run(
        probe, Capabilities.parse(args=["hello"]))
    assert result.stdout == "hello from the probe ['hello']\n"
    return result.steps["component"]


def test_pack_shrinks_the_cache_and_a_packed_entry_unpacks_to_the_same_component(
        packed, probe) -> None:
    root = packed["root"]
    info = Cache(root).info()
    assert "compiled/" in packed["out"] and "packed " in packed["out"]
    for section in ("builds", "compiled"):
        assert info[section]["entries"] == packed["before"][section]["entries"] == 3
        assert info[section]["unpacked_bytes"] == 0
        assert 0 < info[section]["packed_bytes"] < packed["before"][section]["bytes"] / 2
    assert not [p for p in root.rglob("*") if p.suffix in (".wasm", ".cwasm")]
    # First use: the build and its compiled form are unpacked, verified, and used.
    again = build(GUESTS / "probe.py")
    assert again.cached and again.sha256 == probe.sha256
    assert again.path.read_bytes() == probe.path.read_bytes()
    assert _probe_runs(root, probe) == "deserialized"  # not compiled again
    shown = io.StringIO()
    assert execute(["cache", "info"], out=shown) == 0
    assert "packed," in shown.getvalue() and "unpacked)" in shown.getvalue()
    assert not list(root.rglob(".tmp-*"))


def test_a_frame_packed_before_frames_were_sealed_unpacks_and_is_sealed_by_the_next_pack(
        packed, probe, monkeypatch) -> None:
    """``cache pack`` seals each frame, so that unpacking checks the ~2 MiB frame rather
    than hashing the 20-45 MiB it unpacks to; a frame packed without that seal (an older
    ``cache pack``) is hashed on the way out instead, and the next pack seals it."""
    import wasi_magic.cache_pack as cache_pack
    root = packed["root"]
    section, name, suffix = _section_of("builds", packed)
    assert {"frame_size", "frame_sha256", "frame_seal"} <= set(_meta(root, section, name)["packed"])
    hashed: list[bool] = []
    real = cache_pack.decompress
    monkeypatch.setattr(cache_pack, "decompress",
                        lambda *args, **kw: hashed.append(kw["hashed"]) or real(*args, **kw))
    assert Cache(root).get(section, name, suffix).path.read_bytes() == probe.path.read_bytes()
    assert hashed and not any(hashed)  # sealed frames (and its dictionary's): not hashed
    hashed.clear()
    (root / section / f"{name}{suffix}").unlink()  # packed again, as before frames were sealed
    meta = _meta(root, section, name)
    meta["packed"] = {key: meta["packed"][key] for key in ("format", "dictionary")}
    (root / section / f"{name}.json").write_text(json.dumps(meta))
    assert Cache(root).get(section, name, suffix).path.read_bytes() == probe.path.read_bytes()
    assert hashed == [True]  # no seal: the output is hashed and checked
    (root / section / f"{name}{suffix}").unlink()
    assert execute(["cache", "pack"], out=io.StringIO()) == 0
    assert "frame_seal" in _meta(root, section, name)["packed"]


def test_pack_is_idempotent(packed) -> None:
    root = packed["root"]
    packed_files = _files(root)
    out = io.StringIO()
    assert execute(["cache", "pack"], out=out) == 0
    assert _files(root) == packed_files  # nothing unpacked or rewritten
    # Entries unpacked by use are packed again by deleting their data files only.
    Cache(root).get("builds", packed["artifacts"][0].key, ".wasm")
    assert Cache(root).info()["builds"]["unpacked_bytes"] > 0
    assert execute(["cache", "pack"], out=io.StringIO()) == 0
    assert _files(root) == packed_files


def _section_of(kind: str, packed) -> tuple[str, str, str]:
    """(section, name, suffix) of the probe's entry of that kind (build or compiled)."""
    probe = packed["artifacts"][0]
    if kind == "builds":
        return "builds", probe.key, ".wasm"
    return f"compiled/{packed['tag']}", probe.sha256, ".cwasm"


def _a_dependent(root: Path, section: str, suffix: str) -> tuple[str, str]:
    """(an entry packed with a dictionary, its dictionary) in ``section``."""
    for meta_path in sorted((root / section).glob("*.json")):
        ref = json.loads(meta_path.read_text())["packed"]["dictionary"]
        if ref is not None:
            return meta_path.stem, ref["name"]
    raise AssertionError("no entry packed with a dictionary")


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["builds", "compiled"])
@pytest.mark.parametrize("damage", ["tampered frame", "tampered frame, seal forged",
                                    "tampered frame, seal dropped", "lost dictionary",
                                    "tampered dictionary", "bigger than sealed",
                                    "dictionary loop", "dictionary path"])
def test_a_damaged_packed_entry_is_never_loaded(packed, kind: str, damage: str) -> None:
    root = packed["root"]
    section, _, suffix = _section_of(kind, packed)
    name, reference = _a_dependent(root, section, suffix)
    zst = root / section / f"{name}{suffix}.zst"
    ref_zst = root / section / f"{reference}{suffix}.zst"
    meta_path = root / section / f"{name}.json"
    meta = _meta(root, section, name)
    if damage == "tampered frame":
        _flip(zst)
    elif damage == "tampered frame, seal forged":  # (the key is not in the cache)
        _flip(zst)
        meta["packed"]["frame_sha256"] = hashlib.sha256(zst.read_bytes()).hexdigest()
        meta_path.write_text(json.dumps(meta))
    elif damage == "tampered frame, seal dropped":  # as if packed before frames were sealed
        _flip(zst)
        meta["packed"] = {"format": "zstd", "dictionary": meta["packed"]["dictionary"]}
        meta_path.write_text(json.dumps(meta))
    elif damage == "lost dictionary":
        ref_zst.unlink()
        (root / section / f"{reference}.json").unlink()
    elif damage == "tampered dictionary":
        _flip(ref_zst)
    elif damage == "bigger than sealed":
        # A decompression bomb: a small frame of far more bytes than the seal says.
        bomb = io.BytesIO()
        with zstandard.ZstdCompressor(level=1).stream_writer(bomb, closefd=False) as writer:
            for _ in range(meta["size"] // (1 << 20) + 64):
                writer.write(bytes(1 << 20))
        zst.write_bytes(bomb.getvalue())
        # Without the key, no seal for this frame: the size cap is what stops it.
        meta["packed"] = {"format": "zstd", "dictionary": None}
        meta_path.write_text(json.dumps(meta))
    elif damage == "dictionary loop":
        ref_meta = _meta(root, section, reference)
        ref_meta["packed"]["dictionary"] = {"name": name, "sha256": meta["sha256"]}
        (root / section / f"{reference}.json").write_text(json.dumps(ref_meta))
    elif damage == "dictionary path":
        meta["packed"]["dictionary"]["name"] = "../../builds/" + reference
        meta_path.write_text(json.dumps(meta))
    assert Cache(root, layered=False).get(section, name, suffix) is None
    assert not (root / section / f"{name}{suffix}").exists()
    assert not zst.exists() and not meta_path.exists()  # removed: rebuilt next time
    assert not list(root.rglob(".tmp-*"))


def test_a_damaged_packed_entry_is_built_and_compiled_again(packed, probe) -> None:
    root = packed["root"]
    for kind in ("builds", "compiled"):
        section, name, suffix = _section_of(kind, packed)
        _flip(root / section / f"{name}{suffix}.zst")
    rebuilt = build(GUESTS / "probe.py")
    assert not rebuilt.cached
    assert Runtime(tier_up=False, cache=Cache(root)).run(
        rebuilt, Capabilities.parse(args=["hello"])).steps["component"] == "compiled"


def test_the_cli_packs_and_shows_damage_without_a_traceback(packed) -> None:
    """``python -m wasi_magic cache pack`` in its own process, over a damaged entry: the
    damaged entry is dropped, the rest stays packed, exit 0, no traceback."""
    root = packed["root"]
    section, name, suffix = _section_of("compiled", packed)
    _flip(root / section / f"{name}{suffix}.zst")
    child = python_child("import sys; from wasi_magic.cli import main; "
                         "sys.exit(main(['cache', 'pack']))")
    assert child.returncode == 0 and child.stderr == "", child.stderr
    assert "packed " in child.stdout and "Traceback" not in child.stdout
    assert Cache(root).info()["compiled"]["entries"] == 2


def test_packing_and_unpacking_write_nothing_outside_the_cache(packed, probe,
                                                               tmp_path: Path) -> None:
    """Battery-style: the host's files are what they were; only the cache changed."""
    root = packed["root"]
    host = tmp_path / "host"
    host.mkdir()
    (host / "notes.txt").write_text("unchanged\n")
    before = _files(tmp_path)
    assert execute(["cache", "pack"], out=io.StringIO()) == 0
    build(GUESTS / "probe.py")
    _probe_runs(root, probe)
    after = _files(tmp_path)
    changed = {path for path in before.keys() | after.keys()
               if before.get(path) != after.get(path)}
    assert changed and all(Path(tmp_path / path).is_relative_to(root) for path in changed)
    assert (host / "notes.txt").read_text() == "unchanged\n"


UNPACK_ALL = """
import json, sys
from pathlib import Path
from wasi_magic.cache import Cache
from wasi_magic.cache_pack import data_suffix, sections
cache = Cache(Path(sys.argv[1]), layered=False)
got = {f"{s}/{m.stem}": getattr(cache.get(s, m.stem, data_suffix(s)), "meta", {}).get("sha256")
       for s in sections(cache) for m in sorted((cache.root / s).glob("*.json"))}
print(json.dumps(got))
"""


def test_two_kernels_unpacking_the_same_entries_at_once_both_succeed(packed) -> None:
    import os
    import subprocess
    import sys
    root = packed["root"]
    shas = {f"{s}/{m.stem}": json.loads(m.read_text())["sha256"]
            for s in ("builds", f"compiled/{packed['tag']}")
            for m in sorted((root / s).glob("*.json"))}
    procs = [subprocess.Popen([sys.executable, "-c", UNPACK_ALL, str(root)],
                              env=dict(os.environ), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and err == "", err
        assert json.loads(out) == shas  # every entry, intact, in both
    assert not list(root.rglob(".tmp-*"))
    assert Cache(root).info()["builds"]["unpacked_bytes"] > 0


def test_a_decompression_bomb_stops_at_the_sealed_size(tmp_path: Path) -> None:
    """A 12 KiB frame of 256 MiB: unpacking stops at the sealed size, having written no more."""
    from wasi_magic.cache_pack import PackError, decompress
    bomb = tmp_path / "bomb.zst"
    with open(bomb, "wb") as out, \
            zstandard.ZstdCompressor(level=1).stream_writer(out) as writer:
        for _ in range(256):
            writer.write(bytes(1 << 20))
    assert bomb.stat().st_size < 64 << 10
    target = tmp_path / "out"
    with pytest.raises(PackError, match="more than its sealed"):
        decompress(bomb, target, 1 << 20, None)
    assert target.stat().st_size <= 1 << 20


FULL_DISK = """
import json, sys
from pathlib import Path
from wasi_magic.cache import Cache
from wasi_magic.capabilities import Capabilities
from wasi_magic.runtime import Runtime
root, section, name, probe = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
cache = Cache(root, layered=False)
got = cache.get(section, name, ".wasm")
# The run still works: the compiled form cannot be unpacked either, so it is compiled here.
result = Runtime(tier_up=False, cache=cache).run(probe, Capabilities.parse(args=["hello"]))
print(json.dumps({"got": getattr(got, "meta", {}).get("sha256"), "stdout": result.stdout,
                  "component": result.steps["component"]}))
"""


def test_a_full_disk_while_unpacking_keeps_the_packed_entry(packed, tmp_path: Path) -> None:
    """A cache on a full file system (a real tmpfs with room for the packed entries only, in
    a user and mount namespace of its own): nothing is unpacked, nothing is lost or left
    half-written, the guest still runs, and the entry unpacks once there is room."""
    import subprocess
    import sys
    section, name, _ = _section_of("builds", packed)
    probe = packed["artifacts"][0]
    mount = tmp_path / "full"
    mount.mkdir()
    room = sum(p.stat().st_size for p in packed["root"].rglob("*") if p.is_file()) + (4 << 20)
    child = [sys.executable, "-c", FULL_DISK, str(mount / "cache"), section, name,
             str(probe.path)]
    script = " && ".join([
        f"mount -t tmpfs -o size={room} tmpfs {mount}",
        f"cp -a {packed['root']} {mount / 'cache'}",
        " ".join(f"'{word}'" for word in child),
        f"ls -a {mount / 'cache' / section}",
        f"mount -o remount,size={room + (512 << 20)} {mount}",
        " ".join(f"'{word}'" for word in child)])
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    full, listing, roomy = done.stdout.split("\n", 1)[0], done.stdout, done.stdout.splitlines()[-1]
    full, roomy = json.loads(full), json.loads(roomy)
    assert full == {"got": None, "stdout": "hello from the probe ['hello']\n",
                    "component": "compiled"}
    names = listing.splitlines()[1:-1]
    assert f"{name}.wasm.zst" in names and f"{name}.json" in names  # kept, still packed
    assert f"{name}.wasm" not in names and not [n for n in names if n.startswith(".tmp-")]
    assert roomy["got"] == probe.sha256 and roomy["stdout"] == full["stdout"]


def test_a_preload_loads_what_the_cache_holds_and_never_compiles(packed, probe,
                                                                  session_ready) -> None:
    """``Runtime.preload`` (what the worker does while the kernel unpacks a component)
    loads a compiled form from the cache, and the run that uses it reports that load; for
    a component the cache holds no compiled form of, it does nothing at all."""
    root = packed["root"]
    runtime = Runtime(tier_up=False, cache=Cache(root))
    assert runtime.preload(probe.sha256) == "deserialized"
    assert runtime.compiled(probe)[2] == "deserialized"  # that load, reported once
    assert runtime.compiled(probe)[2] == "memory"
    section = f"compiled/{packed['tag']}"
    Cache(root).discard(section, session_ready.sha256, ".cwasm")
    before = _files(root)
    assert runtime.preload(session_ready.sha256) is None
    assert _files(root) == before  # nothing compiled, nothing written
    assert runtime.in_memory() == {probe.sha256}


def test_the_sandbox_preloads_while_the_kernel_unpacks(packed, probe) -> None:
    """``Sandbox.preload`` asks the worker for a compiled form without waiting; the next
    ``prepare`` of that component finds it loaded (its answer ignored, nothing mixed up)."""
    from wasi_magic.sandbox.supervisor import Sandbox
    box = Sandbox(spare=False)
    try:
        box.preload(probe.sha256)
        box.preload("0" * 64)  # not in the cache: nothing happens
        assert box.prepare(probe)["how"] == "deserialized"
        result = box.run(probe, Capabilities.parse(args=["hello"]))
        assert result.stdout == "hello from the probe ['hello']\n"
        assert result.steps["component"] == "memory"
    finally:
        box.close()
