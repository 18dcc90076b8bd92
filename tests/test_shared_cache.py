"""The read-only shared cache of a classroom server (``$WASI_MAGIC_SHARED_CACHE``).

A teacher's ``warm --shared DIR`` fills it once (a real Cranelift compile of the real
quick-mode sandbox); students' kernels then find the build and its compiled form there,
never building or compiling them; a shared cache others can write is refused with one
warning; a tampered entry is built or compiled again in the student's own cache and
never loaded.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path

import pytest

from wasi_magic.cache import Cache
from wasi_magic.capabilities import Capabilities
from wasi_magic.quick import with_source


def _cache_with_build(root: Path, *artifacts) -> Path:
    """A fresh cache holding only ``artifact``'s build entry (sealed by this user's key)."""
    (root / "builds").mkdir(parents=True)
    for artifact in artifacts:
        for path in (artifact.path, artifact.path.with_suffix(".json")):
            (root / "builds" / path.name).write_bytes(path.read_bytes())
    return root


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture(scope="module")
def filled(quick_ready, session_ready, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A shared cache filled by ``warm --shared`` from a teacher's cache."""
    from wasi_magic.warm import warm
    base = tmp_path_factory.mktemp("classroom")
    teacher = _cache_with_build(base / "teacher", quick_ready, session_ready)
    shared = base / "srv" / "wasi-magic-cache"
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WASI_MAGIC_CACHE", str(teacher))
        patch.setenv("WASI_MAGIC_TIER_UP", "1")  # warm compiles with Cranelift
        patch.delenv("WASI_MAGIC_SHARED_CACHE", raising=False)
        warm([], report=lines.append, shared=shared)
    return shared, lines


