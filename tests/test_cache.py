"""The build and compiled-component caches: hits across restarts, races, damage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path


from conftest import ROOT, python_child
from wasi_magic import Capabilities, build, run
from wasi_magic.cache import Cache

CELL = "import sys\nprint('cache test', sys.argv[1:])\n"

# A "kernel restart": a new process loads the extension and runs a cell. An
# audit hook records every process it starts, so the test can prove that
# componentize-py was never invoked (the sandbox worker compiles, or loads
# the compiled component from the cache).
RESTART = """
import json, sys, time
started = []
sys.addaudithook(lambda event, args: started.append(str(args[1])) if event == "subprocess.Popen" else None)
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "wasi_magic")
ip.run_cell("%%wasi -q --out OUT --result R -- after restart\\n" + {cell!r})
r = ip.user_ns["R"]
print(json.dumps({{"out": ip.user_ns["OUT"], "steps": r.steps, "processes": started}}))
"""


def test_unchanged_cell_after_restart_calls_neither_builder_nor_compiler(cold_cache: Path) -> None:
    first = python_child(RESTART.format(cell=CELL))
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout.splitlines()[-1])
    assert report["steps"] == {"component": "compiled", "build": "built"}
    assert any("componentize" in p for p in report["processes"])

    second = python_child(RESTART.format(cell=CELL))
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout.splitlines()[-1])
    assert report["out"] == "cache test ['after', 'restart']\n"
    assert report["steps"] == {"component": "deserialized", "build": "cached"}
    # No componentize-py: the only processes started are the sandbox's workers
    # (the one that runs the guest, and its spare).
    assert report["processes"] and all("wasi_magic.sandbox.worker" in p
                                       for p in report["processes"]), report["processes"]


BUILD_ONE = """
import json, sys
from wasi_magic import build, run
artifact = build({cell!r})
print(json.dumps({{"cached": artifact.cached, "sha": artifact.sha256, "out": run(artifact).stdout}}))
"""


def test_two_concurrent_builds_of_one_cell(cold_cache: Path) -> None:
    cell = CELL + "# concurrent\n"
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-c", BUILD_ONE.format(cell=cell)], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err
        assert json.loads(out)["out"] == "cache test []\n"
    # One intact entry remains, and a third process finds it.
    entries = list((cold_cache / "builds").glob("*.wasm"))
    assert len(entries) == 1
    assert Cache(cold_cache).get("builds", entries[0].stem, ".wasm") is not None
    third = python_child(BUILD_ONE.format(cell=cell))
    assert json.loads(third.stdout)["cached"] is True
    assert not list((cold_cache / "builds").glob(".tmp-*"))


def test_damaged_entries_are_detected_and_rebuilt(cold_cache: Path) -> None:
    from wasi_magic.builder import forget_memo
    from wasi_magic.runtime import default_runtime
    cell = CELL + "# damage\n"
    artifact = build(cell)
    assert run(artifact).stdout == "cache test []\n"
    compiled = next((cold_cache / "compiled").rglob("*.cwasm"))
    # Truncate both the component and its compiled form, then start "fresh".
    artifact.path.write_bytes(artifact.path.read_bytes()[:1000])
    compiled.write_bytes(compiled.read_bytes()[:1000])
    forget_memo()
    default_runtime().forget()
    rebuilt = build(cell)
    assert not rebuilt.cached and rebuilt.size > 1000
    result = run(rebuilt)
    assert result.stdout == "cache test []\n" and result.steps["component"] == "compiled"


def test_corrupt_compiled_entry_with_intact_metadata_is_recompiled(cold_cache: Path, probe) -> None:
    """Garbage whose checksum is recorded as valid must not crash the host."""
    from wasi_magic.runtime import Runtime
    runtime = Runtime(cache=Cache(cold_cache))
    section = f"compiled/{runtime.tag}"
    Cache(cold_cache).put_bytes(section, probe.sha256, ".cwasm", b"not a compiled component", {})
    result = runtime.run(probe, Capabilities.parse(args=["hello"]))
    assert result.stdout == "hello from the probe ['hello']\n"
    assert result.steps["component"] == "compiled"


def test_unwritable_cache_degrades_with_one_warning(tmp_path: Path, probe) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache dir should be")
    cache = Cache(blocked)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache.get("builds", "x", ".wasm") is None
        assert cache.put_bytes("builds", "x", ".wasm", b"data", {}) is None
        assert cache.get("builds", "x", ".wasm") is None
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "continuing without a cache" in messages[0]
    assert not cache.enabled


def test_cache_info_and_clear(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    cache.put_bytes("builds", "k", ".wasm", b"\0asm" + b"x" * 100, {})
    info = cache.info()
    assert info["builds"] == {"entries": 1, "bytes": 104, "packed_bytes": 0,
                              "unpacked_bytes": 104}
    assert cache.clear() == 104
    assert cache.info()["builds"]["entries"] == 0


def test_an_entry_rewritten_by_anything_but_wasi_magic_is_never_loaded(
        cold_cache: Path, probe, quick_ready, shared_cache: Path) -> None:
    """v1's attack: a guest swapped a compiled entry and fixed its metadata (the sha256
    beside a file checks nothing). Now the metadata must carry wasi-magic's seal, made
    with a key that lives outside the cache, so the swapped entry is compiled again."""
    from wasi_magic.runtime import Runtime
    runtime = Runtime(cache=Cache(cold_cache))
    assert runtime.run(probe, Capabilities.parse(args=["hello"])).steps["component"] == "compiled"
    [probe_entry] = list((cold_cache / "compiled").rglob("*.cwasm"))
    # Another program's compiled form (the quick sandbox's), with its own sealed metadata,
    # copied under the probe's name: what the v1 attack did.
    [quick_entry] = list((shared_cache / "compiled" / runtime.tag).glob(
        f"{quick_ready.sha256}.cwasm"))
    probe_entry.write_bytes(quick_entry.read_bytes())
    probe_entry.with_suffix(".json").write_text(quick_entry.with_suffix(".json").read_text())
    again = Runtime(cache=Cache(cold_cache)).run(probe, Capabilities.parse(args=["hello"]))
    assert again.stdout == "hello from the probe ['hello']\n"  # the probe, not the sandbox
    assert again.steps["component"] == "compiled"


def test_a_cache_others_can_write_is_not_trusted(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    cache = Cache(shared)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entry = cache.put_bytes("builds", "k", ".wasm", b"\0asm", {})
    assert [str(w.message) for w in caught if "cannot be trusted" in str(w.message)]
    assert entry is not None and not entry.path.is_relative_to(shared)
    assert cache.root.stat().st_mode & 0o077 == 0  # the private stand-in: its owner's only
    assert not list(shared.iterdir())


def test_the_sealing_key_is_private_and_outside_the_cache() -> None:
    from wasi_magic.cache import cache_dir, key_path, seal
    seal("builds", "x", 1, "0" * 64)  # made on first use
    path = key_path()
    assert path.stat().st_mode & 0o077 == 0 and len(path.read_bytes()) == 32
    assert not path.is_relative_to(cache_dir())


def test_a_remembered_hash_never_hides_a_change(tmp_path: Path) -> None:
    """A process remembers the sha256 of an entry it verified (or unpacked), so that the
    next look does not read it again; a write to the file, even in place and of the same
    size, changes its ctime, and the entry is read, and refused, again."""
    import time
    cache = Cache(tmp_path / "cache")
    payload = b"\0asm" + bytes(range(256)) * 64
    entry = cache.put_bytes("builds", "k", ".wasm", payload, {})
    assert entry is not None
    assert cache.get("builds", "k", ".wasm") is not None  # hashed now: just written
    time.sleep(0.2)  # a wait, not a timing: settled files' hashes are remembered
    assert cache.get("builds", "k", ".wasm") is not None  # hashed, and remembered
    assert cache.get("builds", "k", ".wasm") is not None  # from memory
    with open(entry.path, "r+b") as data:  # in place: same inode, same size
        data.seek(10)
        data.write(b"\xff")
    assert cache.get("builds", "k", ".wasm") is None  # read again, refused, removed
    assert not entry.path.exists()


def _settled_entry(tmp_path: Path) -> tuple[Cache, Path]:
    """An entry verified once by a first process (its file settled: see test above)."""
    import time
    cache = Cache(tmp_path / "cache")
    entry = cache.put_bytes("builds", "k", ".wasm", b"\0asm" + bytes(range(256)) * 64, {})
    assert entry is not None
    time.sleep(0.2)
    assert Cache(tmp_path / "cache").get("builds", "k", ".wasm") is not None
    return cache, entry.path


def test_a_verified_entry_is_not_read_again_by_the_next_process(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """The verdict on an intact, settled file is kept in its metadata, under the cache's
    key: the next process (every kernel and worker) trusts it without hashing the file
    while the file keeps its identity."""
    import wasi_magic.cache as cache_module
    _, data = _settled_entry(tmp_path)
    hashed: list[Path] = []
    real = cache_module.file_sha256
    monkeypatch.setattr(cache_module, "file_sha256", lambda path: hashed.append(path) or real(path))
    assert Cache(tmp_path / "cache").get("builds", "k", ".wasm") is not None
    assert hashed == []
    # The same bytes written again (a new inode, as a rebuild renames a new file in):
    # a new identity, so the file is hashed again.
    data.write_bytes(data.read_bytes())
    assert Cache(tmp_path / "cache").get("builds", "k", ".wasm") is not None
    assert hashed == [data]


def test_a_recorded_verdict_never_hides_a_change(tmp_path: Path) -> None:
    """An in-place write of the same size with the old mtime put back still changes the
    file's ctime: the next process reads the file again, and refuses it."""
    _, data = _settled_entry(tmp_path)
    before = data.stat()
    with open(data, "r+b") as handle:
        handle.seek(10)
        handle.write(b"\xff")
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert Cache(tmp_path / "cache").get("builds", "k", ".wasm") is None
    assert not data.exists()


