"""The self-checks of lessons 03-05 (lessons/checks/): a wrong answer gets the right plain-words message.

Each ``*_problem`` function is called as a notebook's check cell calls it, with real
components (built into the shared test cache) and real runs; a right answer gets None.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from wasi_magic import Capabilities, build

CHECKS = ROOT / "lessons" / "checks"


sys.path.insert(0, str(CHECKS.parent))  # as the notebooks import them: `from checks import …`

from checks import lesson03, lesson04, lesson05  # noqa: E402


def _cell_body(notebook: str, first_line: str) -> str:
    """The body of the code cell of ``notebook`` whose first line is ``first_line``."""
    cells = json.loads((ROOT / "lessons" / notebook).read_text())["cells"]
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.startswith(first_line + "\n"):
            return source.partition("\n")[2] + "\n"
    raise AssertionError(f"no cell starting {first_line!r} in {notebook}")


# Lesson 03 ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plugin(shared_cache: Path):
    """Lesson 03's command plugin, built from the notebook's own cell."""
    body = _cell_body("03-embedding-wasmtime.ipynb", "%%wasi -q -o build/plugin.wasm --dir "
                      "build/tenants/alice::/data::ro --env APP_ENV=production")
    return build(body).path


@pytest.fixture(scope="module")
def counter(shared_cache: Path):
    hosted = ROOT / "guest_src" / "hosted"
    return build(hosted / "counter.py", wit=hosted / "hosted.wit", world="counted-transform").path


@pytest.fixture()
def tenants(tmp_path: Path) -> Path:
    for tenant, name in [("alice", "notes.txt"), ("bob", "secret.txt")]:
        (tmp_path / tenant).mkdir()
        (tmp_path / tenant / name).write_text(f"{tenant}'s text\n")
    return tmp_path


def _grant(root: Path, spec: str, **more):
    """A tenant_grant whose --dir values are ``spec`` with {root} and {tenant} filled in."""
    def tenant_grant(tenant: str) -> Capabilities:
        return Capabilities.parse(dirs=[part.format(root=root, tenant=tenant) for part in spec.split(" ")],
                                  **more)
    return tenant_grant


GRANTS = [
    ("{root}/{tenant}::/data", {}, "alice's folder is writable: the plugin only reads, so add ::ro"),
    ("{root}/{tenant}::/data::ro {root}/bob::/bob::ro", {},
     "the grant for alice also opens"),
    ("{root}/{tenant}::/notes::ro", {}, "alice's folder is at /notes inside, but the plugin reads /data"),
    ("{root}/bob::/data::ro", {}, "the grant for alice does not include alice's folder"),
    ("{root}/{tenant}::/data::ro", {"env": ["SECRET=1"]}, "the grant also sets the variable SECRET"),
]


@pytest.mark.parametrize("spec, more, message", GRANTS, ids=[g[2][:40] for g in GRANTS])
def test_lesson03_a_wrong_grant_is_named(spec, more, message, plugin, tenants) -> None:
    tenant_grant = _grant(tenants, spec, **more)
    problem = lesson03.grant_problem(tenant_grant, plugin, root=tenants)
    assert problem is not None and message in problem, problem


def test_lesson03_a_grant_that_is_not_capabilities_or_raises(plugin, tenants) -> None:
    assert "returned str, not Capabilities" in lesson03.grant_problem(lambda t: f"{t}::/data", plugin,
                                                                      root=tenants)
    assert "tenant_grant('alice') raised KeyError" in lesson03.grant_problem(lambda t: {}[t], plugin,
                                                                             root=tenants)


def test_lesson03_the_right_grant_passes_and_runs_the_plugin(plugin, tenants) -> None:
    tenant_grant = _grant(tenants, "{root}/{tenant}::/data::ro")
    assert lesson03.grant_problem(tenant_grant, plugin, root=tenants) is None


def _host(get=lambda values, key: values.get(key), keep=True, log=True, keys=("log", "get", "set")):
    def make_host(values: dict, lines: list) -> dict:
        functions = {
            "log": lambda store, message: lines.append(message) if log else None,
            "get": lambda store, key: get(values, key),
            "set": lambda store, key, value: values.__setitem__(key, value) if keep else None,
        }
        return {name: functions[name] for name in keys}
    return make_host


HOSTS = [
    (_host(keep=False), "call 2 said 'call 1: 3 words': the count was forgotten"),
    (_host(get=lambda values, key: None), "the count was forgotten"),
    (_host(log=False), "the log holds 0 lines, expected 3"),
    (_host(keys=("log", "get")), "must return a dict with the keys 'log', 'get' and 'set', not ['get', 'log']"),
    (_host(get=lambda values, key: 7), "call 1 failed inside a host function"),
]


@pytest.mark.parametrize("make_host, message", HOSTS, ids=[h[1][:40] for h in HOSTS])
def test_lesson03_a_wrong_host_is_named(make_host, message, counter) -> None:
    problem = lesson03.host_problem(make_host, counter)
    assert problem is not None and message in problem, problem


def test_lesson03_the_right_host_passes(counter) -> None:
    assert lesson03.host_problem(_host(), counter) is None


# Lesson 04 ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def analyzer_wasm(shared_cache: Path):
    return build(ROOT / "guest_src" / "log_analyzer" / "analyzer.py").path


def test_lesson04_the_right_guesses_pass_and_wrong_ones_say_why() -> None:
    assert lesson04.kept_problem([True, True, False, True, False, False]) is None
    problem = lesson04.kept_problem([True, False, True, True, True, False])
    assert problem.startswith("3 of 6 wrong: line 2 is kept (serde reads it into LogEntry); "
                              "line 3 is skipped (duplicate field `level`); line 5 is skipped"), problem
    assert "KEPT has 5 answers for 6 lines" == lesson04.kept_problem([True] * 5)
    assert "list of True/False" in lesson04.kept_problem("yes")


def _dirs(*specs: str, args=("/in/logs.json", "/out/report.json")):
    return lambda logs, reports: Capabilities.parse(
        dirs=[spec.format(logs=logs, reports=reports) for spec in specs], args=list(args))


ANALYZER_GRANTS = [
    (_dirs("{logs}::/in", "{reports}::/out"), "the logs folder is writable"),
    (_dirs("{logs}::/in::ro", "{reports}::/out::ro"), "the reports folder is read-only"),
    (_dirs("{logs}::/in::ro"), "the reports folder is not granted"),
    (_dirs("{reports}::/out"), "the logs folder is not granted"),
    (_dirs("{logs}::/in::ro", "{reports}::/out", "{logs}/..::/all::ro"), "the grant also opens"),
    (_dirs("{logs}::/in::ro", "{reports}::/out", args=("/in/logs.json", "/in/report.json")),
     "the analyzer exited with status 1: Failed to write /in/report.json: Operation not permitted"),
    (_dirs("{logs}::/in::ro", "{reports}::/out", args=("/logs.json", "/out/report.json")),
     "the analyzer exited with status 1: Failed to open /logs.json"),
]


@pytest.mark.parametrize("grant_for, message", ANALYZER_GRANTS, ids=[g[1][:40] for g in ANALYZER_GRANTS])
def test_lesson04_a_wrong_grant_is_named(grant_for, message, analyzer_wasm, tmp_path: Path) -> None:
    problem = lesson04.grant_problem(grant_for, analyzer_wasm, work=tmp_path / "work")
    assert problem is not None and message in problem, problem


def test_lesson04_the_right_grant_passes(analyzer_wasm, tmp_path: Path) -> None:
    grant_for = _dirs("{logs}::/in::ro", "{reports}::/out")
    assert lesson04.grant_problem(grant_for, analyzer_wasm, work=tmp_path / "work") is None
    assert "returned str" in lesson04.grant_problem(lambda logs, reports: "x", analyzer_wasm,
                                                    work=tmp_path / "work")


# Lesson 05 ---------------------------------------------------------------------------

def bisect(fits, low: int, high: int) -> int:
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle + 1, high)
    return low


def linear(fits, low: int, high: int) -> int:
    return next(n for n in range(low, high + 1) if fits(n))


SEARCHES = [
    (linear, "smallest asked fits 250 times for one limit; halving the range each time needs at most 15"),
    (lambda fits, low, high: high, "with the limit at 1 pages, smallest returned 16384"),
    (lambda fits, low, high: bisect(fits, low, high) + 1, "returned 2 (one too high: keep the middle"),
    (lambda fits, low, high: bisect(fits, low, high) - 1, "returned 0 (one too low"),
    (lambda fits, low, high: bisect(lambda n: fits(n + 20000), low, high), "outside 1..16384"),
    (lambda fits, low, high: 1 // 0, "with the limit at 1, smallest raised ZeroDivisionError"),
]


@pytest.mark.parametrize("smallest, message", SEARCHES, ids=[s[1][:40] for s in SEARCHES])
def test_lesson05_a_wrong_bisection_is_named(smallest, message) -> None:
    problem = lesson05.bisection_problem(smallest)
    assert problem is not None and message in problem, problem


def test_lesson05_the_right_bisection_passes() -> None:
    assert lesson05.bisection_problem(bisect) is None


def test_lesson05_wrong_choices_get_the_deciding_fact() -> None:
    right = {name: home for name, (home, _) in lesson05.WORKLOADS.items()}
    assert lesson05.choices_problem(right) is None
    all_wasi = lesson05.choices_problem({name: "wasi" for name in right})
    assert all_wasi.startswith("3 of 5 wrong.") and "psycopg2 is a C extension" in all_wasi
    assert "WASI has no subprocesses" in all_wasi and "wasi-nn only runs inference" in all_wasi
    assert "write 'wasi' or 'container'" in lesson05.choices_problem({**right, next(iter(right)): "docker"})
    assert "no choice for" in lesson05.choices_problem({})
    assert "must be a dict" in lesson05.choices_problem(["wasi"])
