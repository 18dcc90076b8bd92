"""What one outgoing HTTP request costs a guest (``--allow-http``), next to native Python.

    python benchmarks/bench_http.py [--reps 5] [--requests 200]

A server on 127.0.0.1 answers ``GET /x`` with 2 bytes. Side by side, per request
(a new connection each time, as the host makes one per request):

- native: ``http.client`` in this process;
- guest: ``wasi_magic_http.get`` in a built cell run in the sandbox worker, timed
  inside the guest (the check, the resolve, the connection, the copy in and out).

Medians over ``--reps`` runs; nothing is asserted. Every response is checked.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import statistics
import threading
import time

GUEST = '''\
import sys
import time
from wasi_magic_http import get

count, url = int(sys.argv[1]), sys.argv[2]
started = time.perf_counter()
for _ in range(count):
    assert get(url).body == b"ok"
print((time.perf_counter() - started) / count)
'''


class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def native(port: int, count: int) -> float:
    """Seconds per request with http.client, a new connection each time."""
    started = time.perf_counter()
    for _ in range(count):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/x")
        assert connection.getresponse().read() == b"ok"
        connection.close()
    return (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    options = parser.parse_args()

    from wasi_magic import build
    from wasi_magic.capabilities import Capabilities
    from wasi_magic.limits import Limits
    from wasi_magic.sandbox.supervisor import default_sandbox

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    origin = f"http://127.0.0.1:{port}"
    artifact = build(GUEST)
    sandbox = default_sandbox()
    caps = Capabilities.parse(args=[str(options.requests), f"{origin}/x"], http=[origin])
    sandbox.run(artifact, caps, limits=Limits(timeout=120))  # compile and warm up
    guest, here = [], []
    for _ in range(options.reps):
        result = sandbox.run(artifact, caps, limits=Limits(timeout=120))
        assert result.status == 0, result.stderr
        guest.append(float(result.stdout.strip()))
        here.append(native(port, options.requests))
    server.shutdown()
    g, n = statistics.median(guest), statistics.median(here)
    print(f"per request, median of {options.reps} runs of {options.requests}:")
    print(f"  native http.client : {n * 1e3:.3f} ms")
    print(f"  guest via the host : {g * 1e3:.3f} ms  ({g / n:.2f}x native)")


if __name__ == "__main__":
    main()