@pytest.fixture()
def classroom(filled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A copy of the filled shared cache (modes kept) and an empty student cache, in use."""
    from wasi_magic.builder import forget_memo
    shared = tmp_path / "shared"
    shutil.copytree(filled[0], shared)
    shared.chmod(0o755)
    student = tmp_path / "student"
    monkeypatch.setenv("WASI_MAGIC_CACHE", str(student))
    monkeypatch.setenv("WASI_MAGIC_SHARED_CACHE", str(shared))
    monkeypatch.setenv("WASI_MAGIC_TIER_UP", "1")  # a student's default
    forget_memo()
    yield shared, student
    forget_memo()


def _caps(source: str) -> Capabilities:
    return with_source(Capabilities(), source)


def _cranelift_entry(root: Path, sha256: str) -> Path:
    [entry] = root.glob(f"compiled/*-cranelift-noepoch-*/{sha256}.cwasm")
    return entry


def test_warm_shared_fills_a_cache_every_user_can_read(filled, quick_ready) -> None:
    shared, lines = filled
    assert lines == ["quick-mode sandbox: cached", "session sandbox: cached",
                     f"shared cache {shared}: 5 entries written"]
    entry = _cranelift_entry(shared, quick_ready.sha256)
    assert entry.stem == quick_ready.sha256
    assert (shared / "builds" / f"{quick_ready.key}.wasm").exists()
    for path in [shared, *shared.rglob("*")]:
        if path.name.endswith(".lock"):
            continue
        mode = path.stat().st_mode & 0o777
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))


def _student_run(artifact, text: str):
    """``print(text)`` run as a student's kernel runs it: in a sandbox worker."""
    from wasi_magic.sandbox.supervisor import Sandbox
    sandbox = Sandbox(spare=False)
    try:
        return sandbox.run(artifact, _caps(f"print({text!r})"))
    finally:
        sandbox.close()


def _student_runs_the_runner(student: Path, found_in: Path, quick_ready, text: str) -> None:
    """The student's kernel finds the quick-mode sandbox in ``found_in`` and its worker
    runs it from its compiled (Cranelift) form, building and compiling nothing."""
    from wasi_magic.quick import quick_sandbox
    artifact = quick_sandbox()
    assert artifact.cached and artifact.path.is_relative_to(found_in)
    assert artifact.sha256 == quick_ready.sha256
    result = _student_run(artifact, text)
    assert (result.stdout, result.steps, result.tier) == (
        f"{text}\n", {"component": "deserialized"}, "cranelift")


def test_a_student_uses_shared_entries_without_building_or_compiling(classroom,
                                                                     quick_ready) -> None:
    shared, student = classroom
    _student_runs_the_runner(student, shared, quick_ready, "from the shared cache")
    assert [p for p in _files(student) if p.suffix in (".wasm", ".cwasm")] == []


@pytest.mark.parametrize("where", [".", "compiled"])
def test_a_shared_cache_others_can_write_is_refused_with_one_warning(classroom, quick_ready,
                                                                     where: str) -> None:
    shared, student = classroom
    (shared / where).chmod(0o777)
    cache = Cache(student)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert cache.get("compiled/" + _cranelift_entry(shared, quick_ready.sha256).parent.name,
                             quick_ready.sha256, ".cwasm") is None
            if where == ".":
                assert cache.get("builds", quick_ready.key, ".wasm") is None
    texts = [str(w.message) for w in caught]
    assert len(texts) == 1 and "can be written by other users" in texts[0], texts
    assert "chmod -R go-w" in texts[0] or "not used" in texts[0]


def test_a_tampered_shared_entry_is_compiled_again_into_the_user_cache(classroom, quick_ready,
                                                                       capfd) -> None:
    from wasi_magic.sandbox.supervisor import Sandbox
    shared, student = classroom
    entry = _cranelift_entry(shared, quick_ready.sha256)
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: native code no one sealed
    entry.write_bytes(bytes(data))
    sandbox = Sandbox(spare=False)
    try:
        first = sandbox.run(quick_ready, _caps("print('safe')"))
        assert (first.stdout, first.steps, first.tier) == ("safe\n", {"component": "compiled"},
                                                          "winch")
        # (The worker's warning goes to the kernel's stderr, as the worker's own output.)
        assert capfd.readouterr().err.count("damaged or not sealed") == 1
        # The Cranelift code is made again, in the student's cache, and used from there.
        deadline = time.monotonic() + 600
        while sandbox.prepare(quick_ready)["strategy"] != "cranelift":
            assert time.monotonic() < deadline, "the tier-up compile never finished"
            time.sleep(0.25)
    finally:
        sandbox.close()
    assert _cranelift_entry(student, quick_ready.sha256).stem == quick_ready.sha256
    again = _student_run(quick_ready, "1")
    assert (again.stdout, again.tier) == ("1\n", "cranelift")


def test_an_entry_sealed_with_another_key_is_not_used(classroom, quick_ready) -> None:
    """An entry copied in from a user's own cache (sealed with that user's key, not the
    shared cache's) is refused: only ``warm --shared`` writes shared entries."""
    shared, student = classroom
    own = Cache(student, layered=False)
    assert own.put_file("builds", quick_ready.key, ".wasm", quick_ready.path,
                        {"build_seconds": 1.0}) is not None
    for name in (f"{quick_ready.key}.wasm", f"{quick_ready.key}.json"):
        shutil.copyfile(student / "builds" / name, shared / "builds" / name)
    shutil.rmtree(student / "builds")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert Cache(student).get("builds", quick_ready.key, ".wasm") is None
    assert len(caught) == 1 and "not sealed by its key" in str(caught[0].message)


def test_warm_shared_refuses_a_folder_others_can_write(tmp_path: Path) -> None:
    from wasi_magic.errors import UsageError
    from wasi_magic.warm import warm
    shared = tmp_path / "open"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UsageError, match="can be written by other users"):
        warm([], shared=shared)


