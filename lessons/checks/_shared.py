"""What every lesson's self-checks share: where the lessons live and how a verdict is shown.

A check has two halves: a ``*_problem`` function that runs the student's work
through wasi-magic and returns what is wrong in plain words (``None`` when all
is right), and a ``check_*`` function that prints the verdict. Tests call the
first; notebooks call the second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The lessons folder, whatever the kernel's working directory (a solutions notebook
#: runs one folder down).
LESSONS = Path(__file__).resolve().parent.parent
#: Where checks write what they need (git-ignored, like everything the lessons write).
WORK = LESSONS / "build" / "checks"


def verdict(exercise: str, problem: str | None, praise: str) -> None:
    """Print one line: a tick and ``praise``, or a cross and the ``problem``."""
    if problem is None:
        print(f"✔ {exercise}: {praise}")
    else:
        print(f"✘ {exercise}: {problem}")


def shown(text: str, limit: int = 80) -> str:
    """``text`` quoted for a message, cut at ``limit`` characters."""
    text = text if len(text) <= limit else text[:limit - 1] + "…"
    return repr(text)


def last_line(text: str) -> str:
    """The last non-empty line of ``text`` (a traceback's verdict), or ''."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def run_result_problem(result: Any, variable: str) -> str | None:
    """Why ``result`` is not a finished run of an exercise cell stored with
    ``--result variable`` (None if it is one)."""
    from wasi_magic.result import RunResult
    if not isinstance(result, RunResult):
        return (f"{variable} does not hold a run yet: run your exercise cell, whose first line "
                f"must include --result {variable}.")
    if result.trap:
        return f"your program was stopped: {result.trap}"
    if result.status != 0:
        why = last_line(result.stderr)
        return (f"your program ended with exit status {result.status}"
                + (f" ({why})." if why else "."))
    return None


def scratch(name: str) -> Path:
    """An empty folder ``build/checks/name`` for a check's own files."""
    import shutil
    folder = WORK / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
