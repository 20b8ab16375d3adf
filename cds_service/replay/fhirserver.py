"""A tiny read-only FHIR server over one scenario's resources, on loopback, for ``dvt-cds replay``.

It lets a replay exercise the service's fetch path (``--no-prefetch``) and paginated prefetch without any other
software installed. It speaks only the query subset of ``search.py``; ``_count`` pages results with absolute
``next`` links. The test suite uses a real FHIR implementation (Medplum) for the same path.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import urlencode

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from cds_service.replay.scenarios import with_fhir_base
from cds_service.replay.search import UnsupportedQuery, search, searchset

_FHIR_JSON = "application/fhir+json"


def _outcome(status: int, text: str) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": text}],
    }
    return Response(json.dumps(body), status=status, content_type=_FHIR_JSON)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        """Access lines would break the replay's progress bar and table; ``requests`` counts the queries."""


class ScenarioFhirServer:
    def __init__(self, resources: list[dict[str, Any]], *, port: int = 0):
        """``port`` 0: any free port; a fixed one lets a service's DVT_CDS_FHIR_SERVER_ALLOWLIST name this server."""
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", port, self._app, threaded=True, request_handler=_QuietHandler
        )
        self.resources = with_fhir_base(resources, self.base_url)
        # A short poll so shutdown returns at once (werkzeug's default 0.5 s poll made every replay wait that long).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="replay-fhir", daemon=True
        )
        self.requests = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/fhir"

    def __enter__(self) -> ScenarioFhirServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.requests += 1
        return self._handle(request)(environ, start_response)

    def _handle(self, request: Request) -> Response:
        if request.method != "GET" or not request.path.startswith("/fhir/"):
            return _outcome(404, "not found")
        params = [(k, v) for k, v in request.args.items(multi=True) if k not in ("_count", "_page")]
        query = request.path.removeprefix("/fhir/") + (("?" + urlencode(params)) if params else "")
        try:
            kind, found = search(query, self.resources)
        except UnsupportedQuery as error:
            return _outcome(400, str(error))
        if kind == "read":
            if found is None:
                return _outcome(404, "resource not found")
            return Response(json.dumps(found), content_type=_FHIR_JSON)
        if not isinstance(found, list):
            return _outcome(500, "the search gave no result list")
        primary = query.split("?")[0]
        count = request.args.get("_count", type=int)
        page = request.args.get("_page", default=1, type=int)
        if count and count > 0:
            start = (page - 1) * count
            chunk = found[start : start + count]
            more = start + count < len(found)
            next_url = None
            if more:
                next_params = [*params, ("_count", str(count)), ("_page", str(page + 1))]
                next_url = f"{request.host_url.rstrip('/')}{request.path}?{urlencode(next_params)}"
            bundle = searchset(chunk, next_url=next_url, total=len(found), primary_type=primary)
            return Response(json.dumps(bundle), content_type=_FHIR_JSON)
        return Response(json.dumps(searchset(found, primary_type=primary)), content_type=_FHIR_JSON)
