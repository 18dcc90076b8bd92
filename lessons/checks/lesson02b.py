"""Self-checks for lesson 02b (an edge handler, served over HTTP).

Both checks serve the student's handler component with
:class:`wasi_magic.edge.EdgeServer` (a fresh instance per request, in the
sandbox worker) and send it real HTTP requests on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from wasi_magic import WasiMagicError
from wasi_magic.edge import EdgeServer

from ._shared import shown, verdict


def _request(server: EdgeServer, path: str, body: bytes | None = None) -> tuple[int, str, Any]:
    """``(status, content type, JSON body or the raw text)`` of one request."""
    try:
        with urllib.request.urlopen(server.url + path, data=body, timeout=30) as response:
            status, kind, raw = response.status, response.headers.get("content-type", ""), response.read()
    except urllib.error.HTTPError as error:
        status, kind, raw = error.code, error.headers.get("content-type", ""), error.read()
    try:
        return status, kind, json.loads(raw)
    except ValueError:
        return status, kind, raw.decode("utf-8", "replace")


def _serve(component: Any) -> EdgeServer | str:
    """A started server for ``component``, or why there is none."""
    if not isinstance(component, (str, Path)) or not Path(component).is_file():
        return (f"{str(component)!r} is not a component file yet: run your handler cell, whose "
                f"first line saves it with -o.")
    try:
        return EdgeServer(component).start()
    except WasiMagicError as exc:
        return f"the component cannot be served: {str(exc).splitlines()[0]}"


def _health_problem(server: EdgeServer) -> str | None:
    status, _, body = _request(server, "/api/health")
    if (status, body) != (200, {"status": "ok"}):
        return (f"GET /api/health answered {status} {shown(str(body))}; keep the lesson's routes "
                f"working: 200 {{\"status\": \"ok\"}}.")
    return None


def time_route_problem(component: Any) -> str | None:
    """Exercise 1: ``GET /api/time`` answers 200 with JSON ``{"time": <seconds since 1970>}``."""
    server = _serve(component)
    if isinstance(server, str):
        return server
    try:
        before = time.time()
        status, kind, body = _request(server, "/api/time")
        after = time.time()
        if status != 200:
            return (f"GET /api/time answered {status} {shown(str(body))}; expected 200. Add a "
                    f"route for the path \"/api/time\" to handle().")
        if not kind.startswith("application/json") or not isinstance(body, dict):
            return f"GET /api/time answered {shown(str(body))} as {kind!r}; answer a JSON object."
        if "time" not in body:
            return f"the JSON has the fields {sorted(body)}; the exercise asks for one named \"time\"."
        value = body["time"]
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"\"time\" is {value!r}; expected a number, time.time() in the guest."
        if not before - 5 <= value <= after + 5:
            return (f"\"time\" is {value}, but the host's clock said {before:.0f}: answer "
                    f"time.time(), read when the request arrives.")
        return _health_problem(server)
    finally:
        server.stop()


def check_time_route(component: Any) -> None:
    """Print whether exercise 1 is done, or what is wrong with it."""
    verdict("Exercise 1", time_route_problem(component),
            "GET /api/time answers the guest's clock, which is the host's.")


def bad_json_problem(component: Any) -> str | None:
    """Exercise 2: ``POST /api/process`` with a body that is not JSON answers 400 and a JSON
    ``{"error": ...}``; valid JSON still answers as in the lesson."""
    server = _serve(component)
    if isinstance(server, str):
        return server
    try:
        status, kind, body = _request(server, "/api/process", b"not json")
        if status == 500:
            return ("POST /api/process with the body 'not json' answered 500: json.loads raised "
                    "an exception, which trapped the instance. Catch ValueError and answer 400.")
        if status != 400:
            return (f"POST /api/process with the body 'not json' answered {status}; "
                    f"expected 400 (Bad Request).")
        if not isinstance(body, dict) or "error" not in body:
            return (f"the 400 answer is {shown(str(body))}; send a JSON object with an \"error\" "
                    f"field saying what was wrong.")
        status, _, body = _request(server, "/api/process", json.dumps({"a": 1, "b": 2}).encode())
        if (status, body) != (200, {"processed": True, "input_keys": 2}):
            return (f"valid JSON with two keys now answers {status} {shown(str(body))}; expected "
                    f"200 {{\"processed\": true, \"input_keys\": 2}}.")
        return _health_problem(server)
    finally:
        server.stop()


def check_bad_json(component: Any) -> None:
    """Print whether exercise 2 is done, or what is wrong with it."""
    verdict("Exercise 2", bad_json_problem(component),
            "a bad request gets a 400 and a reason; the instance never traps.")
