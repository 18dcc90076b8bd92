"""The IPython adapter: ``%%wasi`` (run a cell in a WASI sandbox) and ``%wasi`` (commands).

A thin layer: it parses flags, shows progress, and streams output; the work
is done by :mod:`.session` (the one "run a cell" pipeline), :mod:`.cli` and
the sandbox worker.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Enum, Float, Unicode

from . import cli
from .builder import BuildProgress, build
from .session import prepare_cell, run_prepared
from .sessions import Sessions
from .capabilities import Capabilities, write_host_file
from .flags import CELL_ARGUMENTS
from .text import check_text
from .errors import UsageError, WasiMagicError, path_error
from .output import format_size
from .limits import DEFAULT_TIMEOUT, Limits, parse_duration, parse_size
from .result import BuildingResult, RunResult
from .sandbox.supervisor import default_sandbox


# A cell is run again and again with the same line (edits change its body): its words
# and flags are parsed once (argparse alone takes ~0.1 ms, a tenth of a quick run).

@functools.lru_cache(maxsize=64)
def _split(line: str) -> tuple[str, ...]:
    """The line's words, as IPython's ``arg_split`` (POSIX) cuts them."""
    from IPython.utils.process import arg_split
    return tuple(arg_split(line, posix=True))


@functools.lru_cache(maxsize=64)
def _parsed_once(parser: Any, flags: tuple[str, ...]) -> argparse.Namespace:
    return parser.parse_args(list(flags))


def _parsed(parser: Any, flags: tuple[str, ...]) -> argparse.Namespace:
    """``parser.parse_args(flags)``, remembered; each caller gets its own copy (and its
    own lists) to change as it likes. A bad flag raises each time (errors are not kept)."""
    known = vars(_parsed_once(parser, flags))
    return argparse.Namespace(**{name: list(value) if isinstance(value, list) else value
                                 for name, value in known.items()})


class GuestFailed(WasiMagicError):
    """Raised by ``--raise-error`` when the guest ends with a non-zero status."""


def _cell_arguments(func: Any) -> Any:
    """The ``%%wasi`` flags, from the one table the core shares (:mod:`.flags`)."""
    for names, options in reversed(CELL_ARGUMENTS):
        func = argument(*names, **options)(func)
    return func


class Status:
    """A one-line live status: a display that is updated in place in a notebook,
    a carriage-return line on stderr in a terminal."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._handle: Any = None
        self._dirty = False
        self._last = ""

    @functools.cached_property
    def _terminal(self) -> bool:
        # (asked only when something is shown: a quiet cell never needs it)
        return not _in_kernel()

    def show(self, text: str) -> None:
        if not self.enabled or text == self._last:
            return
        self._last = text
        if self._terminal:
            sys.stderr.write("\r" + text.ljust(60))
            sys.stderr.flush()
            self._dirty = True
            return
        from IPython.display import display
        bundle = {"text/plain": text}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)

    def progress(self, p: BuildProgress) -> None:
        estimate = f" of ~{p.estimate:.0f} s" if p.estimate else ""
        self.show(f"wasi: building with {p.stage} · {p.elapsed:.0f} s{estimate}")

    def done(self, text: str) -> None:
        self.show(text)
        if self._dirty and self._terminal:
            sys.stderr.write("\n")
            self._dirty = False


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
        shell = get_ipython()
    except ImportError:  # pragma: no cover
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


MODES = ("build", "quick")
#: What a cell says when Interrupt stops its build or compile (the cache keeps no trace of it).
BUILD_INTERRUPTED = "build interrupted: nothing was run or cached; run the cell again to build it"


