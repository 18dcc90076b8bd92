"""Quick mode: one sandbox component, any cell, fresh instance per run."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from conftest import python_child
from wasi_magic import BuildError, Capabilities, UsageError
from wasi_magic.guest import GUEST_PYTHON
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


def test_a_syntax_error_names_the_cell_line_and_nothing_runs(sandbox_component) -> None:
    # The guest's Python reads the cell, whatever the kernel's version.
    result = run_quick("print(1)\nprint(\n")
    assert (result.status, result.stdout) == (1, "")
    assert 'File "<cell>", line 2' in result.stderr and "SyntaxError" in result.stderr
    assert "wasi_magic" not in result.stderr


#: Python 3.12 syntax: quotes reused inside an f-string, a type alias, a generic function.
NEWER_SYNTAX = ('d = {"k": 1}\nprint(f"{d["k"]}")\ntype Row = list[int]\n'
                'print(Row.__value__)\ndef first[T](items: list[T]) -> T:\n    return items[0]\n'
                'print(first([3, 4]))\n')


def test_syntax_the_guests_python_accepts_runs_in_quick_mode(sandbox_component) -> None:
    """Cells are written for the guest's Python, whatever the kernel's version."""
    result = run_quick(NEWER_SYNTAX)
    assert (result.stdout, result.stderr) == ("1\nlist[int]\n3\n", "")


def test_the_guests_python_is_the_version_the_host_expects(sandbox_component) -> None:
    result = run_quick("import sys\nprint(tuple(sys.version_info[:2]))\n")
    assert result.stdout == f"{GUEST_PYTHON}\n"


def test_build_mode_builds_and_runs_syntax_the_guests_python_accepts(sandbox_component) -> None:
    """The kernel's Python (3.11 here) cannot parse the cell; the guest's finds its imports
    (json in a function, for the build to carry) and the built component runs it."""
    from wasi_magic.session import run_cell
    source = NEWER_SYNTAX + "def dump():\n    import json\n    return json.dumps(d)\nprint(dump())\n"
    result = run_cell(source, quick=False)
    assert (result.stdout, result.stderr) == ('1\nlist[int]\n3\n{"k": 1}\n', "")
    assert result.steps["build"] in ("built", "cached")


@pytest.mark.parametrize("source, line", [("x = 1\nprint(x\n", 2),
                                          ('d = {}\nprint(f"{d["k"]}"\nz = 3\n', 2),
                                          ("def (:\n", 1)])
def test_build_mode_names_the_line_of_a_syntax_error_before_any_build(
        sandbox_component, source: str, line: int) -> None:
    from wasi_magic.builder import builds_logged
    from wasi_magic.session import run_cell
    before = builds_logged()
    with pytest.raises(BuildError, match=f"SyntaxError in the cell at line {line}: ") as error:
        run_cell(source, quick=False)
    assert "Traceback" not in str(error.value) and "wasi_magic" not in str(error.value)
    assert builds_logged() == before


SCANNED = ["import os\nfrom a.b import c, d\nimport x.y as z\n",
           "def f():\n    from collections import deque\n    __import__('json')\n",
           "import importlib\nm = importlib.import_module('email.message')\nfrom . import up\n",
           "from os.path import *\nif True:\n    import wasi_magic_http\n"]


@pytest.mark.parametrize("source", SCANNED)
def test_the_guests_python_finds_the_imports_the_kernels_finds(sandbox_component,
                                                               source: str) -> None:
    """One scan, two Pythons: where both can parse a cell they agree on its imports."""
    import ast
    from wasi_magic.guest import _guest_imports, find_imports
    assert list(_guest_imports(source, "<cell>")) == find_imports(ast.parse(source))


@pytest.mark.parametrize("answer", [None, "", "not json", "[]", '{"imports": 3}',
                                    '{"imports": [["os", "1", true]]}',
                                    '{"imports": [["os", 1, 1]]}',
                                    '{"imports": [], "syntax": ["x", 1, 1, "y"]}',
                                    '{"syntax": ["x", 1.5, 1, "y"]}', '{"syntax": [1, 1, 1, "y"]}'])
def test_a_malformed_answer_from_the_guest_is_an_error_not_data(answer: str | None) -> None:
    from wasi_magic.guest import _parse_scan
    with pytest.raises(BuildError, match="gave no answer about it"):
        _parse_scan(answer)


def test_the_http_helper_asks_for_build_mode(sandbox_component) -> None:
    # Quick mode has no HTTP import: found from the one parse of the cell, at any depth.
    for source in ("import wasi_magic_http\n", "def f():\n    from wasi_magic_http import get\n"):
        with pytest.raises(UsageError, match="wasi_magic_http needs build mode") as refused:
            run_quick(source)
        assert "Drop --quick" in str(refused.value)


def test_nothing_leaks_between_runs(sandbox_component) -> None:
    first = run_quick("import json\njson.LEAK = 1\nSECRET = 42\nprint('set')")
    second = run_quick("import json\nprint(hasattr(json, 'LEAK'), 'SECRET' in globals())")
    assert (first.stdout, second.stdout) == ("set\n", "False False\n")


def test_the_snapshots_warm_up_leaves_nothing_a_cell_can_see(sandbox_component) -> None:
    """The runner runs a cell's path a few times while its snapshot is taken (so that every
    run starts from specialized bytecode): none of it shows in a cell, and ``random`` is
    seeded afresh for every run."""
    source = ("import builtins, linecache, random, sys\n"
              "print(hasattr(builtins, '_sink'), sys.modules['__main__'].__dict__ is globals(),"
              " len([f for f in linecache.cache if 'cell' in f]), sys.argv[1:], random.random())")
    first, second = run_quick(source), run_quick(source)
    assert first.stdout.split()[:4] == second.stdout.split()[:4] == ["False", "True", "1", "[]"]
    assert first.stdout.split()[4] != second.stdout.split()[4]


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
        shell.run_line_magic("unload_ext", "wasi_magic")  # (the shell is shared by every test)
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
    try:
        for words, message in (("--timeout 1e400", "--timeout '1e400'"),
                               ("--max-output 0", "--max-output '0'"),
                               ("--mode fast", "expected quick or build"),
                               ("--colour red", "usage: %wasi config")):
            result = shell.run_cell(f"%wasi config {words}")
            assert message in str(result.error_in_exec), words
    finally:
        shell.run_line_magic("unload_ext", "wasi_magic")


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
    with pytest.raises(BuildError, match="line 1"):
        run_cell("print(", quick=False)  # build mode: refused before any build


# --- the whole standard library (issue 14, item 2) ------------------------------------------

BEYOND_THE_PRELOADED = (
    "import email.message, tomllib, unittest, wave, configparser, zoneinfo, pydoc, shelve\n"
    "from wasi_magic_stdlib import available\n"
    "m = email.message.EmailMessage(); m['To'] = 'a@example.org'\n"
    "print(m['To'], tomllib.loads('a = 1'), 'email.message' in available())\n"
    "print(email.__file__.startswith('/python/'), unittest.TestCase.__name__)\n")


def test_any_pure_python_stdlib_module_imports(sandbox_component) -> None:
    from wasi_magic.guest import QUICK_MODULES
    assert "email" not in QUICK_MODULES and "tomllib" not in QUICK_MODULES  # not preloaded
    result = run_quick(BEYOND_THE_PRELOADED)
    assert result.stdout == "a@example.org {'a': 1} True\nTrue TestCase\n", result.stderr


def test_stdlib_modules_the_wasi_build_lacks_say_so(sandbox_component) -> None:
    result = run_quick("import json\nimport ctypes\n")
    assert "No module named '_ctypes': it is part of CPython's standard library, but not of " \
           "the WebAssembly (WASI) build" in result.stderr
    assert 'File "<cell>", line 2' in result.stderr
    assert "wasi_magic" not in result.stderr  # neither the runner nor the stdlib loader
    assert "not of the WebAssembly" in run_quick("import readline").stderr


def test_errors_inside_a_snapshot_module_keep_its_frame(sandbox_component) -> None:
    result = run_quick("import tomllib\ntomllib.loads('a = ')\n")
    assert 'File "<cell>", line 2' in result.stderr and "tomllib" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("tomllib.TOMLDecodeError")
    assert "wasi_magic" not in result.stderr


HOST_VIEW = """
import os, sys, json
seen = {}
for path in ("/", "/python", "/python/json", "/0", "/bundled", "."):
    try:
        seen[path] = sorted(os.listdir(path))
    except OSError as exc:
        seen[path] = type(exc).__name__
