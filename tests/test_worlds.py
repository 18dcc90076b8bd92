"""Typed worlds: components built from a user's WIT, called from Python (wasi_magic.host).

Real builds (each guest once per session, cached across runs) and real calls.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from wasi_magic import Capabilities, build
from wasi_magic.builder import world_build_key
from wasi_magic.errors import BuildError, GuestError, GuestTrap, UsageError
from wasi_magic import load  # the product path: calls cross to the sandbox worker
from wasi_magic.host import Record, Variant
from wasi_magic.worlds import WitSource, explain_failure, resolve_wit, with_package

ROOT = Path(__file__).resolve().parent.parent
KINDS = Path(__file__).resolve().parent / "guests" / "kinds"
PLUGINS = ROOT / "guest_src" / "plugins"
MiB = 1 << 20


# --- fixtures: one build per guest per session -------------------------------------------------


@pytest.fixture(scope="session")
def kinds_artifact(shared_cache: Path):
    return build(KINDS / "kinds.py", wit=KINDS / "kinds.wit", world="kinds")


@pytest.fixture(scope="session")
def kinds(kinds_artifact):
    return load(kinds_artifact, timeout=10)


def plugin(name: str):
    return build(PLUGINS / f"{name}.py", wit=PLUGINS / "transform.wit", world="transform")


@pytest.fixture(scope="session")
def plugins(shared_cache: Path) -> dict:
    return {name: plugin(name) for name in ("upper", "snoop", "spin", "hog", "buggy")}


@pytest.fixture()
def tenants(tmp_path: Path) -> Path:
    """Two tenants' folders; only alice's is ever granted."""
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "notes.txt").write_text("alice's own notes\n")
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "secret.txt").write_text("CANARY-bob-secret\n")
    return tmp_path


def alice(tenants: Path) -> Capabilities:
    return Capabilities.parse(dirs=[f"{tenants / 'alice'}::/data::ro"])


# --- every kind of value, both ways --------------------------------------------------------


def test_artifact_names_its_world(kinds_artifact) -> None:
    assert kinds_artifact.world == "kinds"
    assert kinds_artifact.name == "kinds.wasm"


def test_strings_ints_floats(kinds) -> None:
    assert kinds.echo("héllo ✓") == "héllo ✓"
    assert kinds.add(2**40, -3) == 2**40 - 3
    assert kinds.scale(3, 0.5) == 1.5  # an int is accepted for f64
    assert kinds.scale(x=1.25, by=2.0) == 2.5  # keyword arguments by WIT name


def test_bytes_and_lists(kinds) -> None:
    assert kinds.reverse_bytes(b"abc\x00\xff") == b"\xff\x00cba"
    assert kinds.reverse_bytes(bytearray(b"xy")) == b"yx"
    assert kinds.split_words("a  b\tc") == ["a", "b", "c"]
    assert kinds.split_words("") == []


def test_record_round_trip(kinds) -> None:
    moved = kinds.move_point({"x": 1, "y": 2, "label": "p", "tag_line": "t"}, 3)
    assert isinstance(moved, Record)
    assert (moved.x, moved.y, moved.label, moved.tag_line) == (4, 2, "p!", "T")
    again = kinds.move_point(moved, dx=-4)  # a returned record goes back in as it is
    assert again.asdict() == {"x": 0, "y": 2, "label": "p!!", "tag_line": "T"}
    assert kinds.move_point(Record(x=0, y=0, label="", tag_line=None), 0).tag_line is None


def test_option(kinds) -> None:
    assert kinds.next(None) is None
    assert kinds.next(41) == 42


def test_result_ok_and_err(kinds) -> None:
    assert kinds.divide(1, 4) == 0.25
    with pytest.raises(GuestError) as caught:
        kinds.divide(1, 0)
    assert caught.value.value == "division by zero"  # untagged in wasmtime-py: told by the type
    assert kinds.check("abc") == "ABC"
    with pytest.raises(GuestError) as caught:
        kinds.check("")  # ok and err are both strings
    assert caught.value.value == "empty"
    assert kinds.validate("123") is None
    with pytest.raises(GuestError, match="not a number"):
        kinds.validate("12x")


def test_nested_results_are_variants(kinds) -> None:
    assert kinds.parse_all(["1", "x", "-3"]) == [
        Variant("ok", 1), Variant("err", "bad: x"), Variant("ok", -3)]


def test_variant(kinds) -> None:
    assert kinds.area(Variant("circle", 2)) == 12.0
    assert kinds.area(Variant("square", 3)) == 9.0
    assert kinds.area(Variant("none")) == 0.0
    assert kinds.area("none") == 0.0  # a bare tag for a case without payload
    assert kinds.grow(Variant("circle", 1.5)) == Variant("circle", 3.0)
    assert kinds.grow(Variant("square", 3)) == Variant("square", 4)
    assert kinds.grow("none") == Variant("circle", 1.0)


def test_enum_flags_tuple(kinds) -> None:
    assert kinds.next_color("red") == "green"
    assert kinds.next_color("blue") == "red"
    assert kinds.toggle({"read"}) == {"read", "write"}
    assert kinds.toggle(["write", "exec"]) == {"exec"}
    assert kinds.pair("ab", 7) == ("abab", 8)


def test_interface_functions(kinds) -> None:
    assert kinds.text.shout("hi") == "HI!"
    assert kinds["text.shout"]("x") == "X!"
    assert "text.shout" in kinds.functions
    assert "shout: func(s: string) -> string" in repr(kinds)


def test_bad_arguments_are_usage_errors(kinds) -> None:
    with pytest.raises(UsageError, match="argument 'n'"):
        kinds.next("seven")
    with pytest.raises(UsageError, match="is missing b"):
        kinds.add(1)
    with pytest.raises(UsageError, match="no case 'triangle'"):
        kinds.area(Variant("triangle", 1.0))
    with pytest.raises(UsageError, match="not one of red, green, blue"):
        kinds.next_color("purple")
    with pytest.raises(UsageError, match="field 'label'"):
        kinds.move_point({"x": 1, "y": 2}, 0)
    with pytest.raises(AttributeError, match="exports no function"):
        kinds.nothing_here  # noqa: B018
    assert kinds.echo("still fine") == "still fine"


def test_output_is_captured_per_call(kinds) -> None:
    assert kinds.greet("ada") == "greeted ada"
    assert kinds.last_stdout == "hello, ada\n"
    assert kinds.last_stderr == "a warning\n"
    kinds.echo("quiet")
    assert kinds.last_stdout == ""


def test_exception_in_guest_is_a_trap_and_host_carries_on(kinds) -> None:
    with pytest.raises(GuestTrap) as caught:
        kinds.crash("boom")
    trap = caught.value
    assert trap.kind == "trap"
    assert "ValueError: boom" in str(trap)
    assert 'File "kinds.py"' in str(trap)  # the guest's own file and line
    assert "raise Err" in str(trap)  # the hint
    assert kinds.echo("alive") == "alive"


def test_fresh_instances_forget_and_kept_instance_remembers(kinds_artifact) -> None:
    fresh = load(kinds_artifact)
    assert [fresh.bump() for _ in range(3)] == [1, 1, 1]
    with load(kinds_artifact, fresh=False) as kept:
        assert [kept.bump() for _ in range(3)] == [1, 2, 3]
        with pytest.raises(GuestTrap):
            kept.crash("x")
        assert kept.bump() == 1  # a trap poisons the instance: a new one replaces it


def test_calls_from_threads(kinds_artifact) -> None:
    guest = load(kinds_artifact)
    results: list[int] = []
    threads = [threading.Thread(target=lambda i=i: results.append(guest.add(i, i)))
               for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [2 * i for i in range(8)]


# --- the plugins of guest_src/plugins ------------------------------------------------------------


def test_good_plugin_transforms(plugins, tenants: Path) -> None:
    good = load(plugins["upper"], alice(tenants), timeout=5, max_memory=64 * MiB)
    assert good.transform(b"hello big world") == b"HELLO BIG WORLD\n-- 3 words\n"
    with pytest.raises(GuestError, match="not UTF-8"):
        good.transform(b"\xff\xfe")


def test_snooping_plugin_is_denied(plugins, tenants: Path) -> None:
    snoop = load(plugins["snoop"], alice(tenants), timeout=5, max_memory=64 * MiB)
    with pytest.raises(GuestError) as caught:
        snoop.transform(b"")
    report = caught.value.value
    assert report.startswith("denied:")
    assert "own /data: ['notes.txt']" in report  # its own tenant folder is there
    assert "/data/../bob/secret.txt: PermissionError" in report
    assert "/tenants/bob/secret.txt: FileNotFoundError" in report
    assert "CANARY" not in report


def test_spinning_plugin_is_stopped_by_the_timeout(plugins, tenants: Path) -> None:
    spin = load(plugins["spin"], alice(tenants), timeout=1, max_memory=64 * MiB)
    with pytest.raises(GuestTrap) as caught:
        spin.transform(b"x")
    assert caught.value.kind == "timeout"
    assert re.search(r"transform: stopped by the time limit after \d+\.\d\d s \(timeout=1 s\)",
                     str(caught.value)), str(caught.value)
    # The host carries on: the next call of a good plugin works.
    good = load(plugins["upper"], alice(tenants), timeout=5, max_memory=64 * MiB)
    assert good.transform(b"still here").startswith(b"STILL HERE")


def test_hungry_plugin_is_stopped_by_max_memory(plugins, tenants: Path) -> None:
    hog = load(plugins["hog"], alice(tenants), timeout=10, max_memory="64MiB")
    with pytest.raises(GuestTrap) as caught:
        hog.transform(b"x")
    assert caught.value.kind == "memory"
    assert "64.0 MiB" in str(caught.value)
    assert "MemoryError" in caught.value.stderr


def test_buggy_plugin_traps(plugins, tenants: Path) -> None:
    buggy = load(plugins["buggy"], alice(tenants), timeout=5, max_memory=64 * MiB)
    assert buggy.transform(b"21") == b"42"
    with pytest.raises(GuestTrap) as caught:
        buggy.transform(b"twenty-one")
    assert caught.value.kind == "trap"
    assert "ValueError: invalid literal" in str(caught.value)


def test_host_alive_after_every_hostile_plugin(plugins, tenants: Path) -> None:
    caps = alice(tenants)
    good = load(plugins["upper"], caps, timeout=5, max_memory=64 * MiB)
    for name, failure in (("snoop", GuestError), ("spin", GuestTrap), ("hog", GuestTrap),
                          ("buggy", GuestTrap)):
        hostile = load(plugins[name], caps, timeout=1, max_memory=64 * MiB)
        with pytest.raises(failure):
            hostile.transform(b"oops")
        assert good.transform(b"still here") == b"STILL HERE\n-- 2 words\n"


def test_too_little_memory_to_start_fails_at_load(plugins) -> None:
    from wasi_magic.errors import RuntimeFailure
    with pytest.raises(RuntimeFailure, match="just to start"):
        load(plugins["upper"], max_memory=1 * MiB)


# --- building worlds: keys, WIT forms and errors -------------------------------------------------


def test_cache_key_covers_wit_and_world() -> None:
    base = dict(source="x = 1", paths=(), filename="<cell>")
    one = WitSource(text=with_package("world a { export f: func(); }"))
    two = WitSource(text=with_package("world a { export f: func() -> u8; }"))
    key = world_build_key(wit=one, world="a", **base)
    assert key == world_build_key(wit=one, world="a", **base)
    assert key != world_build_key(wit=two, world="a", **base)
    assert key != world_build_key(wit=one, world="b", **base)
    assert key != world_build_key(wit=one, world="a", source="x = 2", paths=(), filename="<cell>")


def test_wit_text_and_wit_file_share_the_build(plugins) -> None:
    text = (PLUGINS / "transform.wit").read_text()
    again = build(PLUGINS / "upper.py", wit=text, world="transform")
    assert again.cached and again.key == plugins["upper"].key


def test_resolve_wit(tmp_path: Path) -> None:
    (tmp_path / "w.wit").write_text("package a:b;\nworld w {}\n")
    assert resolve_wit("w.wit", tmp_path).path == tmp_path / "w.wit"
    assert resolve_wit(tmp_path, tmp_path).path == tmp_path
    text = resolve_wit("world w { export f: func(); }", tmp_path)
    assert text.text.startswith("package wasi-magic:user;\n") and text.added_lines == 1
    assert resolve_wit("package x:y;\nworld w {}", tmp_path).added_lines == 0
    with pytest.raises(BuildError, match="no such file"):
        resolve_wit("missing.wit", tmp_path)
    with pytest.raises(BuildError, match="needs its WIT"):
        build("x = 1", world="w")


def test_wit_parse_error_is_short_and_points_at_the_line() -> None:
    source = "import wit_world\nclass WitWorld(wit_world.WitWorld):\n    pass\n"
    with pytest.raises(BuildError) as caught:
        build(source, wit="world w {\n  export f: func() -> string\n}\n", world="w")
    message = str(caught.value)
    assert message.startswith("The WIT in <wit> has an error:")
    assert "expected ';', found '}'" in message
    assert "<wit>:3:1" in message  # the user's line, not counting our package header
    assert "Stack backtrace" not in message and len(message.splitlines()) < 10


def test_unknown_world_lists_the_worlds() -> None:
    wit = "package a:b;\nworld w { export f: func(); }\nworld v { export g: func(); }\n"
    with pytest.raises(BuildError, match=r"no world named 'zz'; it defines: a:b/w, a:b/v"):
        build("import wit_world", wit=wit, world="zz")


def test_missing_export_method_is_named() -> None:
    source = "import wit_world\nclass WitWorld(wit_world.WitWorld):\n    pass\n"
    with pytest.raises(BuildError) as caught:
        build(source, wit="world w { export do-it: func() -> string; }", world="w")
    message = str(caught.value)
    assert "class WitWorld lacks a method for 'do_it'" in message
    assert len(message.splitlines()) == 1


def test_missing_export_class_message() -> None:
    log = ("Traceback (most recent call last):\nAssertionError: AttributeError: module "
           "'wasi_magic_world' has no attribute 'Text'\n\nCaused by:\n    x\n")
    message = str(explain_failure(log, WitSource(text="world w {}"), None, "kinds"))
    assert "`class Text(exports.Text)`" in message and "world 'kinds'" in message
    log = log.replace("'Text'", "'WitWorld'")
    assert "`class WitWorld(wit_world.WitWorld)`" in str(
        explain_failure(log, WitSource(text="world w {}"), None, "kinds"))


def test_guest_imports_are_checked_before_building() -> None:
    from wasi_magic.errors import GuestImportError
    with pytest.raises(GuestImportError, match="numpy"):
        build("import wit_world\nimport numpy\n", wit="world w { export f: func(); }", world="w")


# --- every limit applies to world calls too ----------------------------------------------------


def test_fuel_stops_a_world_call(plugins, tenants: Path) -> None:
    spin = load(plugins["spin"], alice(tenants), timeout=0, fuel=20_000_000)
    with pytest.raises(GuestTrap) as caught:
        spin.transform(b"x")
    assert caught.value.kind == "fuel"
    assert "stopped by the fuel limit: used all 20,000,000 units" in str(caught.value)


def test_output_cap_applies_to_world_calls(kinds_artifact) -> None:
    printed: list[str] = []
    guest = load(kinds_artifact, timeout=10, output_limit=8, stdout=printed.append)
    assert guest.greet(name="a long name that will not fit") == "greeted a long name that will not fit"
    assert guest.last_stdout.startswith("hello, a")
    assert "stdout truncated after 8 bytes" in guest.last_stdout
    assert "".join(printed) == guest.last_stdout
