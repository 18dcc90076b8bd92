"""Issue 15: the lessons' self-checks say in plain words what is wrong.

Every check is fed a wrong answer (built and run for real: componentize-py,
the sandbox worker, HTTP) and must name the capability that is missing or the
field that differs. Right answers are the solutions notebooks, which nbval runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import ROOT
from wasi_magic import Capabilities, build
from wasi_magic.sandbox.remote import load
from wasi_magic.session import run_cell

LESSONS = ROOT / "lessons"
sys.path.insert(0, str(LESSONS))

from checks import lesson00, lesson01, lesson02, lesson02b  # noqa: E402

HANDLER_WIT = ROOT / "guest_src" / "handler" / "handler.wit"


def caps(*dirs: str, env: tuple[str, ...] = (), args: tuple[str, ...] = ()) -> Capabilities:
    return Capabilities.parse(dirs=dirs, env=env, args=args, cwd=LESSONS)


# --- lesson 00 ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hardcoded_greeting() -> str:
    return 'print("Hello, Ada!")\n'


def test_greeting_names_the_missing_variable(hardcoded_greeting: str) -> None:
    result = run_cell(hardcoded_greeting, caps())
    assert lesson00.greeting_problem(result) == (
        "your cell was not granted the variable NAME: add --env NAME=Ada to its first line.")


def test_greeting_names_extra_grants(hardcoded_greeting: str) -> None:
    result = run_cell(hardcoded_greeting, caps("data::/data", env=("NAME=Ada",), args=("x",)))
    problem = lesson00.greeting_problem(result)
    assert problem.startswith("your cell also grants --dir ")
    assert "::/data, argument 'x'; the program needs only NAME" in problem


def test_greeting_catches_a_name_written_into_the_program(hardcoded_greeting: str) -> None:
    result = run_cell(hardcoded_greeting, caps(env=("NAME=Ada",)))
    assert result.ok and result.stdout == "Hello, Ada!\n"  # right output, wrong program
    assert lesson00.greeting_problem(result) == (
        "run again with NAME=Grace, your program printed 'Hello, Ada!\\n': read the name from "
        "os.environ['NAME'] instead of writing it in the program.")


def test_word_count_names_the_missing_folder_and_the_missing_ro() -> None:
    assert lesson00.word_count_problem(None) == (
        "E2 does not hold a run yet: run your exercise cell, whose first line must include "
        "--result E2.")
    body = "print(2)\n"
    assert lesson00.word_count_problem(run_cell(body, caps())) == (
        "your cell did not grant a folder as /data: add --dir data::/data::ro to its first line.")
    assert lesson00.word_count_problem(run_cell(body, caps("data::/data"))).startswith(
        "data is granted read-write, but the program only reads: add ::ro")
    assert lesson00.word_count_problem(run_cell(body, caps("data::/data::ro"))) == (
        "with another /data/input.txt (4 words) your program printed '2\\n': count the words of "
        "the file instead of printing a fixed number.")


def test_word_count_reports_a_failing_program() -> None:
    result = run_cell("print(len(open('/data/missing.txt').read().split()))\n",
                      caps("data::/data::ro"))
    problem = lesson00.word_count_problem(result)
    assert problem.startswith("your program ended with exit status 1 (FileNotFoundError")


# --- lesson 01 ------------------------------------------------------------------------------

def p1_module(fd: int = 2, text: str = "WASI\\n", length: int = 5, extra: str = "") -> str:
    return f"""
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  {extra}
  (memory (export "memory") 1)
  (data (i32.const 0) "\\10\\00\\00\\00\\{length:02x}\\00\\00\\00")
  (data (i32.const 16) "{text}")
  (func (export "_start")
    (drop (call $fd_write (i32.const {fd}) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""


def test_stderr_module_right_and_wrong() -> None:
    assert lesson01.stderr_module_problem(p1_module()) is None
    assert lesson01.stderr_module_problem(p1_module(fd=1)) == (
        "the text arrived on stdout (descriptor 1): 'WASI\\n'. Send it to descriptor 2, stderr: "
        "the first argument of fd_write.")
    assert lesson01.stderr_module_problem(p1_module(length=4)).startswith(
        "stderr got 'WASI'; expected 'WASI\\n'.")
    extra = '(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))'
    assert lesson01.stderr_module_problem(p1_module(extra=extra)) == (
        "the module imports wasi_snapshot_preview1.proc_exit; this program needs only "
        "wasi_snapshot_preview1.fd_write.")
    assert lesson01.stderr_module_problem("(module (func").startswith(
        "the text does not assemble: E1_WAT")
    assert lesson01.stderr_module_problem(42) == (
        "E1_WAT should be the WebAssembly text of a module, starting with (module.")


def test_args_env_names_the_field_that_differs() -> None:
    assert lesson01.args_env_problem("--env LANG=C -- report.txt --verbose") is None
    assert lesson01.args_env_problem("--env LANG=C -- report.txt") == (
        "argc differs: the program printed 'argc: 2', expected 'argc: 3' (the words after -- "
        "are the arguments, in order).")
    assert lesson01.args_env_problem("--env LANG=C -- --verbose report.txt") == (
        "argv[1] differs: the program printed 'argv[1]: --verbose', expected "
        "'argv[1]: report.txt' (the words after -- are the arguments, in order).")
    assert lesson01.args_env_problem("--env LANG=C --env X=1 -- report.txt --verbose") == (
        "environ count differs: the program printed 'environ count: 2', expected "
        "'environ count: 1' (grant exactly one variable, with --env NAME=VALUE).")
    assert lesson01.args_env_problem(
        "--dir data --env LANG=C -- report.txt --verbose").startswith(
        "the output is right, but the flags also grant a folder (")
    assert lesson01.args_env_problem("--dir").startswith("the flags cannot be read: ")


# --- lesson 02 ------------------------------------------------------------------------------

STATS_WIT = """
package lesson:stats;

world stats {
  export summarize: func(values: list<f64>) -> option<u32>;
  export median: func(values: list<f64>) -> f64;
}
"""

UNSORTED_MEDIAN = """
import wit_world


class WitWorld(wit_world.WitWorld):
    def summarize(self, values):
        return len(values) or None

    def median(self, values):
        return values[len(values) // 2]
"""


def test_median_names_the_missing_export_and_the_wrong_value(shared_cache: Path) -> None:
    assert lesson02.median_problem(None).startswith("stats is not a loaded component yet")
    guest = load(build(UNSORTED_MEDIAN, wit=STATS_WIT, world="stats"))
    assert lesson02.median_problem(guest) == (
        "median([3.0, 1.0, 2.0]) returned 1.0, expected 2.0 (sort the values first).")

    class WithoutMedian:  # what a stats guest built from the lesson's WIT offers
        functions = {"summarize": guest.functions["summarize"]}
    assert lesson02.median_problem(WithoutMedian()).startswith(
        "stats exports summarize but no median: add `export median: func(values: list<f64>) "
        "-> f64;` to the %%wit stats cell")


def test_packages_names_missing_and_extra(shared_cache: Path) -> None:
    component = build('print("I am a component")\n').path
    real = lesson02.imported_packages(component)
    assert {"wasi:cli", "wasi:io", "wasi:sockets"} <= real
    assert lesson02.packages_problem(real, component) is None
    assert lesson02.packages_problem(real - {"wasi:sockets"}, component).startswith(
        "missing: wasi:sockets.")
    assert lesson02.packages_problem(real | {"wasi:http"}, component) == (
        f"{component.name} does not import wasi:http: remove it from the set.")
    assert lesson02.packages_problem({"wasi:io/streams@0.2.9"}, component).startswith(
        "write package names only")


# --- lesson 02b -----------------------------------------------------------------------------

LESSON_HANDLER = """
import json

import wit_world
from wit_world import Request, Response


def reply(status, payload):
    body = json.dumps(payload).encode()
    return Response(status=status, headers=[("content-type", "application/json")], body=body)


class WitWorld(wit_world.WitWorld):
    def handle(self, req: Request) -> Response:
        path = req.path.split("?")[0]
        if path == "/api/health":
            return reply(200, {"status": "ok"})
        if path == "/api/process" and req.method == "POST":
            data = json.loads(req.body)
            return reply(200, {"processed": True, "input_keys": len(data)})
        return reply(404, {"error": f"no route for {path}"})
"""


def test_handler_checks_name_the_route_and_the_status(shared_cache: Path) -> None:
    component = build(LESSON_HANDLER, wit=HANDLER_WIT, world="handler").path
    assert lesson02b.time_route_problem(component) == (
        "GET /api/time answered 404 \"{'error': 'no route for /api/time'}\"; expected 200. "
        "Add a route for the path \"/api/time\" to handle().")
    assert lesson02b.bad_json_problem(component) == (
        "POST /api/process with the body 'not json' answered 500: json.loads raised an "
        "exception, which trapped the instance. Catch ValueError and answer 400.")
    assert lesson02b.time_route_problem("build/none.wasm") == (
        "'build/none.wasm' is not a component file yet: run your handler cell, whose first "
        "line saves it with -o.")


# --- the Try-its: the suggested change, applied, then the notebook again ----------------------

def test_lesson00_read_write_try_it_breaks_nothing(tmp_path: Path) -> None:
    """00's Try-it 'remove ::ro' writes into build/scratch, and the notebook still runs
    top to bottom afterwards (it once wrote a tracked file and failed forever)."""
    import shutil

    import nbclient
    import nbformat
    lessons = tmp_path / "lessons"
    shutil.copytree(LESSONS / "data", lessons / "data")
    shutil.copytree(LESSONS / "checks", lessons / "checks")
    shutil.copy(LESSONS / "00-first-cell.ipynb", lessons)

    def execute(edit: bool) -> nbformat.NotebookNode:
        notebook = nbformat.read(lessons / "00-first-cell.ipynb", as_version=4)
        cell = next(c for c in notebook.cells if "::/scratch::ro" in c.source)
        if edit:
            cell.source = cell.source.replace("::/scratch::ro", "::/scratch")
        nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(lessons)}}).execute()
        return "".join(o.get("text", "") for o in cell.outputs)

    assert execute(edit=True) == "wrote 2 characters\n"
    assert (lessons / "build" / "scratch" / "note.txt").read_text() == "hi"
    assert execute(edit=False) == "refused: PermissionError\n"  # raises if any cell failed
    assert not (lessons / "build" / "scratch" / "note.txt").exists()
    made = sorted(p.relative_to(lessons).parts[0] for p in lessons.iterdir())
    assert made == ["00-first-cell.ipynb", "build", "checks", "data"]


