"""Write a realistic JSON-lines log for the analyzer, the same every time for a seed.

    python generate.py OUT.json [--lines 20000] [--seed 7] [--malformed 5]

Each line is an object with ``timestamp`` (ISO 8601, one to a few hundred
milliseconds apart), ``level`` (mostly INFO), ``service``, ``message`` and,
for request lines, ``duration_ms`` (log-normal, with a slow tail past
1000 ms). A few lines are broken on purpose, in the ways real logs break: cut
off mid-write, a field missing, a line that is not an object.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

SERVICES = ["api-gateway", "auth", "billing", "catalog", "checkout", "search", "notifications"]
LEVELS = ["DEBUG", "INFO", "WARN", "ERROR"]
LEVEL_WEIGHTS = [12, 74, 10, 4]
ROUTES = ["/api/items", "/api/items/{id}", "/api/cart", "/api/login", "/api/search?q={q}",
          "/api/orders", "/api/invoices/{id}"]
PROBLEMS = ["upstream timeout", "connection reset by peer", "card declined",
            "database deadlock detected", "token expired", "rate limit exceeded"]
WORDS = ["shoes", "lamp", "coffee", "desk", "cable", "book"]
START = datetime(2025, 7, 15, 9, 0, 0, tzinfo=timezone.utc)
# Lesson 04's seeded log: large enough for a slow tail and stable medians, small enough
# that the lesson's dozen runs over it take seconds, not tens of seconds.
LINES = 20_000


def entry(rng: random.Random, when: datetime) -> dict:
    """One log entry at ``when``."""
    level = rng.choices(LEVELS, LEVEL_WEIGHTS)[0]
    service = rng.choice(SERVICES)
    record = {"timestamp": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
              "level": level, "service": service}
    if level == "ERROR":
        record["message"] = f"{rng.choice(PROBLEMS)} (request {rng.randrange(16**8):08x})"
    elif level == "DEBUG":
        record["message"] = f"cache {'hit' if rng.random() < 0.8 else 'miss'} for key {rng.randrange(10**5)}"
    else:
        route = rng.choice(ROUTES).format(id=rng.randrange(10**4), q=rng.choice(WORDS))
        method = "POST" if route.endswith(("cart", "login", "orders")) else "GET"
        status = 200 if level == "INFO" else rng.choice([404, 429, 499])
        record["message"] = f"{method} {route} {status}"
        # Log-normal around ~60 ms, with a slow tail: about 1 in 700 takes over a second.
        record["duration_ms"] = round(rng.lognormvariate(4.1, 0.95), 1)
    if rng.random() < 0.02:
        del record["service"]  # a few lines from jobs that do not say which service they are
    return record


def broken(rng: random.Random, line: str) -> str:
    """A line damaged the way real logs get damaged."""
    kind = rng.randrange(3)
    if kind == 0:
        return line[: len(line) // 2]                       # cut off mid-write
    if kind == 1:
        return line.replace('"level"', '"lvl"', 1)          # a field renamed by an old writer
    return json.dumps("log rotated")                        # not an object at all


def generate(lines: int = LINES, seed: int = 7, malformed: int = 5) -> list[str]:
    """The log as a list of lines (without newlines)."""
    rng = random.Random(seed)
    when = START
    out = []
    for _ in range(lines):
        when += timedelta(milliseconds=rng.randint(1, 400))
        out.append(json.dumps(entry(rng, when)))
    for index in rng.sample(range(lines), malformed):
        out[index] = broken(rng, out[index])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="where to write the log (JSON lines)")
    parser.add_argument("--lines", type=int, default=LINES)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--malformed", type=int, default=5)
    ns = parser.parse_args()
    text = "\n".join(generate(ns.lines, ns.seed, ns.malformed)) + "\n"
    Path(ns.output).parent.mkdir(parents=True, exist_ok=True)
    with open(ns.output, "w", encoding="utf-8") as out:
        out.write(text)
    print(f"wrote {ns.lines} lines ({ns.malformed} malformed) to {ns.output}")


if __name__ == "__main__":
    main()
