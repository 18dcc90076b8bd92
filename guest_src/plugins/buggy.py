"""A buggy plugin: an exception escapes the exported function, so the component traps.

(A well-behaved plugin returns errors through the result type: raise Err(...).)
"""

import wit_world


class WitWorld(wit_world.WitWorld):
    def transform(self, input: bytes) -> bytes:
        number = int(input)  # ValueError for anything but digits, and nobody catches it
        return str(number * 2).encode()
