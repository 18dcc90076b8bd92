"""``python -m wasi_magic warm`` finds what notebooks will build, keyed exactly as the magic keys it."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from IPython.core.interactiveshell import InteractiveShell

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
    assert "".join(json.loads(notebook.read_text())["cells"][0]["source"]) == CELLS[0]
