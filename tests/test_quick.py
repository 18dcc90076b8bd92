"""Quick mode: one sandbox component, any cell, fresh instance per run."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from conftest import python_child
from wasi_magic import BuildError, Capabilities
from wasi_magic.quick import quick_sandbox, run_quick


@pytest.fixture(scope="module")
def sandbox_component(shared_cache: Path):
    return quick_sandbox()


def test_runs_source_with_exactly_the_granted_capabilities(sandbox_component, sandbox: Path) -> None:
    source = "import os, sys\nprint(sys.argv[1:], sorted(os.environ))\nprint(open('/data/input.txt').read())"
    granted = run_quick(source, Capabilities.parse(["data::/data::ro"], ["A=1"], ["x"], cwd=sandbox))
    assert granted.stdout == "['x'] ['A']\nhello file\n\n"
    assert granted.steps["build"] == "quick"
    assert granted.capabilities.env == (("A", "1"),)  # the source's carrier is not reported
    refused = run_quick(source, Capabilities.parse(cwd=sandbox))
    assert refused.status == 1 and "FileNotFoundError" in refused.stderr


def test_traceback_uses_the_cell_lines(sandbox_component) -> None:
    result = run_quick("x = 1\ny = 2\nraise KeyError('boom')\n")
    assert 'File "<cell>", line 3, in <module>' in result.stderr
    assert "wasi_magic_runner" not in result.stderr
    assert result.stderr.rstrip().endswith("KeyError: 'boom'")


def test_syntax_error_before_running(sandbox_component) -> None:
    with pytest.raises(BuildError, match="line 2"):
        run_quick("print(1)\nprint(\n")


def test_nothing_leaks_between_runs(sandbox_component) -> None:
    first = run_quick("import json\njson.LEAK = 1\nSECRET = 42\nprint('set')")
    second = run_quick("import json\nprint(hasattr(json, 'LEAK'), 'SECRET' in globals())")
    assert (first.stdout, second.stdout) == ("set\n", "False False\n")


def test_modules_outside_the_sandbox_suggest_build_mode(sandbox_component) -> None:
    result = run_quick("import json\nimport numpy\n")
    assert "No module named 'numpy' in the quick-mode sandbox" in result.stderr
    assert "without --quick" in result.stderr
    assert 'File "<cell>", line 2' in result.stderr and "wasi_magic_runner" not in result.stderr


def test_a_broad_stdlib_is_there(sandbox_component) -> None:
    source = ("import json, re, math, statistics, collections, datetime, csv, pathlib, decimal, "
              "hashlib, textwrap, random, itertools, functools, dataclasses, xml.etree.ElementTree, "
              "urllib.parse, sqlite3, zlib\n"
              "print(statistics.mean([1, 2, 3]), hashlib.sha256(b'').hexdigest()[:8])")
    assert run_quick(source).stdout == "2 e3b0c442\n"


def test_limits_apply(sandbox_component) -> None:
    result = run_quick("while True:\n    pass\n", timeout=1)
    assert re.fullmatch(r"stopped by the time limit: ran \d+\.\d s of --timeout 1 s", result.trap or "")


def test_magic_flag_and_session_mode(sandbox_component, sandbox: Path, capsys) -> None:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "wasi_magic")
    old = os.getcwd()
    os.chdir(sandbox)
    try:
        assert shell.run_cell("%%wasi -q --quick --result R\nprint('quick')").success
        assert shell.user_ns["R"].steps["build"] == "quick"
        shell.run_line_magic("wasi", "config --mode quick")
        shell.run_cell("%%wasi -q --result R --dir data::/data\nprint(open('/data/input.txt').read())")
        assert shell.user_ns["R"].steps["build"] == "quick"
        assert shell.user_ns["R"].stdout == "hello file\n\n"
        bad = shell.run_cell("%%wasi -q --path .\nprint(1)")
        assert "--path needs build mode" in str(bad.error_in_exec)
        shell.run_cell("%%wasi -q --build --result R\nprint('built')")
        assert shell.user_ns["R"].steps["build"] in ("built", "cached")
    finally:
        shell.run_line_magic("wasi", "config --mode build")
        os.chdir(old)
    assert "wasi: mode = quick" in capsys.readouterr().out


SETTINGS_CHILD = """
import json
from traitlets.config import Config
from IPython.core.interactiveshell import InteractiveShell
c = Config()
c.WasiMagics.mode = "quick"          # as ipython_config.py would say it
c.WasiMagics.timeout = 1.0
c.WasiMagics.max_output = "16"
shell = InteractiveShell.instance(config=c)
shell.run_line_magic("load_ext", "wasi_magic")
shell.run_cell("%%wasi -q --result R\\nprint('x' * 100)\\nwhile True:\\n    pass\\n")
r = shell.user_ns["R"]
shell.run_line_magic("wasi", "config --timeout 0 --max-output 4MiB --mode build")
magics = shell.magics_manager.registry["WasiMagics"]
print(json.dumps({"build": r.steps["build"], "trap": r.trap, "stdout": r.stdout,
                  "after": [magics.mode, magics.timeout, magics.max_output]}))
"""


def test_session_settings_are_traitlets(quick_ready) -> None:
    done = python_child(SETTINGS_CHILD)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["build"] == "quick"  # c.WasiMagics.mode
    assert report["trap"].startswith("stopped by the time limit: ran 1.")  # c.WasiMagics.timeout
    assert report["stdout"].startswith("x" * 16) and "truncated after 16 bytes" in report["stdout"]
    assert report["after"] == ["build", 0.0, "4MiB"]  # %wasi config changes the same traits


def test_bad_session_settings_are_usage_errors(capsys) -> None:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "wasi_magic")
    for words, message in (("--timeout 1e400", "--timeout '1e400'"),
                           ("--max-output 0", "--max-output '0'"),
                           ("--mode fast", "expected quick or build"),
                           ("--colour red", "usage: %wasi config")):
        result = shell.run_cell(f"%wasi config {words}")
        assert message in str(result.error_in_exec), words


def test_the_one_cell_pipeline_serves_both_modes(quick_ready, probe) -> None:
    """wasi_magic.session: the magic and run_quick are adapters over these calls."""
    from wasi_magic.limits import Limits
    from wasi_magic.session import prepare_cell, run_cell, run_prepared
    caps = Capabilities.parse(args=["x"])
    quick = run_cell("import sys\nprint('quick', sys.argv[1:])\n", caps, quick=True)
    assert quick.stdout == "quick ['x']\n" and quick.steps["build"] == "quick"
    assert quick.capabilities == caps  # what the user granted, not the source carrier
    prepared = prepare_cell("import sys\nprint('built', sys.argv[1:])\n", Limits(timeout=5))
    assert prepared.summary().startswith("wasi: ") and prepared.build_step in ("built", "cached")
    again = [run_prepared(prepared, caps).stdout for _ in range(2)]
    assert again == ["built ['x']\n"] * 2
    with pytest.raises(BuildError):
        run_cell("print(", quick=True)
