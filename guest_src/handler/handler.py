"""An edge handler: a tiny JSON API inside a sandboxed component.

Routes:
  GET  /api/health   -> 200 {"status": "ok"}
  POST /api/process  -> 200 {"words": …, "chars": …, "upper": …, "top": […]}
                        for a JSON body {"text": "…"}; 400 for malformed input
  anything else      -> 404 (405 for a known path with the wrong method)
"""

import json
from collections import Counter

import wit_world
from wit_world import Request, Response

JSON = [("content-type", "application/json")]
#: Requests this instance has handled: the edge host uses a fresh instance per
#: request, so every response says 1.
SEEN = 0


def reply(status: int, payload: object, headers: list | None = None) -> Response:
    body = json.dumps(payload, sort_keys=True).encode()
    return Response(status=status, headers=JSON + (headers or []), body=body)


def health(req: Request) -> Response:
    return reply(200, {"status": "ok"})


def process(req: Request) -> Response:
    try:
        data = json.loads(req.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return reply(400, {"error": f"malformed JSON: {exc}"})
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return reply(400, {"error": 'expected a JSON object with a string field "text"'})
    text = data["text"]
    words = text.split()
    top = Counter(word.lower().strip(".,;:!?") for word in words).most_common(3)
    return reply(200, {"words": len(words), "chars": len(text), "upper": text.upper(),
                       "top": [[word, count] for word, count in top]})


ROUTES = {"/api/health": ("GET", health), "/api/process": ("POST", process)}


class WitWorld(wit_world.WitWorld):
    def handle(self, req: Request) -> Response:
        global SEEN
        SEEN += 1
        response = self.route(req)
        response.headers.append(("x-instance-requests", str(SEEN)))
        return response

    def route(self, req: Request) -> Response:
        path = req.path.split("?", 1)[0]
        route = ROUTES.get(path)
        if route is None:
            return reply(404, {"error": f"no route for {path}"})
        method, function = route
        if req.method != method:
            return reply(405, {"error": f"{path} accepts {method}"}, [("allow", method)])
        return function(req)
