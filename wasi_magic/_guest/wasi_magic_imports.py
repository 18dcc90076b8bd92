"""Which modules a cell imports: one scan, run by the kernel's Python or the guest's.

The host builds a cell's component with every module the cell imports, so it
must read the cell's imports before the build. The kernel's Python may be older
than the guest's (3.11 on Binder, 3.14 in the guest) and unable to parse syntax
the guest accepts; the host then sends this module's text and the cell to the
quick-mode sandbox, where the guest's own Python parses the cell with the same
code (:func:`wasi_magic.guest.cell_imports`). So this module uses the standard
library only and works on every Python the two may be.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ImportRef:
    """A module the cell imports, and the cell line that asks for it."""

    name: str
    line: int
    required: bool = True


def find_imports(tree: ast.AST) -> list[ImportRef]:
    """Every absolute import in ``tree``, at any depth, in source order.

    ``import a.b`` needs ``a.b``; ``from a import b`` needs ``a`` and, if ``b``
    is a submodule, ``a.b`` (optional, since ``b`` may be a plain name);
    ``importlib.import_module("x")`` and ``__import__("x")`` with a literal
    string count too.
    """
    refs: list[ImportRef] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            refs += [ImportRef(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            refs.append(ImportRef(node.module, node.lineno))
            refs += [ImportRef(f"{node.module}.{alias.name}", node.lineno, required=False)
                     for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            if node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                refs.append(ImportRef(node.args[0].value, node.lineno))
    refs.sort(key=lambda ref: ref.line)
    return refs


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def scan(source: str, filename: str) -> str:
    """The cell's imports, or its syntax error, as JSON (what the guest prints)."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        return json.dumps({"syntax": [exc.msg, exc.lineno, exc.offset, exc.text]})
    return json.dumps({"imports": [[ref.name, ref.line, ref.required]
                                   for ref in find_imports(tree)]})