def test_a_verdict_not_made_with_the_key_is_not_believed(tmp_path: Path) -> None:
    """Anyone who can write the cache could write a verdict for a file they replaced;
    without the key (kept outside the cache) its digest is wrong, and the file is read."""
    _, data = _settled_entry(tmp_path)
    meta_path = data.with_suffix(".json")
    with open(data, "r+b") as handle:  # replaced in place...
        handle.seek(10)
        handle.write(b"\xff")
    meta = json.loads(meta_path.read_text())
    info = data.stat()  # ...and a verdict forged for the file as it is now
    meta["checked"]["identity"] = [info.st_dev, info.st_ino, info.st_size,
                                   info.st_mtime_ns, info.st_ctime_ns]
    meta_path.write_text(json.dumps(meta))
    assert Cache(tmp_path / "cache").get("builds", "k", ".wasm") is None


def test_an_unpacked_entry_changed_after_unpacking_is_refused(tmp_path: Path) -> None:
    """Unpacking hashes what it writes, which spares reading the file again right after;
    a change made after that is still caught on the next look."""
    from wasi_magic.cache_pack import pack_cache
    cache = Cache(tmp_path / "cache")
    names = [str(index) * 32 for index in range(3)]  # keys as wasi-magic makes them
    for index, name in enumerate(names):
        cache.put_bytes("builds", name, ".wasm", b"\0asm" + bytes([index]) * 50_000, {})
    pack_cache(cache, report=lambda _: None)
    assert not (cache.root / "builds" / f"{names[1]}.wasm").exists()
    fresh = Cache(tmp_path / "cache")  # another process: nothing remembered
    entry = fresh.get("builds", names[1], ".wasm")
    assert entry is not None and entry.path.read_bytes() == b"\0asm" + bytes([1]) * 50_000
    with open(entry.path, "r+b") as data:
        data.seek(100)
        data.write(b"\xff")
    assert fresh.get("builds", names[1], ".wasm") is None


