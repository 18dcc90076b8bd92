"""The host-side analysis of a cell: imports found, clear errors before any build."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from wasi_magic import BuildError, GuestImportError, build, run
from wasi_magic.guest import find_imports, generate, stdlib_helpers


def refs(source: str) -> list[tuple[str, int, bool]]:
    return [(r.name, r.line, r.required) for r in find_imports(ast.parse(source))]


def test_every_import_form_is_found() -> None:
    source = (
        "import json\n"
        "from collections import abc, OrderedDict\n"
        "import xml.etree.ElementTree as ET\n"
        "def f():\n"
        "    import statistics\n"
        "    from os import path\n"
        "import importlib\n"
        "importlib.import_module('csv')\n"
        "__import__('textwrap')\n"
    )
    assert refs(source) == [
        ("json", 1, True),
        ("collections", 2, True), ("collections.abc", 2, False),
        ("collections.OrderedDict", 2, False),
        ("xml.etree.ElementTree", 3, True),
        ("statistics", 5, True),
        ("os", 6, True), ("os.path", 6, False),
        ("importlib", 7, True),
        ("csv", 8, True),
        ("textwrap", 9, True),
    ]


def test_lazy_stdlib_helpers_are_followed() -> None:
    helpers = stdlib_helpers(["json"])
    assert {"json.decoder", "json.encoder", "json.scanner"} <= set(helpers)


def test_syntax_error_points_at_the_cell_line() -> None:
    with pytest.raises(BuildError) as info:
        generate("x = 1\nprint(x\n")
    assert "line 2" in str(info.value) and "never closed" in str(info.value)


def test_unknown_module_is_named_with_its_line() -> None:
    with pytest.raises(GuestImportError) as info:
        generate("import json\n\nimport jsonn\n")
    message = str(info.value)
    assert "line 3: import jsonn" in message and "a typo?" in message
    assert "--path" in message


def test_host_only_c_extension_is_explained(tmp_path: Path) -> None:
    # A package with a compiled extension, importable on the host only.
    pkg = tmp_path / "fastthing"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_speedups.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    import sys
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(GuestImportError, match="contains compiled C extensions"):
            generate("def f():\n    import fastthing\n")
    finally:
        sys.path.remove(str(tmp_path))


def test_local_modules_are_allowed_with_path(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("X = 1\n")
    generated = generate("from helpers import X\nprint(X)\n", [tmp_path])
    assert "('helpers', 1)" in generated.files["wasi_magic_cell.py"]


def test_import_time_code_cannot_write_the_host_through_path(tmp_path: Path) -> None:
    """componentize-py mounts --path folders read-write while it pre-initializes the guest:
    the build works on a private copy, so the host's folder is never written."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "sneaky.py").write_text(
        "import os\n"
        "here = os.path.dirname(os.path.abspath(__file__))\n"
        "with open(os.path.join(here, 'planted.txt'), 'w') as out:\n"
        "    out.write('written at import time')\n"
        "VALUE = 42\n")
    before = sorted(p.name for p in lib.iterdir())
    artifact = build("import sneaky\nprint(sneaky.VALUE)\n", paths=[lib])
    assert sorted(p.name for p in lib.iterdir()) == before == ["sneaky.py"]
    assert run(artifact).stdout == "42\n"
