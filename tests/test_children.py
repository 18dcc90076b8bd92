"""wasi-magic's own Python processes never import from the folder they start in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from wasi_magic.children import python_code, python_module


def run(command: list[str], cwd: Path) -> str:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_a_module_in_the_current_folder_is_not_what_they_import(tmp_path: Path) -> None:
    (tmp_path / "calendar.py").write_text("print('planted')\n")
    # The control: plain `python -m` runs the planted file.
    assert run([sys.executable, "-m", "calendar", "2026", "1"], tmp_path) == "planted\n"
    shown = run(python_module("calendar", "2026", "1"), tmp_path)
    assert "January 2026" in shown and "planted" not in shown
    where = run(python_code("import calendar, sys\nprint(calendar.__file__, sys.argv[1:])\n",
                            "a", "b"), tmp_path)
    assert str(tmp_path) not in where and where.endswith(" ['a', 'b']\n"), where
