"""The ``wasmtime``-like command line, shared by ``python -m wasi_magic`` and ``%wasi``.

Subcommands: ``run``, ``build``, ``inspect`` and ``cache``. Program arguments
follow ``--``, as with ``wasmtime run``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TextIO

from .binary import is_core_module
from .capabilities import CAPABILITY_ARGUMENTS, Capabilities
from .errors import UsageError, WasiMagicError, path_error
from .limits import LIMIT_ARGUMENTS, Limits
from .output import format_size

if TYPE_CHECKING:
    from .builder import BuildProgress
    from .result import RunResult

# Only what `run` needs is imported up front: `python -m wasi_magic run x.wat` should
# start about as fast as a plain wasmtime-py script. The builder and the inspector load
# when their commands run.

#: Runs a guest: ``(target, caps, *, limits, stdout, stderr, module, name) -> RunResult``.
Runner = Callable[..., "RunResult"]


def run_in_process(target: Any, caps: Capabilities, *, limits: Limits,
                   stdout: Callable[[str], Any], stderr: Callable[[str], Any],
                   module: bool = False, name: str | None = None) -> "RunResult":
    """Run a component or a Preview 1 module with Wasmtime in this process."""
    if module:
        from .preview1 import run_module
        return run_module(target, caps, limits=limits, name=name, stdout=stdout, stderr=stderr)
    from .runtime import Runtime
    # One run, then the process ends: no instance pool to keep warm, and no background
    # Cranelift compile that the exit would only cut short.
    return Runtime(tier_up=False).run(target, caps, limits=limits, stdout=stdout, stderr=stderr)


#: The exit status of ``run`` when the guest traps or hits a limit: 134, as the
#: wasmtime CLI exits on Unix (128 + SIGABRT). Otherwise the guest's own status
#: (0 or 1 for a component; any ``proc_exit`` value for a Preview 1 module); 2 for
#: bad input; 130 for Ctrl-C.
TRAP_STATUS = 134


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, sized without importing shutil (~1.6 ms of start-up)."""

    def __init__(self, prog: str, **options: Any) -> None:
        if options.get("width") is None:
            import os
            try:
                options["width"] = os.get_terminal_size(sys.stdout.fileno()).columns - 2
            except (OSError, ValueError, AttributeError):
                options["width"] = 78
        super().__init__(prog, **options)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`UsageError` instead of exiting."""

    def __init__(self, *args: Any, **options: Any) -> None:
        options.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **options)

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
    warm.add_argument("--shared", metavar="DIR",
                      help="then copy it all into DIR, a read-only cache for every user of "
                           "this server (set WASI_MAGIC_SHARED_CACHE=DIR for them)")
    warm.add_argument("--pack", action="store_true",
                      help="then pack the cache (the shared one, with --shared): see cache pack")
    warm.add_argument("--wasmtime-cache", action="append", default=[], metavar="PATH.wasm",
                      help="also compile the component a notebook saves with -o PATH.wasm "
                           "(as written there; a pattern such as 'build/*.wasm' is fine; "
                           "repeatable) into wasmtime's own cache (~/.cache/wasmtime), as an "
                           "engine made from Config() with cache = True compiles it: for "
                           "notebooks that compile it with wasmtime's API")
    warm.add_argument("--winch", action="append", default=[], metavar="PATH.wasm",
                      help="also compile the component a notebook saves with -o PATH.wasm "
                           "(a pattern is fine; repeatable) with Winch, into this cache: "
                           "for notebooks that compare Winch with Cranelift")

    cache = sub.add_parser("cache", help="cache info | cache clear | cache pack")
    cache.add_argument("action", choices=("info", "clear", "pack"))
    cache.add_argument("--shared", metavar="DIR",
                       help="with pack: pack the shared cache DIR (filled by warm --shared) "
                            "instead of your own")
    return parser


#: The ``run`` flags; each takes a value (``--dir D`` or ``--dir=D``).
_RUN_FLAGS = frozenset(name for names, _ in (*CAPABILITY_ARGUMENTS, *LIMIT_ARGUMENTS)
                       for name in names)


def split_run_args(words: Sequence[str]) -> tuple[list[str], list[str]]:
    """The words after ``run``: (wasi-magic's flags and the module, the program's arguments).

    As ``wasmtime run`` reads them: the first word that is neither one of our
    flags (with its value) nor the module begins the program's arguments, so
    ``run x.wasm a b c`` passes ``a b c``. Our flags may also follow the module
    directly (``run x.wat --dir data``). With ``--``, everything after it goes
    to the program, whatever it looks like.
    """
    words = list(words)
    if "--" in words:
        return split_program_args(words)
    flags: list[str] = []
    module_seen = False
    at = 0
    while at < len(words):
        word = words[at]
        if word.split("=", 1)[0] in _RUN_FLAGS:
            takes = 1 if "=" not in word else 0
            flags += words[at:at + 1 + takes]
            at += 1 + takes
            continue
        if module_seen:
            return flags, words[at:]
        module_seen = not word.startswith("-")  # an unknown flag is argparse's to report
        flags.append(word)
        at += 1
    return flags, []


def split_program_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` at the first ``--``: (flags, program arguments)."""
    argv = list(argv)
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1:]
    return argv, []