@magics_class
class WasiMagics(Magics):
    """``%%wasi`` and ``%wasi``."""

    # The session's settings: `%wasi config` changes them, and so can ipython_config.py
    # (c.WasiMagics.mode = "quick"), as with IPython's own %%script.
    mode = Enum(MODES, default_value="build",
                help="How a %%wasi cell runs by default: 'build' (its own component) or "
                     "'quick' (the quick-mode sandbox, no build).").tag(config=True)
    timeout = Float(DEFAULT_TIMEOUT,
                    help="Default wall-clock limit of a cell, in seconds (0: none); "
                         "--timeout overrides it.").tag(config=True)
    max_output = Unicode("1MiB",
                         help="Default cap on what one output stream keeps, e.g. 64KiB or 4MiB; "
                              "--max-output overrides it.").tag(config=True)

    background_builds = Bool(True, help="Run a build-mode cell whose imports are all in the "
                             "quick-mode runner there at once, and build its component in the "
                             "background (False: every build-mode cell waits for its build)."
                             ).tag(config=True)
    unpack_ahead = Bool(True, help="When the kernel was started for a notebook, unpack from a "
                        "packed cache, while the student reads, what its cells will load "
                        "(see wasi_magic.ahead; False: each cell unpacks its own on first use)."
                        ).tag(config=True)

    def __init__(self, shell: Any = None) -> None:
        super().__init__(shell)
        #: WIT documents stored by ``%%wit NAME`` cells.
        self.wits: dict[str, str] = {}
        #: Sessions named by ``%%wasi --session NAME`` cells.
        self.sessions = Sessions()

    @magic_arguments()
    @_cell_arguments
    @no_var_expand
    @cell_magic("wasi")
    def wasi_cell(self, line: str, cell: str) -> None:
        """Build the cell into a WASI Preview 2 component and run it in a sandbox.

        Usage::

            %%wasi [--dir HOST::GUEST[::ro]] [--env NAME[=VALUE]] [options] [-- ARGS...]

        The cell is compiled by componentize-py into a ``wasi:cli`` command and
        run by Wasmtime in the sandbox worker (never in the kernel). The guest can touch only what the flags
        grant: nothing by default. Program arguments follow ``--``.
        """
        try:
            self._run_cell(line, cell)
        except WasiMagicError as exc:
            raise _shown(exc) from None
        except OSError as exc:
            raise _shown_os(exc) from None

    def _run_cell(self, line: str, cell: str) -> None:
        check_text(cell, "The cell")  # (in every mode, before a session starts or a build)
        flags, program_args = cli.split_program_args(self._words(line))
        ns = _parsed(self.wasi_cell.parser, tuple(flags))
        if ns.panel and (ns.out or ns.err or ns.result or ns.raise_error):
            raise UsageError("--panel shows the output below the panel; it cannot be combined "
                             "with --out, --err, --result or --raise-error.")
        caps = Capabilities.parse(ns.dir, ns.env, program_args, ns.stdin_file, ns.stdin_text,
                                  http=ns.allow_http)
        limits = Limits.parse(ns.timeout, ns.fuel, ns.max_memory, ns.max_output, ns.wasm_options,
                              defaults=self.session_limits())
        status = Status(enabled=not ns.quiet)
        quick = self.mode == "quick" if ns.quick is None else ns.quick
        if caps.http and (ns.session is not None or ns.p1 or ns.world or ns.wit or quick):
            fix = ("drop --session" if ns.session is not None else "drop --p1" if ns.p1
                   else "drop --world/--wit" if ns.world or ns.wit else "run the cell with --build")
            raise UsageError(f"--allow-http needs build mode (only a built Python cell has the "
                             f"HTTP import): {fix} and import wasi_magic_http in the cell.")
        if ns.session is not None:
            return self._run_session(cell, caps, limits, ns, status, bool(
                ns.dir or ns.env or program_args or ns.stdin_file is not None
                or ns.stdin_text is not None))
        if ns.p1:
            return self._run_p1(cell, caps, limits, ns, status)
        if ns.world or ns.wit:
            return self._build_world(cell, caps, limits, ns, status)
        if not quick and not caps.http and self._runner_runs(cell, ns):
            return self._run_in_runner(cell, caps, limits, ns, status)

        def built(artifact: Any) -> None:
            if not artifact.cached:
                status.show(f"wasi: built in {artifact.build_seconds:.1f} s · compiling "
                            f"{format_size(artifact.size)}…")
            elif not ns.quiet:
                status.show(f"wasi: cached · loading {format_size(artifact.size)}…")

        try:
            prepared = prepare_cell(cell, limits, quick=quick, paths=ns.path,
                                    progress=status.progress, on_built=built)
        except KeyboardInterrupt:
            raise _stopped(BUILD_INTERRUPTED) from None
        summary = prepared.summary()
        if ns.output:
            target = write_host_file(ns.output, prepared.artifact.path)
            summary += f" · saved to {target}"
        status.done(summary)
        if ns.panel:
            from .widgets import show_panel
            show_panel(prepared.artifact, caps, limits=limits,
                       prepare=prepared.guest_capabilities if quick else None)
            return
        ordered = _InOrder(sys.stdout, sys.stderr)
        try:
            result = run_prepared(prepared, caps, stdout=None if ns.out else ordered.out,
                                  stderr=None if ns.err else ordered.err)
        except KeyboardInterrupt as exc:
            raise _stopped(str(exc) or "guest interrupted") from None
        self._finish(result, ns)

    def _run_session(self, cell: str, caps: Capabilities, limits: Limits, ns: Any,
                     status: Status, grants_given: bool) -> None:
        """``%%wasi --session NAME``: run the cell in a kept instance (see :mod:`.sessions`)."""
        from dataclasses import replace
        if ns.panel:
            raise UsageError("--panel re-runs a cell in fresh instances, so it cannot drive a "
                             "session: drop --panel to run the cell in the session, or drop "
                             "--session to explore grants with the panel.")
        clash = [flag for flag, given in (("--p1", ns.p1), ("--world", ns.world or ns.wit),
                                          ("--path", ns.path), ("--build", ns.quick is False),
                                          ("-o", ns.output)) if given]
        if clash:
            raise UsageError(f"--session runs cells in the session sandbox (the quick-mode "
                             f"modules, no build): it cannot be combined with {', '.join(clash)}.")
        session = self.sessions.for_cell(ns.session, caps, limits.max_memory,
                                         grants_given=grants_given,
                                         memory_given=limits.max_memory is not None,
                                         fuel=limits.fuel is not None)
        try:
            if not session.started:
                info = session.start(progress=status.progress)
                status.done(f"wasi: session {session.name} started in "
                            f"{info['seconds'] * 1000:.0f} ms · {session.grants()} (fixed until "
                            f"`%wasi session reset {session.name}`)")
            ordered = _InOrder(sys.stdout, sys.stderr)
            result = session.run(cell, replace(limits, max_memory=None),
                                 stdout=None if ns.out else ordered.out,
                                 stderr=None if ns.err else ordered.err)
        except KeyboardInterrupt as exc:
            raise _stopped(str(exc) or "guest interrupted") from None
        self._finish(result, ns)

    def _runner_runs(self, cell: str, ns: Any) -> bool:
        """Whether this build-mode cell runs in the runner while its component is built."""
        from .builder import building, cached_artifact, packed_sha256
        from .quick import built_sandbox, runner_modules
        from .background import runner_can_run
        # Only in a notebook: the status line says later when the component is built,
        # which a terminal's line cannot.
        if not self.background_builds or ns.path or ns.panel or not _in_kernel():
            return False
        try:
            # (A packed entry is not unpacked here: prepare_cell unpacks it while the
            # worker loads its compiled form.)
            if (packed_sha256(cell) is not None or cached_artifact(cell) is not None) \
                    and not building(cell):
                return False  # built already: run it, as always
            sandbox = built_sandbox()
            return sandbox is not None and runner_can_run(cell, runner_modules(sandbox))
        except WasiMagicError:
            return False  # a syntax error, say: the build path reports it as always

    def _run_in_runner(self, cell: str, caps: Capabilities, limits: Limits, ns: Any,
                       status: Status) -> None:
        """Run a build-mode cell in the quick-mode runner now; build its own component behind.

        The output, limits and traceback are the runner's (the same as the component's);
        the status line says so, and says when the component is built. ``-o`` waits for it.
        """
        import concurrent.futures
        import dataclasses
        import os
        import time
        from .background import default_builder
        started = time.perf_counter()
        try:
            prepared = dataclasses.replace(prepare_cell(cell, limits, quick=True), as_build=True)
        except KeyboardInterrupt:
            raise _stopped(BUILD_INTERRUPTED) from None
        ordered = _InOrder(sys.stdout, sys.stderr)
        try:
            result = run_prepared(prepared, caps, stdout=None if ns.out else ordered.out,
                                  stderr=None if ns.err else ordered.err)
        except KeyboardInterrupt as exc:
            raise _stopped(str(exc) or "guest interrupted") from None
        ran = f"wasi: ran in the runner in {(time.perf_counter() - started) * 1000:.0f} ms"
        # Reading R.artifact (--result R) waits for the component built behind the run.
        result = BuildingResult.of(result, None)
        result.steps["build"] = "runner"
        result.steps["background"] = "building"

        def finished(future: Any) -> None:
            if future.cancelled():
                result.steps["background"] = "stopped"
                text = f"{ran} · build of cell.wasm stopped"
            elif future.exception() is not None:
                result.steps["background"] = "failed"
                first = str(future.exception()).strip().splitlines()[:1] or ["unknown error"]
                text = f"{ran} · cell.wasm could not be built: {first[0]}"
            else:
                artifact = future.result()
                result.artifact = artifact.path
                result.steps["background"] = "built" if not artifact.cached else "cached"
                text = f"{ran} · cell.wasm built in {artifact.build_seconds:.1f} s"
            if not status._terminal and not ns.output:
                # (a terminal's prompt is back: this is said only in a notebook; with -o
                # the cell itself waits, and says it)
                status.done(text)

        # Said before the build is queued, so that its end (from the builder's thread) comes last.
        if ns.output:
            status.show(f"{ran} · building cell.wasm for -o {ns.output}…")
        else:
            status.show(f"{ran} · building cell.wasm…")
        future = default_builder().submit(cell, cwd=os.getcwd(), on_done=finished)
        result.pending = future
        if ns.output:
            try:
                while True:
                    try:
                        artifact = future.result(timeout=0.1)
                        break
                    except concurrent.futures.TimeoutError:
                        continue
            except KeyboardInterrupt:
                raise _stopped(f"stopped waiting for cell.wasm: its build goes on in the "
                               f"background; run the cell again to save it to {ns.output}") from None
            target = write_host_file(ns.output, artifact.path)
            result.artifact = artifact.path
            result.steps["background"] = "cached" if artifact.cached else "built"
            status.done(f"{ran} · cell.wasm built in {artifact.build_seconds:.1f} s · "
                        f"saved to {target}")
        self._finish(result, ns)

    def _build_world(self, cell: str, caps: Capabilities, limits: Limits, ns: Any,
                     status: Status) -> None:
        """``%%wasi --world NAME``: build the cell against a WIT world and bind it, loaded."""
        from .sandbox.remote import load
        from .warm import world_name
        if not ns.world:
            raise UsageError("--wit FILE needs --world NAME: the world of FILE to build.")
        if ns.quick or ns.p1 or ns.panel:
            raise UsageError("--world builds a typed component: it cannot be combined with "
                             "--quick, --p1 or --panel.")
        if ns.wit:
            wit_path = Path(ns.wit).expanduser()
            if not wit_path.is_file():
                raise UsageError(f"--wit {ns.wit!r}: no such file.")
            wit = wit_path.read_text(encoding="utf-8")
        elif ns.world in self.wits:
            wit = self.wits[ns.world]
        else:
            known = ", ".join(sorted(self.wits)) or "none yet"
            raise UsageError(f"--world {ns.world}: no WIT named {ns.world!r}. Define it in a "
                             f"'%%wit {ns.world}' cell first (defined: {known}) or give --wit FILE.")
        try:
            artifact = build(cell, paths=ns.path, progress=status.progress, wit=wit,
                             world=world_name(ns.world, wit))
            guest = load(artifact, caps, timeout=limits.timeout, max_memory=limits.max_memory,
                         fuel=limits.fuel, output_limit=limits.max_output)
        except KeyboardInterrupt:
            raise _stopped(BUILD_INTERRUPTED) from None
        how = "cached" if artifact.cached else f"built in {artifact.build_seconds:.1f} s"
        target = ns.as_var or ns.world.replace("-", "_")
        summary = f"wasi: world {ns.world} {how} · {format_size(artifact.size)} → {target}"
        if ns.output:
            out_path = write_host_file(ns.output, artifact.path)
            summary += f" · saved to {out_path}"
        status.done(summary)
        self.shell.user_ns[target] = guest

    def _words(self, line: str) -> list[str]:
        """The line's words, then ``{expr}`` and ``$name`` expanded in each word alone.

        IPython would expand the whole line before splitting it, so a variable
        holding ``x --dir /::/host`` (say, a guest's own output) would become
        flags. Expanded word by word, a value stays one argument, whatever it holds.
        A word that is not text any flag can carry (see :mod:`.text`) is refused.
        """
        words = self._expanded(line)
        for word in words:
            check_text(word, f"{word!r} on the magic line")
        return words

    def _expanded(self, line: str) -> list[str]:
        if "{" not in line and "$" not in line:
            return list(_split(line))  # (most lines: nothing to expand)
        from IPython.utils.text import DollarFormatter
        formatter = DollarFormatter()
        words = []
        for word in _split(line):
            if "{" in word or "$" in word:
                try:
                    word = formatter.vformat(word, args=[], kwargs=self.shell.user_ns)
                except Exception:  # noqa: BLE001 - as IPython does: left as written
                    pass
            words.append(word)
        return words

    @cell_magic("wit")
    def wit_cell(self, line: str, cell: str) -> None:
        """Store a WIT document for this session: ``%%wit NAME``.

        ``%%wasi --world NAME`` then builds a cell against it.
        """
        name = line.strip()
        if not name or " " in name:
            raise IPythonUsageError("usage: %%wit NAME (one word), then the WIT document")
        self.wits[name] = cell

    def _run_p1(self, cell: str, caps: Capabilities, limits: Limits, ns: Any,
                status: Status) -> None:
        """``%%wasi --p1``: the cell is WAT, run as a WASI Preview 1 core module."""
        from .preview1 import assemble
        if ns.quick or ns.path or ns.panel:
            raise UsageError("--p1 runs WebAssembly text as it is: it cannot be combined "
                             "with --quick, --path or --panel.")
        wasm = assemble(cell, name="cell.wat")
        summary = f"wasi: assembled {format_size(len(wasm))} (core module, WASI Preview 1)"
        if ns.output:
            target = write_host_file(ns.output, wasm)
            summary += f" · saved to {target}"
        status.done(summary)
        ordered = _InOrder(sys.stdout, sys.stderr)
        try:
            result = default_sandbox().run(wasm, caps, limits=limits, name="cell.wasm",
                                           module=True,
                                           stdout=None if ns.out else ordered.out,
                                           stderr=None if ns.err else ordered.err)
        except KeyboardInterrupt as exc:
            raise _stopped(str(exc) or "guest interrupted") from None
        result.steps["build"] = "assembled"
        self._finish(result, ns)

    def _finish(self, result: RunResult, ns: Any) -> None:
        user_ns = self.shell.user_ns
        if ns.out:
            user_ns[ns.out] = result.stdout
        if ns.err:
            user_ns[ns.err] = result.stderr
        if ns.result:
            user_ns[ns.result] = result
        sys.stdout.flush()
        if result.trap:
            message = result.trap
        elif result.status:
            message = f"[exit status {result.status}]"
            if result.limit_note:
                message += f" ({result.limit_note})"
        else:
            return
        if ns.raise_error:
            raise _shown(GuestFailed(message))
        if not ns.err:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()

    @no_var_expand
    @line_magic("wasi")
    def wasi_line(self, line: str) -> int | None:
        """Commands spelled like the wasmtime CLI.

        Usage::

            %wasi run PATH.wasm [--dir ...] [--env ...] [-- ARGS...]
            %wasi build FILE.py [-o OUT.wasm] [--path DIR]
            %wasi inspect PATH.wasm
            %wasi cache info|clear|pack
            %wasi config [--mode quick|build] [--timeout S] [--max-output SIZE]
                         [--background-builds on|off]
            %wasi session list | reset NAME | close NAME
            %wasi warm [NOTEBOOK.ipynb ...] [--pack]
        """
        try:
            words = self._words(line)
        except WasiMagicError as exc:
            raise _shown(exc) from None
        if words[:1] == ["config"]:
            return self._config(words[1:])
        if words[:1] == ["session"]:
            try:
                return self._session_command(words[1:])
            except WasiMagicError as exc:
                raise _shown(exc) from None
        status = Status()
        try:
            ordered = _InOrder(sys.stdout, sys.stderr)
            code = cli.execute(words, out=_Forward(ordered.out, sys.stdout),
                               err=_Forward(ordered.err, sys.stderr),
                               prog="%wasi", progress=status.progress,
                               runner=default_sandbox().run,
                               interface=default_sandbox().interface)
        except WasiMagicError as exc:
            raise _shown(exc) from None
        except OSError as exc:
            raise _shown_os(exc) from None
        except KeyboardInterrupt as exc:
            building = words[:1] in (["build"], ["warm"])
            raise _stopped(BUILD_INTERRUPTED if building else str(exc) or "interrupted") from None
        return None if code == 0 else code


    def _session_command(self, words: list[str]) -> None:
        """``%wasi session list | reset NAME | close NAME``."""
        usage = "usage: %wasi session list | reset NAME | close NAME"
        if words == ["list"] or not words:
            lines = [f"{s.name}: {s.state} · {s.cells} cell(s) · {s.grants()}"
                     for s in self.sessions]
            print("\n".join(lines) if lines else "wasi: no sessions yet (start one with "
                                                  "%%wasi --session NAME)")
            return
        if len(words) != 2 or words[0] not in ("reset", "close"):
            raise IPythonUsageError(usage)
        action, name = words
        if action == "reset":
            self.sessions.reset(name)
            print(f"wasi: session {name} reset: its next cell starts a fresh instance (with "
                  f"that cell's grants, if it gives any)")
        else:
            self.sessions.close(name)
            print(f"wasi: session {name} closed")

    def session_limits(self) -> Limits:
        """The limits every cell starts from (the ``timeout`` and ``max_output`` settings)."""
        return Limits(timeout=parse_duration(str(self.timeout), "WasiMagics.timeout") or None,
                      max_output=parse_size(self.max_output, "WasiMagics.max_output"))

    def _config(self, words: list[str]) -> None:
        """``%wasi config [--mode M] [--timeout S] [--max-output SIZE]``: show or set the
        session's settings."""
        usage = ("usage: %wasi config [--mode quick|build] [--timeout SECONDS] "
                 "[--max-output SIZE] [--background-builds on|off]")
        pairs = dict(zip(words[::2], words[1::2]))
        if len(words) % 2 or set(pairs) - {"--mode", "--timeout", "--max-output",
                                           "--background-builds"}:
            raise IPythonUsageError(usage)
        if "--background-builds" in pairs:
            switch = pairs["--background-builds"]
            if switch not in ("on", "off"):
                raise IPythonUsageError(f"--background-builds {switch!r}: expected on or off")
            self.background_builds = switch == "on"
        if "--mode" in pairs:
            if pairs["--mode"] not in MODES:
                raise IPythonUsageError(f"--mode {pairs['--mode']!r}: expected quick or build")
            self.mode = pairs["--mode"]
        try:
            if "--timeout" in pairs:
                self.timeout = parse_duration(pairs["--timeout"])
            if "--max-output" in pairs:
                parse_size(pairs["--max-output"], "--max-output")
                self.max_output = pairs["--max-output"]
        except UsageError as exc:
            raise IPythonUsageError(str(exc)) from None
        print(f"wasi: mode = {self.mode} · timeout = {self.timeout:g} s (0: none) · "
              f"max output = {self.max_output} · background builds = "
              f"{'on' if self.background_builds else 'off'}")


