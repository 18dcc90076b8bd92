"""Self-checks for lesson 01 (WASI Preview 1).

Exercise 1 assembles the student's WebAssembly text and runs it as a Preview 1
module in the sandbox; exercise 2 parses the student's flags with the
``%%wasi`` flag table and runs ``guest_src/p1/args_env.wat`` with them. Both
compare what the guest really printed with what was asked.
"""

from __future__ import annotations

import shlex
from typing import Any

from wasi_magic import Capabilities, WasiMagicError, inspect_wasm, run
from wasi_magic.cli import split_program_args
from wasi_magic.flags import cell_parser
from wasi_magic.preview1 import assemble

from ._shared import LESSONS, scratch, shown, verdict

#: What exercise 1's module must write, and where.
STDERR_TEXT = "WASI\n"
#: What exercise 2's run of args_env.wat must print.
ARGS_ENV_TARGET = """\
argc: 3
argv[0]: args_env.wasm
argv[1]: report.txt
argv[2]: --verbose
environ count: 1
environ[0]: LANG=C
"""


def stderr_module_problem(wat: Any) -> str | None:
    """Exercise 1: a module that imports only ``fd_write`` and writes ``WASI\\n`` to stderr."""
    if not isinstance(wat, str) or "(module" not in wat:
        return "E1_WAT should be the WebAssembly text of a module, starting with (module."
    try:
        wasm = assemble(wat, name="E1_WAT")
    except WasiMagicError as exc:
        return f"the text does not assemble: {str(exc).splitlines()[0]}"
    path = scratch("lesson01-stderr") / "e1.wasm"
    path.write_bytes(wasm)
    info = inspect_wasm(path)
    if "wasi_snapshot_preview1.fd_write" not in info.imports:
        return ("the module does not import wasi_snapshot_preview1.fd_write, so it has no way "
                "to write anything.")
    extra = [name for name in info.imports if name != "wasi_snapshot_preview1.fd_write"]
    if extra:
        return (f"the module imports {', '.join(extra)}; this program needs only "
                f"wasi_snapshot_preview1.fd_write.")
    if "_start" not in info.exports:
        return "the module exports no _start function: the runtime has nothing to call."
    result = run(path)
    if result.trap:
        return f"the module stopped with a trap: {result.trap}"
    if result.stdout:
        return (f"the text arrived on stdout (descriptor 1): {shown(result.stdout)}. Send it to "
                f"descriptor 2, stderr: the first argument of fd_write.")
    if result.stderr != STDERR_TEXT:
        return (f"stderr got {shown(result.stderr)}; expected {STDERR_TEXT!r}. Check the "
                f"bytes in the data segment and the length in the iovec (5 bytes, the newline "
                f"included).")
    return None


def check_stderr_module(wat: Any) -> None:
    """Print whether exercise 1 is done, or what is wrong with it."""
    verdict("Exercise 1", stderr_module_problem(wat),
            "one import, fd_write, and the text on descriptor 2.")


def args_env_problem(flags: Any) -> str | None:
    """Exercise 2: the flags with which ``args_env.wat`` prints :data:`ARGS_ENV_TARGET`."""
    if not isinstance(flags, str):
        return "E2_FLAGS should be a string of flags, as on a %%wasi line: \"--env A=B -- x\"."
    try:
        words, program_args = split_program_args(shlex.split(flags))
        parsed = cell_parser().parse_args(words)
        caps = Capabilities.parse(parsed.dir, parsed.env, program_args, cwd=LESSONS)
    except (ValueError, WasiMagicError) as exc:
        return f"the flags cannot be read: {exc}"
    path = scratch("lesson01-args") / "args_env.wasm"
    path.write_bytes(assemble((LESSONS.parent / "guest_src" / "p1" / "args_env.wat").read_text()))
    result = run(path, caps)
    if result.stdout == ARGS_ENV_TARGET:
        if caps.dirs:
            return (f"the output is right, but the flags also grant a folder "
                    f"({caps.dirs[0].spec}) that the program never uses: remove --dir.")
        return None
    got, want = result.stdout.splitlines(), ARGS_ENV_TARGET.splitlines()
    for line, (have, should) in enumerate(zip(got, want), start=1):
        if have != should:
            field = should.partition(":")[0]
            hint = (" (the words after -- are the arguments, in order)" if field.startswith("arg")
                    else " (grant exactly one variable, with --env NAME=VALUE)")
            return (f"{field} differs: the program printed {have!r}, expected {should!r}"
                    f"{hint}.")
    return (f"the program printed {len(got)} lines, expected {len(want)}: "
            f"{shown(result.stdout)}.")


def check_args_env(flags: Any) -> None:
    """Print whether exercise 2 is done, or what is wrong with it."""
    verdict("Exercise 2", args_env_problem(flags),
            "exactly two arguments and one variable, nothing else.")
