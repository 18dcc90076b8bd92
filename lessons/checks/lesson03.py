"""Self-checks for lesson 03 (embedding Wasmtime).

Each exercise has a ``*_problem`` function, which returns what is wrong in plain
words (None when all is right) and is what the tests call, and a ``check_*``
function, which prints the verdict in the notebook.

- Exercise 1, ``tenant_grant(tenant)``: the least a plugin needs to read one
  tenant's folder. The check reads the grant and then runs the lesson's plugin
  with it, for two tenants.
- Exercise 2, the host's three functions for ``counter.wasm``: the check links
  them with wasmtime-py's component ``Linker`` and calls the plugin three times,
  each time in a fresh store, as lesson 03 does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ._shared import verdict

LESSONS = Path(__file__).resolve().parent.parent
BUILD = LESSONS / "build"
TENANTS = BUILD / "tenants"
HOST_INTERFACE = "wasi-magic:hosted/host@0.1.0"



# Exercise 1 ---------------------------------------------------------------------------

def grant_problem(tenant_grant: Callable[[str], Any], plugin: Path | str = BUILD / "plugin.wasm",
                  root: Path = TENANTS, tenants: tuple[str, ...] = ("alice", "bob")) -> str | None:
    """What is wrong with ``tenant_grant`` as a least-privilege grant, or None.

    ``root`` holds one folder per tenant; ``plugin`` is the lesson's command component
    that lists ``/data`` and prints each file.
    """
    from wasi_magic import Capabilities, run
    for tenant in tenants:
        try:
            caps = tenant_grant(tenant)
        except Exception as exc:  # the student's code: say what it raised
            return f"tenant_grant({tenant!r}) raised {type(exc).__name__}: {exc}"
        if not isinstance(caps, Capabilities):
            return (f"tenant_grant({tenant!r}) returned {type(caps).__name__}, not Capabilities: "
                    f"build it with Capabilities.parse(dirs=[...])")
        folder = (root / tenant).resolve()
        mine = [grant for grant in caps.dirs if grant.host.resolve() == folder]
        others = [grant for grant in caps.dirs if grant.host.resolve() != folder]
        if not mine:
            return (f"the grant for {tenant} does not include {tenant}'s folder "
                    f"({root.name}/{tenant}): the plugin would find nothing to read")
        if others:
            return (f"the grant for {tenant} also opens {others[0].host}: a plugin for {tenant} "
                    f"must see only {tenant}'s folder")
        if mine[0].guest != "/data":
            return f"{tenant}'s folder is at {mine[0].guest} inside, but the plugin reads /data"
        if not mine[0].read_only:
            return f"{tenant}'s folder is writable: the plugin only reads, so add ::ro"
        if caps.env:
            return (f"the grant also sets the variable {caps.env[0][0]}: the plugin needs only "
                    f"APP_ENV, and nothing else should leak in")
        result = run(plugin, caps)
        expected = sorted(path.name for path in folder.iterdir())
        if not result.ok or not all(f"{name}:" in result.stdout for name in expected):
            return (f"the plugin, run with the grant for {tenant}, did not list {expected}: "
                    f"{(result.stderr or result.trap or result.stdout).strip()[-200:]}")
    return None


def check_tenant_grant(tenant_grant: Callable[[str], Any]) -> None:
    """Print whether ``tenant_grant`` gives each tenant exactly its own folder, read-only."""
    verdict("Exercise 1", grant_problem(tenant_grant),
            "each tenant's plugin sees only its own folder, read-only, at /data")


# Exercise 2 ---------------------------------------------------------------------------

_COMPILED: dict[tuple[str, float], tuple[Any, Any]] = {}


def _compiled(plugin: Path) -> tuple[Any, Any]:
    """(engine, component) for ``plugin``, compiled once per process by an engine made as the
    lesson makes its own (``Config.cache`` on): once the lesson (or Binder's postBuild) has
    compiled the same bytes, this is a hit in Wasmtime's cache, not a compile."""
    from wasmtime import component

    from wasi_magic.wasmtime_cache import notebook_engine

    key = (str(plugin.resolve()), plugin.stat().st_mtime)
    if key not in _COMPILED:
        engine = notebook_engine()
        _COMPILED[key] = engine, component.Component.from_file(engine, str(plugin))
    return _COMPILED[key]


def host_problem(make_host: Callable[[dict, list], dict],
                 plugin: Path | str = BUILD / "counter.wasm", calls: int = 3) -> str | None:
    """What is wrong with ``make_host``'s log/get/set for counter.wasm, or None.

    ``make_host(store, log)`` returns ``{"log": …, "get": …, "set": …}``, each a
    function whose first argument is wasmtime's store, as ``add_func`` passes it.
    """
    import wasmtime
    from wasmtime import component

    engine, counter = _compiled(Path(plugin))
    values: dict[str, str] = {}
    lines: list[str] = []
    functions = make_host(values, lines)
    if not isinstance(functions, dict) or set(functions) != {"log", "get", "set"}:
        got = sorted(functions) if isinstance(functions, dict) else type(functions).__name__
        return f"make_host must return a dict with the keys 'log', 'get' and 'set', not {got}"
    linker = component.Linker(engine)
    linker.add_wasip2()
    with linker.root() as root:
        with root.add_instance(HOST_INTERFACE) as host:
            for name, function in functions.items():
                host.add_func(name, function)
    answers = []
    for call in range(1, calls + 1):
        store = wasmtime.Store(engine)
        store.set_wasi(wasmtime.WasiConfig())
        try:
            instance = linker.instantiate(store, counter)
            transform = instance.get_func(store, instance.get_export_index(store, "transform"))
            answer = transform(store, b"three small words")
            transform.post_return(store)
        except Exception as exc:  # a host function that raised traps the guest
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return (f"call {call} failed inside a host function ({first}): check that get returns "
                    f"None or a str, and that each function takes the store first")
        answers.append(answer.decode() if isinstance(answer, bytes) else str(answer))
        expected = f"call {call}: 3 words"
        if answers[-1] != expected:
            if call > 1 and answers[-1] == "call 1: 3 words":
                return (f"call {call} said {answers[-1]!r}: the count was forgotten, so set must "
                        f"keep the value in the dict, and get must read it back")
            return f"call {call} said {answers[-1]!r}, expected {expected!r}"
    if values != {"calls": str(calls)}:
        return f"after {calls} calls the store holds {values}, expected {{'calls': '{calls}'}}"
    if lines != [f"call {n}: 3 words" for n in range(1, calls + 1)]:
        return (f"the log holds {len(lines)} lines, expected {calls} (one per call): "
                f"log must append each message to the list")
    return None


def check_host(make_host: Callable[[dict, list], dict]) -> None:
    """Print whether ``make_host``'s functions give counter.wasm a working log and store."""
    verdict("Exercise 2", host_problem(make_host),
            "the plugin counted its calls in the host's store and logged each one")
