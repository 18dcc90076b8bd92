"""``%%wasi`` and ``%wasi`` through a real IPython shell, with real builds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

HELLO = """\
import os, sys
print("Hello from WASI!")
print("args:", sys.argv[1:])
print("MY_VAR =", os.environ.get("MY_VAR"))
print(open(sys.argv[1]).read().upper())
"""


@pytest.fixture(scope="module")
def ip():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "wasi_magic")
    yield shell
    shell.run_line_magic("unload_ext", "wasi_magic")


@pytest.fixture()
def in_sandbox(sandbox: Path):
    old = os.getcwd()
    os.chdir(sandbox)
    yield sandbox
    os.chdir(old)


def cell(ip, line: str, body: str, capsys):
    result = ip.run_cell(f"%%wasi {line}\n{body}")
    captured = capsys.readouterr()
    return result, captured.out, captured.err


def test_the_readme_example(ip, in_sandbox, capsys) -> None:
    result, out, err = cell(ip, "-q --dir data::/data --env MY_VAR=hello -- /data/input.txt",
                            HELLO, capsys)
    assert result.success, err
    assert out == ("Hello from WASI!\nargs: ['/data/input.txt']\nMY_VAR = hello\n"
                   "HELLO FILE\n\n")
    assert err == ""


def test_without_grants_the_same_cell_is_refused(ip, in_sandbox, capsys) -> None:
    result, out, err = cell(ip, "-q -- /data/input.txt", HELLO, capsys)
    assert result.success  # the guest failed, not the magic
    assert "MY_VAR = None" in out
    assert "Traceback (most recent call last):" in err
    assert 'File "<cell>", line 5, in <module>' in err  # the cell's own line number
    assert "FileNotFoundError" in err and err.rstrip().endswith("[exit status 1]")


def test_the_same_line_expands_its_variables_anew_each_run(ip, in_sandbox, capsys) -> None:
    """The magic remembers how a line parses; a {variable} in it is still read at each run,
    and a value that looks like flags stays one argument."""
    body = "import os, sys\nprint(os.environ['V'], sys.argv[1:])"
    for value in ("first", "second", "x --dir /::/host"):
        ip.user_ns["value"] = value
        result, out, err = cell(ip, "-q --quick --env V={value} -- {value}", body, capsys)
        assert result.success and err == ""
        assert out == f"{value} {[value]}\n"


def test_capture_into_variables(ip, in_sandbox, capsys) -> None:
    result, out, err = cell(ip, "-q --out OUT --err ERR --result R --dir data::/data "
                                "--env MY_VAR=hi -- /data/input.txt", HELLO, capsys)
    assert result.success and out == "" and err == ""
    assert ip.user_ns["OUT"].startswith("Hello from WASI!\n")
    assert ip.user_ns["ERR"] == ""
    res = ip.user_ns["R"]
    assert res.status == 0 and res.stdout == ip.user_ns["OUT"]
    assert res.steps["build"] == "cached" and res.artifact.exists()
    assert res.capabilities.env == (("MY_VAR", "hi"),)
    assert res.run_seconds > 0 and res.instantiate_seconds > 0


def test_output_file(ip, in_sandbox, capsys) -> None:
    result, out, _ = cell(ip, "-q -o hello.wasm --dir data::/data --env MY_VAR=x -- /data/input.txt",
                          HELLO, capsys)
    assert result.success
    saved = in_sandbox / "hello.wasm"
    assert saved.read_bytes()[:8] == b"\0asm\x0d\x00\x01\x00"  # a component


def test_summary_line(ip, in_sandbox, capsys) -> None:
    # Outside a kernel the status is a carriage-return line on stderr.
    result, out, err = cell(ip, "--dir data::/data --env MY_VAR=x -- /data/input.txt", HELLO, capsys)
    assert result.success and out.startswith("Hello from WASI!")
    assert err.startswith("\rwasi: cached · ") and err.rstrip().endswith("MiB")


@pytest.mark.parametrize("line, words", [
    ("--dir nowhere::/data", "--dir 'nowhere::/data': the host directory"),
    ("--bogus", "unrecognized arguments: --bogus"),
    ("--env 1BAD-NAME=x", "expected NAME=VALUE"),
    ("--stdin missing.txt", "no such file"),
])
def test_bad_flags_are_usage_errors(ip, in_sandbox, capsys, line: str, words: str) -> None:
    result, out, err = cell(ip, line, "print('never built')", capsys)
    assert not result.success
    assert type(result.error_in_exec).__name__ == "UsageError"
    assert words in str(result.error_in_exec)
    assert "Traceback" not in out + err


def test_syntax_error_is_one_clear_message(ip, in_sandbox, capsys) -> None:
    result, out, err = cell(ip, "", "x = 1\nprint(x\n", capsys)
    assert type(result.error_in_exec).__name__ == "BuildError"
    assert "line 2" in str(result.error_in_exec)
    assert "wasi_magic" not in out + err  # no traceback from inside wasi_magic


def test_missing_module_is_named_before_building(ip, in_sandbox, capsys) -> None:
    result, out, err = cell(ip, "", "import json\ndef f():\n    import numpy\n", capsys)
    assert type(result.error_in_exec).__name__ == "GuestImportError"
    assert "line 3: import numpy" in str(result.error_in_exec)
    assert "building" not in out  # failed before componentize-py was started


def test_stdlib_module_missing_in_the_guest(ip, in_sandbox, capsys) -> None:
    # ctypes is in the host's stdlib, but the guest CPython has no _ctypes.
    result, out, err = cell(ip, "-q", "print('hi')\nimport ctypes\n", capsys)
    assert type(result.error_in_exec).__name__ == "GuestImportError"
    assert "line 2: import ctypes" in str(result.error_in_exec)
    assert "_ctypes" in str(result.error_in_exec)


IMPORTS = """\
import json
from collections import Counter
import xml.etree.ElementTree as ET
import importlib

