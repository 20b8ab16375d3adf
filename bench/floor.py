"""The floor: the same gunicorn setup answering a fixed card after only parsing the same JSON body.

Whatever the service costs beyond this is its own work (validation, prefetch resolution, rules, cards, audit).
"""

from __future__ import annotations

import orjson
from flask import Flask, Response, jsonify, request

app = Flask("floor")
CARD = {
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


@app.post("/cds-services/<service_id>")
def invoke(service_id: str) -> Response:
    body = orjson.loads(request.get_data())  # the same parser as the service: a fair floor
    if not isinstance(body, dict):
        return jsonify({"resourceType": "OperationOutcome"}), 400  # type: ignore[return-value]
    return jsonify(CARD)


@app.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})
