"""The ``wasmtime``-like command line, shared by ``python -m wasi_magic`` and ``%wasi``.

Subcommands: ``run``, ``build``, ``inspect`` and ``cache``. Program arguments
follow ``--``, as with ``wasmtime run``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Callable, Sequence, TextIO

from .builder import BuildProgress, build, default_cache, forget_memo
from .capabilities import CAPABILITY_ARGUMENTS, Capabilities
from .errors import UsageError, WasiMagicError
from .inspect import inspect_wasm, read_wasm, wasm_kind
from .output import format_size
from .limits import LIMIT_ARGUMENTS, Limits
from .preview1 import run_module
from .runtime import default_runtime


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            raise UsageError(message.strip())
        raise _HelpShown()


class _HelpShown(Exception):
    """--help was printed; nothing else to do."""


def add_capability_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--dir``, ``--env``, ``--stdin``, ``--stdin-text`` to ``parser``."""
    for names, options in CAPABILITY_ARGUMENTS:
        parser.add_argument(*names, **options)


def make_parser(prog: str = "python -m wasi_magic") -> argparse.ArgumentParser:
    """The command-line parser (program arguments after ``--`` are split off first)."""
    parser = _Parser(prog=prog, description="Build and run WASI components from Python.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    run = sub.add_parser("run", help="run a component, or a WASI Preview 1 module (.wasm or .wat): "
                                     "run PATH.wasm [flags] [-- args]")
    run.add_argument("wasm", metavar="PATH.wasm")
    add_capability_arguments(run)
    for names, options in LIMIT_ARGUMENTS:
        run.add_argument(*names, **options)

    make = sub.add_parser("build", help="build a Python file: build FILE.py -o OUT.wasm "
                                        "[--wit FILE --world NAME]")
    make.add_argument("source", metavar="FILE.py")
    make.add_argument("-o", "--output", metavar="OUT.wasm",
                      help="where to write the component (default: FILE.wasm)")
    make.add_argument("--path", action="append", default=[], metavar="DIR",
                      help="a folder of pure-Python modules the program imports (repeatable)")
    make.add_argument("--wit", metavar="FILE",
                      help="build a typed component for a world of this WIT file (or folder)")
    make.add_argument("--world", metavar="NAME",
                      help="the world of --wit to build (optional if it declares one)")

    look = sub.add_parser("inspect", help="what a .wasm is and what it imports and exports")
    look.add_argument("wasm", metavar="PATH.wasm")
    look.add_argument("--core", action="store_true",
                      help="list the core modules inside a component and their imports")

    warm = sub.add_parser("warm", help="build the quick-mode sandbox and the %%%%wasi cells "
                                       "of notebooks ahead of time")
    warm.add_argument("targets", nargs="*", metavar="NOTEBOOK.ipynb|DIR")

    cache = sub.add_parser("cache", help="cache info | cache clear")
    cache.add_argument("action", choices=("info", "clear"))
    return parser


def split_program_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` at the first ``--``: (flags, program arguments)."""
    argv = list(argv)
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1:]
    return argv, []


def execute(argv: Sequence[str], *, out: TextIO | None = None, err: TextIO | None = None,
            prog: str = "python -m wasi_magic",
            progress: Callable[[BuildProgress], None] | None = None) -> int:
    """Run one command; returns the exit status. Raises :class:`WasiMagicError` on bad input."""
    out = out or sys.stdout
    err = err or sys.stderr
    flags, program_args = split_program_args(argv)
    parser = make_parser(prog)
    try:
        ns = parser.parse_args(flags)
    except _HelpShown:
        return 0
    if ns.command == "run":
        caps = Capabilities.parse(ns.dir, ns.env, program_args, ns.stdin_file, ns.stdin_text)
        path = Path(ns.wasm)
        if not path.is_file():
            raise UsageError(f"{ns.wasm!r}: no such file.")
        limits = Limits.parse(ns.timeout, ns.fuel, ns.max_memory, ns.max_output, ns.wasm_options)
        if path.suffix.lower() in (".wat", ".wast"):
            # WebAssembly text, as `wasmtime run x.wat` takes it: a Preview 1 module.
            result = run_module(read_wasm(path), caps, name=path.with_suffix(".wasm").name,
                                stdout=out.write, stderr=err.write, limits=limits)
        else:
            with path.open("rb") as file:
                header = file.read(8)
            core = len(header) == 8 and header[:4] == b"\0asm" and wasm_kind(header) == "module"
            # A core module is a WASI Preview 1 program; anything else goes to the
            # component runtime, which also explains files that are not WebAssembly.
            runner = run_module if core else default_runtime().run
            result = runner(path, caps, stdout=out.write, stderr=err.write, limits=limits)
        if result.trap:
            err.write(result.trap + "\n")
        return result.status
    if program_args:
        raise UsageError(f"'{ns.command}' takes no program arguments after --.")
    if ns.command == "build":
        source = Path(ns.source)
        if source.suffix != ".py" or not source.is_file():
            raise UsageError(f"{ns.source!r}: expected an existing Python file (FILE.py).")
        if ns.world and not ns.wit:
            raise UsageError("--world NAME needs --wit FILE: the WIT that declares the world.")
        artifact = build(source, paths=ns.path, progress=progress,
                         wit=Path(ns.wit) if ns.wit else None, world=ns.world)
        target = Path(ns.output) if ns.output else source.with_suffix(".wasm")
        shutil.copyfile(artifact.path, target)
        how = "cached" if artifact.cached else f"built in {artifact.build_seconds:.1f} s"
        out.write(f"{how} · {format_size(artifact.size)} → {target}\n")
        return 0
    if ns.command == "warm":
        from .warm import warm
        warm(ns.targets, progress=progress, report=lambda line: out.write(line + "\n"))
        return 0
    if ns.command == "inspect":
        if ns.core:
            from .inspect import describe_core_modules
            out.write(describe_core_modules(ns.wasm) + "\n")
        else:
            out.write(inspect_wasm(ns.wasm).format() + "\n")
        return 0
    cache = default_cache()
    if ns.action == "clear":
        freed = cache.clear()
        forget_memo()
        default_runtime().forget()
        out.write(f"cleared {format_size(freed)} from {cache.root}\n")
    else:
        info = cache.info()
        out.write(f"cache: {info['path']}{'' if info['enabled'] else ' (disabled)'}\n"
                  f"  builds:   {info['builds']['entries']} components, "
                  f"{format_size(info['builds']['bytes'])}\n"
                  f"  compiled: {info['compiled']['entries']} compiled components, "
                  f"{format_size(info['compiled']['bytes'])}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m wasi_magic``."""
    shown: list[str] = []

    def show(p: BuildProgress) -> None:
        if not sys.stderr.isatty():  # a log file gets the one-line results only
            return
        estimate = f" of ~{p.estimate:.0f} s" if p.estimate else ""
        text = f"\rbuilding with {p.stage}: {p.elapsed:.0f} s{estimate}   "
        if not shown or shown[-1] != text:
            sys.stderr.write(text)
            sys.stderr.flush()
            shown.append(text)

    try:
        try:
            return execute(sys.argv[1:] if argv is None else argv, progress=show)
        finally:
            if shown:
                sys.stderr.write("\n")
    except WasiMagicError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