def execute(argv: Sequence[str], *, out: TextIO | None = None, err: TextIO | None = None,
            prog: str = "python -m wasi_magic",
            progress: "Callable[[BuildProgress], None] | None" = None,
            runner: Runner | None = None,
            interface: Callable[[Path], Any] | None = None) -> int:
    """Run one command; returns the exit status. Raises :class:`WasiMagicError` on bad input.

    ``runner`` runs guests, and ``interface`` reads a component's imports and exports:
    the sandbox worker's for ``%wasi`` in a kernel; by default, Wasmtime in this
    process (a command-line process is itself disposable).
    """
    runner = runner if runner is not None else run_in_process
    out = out or sys.stdout
    err = err or sys.stderr
    if argv[:1] == ["run"]:
        run_flags, program_args = split_run_args(argv[1:])
        flags = ["run", *run_flags]
    else:
        flags, program_args = split_program_args(argv)
    parser = make_parser(prog)
    try:
        ns = parser.parse_args(flags)
    except _HelpShown:
        return 0
    if ns.command == "run":
        caps = Capabilities.parse(ns.dir, ns.env, program_args, ns.stdin_file, ns.stdin_text,
                                  http=ns.allow_http)
        path = Path(ns.wasm)
        if not path.exists():
            raise UsageError(f"{ns.wasm!r}: no such file.")
        if not path.is_file():
            raise UsageError(f"{ns.wasm!r} is not a regular file (a device, a FIFO or a "
                             f"folder): give the path of a .wasm or .wat file.")
        limits = Limits.parse(ns.timeout, ns.fuel, ns.max_memory, ns.max_output, ns.wasm_options)
        if path.suffix.lower() in (".wat", ".wast"):
            # WebAssembly text, as `wasmtime run x.wat` takes it: a Preview 1 module.
            from .inspect import read_wasm
            result = runner(read_wasm(path), caps, name=path.with_suffix(".wasm").name,
                            module=True, stdout=out.write, stderr=err.write, limits=limits)
        else:
            # A core module is a WASI Preview 1 program; anything else goes to the
            # component runtime, which also explains files that are not WebAssembly.
            result = runner(path, caps, module=is_core_module(path), stdout=out.write,
                            stderr=err.write, limits=limits)
        if result.trap:
            err.write(result.trap + "\n")
            return TRAP_STATUS
        return result.status
    if program_args:
        raise UsageError(f"'{ns.command}' takes no program arguments after --.")
    if ns.command == "build":
        source = Path(ns.source)
        if source.suffix != ".py" or not source.is_file():
            raise UsageError(f"{ns.source!r}: expected an existing Python file (FILE.py).")
        if ns.world and not ns.wit:
            raise UsageError("--world NAME needs --wit FILE: the WIT that declares the world.")
        from .builder import build
        artifact = build(source, paths=ns.path, progress=progress,
                         wit=Path(ns.wit) if ns.wit else None, world=ns.world)
        from .capabilities import write_host_file
        target = write_host_file(ns.output or str(source.with_suffix(".wasm")), artifact.path)
        how = "cached" if artifact.cached else f"built in {artifact.build_seconds:.1f} s"
        out.write(f"{how} · {format_size(artifact.size)} → {target}\n")
        return 0
    if ns.command == "warm":
        from .warm import warm
        warm(ns.targets, progress=progress, report=lambda line: out.write(line + "\n"),
             shared=ns.shared, pack=ns.pack, wasmtime_cache=ns.wasmtime_cache,
             winch=ns.winch)
        return 0
    if ns.command == "inspect":
        if ns.core:
            from .inspect import describe_core_modules
            out.write(describe_core_modules(ns.wasm) + "\n")
        else:
            from .inspect import inspect_wasm
            out.write(inspect_wasm(ns.wasm, interface).format() + "\n")
        return 0
    from .builder import default_cache, forget_memo
    if ns.shared is not None and ns.action != "pack":
        raise UsageError(f"--shared goes with 'cache pack' only (not 'cache {ns.action}').")
    cache = default_cache()
    if ns.action == "pack":
        from .cache_pack import pack_cache
        if ns.shared is not None:
            from .shared_cache import KEY_FILE, open_for_filling
            if not (Path(ns.shared).expanduser() / KEY_FILE).is_file():
                raise UsageError(f"{ns.shared!r} is not a shared cache (it has no {KEY_FILE}): "
                                 f"fill it first with: python -m wasi_magic warm --shared "
                                 f"{ns.shared} NOTEBOOKS")
            cache = open_for_filling(Path(ns.shared))
        before, after = pack_cache(cache, report=lambda line: out.write(line + "\n"))
        forget_memo()  # remembered paths of data files that are gone now
        out.write(f"packed {cache.root}: {format_size(before)} → {format_size(after)}\n")
    elif ns.action == "clear":
        freed = cache.clear()
        forget_memo()
        from .runtime import forget_compiled
        from .sandbox.supervisor import forget_everywhere
        forget_compiled()
        forget_everywhere()
        out.write(f"cleared {format_size(freed)} from {cache.root}\n")
    else:
        info = cache.info()
        out.write(f"cache: {info['path']}{'' if info['enabled'] else ' (disabled)'}\n"
                  f"  builds:   {info['builds']['entries']} components, "
                  f"{_section_bytes(info['builds'])}\n"
                  f"  compiled: {info['compiled']['entries']} compiled components, "
                  f"{_section_bytes(info['compiled'])}\n")
        from .shared_cache import shared_cache
        shared = shared_cache()
        if shared is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # said here instead
                usable = shared.usable()
            out.write(f"shared cache (read-only): {shared.root}"
                      f"{'' if usable else f' — not used: {shared.problem}'}\n")
    return 0


