"""Build ahead of time what notebooks will build: ``python -m wasi_magic warm``.

Teachers (and Binder's ``postBuild``) run this once so that students never
wait for a build they did not cause. It finds the ``%%wasi`` cells of
notebooks, keys them exactly as the magic will (cell body, ``--path`` folders
resolved against the notebook's folder, which is the kernel's working
directory), and builds them into the cache; ``--quick`` cells need only the
quick-mode sandbox and ``--session`` cells only the session component, which
are always built. With ``--wasmtime-cache PATH.wasm``, the component a cell saves
with ``-o PATH.wasm`` is also compiled into wasmtime's own cache, for a notebook
that compiles it with wasmtime's API (lesson 03).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import posixpath
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from .artifact import Artifact
from .builder import ProgressCallback, build
from .errors import UsageError, WasiMagicError
from .flags import cell_parser

if TYPE_CHECKING:
    from .runtime import Runtime


@dataclass(frozen=True)
class CellToBuild:
    """One build a notebook will ask for: a ``%%wasi`` cell or a ``%wasi build`` line."""

    notebook: Path
    index: int
    source: str | Path
    paths: tuple[str, ...]
    quick: bool
    #: For ``%%wasi --world NAME`` cells: the WIT text of the ``%%wit NAME`` cell (or, for
    #: ``%wasi build F.py --wit W``, the path W) and the world.
    wit: str | Path | None = None
    world: str | None = None
    #: Where the notebook saves the component (``-o PATH``, as written), if it does.
    output: str | None = None
    #: Whether an earlier cell of the notebook starts a session or loads a typed world:
    #: the sandbox worker then keeps something a restart would lose, so this cell runs on
    #: code with epoch checks (see :meth:`~wasi_magic.runtime.Runtime.compiled`).
    after_kept: bool = False


def _cell_flags(line: str, notebook: Path, index: int) -> argparse.Namespace | None:
    """The flags of a ``%%wasi`` line, read by the magic's own table (None if unreadable:
    the magic will say what is wrong when the cell runs)."""
    from .cli import split_program_args
    try:
        flags, _ = split_program_args(shlex.split(line)[1:])
        return cell_parser().parse_args(flags)
    except (ValueError, UsageError):
        return None


def world_name(name: str, wit_text: str) -> str | None:
    """The world to build for ``%%wasi --world NAME``: NAME if the WIT declares it, else
    None (componentize-py then takes the document's only world)."""
    return name if re.search(rf"\bworld\s+{re.escape(name)}\b", wit_text) else None


def cell_body(source: str) -> tuple[str, str]:
    """Split a cell into its magic line (without ``%%``) and the body IPython passes on."""
    # IPython ends every cell with a newline before handing the body to the magic.
    if not source.endswith("\n"):
        source += "\n"
    first, _, body = source.partition("\n")
    return first[2:], body


def wasi_cells(notebook: Path) -> Iterator[CellToBuild]:
    """The ``%%wasi`` cells of ``notebook``, in order."""
    try:
        document = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"Cannot read notebook {str(notebook)!r}: {exc}") from None
    wits: dict[str, str] = {}
    kept = False  # an earlier cell started a session or loaded a typed world
    for index, cell in enumerate(document.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if source.startswith("%%wit"):
            line, body = cell_body(source)
            words = shlex.split(line)[1:]
            if words:
                wits[words[0]] = body
            continue
        if source.startswith("%%wasi"):
            line, body = cell_body(source)
            flags = _cell_flags(line, notebook, index)
            kept = kept or bool(flags is not None and flags.session)
            if flags is None or flags.p1 or flags.session:
                continue  # a session cell runs in the session component, built below
            wit = None
            if flags.world:
                if flags.wit:
                    try:
                        wit = (notebook.parent / flags.wit).read_text(encoding="utf-8")
                    except (OSError, UnicodeDecodeError):
                        continue  # the magic will say why it cannot read it when the cell runs
                else:
                    wit = wits.get(flags.world)
                if wit is None:
                    continue  # the magic will report the missing %%wit cell
            yield CellToBuild(notebook, index, body, tuple(flags.path), bool(flags.quick), wit,
                              world_name(flags.world, wit) if flags.world else None,
                              flags.output, kept)
            kept = kept or bool(flags.world)
            continue
        for text in source.splitlines():
            build_line = _build_flags(text)
            if build_line is not None:
                # Keyed as the CLI keys it: the WIT as a path, resolved against the notebook's folder.
                yield CellToBuild(notebook, index, Path(build_line.source), tuple(build_line.path),
                                  False, Path(build_line.wit) if build_line.wit else None,
                                  build_line.world,
                                  build_line.output or str(Path(build_line.source).with_suffix(".wasm")),
                                  kept)


def _build_flags(text: str) -> argparse.Namespace | None:
    """The flags of a ``%wasi build FILE.py …`` line, read by the CLI's own parser."""
    from .cli import make_parser
    text = text.strip()
    if not text.startswith("%wasi build "):
        return None
    try:
        flags = make_parser().parse_args(shlex.split(text)[1:])
    except (ValueError, UsageError):
        return None
    return flags if flags.source.endswith(".py") else None


def warm(targets: Iterable[str | Path], progress: ProgressCallback | None = None,
         report: Callable[[str], None] = print, shared: str | Path | None = None,
         pack: bool = False, wasmtime_cache: Sequence[str] = (),
         winch: Sequence[str] = ()) -> list[Artifact]:
    """Build the quick-mode sandbox and every ``%%wasi`` cell of the given notebooks, and
    compile them into the cache as the sandbox worker runs them (see :func:`warm_compile`).

    ``targets`` are notebooks or folders (searched for ``*.ipynb``). A cell
    that cannot be built (e.g. a lesson showing a build error on purpose) is
    reported and skipped. With ``shared`` (a folder), everything is then copied into
    that shared cache, for every user of the server (see :mod:`wasi_magic.shared_cache`).
    ``wasmtime_cache`` holds patterns (``fnmatch``, e.g. ``build/plugin.wasm`` or
    ``build/*.wasm``) of ``-o`` paths, as the notebooks write them: each component saved
    to a matching path is also compiled into wasmtime's own cache, for a notebook that
    compiles it with wasmtime's API (see :mod:`wasi_magic.wasmtime_cache`). ``winch`` holds
    such patterns too: each component saved to a matching path is also compiled with Winch,
    for a notebook that compares the two compilers (lesson 04: a ``Runtime(strategy="winch")``
    then loads it, and reads how long its compile took from the cache's record).
    With ``pack``, the cache filled (the shared one, with ``shared``) is then packed (see
    :mod:`wasi_magic.cache_pack`).
    """
    if shared is not None:
        from .shared_cache import open_for_filling
        open_for_filling(Path(shared))  # refuse an unsafe folder before building anything
    cells = [cell for notebook in _notebooks(targets) for cell in wasi_cells(notebook)
             if not cell.quick]
    _check_patterns("--wasmtime-cache", wasmtime_cache, cells)  # before building anything
    _check_patterns("--winch", winch, cells)
    runtime = warm_runtime()
    built = [build("", quick=True, progress=progress)]
    # Compiled too, into the compiled-component cache (both forms: quick cells run beside
    # sessions and typed worlds as well).
    warm_compile(runtime, built[0], kept_too=True)
    report(f"quick-mode sandbox: {'cached' if built[0].cached else 'built'}")
    from .sessions import session_component
    built.append(session_component(progress=progress))
    # Sessions keep their instance, on code with epoch checks (a session started with
    # --fuel compiles its fuel-metering form on first use).
    warm_compile(runtime, built[-1], one_shot=False)
    report(f"session sandbox: {'cached' if built[-1].cached else 'built'}")
    engine = None
    for cell in cells:
        where = f"{cell.notebook.name} cell {cell.index}"
        try:
            artifact = build(cell.source, paths=cell.paths, cwd=cell.notebook.parent,
                             progress=progress, wit=cell.wit, world=cell.world)
        except WasiMagicError as exc:
            report(f"{where}: not built ({str(exc).splitlines()[0]})")
            continue
        # A typed world is loaded and kept; a component saved with -o may be loaded by the
        # notebook's own code (load(), %wasi inspect, a Runtime in the kernel).
        warm_compile(runtime, artifact, one_shot=not cell.world,
                     kept_too=cell.after_kept or cell.output is not None)
        built.append(artifact)
        report(f"{where}: {'cached' if artifact.cached else 'built'}")
        if _matches(cell.output, winch):
            runtime.component(artifact)  # (warm's runtime compiles with Winch itself)
            report(f"{where}: {cell.output} compiled with Winch too")
        if _matches(cell.output, wasmtime_cache):
            from . import wasmtime_cache as own_cache
            if engine is None:
                engine = own_cache.notebook_engine()
            try:
                own_cache.fill(engine, artifact.path)
            except WasiMagicError as exc:
                report(f"{where}: {cell.output} not compiled into wasmtime's cache ({exc})")
                continue
            report(f"{where}: {cell.output} compiled into wasmtime's cache")
    target = runtime.cache
    if shared is not None:
        from .shared_cache import export, open_for_filling
        export(built, Path(shared), runtime.cache, report)
        target = open_for_filling(Path(shared))
    if pack:
        from .cache_pack import pack_cache
        from .output import format_size
        before, after = pack_cache(target, report)
        report(f"packed {target.root}: {format_size(before)} → {format_size(after)}")
    return built


def _matches(output: str | None, patterns: Sequence[str]) -> bool:
    """Whether the ``-o`` path ``output`` (as a notebook writes it) matches one of ``patterns``."""
    return output is not None and any(
        fnmatch.fnmatchcase(posixpath.normpath(output), posixpath.normpath(pattern))
        for pattern in patterns)


def _check_patterns(flag: str, patterns: Sequence[str], cells: Sequence[CellToBuild]) -> None:
    """Refuse a ``flag`` pattern (``--wasmtime-cache``, ``--winch``) that no notebook's ``-o``
    path matches."""
    for pattern in patterns:
        if not any(_matches(cell.output, [pattern]) for cell in cells):
            written = sorted({cell.output for cell in cells if cell.output})
            raise UsageError(
                f"{flag} {pattern!r}: no cell of these notebooks saves a component "
                f"there with -o. They save: {', '.join(written) or 'none'}. Give one of these "
                f"paths as the notebook writes it (relative to its folder), or a pattern like "
                f"'build/*.wasm'.")


def warm_runtime() -> "Runtime":
    """The runtime warm compiles with (its cache is the one filled)."""
    from .runtime import Runtime
    return Runtime(strategy="winch", tier_up=False)


def warm_compile(runtime: "Runtime", artifact: Artifact, *, one_shot: bool = True,
                 kept_too: bool = False) -> None:
    """Compile ``artifact`` as wasi-magic will run it, so that no student's kernel
    recompiles it. With tier-up on (the default), Cranelift code: for one-shot runs in the
    sandbox worker without epoch checks; for what is kept or loaded (``one_shot=False``:
    sessions, typed worlds) and, with ``kept_too``, for runs beside those, with them (see
    :meth:`~wasi_magic.runtime.Runtime.loaded`). With tier-up off, Winch code."""
    from . import tierup
    if not tierup.enabled():
        runtime.component(artifact)
        return
    if one_shot:
        runtime.precompile(artifact)
    if kept_too or not one_shot:
        runtime.precompile(artifact, epochs=True)


def _notebooks(targets: Iterable[str | Path]) -> Iterator[Path]:
    for target in targets:
        path = Path(target)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        elif path.suffix == ".ipynb" and path.is_file():
            yield path
        else:
            raise UsageError(f"{str(path)!r}: expected a notebook (.ipynb) or a folder of them.")