def summary(text):
    import statistics
    from textwrap import shorten
    import email.utils
    numbers = [len(word) for word in text.split()]
    return statistics.mean(numbers), shorten(text, 12), email.utils.quote('a"b')

print(json.dumps(Counter("abca")))
print(ET.fromstring("<a><b/></a>")[0].tag)
print(summary("one three fives"))
print(importlib.import_module("csv").QUOTE_ALL)
"""


def test_imports_at_any_depth_work_at_run_time(ip, in_sandbox, capsys) -> None:
    result, out, err = cell(ip, "-q --raise-error", IMPORTS, capsys)
    assert result.success, err
    assert out == ('{"a": 2, "b": 1, "c": 1}\nb\n(4.333333333333333, \'one [...]\', \'a\\\\"b\')\n1\n')


def test_path_makes_local_modules_importable(ip, in_sandbox, capsys) -> None:
    lib = in_sandbox / "mylib"
    lib.mkdir()
    (lib / "greetings.py").write_text("def greet(name):\n    return f'hello, {name}'\n")
    result, out, err = cell(ip, "-q --path mylib", "from greetings import greet\nprint(greet('wasm'))",
                            capsys)
    assert result.success, err
    assert out == "hello, wasm\n"


def test_raise_error(ip, in_sandbox, capsys) -> None:
    result, out, err = cell(ip, "-q --raise-error -- exit 1", "import sys\nsys.exit(1)", capsys)
    assert type(result.error_in_exec).__name__ == "GuestFailed"


def test_line_magic_inspect_and_cache(ip, in_sandbox, capsys) -> None:
    cell(ip, "-q -o hello.wasm --dir data::/data --env MY_VAR=x -- /data/input.txt", HELLO, capsys)
    ip.run_line_magic("wasi", "inspect hello.wasm")
    out = capsys.readouterr().out
    assert "hello.wasm: component (WASI Preview 2" in out
    assert "wasi:filesystem/preopens@0.2.9  - the directories granted with --dir" in out
    assert "wasi:cli/run@0.2.9" in out.split("\nexports (")[1]
    ip.run_line_magic("wasi", "cache info")
    assert "builds:" in capsys.readouterr().out


def test_line_magic_run(ip, in_sandbox, capsys) -> None:
    cell(ip, "-q -o hello.wasm --dir data::/data --env MY_VAR=x -- /data/input.txt", HELLO, capsys)
    ip.run_line_magic("wasi", "run hello.wasm --dir data::/data --env MY_VAR=again -- /data/input.txt")
    out = capsys.readouterr().out
    assert "MY_VAR = again\nHELLO FILE\n" in out


def test_line_magic_usage_error(ip, in_sandbox, capsys) -> None:
    result = ip.run_cell("%wasi frobnicate")
    assert type(result.error_in_exec).__name__ == "UsageError"
    assert "invalid choice: 'frobnicate'" in str(result.error_in_exec)


def test_unload_removes_the_magics() -> None:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "wasi_magic")
    assert "wasi" in shell.magics_manager.magics["cell"]
    shell.run_line_magic("unload_ext", "wasi_magic")
    assert "wasi" not in shell.magics_manager.magics["cell"]
    assert "wasi" not in shell.magics_manager.magics["line"]
    shell.run_line_magic("load_ext", "wasi_magic")
    assert "wasi" in shell.magics_manager.magics["line"]


P1_GUESTS = Path(__file__).resolve().parent.parent / "guest_src" / "p1"


def test_p1_cell_runs_wat_as_a_core_module(ip, in_sandbox, capsys) -> None:
    result, out, err = cell(ip, "-q --p1 --result R", (P1_GUESTS / "hello.wat").read_text(), capsys)
    assert result.success, err
    assert out == "Hello from WASI Preview 1!\n"
    assert ip.user_ns["R"].status == 0 and ip.user_ns["R"].steps["build"] == "assembled"


def test_p1_cell_reports_proc_exit_status(ip, in_sandbox, capsys) -> None:
    result, out, err = cell(ip, "-q --p1", (P1_GUESTS / "exit_status.wat").read_text(), capsys)
    assert result.success and err.rstrip().endswith("[exit status 3]")


def test_p1_wat_syntax_error_points_at_the_line(ip, in_sandbox, capsys) -> None:
    result, out, err = cell(ip, "-q --p1", '(module\n  (func (export "_start")\n    i32.bogus))\n',
                            capsys)
    assert type(result.error_in_exec).__name__ == "BuildError"
    assert "line 3, column 5" in str(result.error_in_exec)


GREETER_WIT = """package demo:greet;
world greeter {
  export greet: func(name: string) -> result<string, string>;
}"""

GREETER = """import wit_world
from componentize_py_types import Err

class WitWorld(wit_world.WitWorld):
    def greet(self, name: str) -> str:
        if not name:
            raise Err("an empty name")
        return f"hello, {name}!"
"""


def test_wit_and_world_cells_give_python_callables(ip, in_sandbox, capsys) -> None:
    assert ip.run_cell(f"%%wit greeter\n{GREETER_WIT}").success
    result, out, err = cell(ip, "-q --world greeter --as g", GREETER, capsys)
    assert result.success, err
    assert ip.user_ns["g"].greet("wasm") == "hello, wasm!"
    from wasi_magic.errors import WasiMagicError
    with pytest.raises(WasiMagicError, match="an empty name"):
        ip.user_ns["g"].greet("")


def test_world_without_wit_is_a_usage_error(ip, in_sandbox, capsys) -> None:
    result, out, err = cell(ip, "--world nowhere", "x = 1", capsys)
    assert type(result.error_in_exec).__name__ == "UsageError"
    assert "%%wit nowhere" in str(result.error_in_exec)