def test_binder_turns_jupyterlab_news_off(tmp_path: Path) -> None:
    """binder/overrides.json, installed where postBuild puts it, sets the news pop-up to
    'Never' according to the installed JupyterLab's own schema."""
    import shutil

    from jupyterlab.commands import get_app_dir
    from jupyterlab_server.settings_utils import get_settings
    # postBuild copies it to <sys.prefix>/share/jupyter/lab/settings: JupyterLab's app dir.
    assert Path(get_app_dir()).resolve() == (Path(sys.prefix) / "share" / "jupyter" / "lab").resolve()
    schemas = str(Path(get_app_dir()) / "schemas")
    name = "@jupyterlab/apputils-extension:notification"

    def defaults(with_overrides: bool) -> dict:
        app = tmp_path / ("with" if with_overrides else "without")
        app.mkdir()
        if with_overrides:
            shutil.copy(ROOT / "binder" / "overrides.json", app / "overrides.json")
        found, warnings = get_settings(str(app), schemas, str(tmp_path / "user"), schema_name=name)
        assert warnings == [None]
        return {key: spec["default"] for key, spec in found["schema"]["properties"].items()}

    assert defaults(False)["fetchNews"] == "none"  # JupyterLab asks, with a pop-up
    assert defaults(True) == {"fetchNews": "false", "checkForUpdates": False,
                              "doNotDisturbMode": False}


