"""Unpacking ahead (wasi_magic.ahead): a kernel started for a notebook (Jupyter names it
in ``JPY_SESSION_NAME``) unpacks from a packed cache what the notebook's cells will load,
before any of them runs, and nothing else; real kernels, real packed components.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest

from conftest import GUESTS
from kernels import execute, kernel_in, streams
from test_cache_pack import _reference, components, packed  # noqa: F401  (fixtures: a packed cache)
from wasi_magic import ahead
from wasi_magic.cache import Cache


def _notebook(folder: Path, *cells: str) -> Path:
    path = folder / "lesson.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A lesson"),
        *(nbformat.v4.new_code_cell(cell) for cell in cells)]), path)
    return path


def _probe_notebook(folder: Path) -> Path:
    """A notebook whose one build-mode cell builds the probe (as the ``probe`` fixture did)."""
    return _notebook(folder, "%load_ext wasi_magic",
                     f"%wasi build {GUESTS / 'probe.py'} -o build/probe.wasm",
                     "%%wasi --quick\nprint('quick cells need nothing unpacked')")


def _unpacked(root: Path, section: str, name: str, suffix: str) -> bool:
    return (root / section / f"{name}{suffix}").is_file()


def _wait_for(condition, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_kernel_started_for_a_notebook_unpacks_what_its_cells_load_and_nothing_else(
        packed, probe, tmp_path: Path) -> None:  # noqa: F811
    root, tag = packed["root"], packed["tag"]
    section = f"compiled/{tag}"
    quick, session = packed["artifacts"][1:]
    notebook = _probe_notebook(tmp_path)
    (tmp_path / "build").mkdir()
    assert not _unpacked(root, "builds", probe.key, ".wasm")
    with kernel_in(tmp_path, root, JPY_SESSION_NAME=str(notebook)) as (_, client):
        # No cell of the notebook has run: only %load_ext (what kernel_in does first).
        assert _wait_for(lambda: _unpacked(root, "builds", probe.key, ".wasm")
                         and _unpacked(root, section, probe.sha256, ".cwasm"))
        # Verified once settled, its verdict recorded for the worker and its spare.
        assert _wait_for(lambda: "checked" in json.loads(
            (root / section / f"{probe.sha256}.json").read_text()))
        assert "checked" in json.loads((root / "builds" / f"{probe.key}.json").read_text())
        # What the notebook does not use stays packed (but for the probe's dictionaries,
        # which unpacking it needs). The quick-mode runner's compiled form is the sandbox
        # worker's to load (%load_ext names it); the kernel leaves its build packed.
        needed = {_reference(root, "builds", probe.key), _reference(root, section, probe.sha256)}
        assert _wait_for(lambda: _unpacked(root, section, quick.sha256, ".cwasm"))
        for artifact in (quick, session):
            if artifact.key not in needed:
                assert not _unpacked(root, "builds", artifact.key, ".wasm")
        if session.sha256 not in needed:
            assert not _unpacked(root, section, session.sha256, ".cwasm")
        assert not list(root.rglob(".tmp-*"))
        # The cell then finds it unpacked, and runs.
        assert not streams(execute(client, f"%wasi build {GUESTS / 'probe.py'} "
                                           f"-o build/probe.wasm"), "stderr")
        out = execute(client, "%wasi run build/probe.wasm -- hello")
        assert "hello from the probe ['hello']" in streams(out, "stdout"), [(m["msg_type"], m["content"]) for m in out]
    assert Cache(root).get_own(section, probe.sha256, ".cwasm") is not None


@pytest.mark.parametrize("how", ["turned off", "no notebook"])
def test_nothing_is_unpacked_ahead_when_off_or_without_a_notebook(packed, probe, how: str,
                                                                   tmp_path: Path) -> None:  # noqa: F811
    """``c.WasiMagics.unpack_ahead = False`` (here on the kernel's command line), or a
    kernel no notebook started (nbclient, nbval, a console): no thread, nothing unpacked."""
    root = packed["root"]
    notebook = _probe_notebook(tmp_path)
    arguments = ("--WasiMagics.unpack_ahead=False",) if how == "turned off" else ()
    env = {"JPY_SESSION_NAME": str(notebook)} if how == "turned off" else {}
    with kernel_in(tmp_path, root, arguments=arguments, **env) as (_, client):
        out = execute(client, "import threading\n"
                              "print(sorted(t.name for t in threading.enumerate()))\n"
                              "print(get_ipython().magics_manager.registry['WasiMagics']"
                              ".unpack_ahead)")
        names, setting = streams(out, "stdout").splitlines()
        assert "wasi-magic-unpack-ahead" not in names
        assert setting == ("False" if how == "turned off" else "True")
    assert not _unpacked(root, "builds", probe.key, ".wasm")


def test_planned_entries_follow_the_cells_and_skip_what_cannot_be_planned(
        packed, probe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """In cell order; a cell with a missing --path folder or a quick cell plans nothing (the
    cell reports its own error when it runs); a shared cache's metadata naming something
    that is not a sha256 is not followed."""
    root = packed["root"]
    quick = packed["artifacts"][1]
    notebook = _notebook(tmp_path, "%%wasi --path no-such-folder\nprint(1)",
                         "%%wasi --quick\nprint(2)",
                         f"%wasi build {GUESTS / 'probe.py'}")
    planned = list(ahead.planned_entries(notebook, Cache(root)))
    assert planned[0] == ("builds", probe.key, ".wasm")
    assert {name for _, name, _ in planned} == {probe.key, probe.sha256}
    assert quick.key not in {name for _, name, _ in planned}
    # A shared cache whose metadata for the probe names a path, not a sha256.
    shared = tmp_path / "shared"
    (shared / "builds").mkdir(parents=True)
    (shared / "builds" / f"{probe.key}.json").write_text(json.dumps({"sha256": "../../x"}))
    assert ahead._component_sha256(Cache(tmp_path / "empty"), [tmp_path / "empty", shared],
                                   probe.key) is None


def test_the_kernels_notebook_must_be_a_notebook(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a notebook")
    for value in ("", str(text), str(tmp_path / "missing.ipynb"), str(tmp_path)):
        monkeypatch.setenv(ahead.SESSION_ENV, value)
        assert ahead.kernel_notebook() is None
    notebook = _notebook(tmp_path, "print(1)")
    monkeypatch.setenv(ahead.SESSION_ENV, str(notebook))
    assert ahead.kernel_notebook() == notebook


def test_a_cache_with_nothing_packed_is_left_alone(probe, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No packed entry in the user's cache or the shared one: no cell is even keyed."""
    root = tmp_path / "cache"
    Cache(root).put_file("builds", probe.key, ".wasm", probe.path, {})
    before = sorted(p.name for p in (root / "builds").iterdir())

    def no_planning(*_):
        raise AssertionError("a cache with nothing packed was planned for")
    monkeypatch.setattr(ahead, "planned_entries", no_planning)
    assert ahead.unpack_ahead(_probe_notebook(tmp_path), Cache(root)) == []
    assert sorted(p.name for p in (root / "builds").iterdir()) == before


def test_a_cell_whose_folders_hold_many_files_is_left_to_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keying a cell reads every file of its --path folders: past MAX_FOLDER_FILES, the
    cell is not keyed ahead (it unpacks its own entries when it runs)."""
    modules = tmp_path / "modules"
    modules.mkdir()
    for index in range(3):
        (modules / f"m{index}.py").write_text(f"X = {index}\n")
    notebook = _notebook(tmp_path, "%%wasi --path modules\nimport m0\nprint(m0.X)")
    monkeypatch.setattr(ahead, "MAX_FOLDER_FILES", 3)
    assert [section for section, _, _ in ahead.planned_entries(notebook, Cache(tmp_path / "c"))] \
        == ["builds"]
    monkeypatch.setattr(ahead, "MAX_FOLDER_FILES", 2)
    assert list(ahead.planned_entries(notebook, Cache(tmp_path / "c"))) == []
