"""The floor: what any answer costs under the service's own server — the same gunicorn configuration
(``python:cds_service.gunicorn_conf``: worker model, workers, threads, keep-alive), the same garbage-collector
settings (``cds_service.gc_tuning``, as ``cds_service/wsgi.py``), the same JSON parser (orjson) on the same body —
answering a fixed card and doing nothing else.

Whatever the service costs beyond this is its own work: authentication, the body's checks, validation, the record,
the rules, the cards, the audit, the metrics and the log line (bench/stages.py measures each).
"""

from __future__ import annotations

import orjson
from flask import Flask, Response, request

from cds_service import gc_tuning

app = Flask("floor")
CARD = orjson.dumps(
    {
        "cards": [
            {
                "uuid": "00000000-0000-4000-8000-000000000001",
                "summary": "Isolated calf DVT: anticoagulation and serial imaging both reasonable",
                "indicator": "warning",
                "source": {
                    "label": "floor",
                    "topic": {"system": "urn:distal-dvt-cds:card-topic", "code": "distal-dvt-shared-decision"},
                },
            }
        ]
    }
)


@app.post("/cds-services/<service_id>")
def invoke(service_id: str) -> Response:
    body = orjson.loads(request.get_data())  # the service's parser, on the same body
    if not isinstance(body, dict):
        return Response(b'{"resourceType":"OperationOutcome"}', status=400, mimetype="application/json")
    return Response(CARD, mimetype="application/json")


@app.get("/healthz")
def healthz() -> Response:
    return Response(b'{"status":"ok"}', mimetype="application/json")


application = app
gc_tuning.tune()
