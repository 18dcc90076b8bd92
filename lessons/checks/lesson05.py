"""Self-checks for lesson 05 (WASI vs containers).

- Exercise 1, ``smallest(fits, low, high)``: the bisection that found the
  component's peak linear memory, written by you. The check runs it against
  limits it knows, and counts how often it asks.
- Exercise 2, :data:`WORKLOADS`: WASI or a container for each workload. The
  check answers each wrong choice with the fact that decides it.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from ._shared import verdict

#: Exercise 2: the workload, the right home, and why.
WORKLOADS: dict[str, tuple[str, str]] = {
    "a per-tenant plugin that transforms uploaded text":
        ("wasi", "a fresh sandbox per call costs milliseconds, and it sees only the folder it is given"),
    "a Django site that talks to PostgreSQL through psycopg2":
        ("container", "psycopg2 is a C extension linked against libpq, built for Linux, not for WASI, "
                      "and the site needs sockets that wasmtime-py cannot grant"),
    "a web scraper that starts a headless Chromium":
        ("container", "a component cannot start another process: WASI has no subprocesses"),
    "a function that resizes one image per HTTP request, in Rust":
        ("wasi", "a small compiled module starts in well under a millisecond, once per request"),
    "a training job that needs the GPU":
        ("container", "WASI has no GPU API: wasi-nn only runs inference, and few runtimes ship it"),
}



# Exercise 1 ---------------------------------------------------------------------------

def bisection_problem(smallest: Callable[[Callable[[int], bool], int, int], int]) -> str | None:
    """What is wrong with ``smallest(fits, low, high)``, or None.

    ``smallest`` must return the smallest n in [low, high] with ``fits(n)`` true,
    for a ``fits`` that is false below some limit and true from it on, asking
    ``fits`` about log2(high - low) + 1 times, not once per value.
    """
    low, high = 1, 16384
    budget = math.ceil(math.log2(high - low + 1)) + 1
    for limit in (1, 2, 250, 251, 9999, 16383, 16384):
        asked: list[int] = []

        def fits(pages: int) -> bool:
            asked.append(pages)
            return pages >= limit

        try:
            found = smallest(fits, low, high)
        except Exception as exc:  # the student's code: say what it raised
            return f"with the limit at {limit}, smallest raised {type(exc).__name__}: {exc}"
        if found != limit:
            hint = ("one too high: keep the middle itself when it fits" if found == limit + 1 else
                    "one too low: a value that does not fit cannot be the answer"
                    if found == limit - 1 else "")
            return f"with the limit at {limit} pages, smallest returned {found}" + (f" ({hint})" if hint else "")
        if any(not low <= pages <= high for pages in asked):
            return f"smallest asked about {min(asked)}..{max(asked)} pages, outside {low}..{high}"
        if len(asked) > budget:
            return (f"smallest asked fits {len(asked)} times for one limit; halving the range each "
                    f"time needs at most {budget}")
    return None


def check_bisection(smallest: Callable[[Callable[[int], bool], int, int], int]) -> None:
    """Print whether ``smallest`` finds every limit, asking O(log n) times."""
    verdict("Exercise 1", bisection_problem(smallest), "every limit found, about 15 questions each")


# Exercise 2 ---------------------------------------------------------------------------

def choices_problem(choices: Any) -> str | None:
    """What is wrong with ``choices`` (workload -> 'wasi' or 'container'), or None."""
    if not isinstance(choices, dict):
        return "CHOICES must be a dict from each workload to 'wasi' or 'container'"
    missing = [name for name in WORKLOADS if name not in choices]
    if missing:
        return f"no choice for {missing[0]!r}"
    wrong = []
    for name, (right, why) in WORKLOADS.items():
        choice = str(choices[name]).strip().lower()
        if choice not in ("wasi", "container"):
            return f"the choice for {name!r} is {choices[name]!r}: write 'wasi' or 'container'"
        if choice != right:
            wrong.append(f"{name}: {right}, because {why}")
    if wrong:
        return f"{len(wrong)} of {len(WORKLOADS)} wrong. " + " | ".join(wrong)
    return None


def check_choices(choices: Any) -> None:
    """Print whether each workload went where it runs best today."""
    verdict("Exercise 2", choices_problem(choices), "each workload is where it runs best today")
