"""A FHIR server that adds a fixed delay to every query: the round trip of a real EHR FHIR API, on loopback."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from cds_service.replay.search import search, searchset


def serve(resources: list[dict[str, Any]], port_queue: Any, delay_s: float) -> None:
    """Run forever in its own process; put the chosen port on ``port_queue``."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        time.sleep(delay_s)
        params = [(k, v) for k, v in request.args.items(multi=True)]
        query = request.path.removeprefix("/fhir/") + (("?" + urlencode(params)) if params else "")
        kind, found = search(query, resources)
        if kind == "read":
            body = found if found is not None else {"resourceType": "OperationOutcome", "issue": []}
            status = 200 if found is not None else 404
        else:
            body, status = searchset(found), 200  # type: ignore[arg-type]
        return Response(json.dumps(body), status=status, content_type="application/fhir+json")(environ, start_response)

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access line per query would flood the output
    server = make_server("127.0.0.1", 0, app, threaded=True)
    port_queue.put(server.server_port)
    server.serve_forever()