def test_the_cli_refuses_an_unsafe_shared_folder_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys
    shared = tmp_path / "open"
    shared.mkdir()
    shared.chmod(0o777)
    done = subprocess.run([sys.executable, "-m", "wasi_magic", "warm", "--shared", str(shared)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "can be written by other users" in line and str(shared) in line


def _pack_shared(shared: Path) -> None:
    import io

    from wasi_magic.cli import execute
    out = io.StringIO()
    assert execute(["cache", "pack", "--shared", str(shared)], out=out) == 0
    assert f"packed {shared}:" in out.getvalue()
    assert not [p for p in shared.rglob("*") if p.suffix in (".wasm", ".cwasm")]
    for path in shared.rglob("*.zst"):
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_a_packed_shared_entry_is_unpacked_into_the_user_cache_and_used(classroom,
                                                                        quick_ready) -> None:
    """``cache pack --shared DIR``: a student's kernel unpacks what it uses into the
    student's own cache (checked against the shared seal, then sealed with the student's
    key), and neither builds nor compiles it."""
    shared, student = classroom
    _pack_shared(shared)
    _student_runs_the_runner(student, student, quick_ready, "packed, shared")
    own = Cache(student, layered=False)  # now the student's own, sealed with their key
    assert own.get("builds", quick_ready.key, ".wasm") is not None
    assert own.get(_cranelift_entry(student, quick_ready.sha256).parent.relative_to(
        student).as_posix(), quick_ready.sha256, ".cwasm") is not None


def test_a_tampered_packed_shared_entry_is_never_loaded(classroom, quick_ready) -> None:
    from wasi_magic.runtime import Runtime
    shared, student = classroom
    _pack_shared(shared)
    [packed] = shared.glob(f"compiled/*-cranelift-noepoch-*/{quick_ready.sha256}.cwasm.zst")
    data = bytearray(packed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    packed.write_bytes(bytes(data))
    section = packed.parent.relative_to(shared).as_posix()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert Cache(student).get(section, quick_ready.sha256, ".cwasm") is None
    assert ["damaged or not sealed" in str(w.message) for w in caught] == [True]
    # Nothing of it reached the student's cache (its dictionary may have: it is intact).
    assert not list(student.rglob(f"{quick_ready.sha256}.cwasm*"))
    assert not list(student.rglob(".tmp-*"))
    # The cell still runs: compiled again in the student's cache.
    result = Runtime(cache=Cache(student), tier_up=False).run(quick_ready, _caps("print('safe')"))
    assert (result.stdout, result.steps) == ("safe\n", {"component": "compiled"})


@pytest.mark.parametrize("argv", [["cache", "pack", "--shared", "{missing}"],
                                  ["cache", "info", "--shared", "{missing}"]])
def test_cache_pack_shared_refuses_what_is_not_a_shared_cache_in_one_line(
        tmp_path: Path, argv: list[str]) -> None:
    import subprocess
    import sys
    missing = tmp_path / "not-filled"
    done = subprocess.run([sys.executable, "-m", "wasi_magic",
                           *[a.format(missing=missing) for a in argv]],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and ("warm --shared" in line or "cache pack" in line)
    assert not missing.exists()  # nothing made


def test_warm_shared_pack_fills_a_packed_shared_cache(filled, quick_ready, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``warm --shared DIR --pack``: the teacher's (warm) cache is copied into DIR, which is
    then packed; every file stays readable by all and writable by its owner only."""
    from wasi_magic.warm import warm
    teacher = filled[0].parent.parent / "teacher"
    shared = tmp_path / "packed-shared"
    monkeypatch.setenv("WASI_MAGIC_CACHE", str(teacher))
    monkeypatch.setenv("WASI_MAGIC_TIER_UP", "1")
    monkeypatch.delenv("WASI_MAGIC_SHARED_CACHE", raising=False)
    lines: list[str] = []
    warm([], report=lines.append, shared=shared, pack=True)
    assert lines[-1].startswith(f"packed {shared}: ") and "quick-mode sandbox: cached" in lines
    assert not [p for p in shared.rglob("*") if p.suffix in (".wasm", ".cwasm")]
    assert len(list(shared.rglob("*.zst"))) == 5
    for path in [shared, *shared.rglob("*")]:
        if not path.name.endswith(".lock"):
            assert path.stat().st_mode & 0o777 == (0o755 if path.is_dir() else 0o644), path
    # The teacher's own cache is left as it was (unpacked).
    assert (teacher / "builds" / f"{quick_ready.key}.wasm").exists()


FULL_STUDENT = """
import json, sys, warnings
from pathlib import Path
from wasi_magic.cache import Cache
from wasi_magic.cache_pack import data_suffix, sections
student = Cache(Path(sys.argv[1]))
shared = Cache(Path(sys.argv[2]), layered=False)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    got = [student.get(s, m.stem, data_suffix(s)) for s in sections(shared)
           for m in sorted((shared.root / s).glob("*.json"))]
print(json.dumps({"got": [g is not None for g in got], "warnings": [str(w.message) for w in caught]}))
"""


def test_a_full_user_cache_leaves_packed_shared_entries_unused_with_one_clear_warning(
        classroom, tmp_path: Path) -> None:
    """The student's own cache on a full file system (a real tmpfs, in a user and mount
    namespace of its own): no shared entry is used or called damaged, one warning says
    how to make room, nothing is left half-written and the shared cache is unchanged."""
    import subprocess
    import sys
    shared, student = classroom
    _pack_shared(shared)
    before = {p: p.read_bytes() for p in _files(shared)}
    student.mkdir()
    script = (f"mount -t tmpfs -o size={1 << 20},mode=0700 tmpfs {student} && "
              f"'{sys.executable}' -c '{FULL_STUDENT}' {student} {shared} && ls -aR {student}")
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    report = json.loads(done.stdout.splitlines()[0])
    assert report["got"] and not any(report["got"]), done.stdout
    [warning] = report["warnings"]
    assert warning.startswith(f"wasi-magic: no room in your own cache {student} to unpack")
    assert "python -m wasi_magic cache clear" in warning and "damaged" not in warning
    assert ".tmp-" not in done.stdout  # the listing of the student's cache
    assert {p: p.read_bytes() for p in _files(shared)} == before
