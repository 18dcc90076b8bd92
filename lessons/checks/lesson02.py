"""Self-checks for lesson 02 (Preview 2 and the component model).

Exercise 1 calls the student's ``median`` export in the sandbox with lists whose
median is known; exercise 2 compares the student's list of WASI packages with
what the component really imports, read by Wasmtime in the sandbox worker.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from wasi_magic import WasiMagicError, inspect_wasm
from wasi_magic.sandbox.supervisor import default_sandbox

from ._shared import LESSONS, verdict

#: The WIT type exercise 1 asks for.
MEDIAN_SIGNATURE = "median: func(values: list<f64>) -> f64"
#: Lists the median is tried on: odd and even lengths, unsorted, a single value.
MEDIAN_CASES = ([3.0, 1.0, 2.0], [4.0, 1.0, 3.0, 2.0], [5.0], [2.5, -1.0, 10.0, 7.0, 0.5])


def median_problem(guest: Any) -> str | None:
    """Exercise 1: the ``stats`` component exports ``median`` and computes it."""
    functions = getattr(guest, "functions", None)
    if not isinstance(functions, dict):
        return ("stats is not a loaded component yet: run the %%wit stats cell, then the "
                "%%wasi --world stats cell.")
    if "median" not in functions:
        return (f"stats exports {', '.join(sorted(functions)) or 'nothing'} but no median: add "
                f"`export median: func(values: list<f64>) -> f64;` to the %%wit stats cell, run "
                f"it, then implement median in the %%wasi --world stats cell and run that.")
    signature = functions["median"].signature
    if signature != MEDIAN_SIGNATURE:
        return f"median has the type `{signature}`; the exercise asks for `{MEDIAN_SIGNATURE}`."
    for values in MEDIAN_CASES:
        try:
            got = functions["median"](list(values))
        except WasiMagicError as exc:
            return f"median({values}) failed in the guest: {str(exc).splitlines()[0]}"
        expected = statistics.median(values)
        if got != expected:
            return (f"median({values}) returned {got!r}, expected {expected!r}"
                    + (" (for an even count, the mean of the two middle values)."
                       if len(values) % 2 == 0 else " (sort the values first)."))
    return None


def check_median(guest: Any) -> None:
    """Print whether exercise 1 is done, or what is wrong with it."""
    verdict("Exercise 1", median_problem(guest),
            "median is a typed export, computed in the sandbox.")


def imported_packages(path: str | Path) -> set[str]:
    """The WASI packages (``wasi:cli``, ``wasi:io``…) a component imports."""
    info = inspect_wasm(path, default_sandbox().interface)
    return {name.partition("/")[0] for name in info.imports}


def packages_problem(answer: Any, component: str | Path = LESSONS / "build" / "tiny.wasm"
                     ) -> str | None:
    """Exercise 2: the set of WASI packages ``build/tiny.wasm`` imports."""
    if not Path(component).is_file():
        return f"{str(component)!r} does not exist yet: run the notebook from the top first."
    if not isinstance(answer, (set, frozenset)) or not all(isinstance(a, str) for a in answer):
        return "E2_PACKAGES should be a set of strings such as {\"wasi:cli\"}."
    real = imported_packages(component)
    cleaned = {name.partition("@")[0].partition("/")[0] for name in answer}
    if cleaned != set(answer):
        return ("write package names only, without the interface or the version: "
                "\"wasi:io\", not \"wasi:io/streams@0.2.9\".")
    missing, extra = sorted(real - cleaned), sorted(cleaned - real)
    if missing:
        return (f"missing: {', '.join(missing)}. Every name before the '/' in the inspect list "
                f"counts, even for things your code never uses.")
    if extra:
        return (f"{Path(component).name} does not import {', '.join(extra)}: remove "
                f"{'it' if len(extra) == 1 else 'them'} from the set.")
    return None


def check_packages(answer: Any, component: str | Path = LESSONS / "build" / "tiny.wasm") -> None:
    """Print whether exercise 2 is done, or what is wrong with it."""
    verdict("Exercise 2", packages_problem(answer, component),
            "those are the WASI packages the interpreter asks for.")
