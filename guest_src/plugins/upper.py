"""A well-behaved plugin: upper-cases a tenant's text and counts its words."""

import wit_world
from componentize_py_types import Err


class WitWorld(wit_world.WitWorld):
    def transform(self, input: bytes) -> bytes:
        try:
            text = input.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Err(f"input is not UTF-8: {exc.reason} at byte {exc.start}")
        words = len(text.split())
        return f"{text.upper().rstrip()}\n-- {words} words\n".encode()