def _aged(cache: Cache, section: str, name: str, seconds_ago: float) -> None:
    """Make entry ``name`` look last used ``seconds_ago`` (its files' mtimes)."""
    import time
    when = time.time() - seconds_ago
    for path in (cache.root / section).glob(f"{name}.*"):
        os.utime(path, (when, when))


def _entry_bytes(cache: Cache) -> int:
    return sum(p.stat().st_size for section in ("builds", "compiled")
               for p in (cache.root / section).rglob("*") if p.is_file()
               and not p.name.startswith("."))


def test_a_full_cache_evicts_what_was_used_longest_ago(tmp_path: Path, monkeypatch) -> None:
    """Past ``$WASI_MAGIC_CACHE_LIMIT`` a write evicts the least recently used entries (an
    entry read counts as used); what was used in the last ten minutes stays. (Ages are
    set on the files, not waited for.)"""
    from wasi_magic.cache import RECENT
    cache = Cache(tmp_path / "cache")
    names = [f"{index:032x}" for index in range(5)]
    for index, name in enumerate(names):
        cache.put_bytes("builds", name, ".wasm", b"\0asm" + bytes([index]) * 100_000, {})
        _aged(cache, "builds", name, 3600 * (10 - index))  # names[0] used longest ago
    assert cache.get("builds", names[0], ".wasm") is not None  # used now: the newest
    monkeypatch.setenv("WASI_MAGIC_CACHE_LIMIT", "350KB")
    cache.put_bytes("builds", "f" * 32, ".wasm", b"\0asm" + b"\xff" * 100_000, {})
    kept = sorted(p.stem for p in (cache.root / "builds").glob("*.wasm"))
    assert kept == sorted([names[0], names[4], "f" * 32])  # names[1..3] went, oldest first
    assert not list((cache.root / "builds").glob(f"{names[1]}.*"))  # data and metadata
    assert _entry_bytes(cache) <= 350_000
    assert cache.get("builds", names[4], ".wasm") is not None  # what stays is intact

    # Used in the last ten minutes: kept, even over the limit.
    for name in (names[0], names[4]):
        _aged(cache, "builds", name, RECENT / 2)
    monkeypatch.setenv("WASI_MAGIC_CACHE_LIMIT", "1KB")
    cache.put_bytes("builds", "e" * 32, ".wasm", b"\0asm" * 10, {})
    assert len(list((cache.root / "builds").glob("*.wasm"))) == 4