def _section_bytes(section: dict[str, int]) -> str:
    """A section's size for ``cache info``: its bytes, and how many are packed if any are."""
    text = format_size(section["bytes"])
    if section["packed_bytes"]:
        text += (f" ({format_size(section['packed_bytes'])} packed, "
                 f"{format_size(section['unpacked_bytes'])} unpacked)")
    return text


# C0 controls but newline and tab, DEL and the C1 controls: what a terminal would act on.
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))
             if chr(code) not in "\n\t"}


class _Escaped:
    """A terminal stream that shows control characters (``\\x1b`` …) instead of obeying them.

    Guest output is untrusted: escape sequences could clear the screen, retitle
    the window or write the clipboard (OSC 52). Pipes and files get it raw.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(text.translate(_CONTROLS))

    def flush(self) -> None:
        self._stream.flush()


def _terminal_safe(stream: TextIO) -> TextIO:
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    return _Escaped(stream) if terminal else stream  # type: ignore[return-value]


def _end_blocked_guest(deadline: Any) -> None:
    """The guest did not stop when told to: it is blocked in a host call. This process
    is its sandbox, so it ends here, with the one line the kernel's sandbox would give."""
    import os
    import time
    from .sandbox.stops import blocked_text
    why = "timeout" if deadline.timed_out else "interrupt"
    seconds = time.monotonic() - deadline.started if deadline.started is not None else None
    sys.stderr.write(blocked_text(why, seconds, deadline.timeout, "wasi-magic ended it") + "\n")
    sys.stderr.flush()
    os._exit(TRAP_STATUS if why == "timeout" else 130)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m wasi_magic``.

    ``run`` runs the guest in this process: the process is its sandbox. Wasmtime stops
    a guest's wasm code at its deadline or on Ctrl-C; a guest still running
    :data:`~wasi_magic.sandbox.stops.GRACE` seconds later is blocked in a host call,
    and the process ends (status 134 for the time limit, 130 for Ctrl-C).
    """
    shown: list[str] = []
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["run"]:
        from .sandbox.stops import GRACE
        from .sandbox.store import watch_blocked
        watch_blocked(GRACE, _end_blocked_guest)

    def show(p: "BuildProgress") -> None:
        if not sys.stderr.isatty():  # a log file gets the one-line results only
            return
        estimate = f" of ~{p.estimate:.0f} s" if p.estimate else ""
        text = f"\rbuilding with {p.stage}: {p.elapsed:.0f} s{estimate}   "
        if not shown or shown[-1] != text:
            sys.stderr.write(text)
            sys.stderr.flush()
            shown.append(text)

    out, err = _terminal_safe(sys.stdout), _terminal_safe(sys.stderr)
    try:
        try:
            return execute(args, progress=show, out=out, err=err)
        finally:
            if shown:
                sys.stderr.write("\n")
    except WasiMagicError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except OSError as exc:
        error = path_error(exc)
        if error is None:
            raise
        sys.stderr.write(f"error: {error}\n")
        return 2
    except KeyboardInterrupt:
        return 130
