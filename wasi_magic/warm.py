"""Build ahead of time what notebooks will build: ``python -m wasi_magic warm``.

Teachers (and Binder's ``postBuild``) run this once so that students never
wait for a build they did not cause. It finds the ``%%wasi`` cells of
notebooks, keys them exactly as the magic will (cell body, ``--path`` folders
resolved against the notebook's folder, which is the kernel's working
directory), and builds them into the cache; ``--quick`` cells need only the
quick-mode sandbox, which is always built.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .builder import Artifact, ProgressCallback, build
from .errors import UsageError, WasiMagicError


@dataclass(frozen=True)
class CellToBuild:
    """One ``%%wasi`` cell found in a notebook."""

    notebook: Path
    index: int
    source: str
    paths: tuple[str, ...]
    quick: bool


def cell_body(source: str) -> tuple[str, str]:
    """Split a cell into its magic line (without ``%%``) and the body IPython passes on."""
    first, _, body = source.partition("\n")
    return first[2:], body


def wasi_cells(notebook: Path) -> Iterator[CellToBuild]:
    """The ``%%wasi`` cells of ``notebook``, in order."""
    try:
        document = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"Cannot read notebook {str(notebook)!r}: {exc}") from None
    for index, cell in enumerate(document.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if not source.startswith("%%wasi"):
            continue
        line, body = cell_body(source)
        words = shlex.split(line)[1:]
        flags = words[: words.index("--")] if "--" in words else words
        paths = tuple(flags[i + 1] for i, word in enumerate(flags[:-1]) if word == "--path")
        quick = "--quick" in flags
        yield CellToBuild(notebook, index, body, paths, quick)


def warm(targets: Iterable[str | Path], progress: ProgressCallback | None = None,
         report: Callable[[str], None] = print) -> list[Artifact]:
    """Build the quick-mode sandbox and every ``%%wasi`` cell of the given notebooks.

    ``targets`` are notebooks or folders (searched for ``*.ipynb``). A cell
    that cannot be built (e.g. a lesson showing a build error on purpose) is
    reported and skipped.
    """
    built = [build("", quick=True, progress=progress)]
    report(f"quick-mode sandbox: {'cached' if built[0].cached else 'built'}")
    for notebook in _notebooks(targets):
        for cell in wasi_cells(notebook):
            if cell.quick:
                continue
            where = f"{notebook.name} cell {cell.index}"
            try:
                artifact = build(cell.source, paths=cell.paths, cwd=notebook.parent,
                                 progress=progress)
            except WasiMagicError as exc:
                report(f"{where}: not built ({str(exc).splitlines()[0]})")
                continue
            built.append(artifact)
            report(f"{where}: {'cached' if artifact.cached else 'built'}")
    return built


def _notebooks(targets: Iterable[str | Path]) -> Iterator[Path]:
    for target in targets:
        path = Path(target)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        elif path.suffix == ".ipynb" and path.is_file():
            yield path
        else:
            raise UsageError(f"{str(path)!r}: expected a notebook (.ipynb) or a folder of them.")