class _Forward:
    """A minimal text stream for :func:`cli.execute`: one of a pair of :class:`_InOrder`
    streams."""

    def __init__(self, write: Any, stream: Any) -> None:
        self.write = write
        self._stream = stream

    def flush(self) -> None:
        self._stream.flush()


class _InOrder:
    """The guest's stdout and stderr, shown in the order it wrote them.

    ipykernel keeps what each stream is given and sends it on its own schedule, so a line
    of stderr written after a line of stdout could show above it. A write to one stream
    first flushes what the other holds: a flush per switch of stream, never per chunk (that
    would slow a chatty guest to a crawl), and at most :attr:`FLUSHES` per cell: a guest
    switching streams at every byte would otherwise send the notebook one output per
    switch (after that, ipykernel's own schedule groups them again). Called on the thread
    that waits for the guest.
    """

    FLUSHES = 200

    def __init__(self, stdout: Any, stderr: Any) -> None:
        self._streams = (stdout, stderr)
        self._last: int | None = None  # the stream written last: 0 stdout, 1 stderr
        self._flushes = 0

    def _write(self, which: int, text: str) -> int:
        if self._last is not None and self._last != which and self._flushes < self.FLUSHES:
            self._flushes += 1
            self._streams[self._last].flush()
        self._last = which
        self._streams[which].write(text)
        return len(text)

    def out(self, text: str) -> int:
        """Write ``text`` to stdout."""
        return self._write(0, text)

    def err(self, text: str) -> int:
        """Write ``text`` to stderr."""
        return self._write(1, text)


class GuestInterrupted(KeyboardInterrupt):
    """The Interrupt button stopped a build or a guest."""

    def _render_traceback_(self) -> list[str]:
        return [f"KeyboardInterrupt: {self}"]


def _stopped(message: str) -> GuestInterrupted:
    sys.stdout.flush()
    return GuestInterrupted(message)


def _shown_os(exc: OSError) -> Exception:
    """An OS error about a path the user gave, shown as one line (other OS errors as they are)."""
    error = path_error(exc)
    return exc if error is None else _shown(error)


def _shown(exc: WasiMagicError) -> Exception:
    """An exception IPython shows as one message, without a traceback."""
    if isinstance(exc, (cli.UsageError,)) and not isinstance(exc, GuestFailed):
        return IPythonUsageError(str(exc))
    exc._render_traceback_ = lambda: [f"{type(exc).__name__}: {exc}"]  # type: ignore[attr-defined]
    return exc
