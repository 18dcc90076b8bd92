"""Faults around the guest: missing tools, and a guest that writes a lot."""

from __future__ import annotations

from pathlib import Path

from conftest import python_child
from wasi_magic import Capabilities, build, run

HIDE = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == {name!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None
sys.meta_path.insert(0, Hide())
"""


def test_missing_componentize_py_gives_an_install_hint() -> None:
    done = python_child(HIDE.format(name="componentize_py") + """
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "wasi_magic")
result = ip.run_cell("%%wasi\\nprint('needs a build: ' + str(12345))")
print("ERROR:", type(result.error_in_exec).__name__, result.error_in_exec)
""")
    assert "ERROR: BuildError componentize-py is not installed" in done.stdout, done.stderr
    assert "pip install 'componentize-py" in done.stdout


def test_missing_wasmtime_gives_an_install_hint() -> None:
    done = python_child(HIDE.format(name="wasmtime") + """
from wasi_magic import run, RuntimeFailure
try:
    run("whatever.wasm")
except RuntimeFailure as exc:
    print("ERROR:", exc)
""")
    assert "ERROR: The wasmtime package is not installed" in done.stdout, done.stderr
    assert "pip install 'wasmtime" in done.stdout


WRITER = """
import os, sys
count = int(sys.argv[1])
for i in range(count):
    with open(f"/out/file-{i:05d}.txt", "w") as handle:
        handle.write(f"line {i}\\n")
print("wrote", len(os.listdir("/out")))
"""


def test_ten_thousand_files_into_a_read_write_grant(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "beside.txt").write_text("untouched\n")
    result = run(build(WRITER), Capabilities.parse([f"{out}::/out"], args=["10000"]), timeout=120)
    assert result.ok and result.stdout == "wrote 10000\n", result.stderr
    files = sorted(out.iterdir())
    assert len(files) == 10_000
    assert files[0].read_text() == "line 0\n" and files[-1].read_text() == "line 9999\n"
    assert all(f.stat().st_size == len(f"line {i}\n") for i, f in enumerate(files))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beside.txt", "out"]
    assert (tmp_path / "beside.txt").read_text() == "untouched\n"
