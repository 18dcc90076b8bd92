"""A hostile plugin: allocates without end. The host's memory limit stops it."""

import wit_world


class WitWorld(wit_world.WitWorld):
    def transform(self, input: bytes) -> bytes:
        hoard = []
        while True:
            hoard.append(bytearray(8 << 20))