for path in (json.__file__, "/python/json/__init__.py", "/python/wasi_magic_stdlib.py"):
    try:
        open(path, "rb").close()
        seen[path] = "READ"
    except OSError as exc:
        seen[path] = type(exc).__name__
try:
    open("/python/planted.py", "w").write("x = 1")
    seen["write"] = "WROTE"
except OSError as exc:
    seen["write"] = type(exc).__name__
import email.message
seen["files"] = sorted({str(getattr(m, "__file__", None)) for m in list(sys.modules.values())})
seen["path"] = sys.path
print(json.dumps(seen))
"""


def test_the_stdlib_is_no_mount_and_reveals_no_host_path(sandbox_component, sandbox: Path) -> None:
    """The stdlib lives in the snapshot: no guest-visible folder, nothing writable, and no
    string in the guest names a host path (a battery case for quick mode)."""
    import componentize_py
    from wasi_magic.cache import default_cache
    for grants in (Capabilities.parse(cwd=sandbox),
                   Capabilities.parse(["data::/data::ro"], cwd=sandbox)):
        result = run_quick(HOST_VIEW, grants)
        assert result.status == 0, result.stderr
        seen = json.loads(result.stdout)
        for path in ("/", "/python", "/python/json", "/0", "/bundled", "/python/json/__init__.py",
                     "/python/wasi_magic_stdlib.py"):
            assert seen[path] in ("FileNotFoundError", "PermissionError", "NotCapableError"), \
                (path, seen[path])
        assert seen["write"] in ("FileNotFoundError", "PermissionError"), seen["write"]
        text = result.stdout
        for host in {str(Path.home()), str(default_cache().root), str(sandbox),
                     str(Path(componentize_py.__file__).parent), os.path.realpath(os.sys.prefix),
                     os.getcwd()}:
            assert host not in text, host
    assert "hello file" in run_quick("print(open('/data/input.txt').read())",
                                     Capabilities.parse(["data::/data::ro"], cwd=sandbox)).stdout


def test_long_writes_arrive_whole(sandbox_component) -> None:
    """A WASI stream takes 8 KiB per write; the guest's unbuffered stdout used to drop the
    rest of a partial write (20,000 characters arrived as 8,192)."""
    result = run_quick("import sys\nsys.stdout.write('x' * 20000)\nprint('y' * 100000)\n"
                       "sys.stderr.write('z' * 30000)\nprint('é' * 9000, flush=True)\n",
                       output_limit=1 << 20)
    assert result.stdout == "x" * 20000 + "y" * 100000 + "\n" + "é" * 9000 + "\n"
    assert result.stderr == "z" * 30000
