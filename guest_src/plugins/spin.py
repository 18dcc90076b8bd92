"""A hostile plugin: never returns. The host's time limit stops it."""

import sys

import wit_world


class WitWorld(wit_world.WitWorld):
    def transform(self, input: bytes) -> bytes:
        print("spinning", file=sys.stderr, flush=True)
        count = 0
        while True:
            count += 1