@pytest.mark.parametrize("notebook", ["00-first-cell.ipynb", "01-wasi-preview1.ipynb",
                                      "02-preview2-components.ipynb", "02b-edge-and-http.ipynb",
                                      "solutions/02b-edge-and-http-solutions.ipynb"])
def test_lessons_write_only_into_build(tmp_path: Path, notebook: str) -> None:
    """Issue 14: everything a lesson writes lands in lessons/build/ (git-ignored)."""
    import shutil

    import nbclient
    import nbformat
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "guest_src", repo / "guest_src")
    shutil.copytree(LESSONS, repo / "lessons",
                    ignore=shutil.ignore_patterns("build", "__pycache__", ".ipynb_checkpoints"))

    def files() -> set[str]:
        return {str(p.relative_to(repo)) for p in repo.rglob("*")
                if "__pycache__" not in p.parts and "build" not in p.relative_to(repo).parts}

    before = files()
    path = repo / "lessons" / notebook
    nbclient.NotebookClient(nbformat.read(path, as_version=4), timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    assert files() == before
    assert (repo / "lessons" / "build").is_dir()


def _cell(notebook: str, marker: str) -> str:
    """The source of the first code cell of ``notebook`` that contains ``marker``."""
    import nbformat
    cells = nbformat.read(LESSONS / notebook, as_version=4).cells
    return next(c.source for c in cells if c.cell_type == "code" and marker in c.source)


def test_lesson01_try_it_answers() -> None:
    """01's Try-its, applied as their text says, give what their answers say."""
    import os

    from wasi_magic import CapabilityError, inspect_wasm, run
    from wasi_magic.preview1 import assemble
    # "change the first argument of fd_write from 1 to 2": the line arrives on stderr.
    source = _cell("01-wasi-preview1.ipynb", "%%wasi --p1")
    edited = source.replace("(call $fd_write (i32.const 1)", "(call $fd_write (i32.const 2)")
    assert edited != source
    result = run(assemble(edited.partition("\n")[2]))
    assert (result.stdout, result.stderr) == ("", "Hello from a WAT cell!\n")
    # "grant --env HOME": the kernel's own value, and nothing else.
    args_env = assemble((ROOT / "guest_src" / "p1" / "args_env.wat").read_text())
    shown = run(args_env, Capabilities.parse(env=["HOME"])).stdout
    assert f"environ count: 1\nenviron[0]: HOME={os.environ['HOME']}\n" in shown
    # "grant the folder above as /up": refused, naming the folder and why.
    with pytest.raises(CapabilityError, match=r"contains the installed wasi_magic package"):
        Capabilities.parse(dirs=["..::/up"], cwd=LESSONS)
    # "inspect hello.wat": one import.
    assert inspect_wasm(ROOT / "guest_src" / "p1" / "hello.wat").imports == (
        "wasi_snapshot_preview1.fd_write",)


def test_lesson02_socket_import_try_it(shared_cache: Path) -> None:
    """02's Try-it 'add import socket': the imports do not change."""
    from wasi_magic import inspect_wasm
    from wasi_magic.sandbox.supervisor import default_sandbox
    body = _cell("02-preview2-components.ipynb", "-o build/tiny.wasm").partition("\n")[2]
    plain = build(body).path
    with_socket = build("import socket\n" + body).path
    imports = default_sandbox().interface
    assert inspect_wasm(with_socket, imports).imports == inspect_wasm(plain, imports).imports
