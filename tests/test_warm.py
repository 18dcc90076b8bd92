"""``python -m wasi_magic warm`` finds what notebooks will build, keyed exactly as the magic keys it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from IPython.core.interactiveshell import InteractiveShell

from conftest import ROOT
from wasi_magic import build
from wasi_magic.warm import wasi_cells

CELLS = [
    "%%wasi -q\nprint('no trailing newline')",
    "%%wasi -q --dir data::/data --path=lib -- a b\nprint('trailing newline')\n\n",
    "%%wit greeter\npackage demo:g;\nworld greeter { export greet: func() -> string; }",
    "%%wasi --world greeter --as g\nclass WitWorld: pass",
    "%%wasi --quick\nprint('quick')",
    "%%wasi --p1\n(module)",
    "x = 1\n%wasi build tool.py -o tool.wasm --path lib\n",
    "%wasi build plug.py --wit ../wit/plug.wit --world transform -o plug.wasm",
]


def test_warm_sees_the_bodies_ipython_passes(tmp_path: Path) -> None:
    notebook = tmp_path / "n.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(text) for text in CELLS]
    nbformat.write(nb, notebook)

    seen: list[str] = []
    shell = InteractiveShell.instance()
    shell.register_magic_function(lambda line, cell: seen.append(cell), "cell", "wasi")
    for text in CELLS[:2]:
        shell.run_cell(text)

    found = list(wasi_cells(notebook))
    assert [c.source for c in found[:2]] == seen
    assert found[1].paths == ("lib",)  # --path=lib, spelled as argparse allows
    world = found[2]
    assert world.world == "greeter" and "world greeter" in world.wit
    assert found[3].quick and [c.quick for c in found[:3]] == [False, False, False]
    tool = found[4]
    assert tool.source == Path("tool.py") and tool.paths == ("lib",)
    plug = found[5]
    assert (plug.source, plug.wit, plug.world) == (Path("plug.py"), Path("../wit/plug.wit"),
                                                   "transform")
    assert len(found) == 6  # the --p1 cell needs no build
    assert [c.output for c in found] == [None, None, None, None, "tool.wasm", "plug.wasm"]
    # The cells after the typed world run beside it: on code with epoch checks.
    assert [c.after_kept for c in found] == [False, False, False, True, True, True]
    assert "".join(json.loads(notebook.read_text())["cells"][0]["source"]) == CELLS[0]


# --wasmtime-cache: lesson 03 compiles with wasmtime's API, from wasmtime's own cache -------

#: Lesson 03's plugin cell (its build is in the shared test cache: test_lesson_checks_03_05).
PLUGIN_LINE = ("%%wasi -q -o build/plugin.wasm --dir build/tenants/alice::/data::ro "
               "--env APP_ENV=production")

#: How lesson 03 makes its engine and compiles a component: a fresh process, as a kernel is.
COMPILE_AS_THE_LESSON = """
import sys, wasmtime
from wasmtime import component
config = wasmtime.Config()
config.cache = True
component.Component.from_file(wasmtime.Engine(config), sys.argv[1])
"""


def _plugin_notebook(folder: Path) -> Path:
    lesson = json.loads((ROOT / "lessons" / "03-embedding-wasmtime.ipynb").read_text())
    cell = next("".join(c["source"]) for c in lesson["cells"]
                if "".join(c["source"]).startswith(PLUGIN_LINE + "\n"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cell)]
    notebook = folder / "plugin.ipynb"
    nbformat.write(nb, notebook)
    return notebook


def _private_wasmtime_cache(tmp_path: Path) -> dict[str, str]:
    """The environment with XDG_CACHE_HOME in ``tmp_path``: wasmtime's cache goes to
    $XDG_CACHE_HOME/wasmtime, so the real ~/.cache/wasmtime is not touched. (HOME stays: the
    shared test cache's sealing key lives in the user's config folder.)"""
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "PYTHONPATH": str(ROOT)}


def _compiled_entries(tmp_path: Path) -> dict[str, tuple[int, int]]:
    """wasmtime's cache entries: name -> (size, modification time); not its usage stats."""
    modules = tmp_path / "xdg" / "wasmtime" / "modules"
    return {str(p.relative_to(modules)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in modules.rglob("*") if p.is_file() and p.suffix != ".stats"}


def test_warm_fills_wasmtime_cache_so_the_lessons_compile_is_a_hit(tmp_path: Path) -> None:
    notebook = _plugin_notebook(tmp_path)
    env = _private_wasmtime_cache(tmp_path)
    warmed = subprocess.run([sys.executable, "-m", "wasi_magic", "warm", str(notebook),
                             "--wasmtime-cache", "build/plugin.wasm"],
                            env=env, capture_output=True, text=True, timeout=900)
    assert warmed.returncode == 0, warmed.stderr
    assert "build/plugin.wasm compiled into wasmtime's cache" in warmed.stdout
    entries = _compiled_entries(tmp_path)
    assert len(entries) == 1  # the plugin's compiled form, nothing else

    # What the notebook's -o saves (the built component's bytes), compiled as the lesson does,
    # in a fresh process: a hit finds warm's entry and writes none; a miss (another key: other
    # bytes, another setting) would add an entry of its own.
    saved = tmp_path / "build" / "plugin.wasm"
    saved.parent.mkdir()
    shutil.copyfile(build(_cell_body(notebook)).path, saved)
    compiled = subprocess.run([sys.executable, "-c", COMPILE_AS_THE_LESSON, str(saved)],
                              env=env, capture_output=True, text=True, timeout=900)
    assert compiled.returncode == 0, compiled.stderr
    assert _compiled_entries(tmp_path) == entries


def _cell_body(notebook: Path) -> str:
    source = json.loads(notebook.read_text())["cells"][0]["source"]
    return "".join(source).partition("\n")[2] + "\n"


def test_warm_names_a_wasmtime_cache_path_no_cell_saves(tmp_path: Path) -> None:
    notebook = _plugin_notebook(tmp_path)
    done = subprocess.run([sys.executable, "-m", "wasi_magic", "warm", str(notebook),
                           "--wasmtime-cache", "build/counter.wasm"],
                          env=_private_wasmtime_cache(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: --wasmtime-cache 'build/counter.wasm': no cell of these notebooks saves a "
        "component there with -o. They save: build/plugin.wasm. Give one of these paths as the "
        "notebook writes it (relative to its folder), or a pattern like 'build/*.wasm'."]
    assert not (tmp_path / "xdg").exists()  # refused before building or compiling anything


# --winch: lesson 04 compares the two compilers, from the cache ---------------------------

WINCH_CELL = "%%wasi -q -o build/compared.wasm\nprint('compiled by both compilers, by warm')"

#: How lesson 04 takes a component's Winch form: a runtime of its own, in a fresh process.
LOAD_AS_THE_LESSON = """
import sys
from wasi_magic.runtime import Runtime
winch = Runtime(strategy="winch", tier_up=False)
how = winch.component(sys.argv[1])[2]
print(how, winch.compile_seconds(sys.argv[1]))
"""


def test_warm_compiles_with_winch_what_a_notebook_compares(tmp_path: Path) -> None:
    from wasi_magic.runtime import Runtime
    component = build(WINCH_CELL.partition("\n")[2] + "\n")
    winch = Runtime(strategy="winch", tier_up=False)
    # No Winch form from an earlier run of this test (the test cache is kept between runs).
    winch.cache.discard(f"compiled/{winch.tag}", component.sha256, ".cwasm")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(WINCH_CELL)]
    notebook = tmp_path / "compare.ipynb"
    nbformat.write(nb, notebook)
    # Tier-up on, as on Binder (the tests turn it off): warm then compiles with Cranelift,
    # and the Winch form comes from --winch alone.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WASI_MAGIC_TIER_UP": "1"}
    warmed = subprocess.run([sys.executable, "-m", "wasi_magic", "warm", str(notebook),
                             "--winch", "build/*.wasm"],
                            env=env, capture_output=True, text=True, timeout=900)
    assert warmed.returncode == 0, warmed.stderr
    assert "build/compared.wasm compiled with Winch too" in warmed.stdout
    loaded = subprocess.run([sys.executable, "-c", LOAD_AS_THE_LESSON, str(component.path)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    how, seconds = loaded.stdout.split()
    assert how == "deserialized" and float(seconds) > 0  # loaded, and its compile recorded


def test_warm_names_a_winch_path_no_cell_saves(tmp_path: Path) -> None:
    notebook = _plugin_notebook(tmp_path)
    done = subprocess.run([sys.executable, "-m", "wasi_magic", "warm", str(notebook),
                           "--winch", "build/log-analyzer.wasm"],
                          env=_private_wasmtime_cache(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert "--winch 'build/log-analyzer.wasm': no cell of these notebooks saves" in done.stderr


def test_a_cell_whose_wit_file_cannot_be_read_is_left_to_the_magic(tmp_path) -> None:
    """``--wit`` naming a missing file (or a folder): warm (and unpacking ahead) skip that
    cell instead of failing with a traceback; the cell reports it when it runs."""
    import nbformat
    from wasi_magic.warm import wasi_cells
    notebook = tmp_path / "lesson.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("%%wasi --world w --wit nowhere.wit\nprint(1)"),
        nbformat.v4.new_code_cell("%%wasi --world w --wit .\nprint(1)"),
        nbformat.v4.new_code_cell("%%wasi\nprint(2)")]), notebook)
    assert [cell.index for cell in wasi_cells(notebook)] == [2]