def test_no_limit_and_a_bad_limit(tmp_path: Path, monkeypatch) -> None:
    """``0`` keeps everything; a value that is not a size is named in one warning and the
    default (5 GiB) applies."""
    from wasi_magic.cache import DEFAULT_LIMIT, cache_limit
    cache = Cache(tmp_path / "cache")
    monkeypatch.setenv("WASI_MAGIC_CACHE_LIMIT", "0")
    for index in range(3):
        cache.put_bytes("builds", f"{index:032x}", ".wasm", b"\0asm" * 1000, {})
        _aged(cache, "builds", f"{index:032x}", 3600)
    assert len(list((cache.root / "builds").glob("*.wasm"))) == 3
    monkeypatch.setenv("WASI_MAGIC_CACHE_LIMIT", "lots")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache_limit() == DEFAULT_LIMIT
    assert len(caught) == 1 and "WASI_MAGIC_CACHE_LIMIT 'lots'" in str(caught[0].message)


def test_a_packed_entry_keeps_its_packed_file(tmp_path: Path, monkeypatch) -> None:
    """Evicting a packed entry deletes only its unpacked copy: the next use unpacks it
    again (a Binder image's packed cache is never lost)."""
    from wasi_magic.cache_pack import pack_cache
    cache = Cache(tmp_path / "cache")
    names = [str(index) * 32 for index in range(3)]
    for index, name in enumerate(names):
        cache.put_bytes("builds", name, ".wasm", b"\0asm" + bytes([index]) * 200_000, {})
    pack_cache(cache, report=lambda _: None)
    fresh = Cache(tmp_path / "cache")
    assert fresh.get("builds", names[1], ".wasm") is not None  # unpacked now
    _aged(fresh, "builds", names[1], 3600)
    packed_bytes = fresh.info()["builds"]["packed_bytes"]
    monkeypatch.setenv("WASI_MAGIC_CACHE_LIMIT", str(packed_bytes + 250_000))
    fresh.put_bytes("builds", "a" * 32, ".wasm", b"\0asm" + b"\x01" * 200_000, {})
    folder = cache.root / "builds"
    assert not (folder / f"{names[1]}.wasm").exists()
    assert (folder / f"{names[1]}.wasm.zst").exists() and (folder / f"{names[1]}.json").exists()
    again = Cache(tmp_path / "cache").get("builds", names[1], ".wasm")
    assert again is not None and again.path.read_bytes() == b"\0asm" + bytes([1]) * 200_000


def test_trimming_never_follows_a_link_out_of_the_cache(tmp_path: Path, monkeypatch) -> None:
    """A symbolic link planted in the cache (to a folder, or to a file) is not followed:
    the files it points at stay, however old."""
    cache = Cache(tmp_path / "cache")
    cache.put_bytes("builds", "a" * 32, ".wasm", b"\0asm" * 1000, {})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / f"{'b' * 32}.wasm").write_bytes(b"keep me" * 1000)
    (outside / "note.txt").write_bytes(b"keep me too" * 1000)
    (cache.root / "compiled" / "linked").parent.mkdir(parents=True, exist_ok=True)
    (cache.root / "compiled" / "linked").symlink_to(outside, target_is_directory=True)
    (cache.root / "builds" / f"{'c' * 32}.wasm").symlink_to(outside / "note.txt")
    for path in (outside / f"{'b' * 32}.wasm", outside / "note.txt"):
        os.utime(path, (0, 0))
    _aged(cache, "builds", "a" * 32, 3600)
    monkeypatch.setenv("WASI_MAGIC_CACHE_LIMIT", "1KB")
    cache.put_bytes("builds", "d" * 32, ".wasm", b"\0asm" * 10, {})
    assert not (cache.root / "builds" / f"{'a' * 32}.wasm").exists()  # the old entry went
    assert sorted(p.name for p in outside.iterdir()) == [f"{'b' * 32}.wasm", "note.txt"]
