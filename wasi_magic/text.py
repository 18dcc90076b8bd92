"""Text that can cross into a guest: one check for cells, arguments, variables and paths.

Everything a guest is given (its source, ``argv``, environment, folder names, stdin)
reaches Wasmtime as UTF-8, and all but stdin as C strings. A Python ``str`` can hold
what neither can carry: a NUL character, or a lone surrogate (``"\\ud800"``, which a
notebook's JSON can spell). Such text is refused here, before anything is built or run,
with what held it and how to fix it, never as an encoding traceback from deep inside.
"""

from __future__ import annotations

from .errors import UsageError


def check_text(value: str, what: str, *, nul: bool = False,
               error: type[UsageError] = UsageError) -> str:
    """``value`` if a guest can be given it; else ``error`` naming ``what`` (``"The cell"``,
    ``"--env X: the value"``) and the character. ``nul=True``: NUL is allowed (stdin)."""
    if not isinstance(value, str):
        raise error(f"{what} must be text, not {type(value).__name__}.")
    if not nul and "\0" in value:
        raise error(f"{what} contains a NUL character (at index {value.index(chr(0))}): "
                    f"remove it.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise error(f"{what} contains a character that is not valid Unicode text "
                    f"({value[exc.start]!r} at index {exc.start}): remove it.") from None
    return value
