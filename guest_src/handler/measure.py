"""Serve the handler over HTTP and measure per-request latency (a fresh instance each).

    python guest_src/handler/measure.py [REQUESTS]

Prints the median and p99 of two figures: the time a request spends in the
sandbox (new store, instantiate, call: ``EdgeServer.latencies``) and the whole
HTTP round trip seen by a urllib client on the same machine.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path
from statistics import median

from wasi_magic import build
from wasi_magic.edge import EdgeServer, percentile

HERE = Path(__file__).resolve().parent


def main(count: int = 200) -> None:
    artifact = build(HERE / "handler.py", wit=HERE / "handler.wit", world="handler")
    body = json.dumps({"text": "the quick brown fox jumps over the lazy dog"}).encode()
    with EdgeServer(artifact) as server:
        request = urllib.request.Request(server.url + "/api/process", data=body,
                                         headers={"content-type": "application/json"})
        for _ in range(10):  # warm up: compiled component in memory, threads started
            urllib.request.urlopen(request).read()
        server.latencies.clear()
        round_trips = []
        for _ in range(count):
            started = time.perf_counter()
            with urllib.request.urlopen(request) as response:
                response.read()
            round_trips.append(time.perf_counter() - started)
        in_sandbox = list(server.latencies)
    for label, values in (("in the sandbox", in_sandbox), ("HTTP round trip", round_trips)):
        print(f"{label:>16}: median {median(values) * 1000:.2f} ms, "
              f"p99 {percentile(values, 0.99) * 1000:.2f} ms over {len(values)} requests")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
