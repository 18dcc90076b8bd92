"""A hostile edge handler: answers with whatever status, headers and body the request's
JSON body asks for, so the tests can make it return what an honest host must refuse."""

import json

import wit_world
from wit_world import Request, Response


class WitWorld(wit_world.WitWorld):
    def handle(self, req: Request) -> Response:
        try:
            wanted = json.loads(req.body.decode("utf-8")) if req.body else {}
        except ValueError:
            wanted = {}
        headers = [(str(name), str(value)) for name, value in wanted.get("headers", [])]
        body = json.dumps({"got": len(req.body)}).encode()
        return Response(status=int(wanted.get("status", 200)), headers=headers, body=body)
