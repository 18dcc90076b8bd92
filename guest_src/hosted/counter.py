"""A plugin with a memory it does not own: it counts its calls in the host's store.

Every call gets a fresh instance, so the plugin itself forgets everything
between calls. It asks the host (the `host` interface of hosted.wit) to keep
its count, and logs what it did through the host as well.
"""

import wit_world
from wit_world.imports import host


class WitWorld(wit_world.WitWorld):
    def transform(self, input: bytes) -> bytes:
        calls = int(host.get("calls") or "0") + 1
        host.set("calls", str(calls))
        words = len(input.split())
        host.log(f"call {calls}: {words} words")
        return f"call {calls}: {words} words".encode()
