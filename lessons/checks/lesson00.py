"""Self-checks for lesson 00 (your first WASI cell).

Each check takes the :class:`~wasi_magic.result.RunResult` an exercise cell stored
with ``--result``, looks at what the cell granted, and runs the cell's component
again through wasi-magic with other grants, so that a program that only happens
to print the right text is caught.
"""

from __future__ import annotations

from typing import Any

from wasi_magic import Capabilities, run
from wasi_magic.capabilities import DirGrant

from ._shared import LESSONS, run_result_problem, scratch, shown, verdict


def greeting_problem(result: Any) -> str | None:
    """Exercise 1: print ``Hello, Ada!`` from the variable NAME, granted as ``--env NAME=Ada``."""
    problem = run_result_problem(result, "E1")
    if problem:
        return problem
    env = dict(result.capabilities.env)
    if "NAME" not in env:
        return ("your cell was not granted the variable NAME: add --env NAME=Ada to its "
                "first line.")
    if env["NAME"] != "Ada":
        return f"NAME is granted as {env['NAME']!r}; the exercise asks for --env NAME=Ada."
    extra = [f"--env {name}" for name in env if name != "NAME"]
    extra += [f"--dir {grant.spec}" for grant in result.capabilities.dirs]
    extra += [f"argument {arg!r}" for arg in result.capabilities.args]
    if extra:
        return (f"your cell also grants {', '.join(extra)}; the program needs only NAME, so "
                f"grant nothing else.")
    if result.stdout != "Hello, Ada!\n":
        return f"your program printed {shown(result.stdout)}; expected 'Hello, Ada!' on one line."
    again = run(result.artifact, Capabilities(env=(("NAME", "Grace"),)))
    if again.stdout != "Hello, Grace!\n":
        return (f"run again with NAME=Grace, your program printed {shown(again.stdout)}: read "
                f"the name from os.environ['NAME'] instead of writing it in the program.")
    return None


def check_greeting(result: Any) -> None:
    """Print whether exercise 1 is done, or what is wrong with it."""
    verdict("Exercise 1", greeting_problem(result),
            "the greeting comes from the one variable you granted.")


def word_count_problem(result: Any) -> str | None:
    """Exercise 2: print how many words ``/data/input.txt`` has, with ``data`` granted
    read-only as ``/data``."""
    problem = run_result_problem(result, "E2")
    if problem:
        return problem
    grants = [grant for grant in result.capabilities.dirs if grant.guest == "/data"]
    if not grants:
        return ("your cell did not grant a folder as /data: add --dir data::/data::ro to its "
                "first line.")
    grant = grants[0]
    data = (LESSONS / "data").resolve()
    if grant.host.resolve() != data:
        return (f"/data is granted from {str(grant.host)!r}, not from the lesson's data folder: "
                f"use --dir data::/data::ro.")
    if not grant.read_only:
        return ("data is granted read-write, but the program only reads: add ::ro to the grant "
                "so that the sandbox refuses any write.")
    words = len((data / "input.txt").read_text().split())
    if result.stdout.strip() != str(words):
        return (f"your program printed {shown(result.stdout)}; /data/input.txt has {words} "
                f"words, so it should print {words}.")
    other = scratch("lesson00-words")
    (other / "input.txt").write_text("one two three\nfour\n")
    caps = result.capabilities.replace(dirs=(DirGrant(other, "/data", read_only=True),))
    again = run(result.artifact, caps)
    if again.stdout.strip() != "4":
        return (f"with another /data/input.txt (4 words) your program printed "
                f"{shown(again.stdout)}: count the words of the file instead of printing a "
                f"fixed number.")
    return None


def check_word_count(result: Any) -> None:
    """Print whether exercise 2 is done, or what is wrong with it."""
    verdict("Exercise 2", word_count_problem(result),
            "the program counts the words of whatever read-only /data it is given.")
