"""Every error path answers with a status and a JSON OperationOutcome; never a stack trace."""

from __future__ import annotations

import io
import json

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.builders import bundle, condition, hook_request, operation_outcome, patient

PV = "/cds-services/distal-dvt-patient-view"


def assert_outcome(response, status: int) -> dict:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"]
    assert all(i["severity"] in ("error", "fatal") for i in body["issue"])
    text = json.dumps(body)
    assert "Traceback" not in text
    assert 'File "' not in text
    return body


def test_malformed_json_is_400(client: FlaskClient) -> None:
    assert_outcome(client.post(PV, data="{not json", content_type="application/json"), 400)


def test_non_object_json_is_400(client: FlaskClient) -> None:
    assert_outcome(client.post(PV, data="[1,2]", content_type="application/json"), 400)


def test_deeply_nested_json_is_400(client: FlaskClient) -> None:
    body = assert_outcome(client.post(PV, data="[" * 5000 + "]" * 5000, content_type="application/json"), 400)
    assert "nested" in body["issue"][0]["diagnostics"]


def test_unknown_service_is_404(client: FlaskClient) -> None:
    body = hook_request("patient-view", [])
    assert_outcome(client.post("/cds-services/nope", json=body), 404)
    assert_outcome(client.post("/cds-services/nope/feedback", json={"feedback": []}), 404)
    assert_outcome(client.get("/no-such-thing"), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", PV), ("delete", "/cds-services"), ("put", PV), ("get", PV + "/feedback"), ("post", "/healthz")],
)
def test_wrong_method_is_405(client: FlaskClient, method: str, path: str) -> None:
    response = getattr(client, method)(path)
    assert_outcome(response, 405)
    assert response.headers["Allow"]


def test_oversized_body_is_413(make_app) -> None:
    client = make_app(max_body_bytes=2048).test_client()
    body = hook_request("patient-view", [condition("I82.461", text="x" * 5000)])
    assert_outcome(client.post(PV, json=body), 413)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(client: FlaskClient, content_type: str | None) -> None:
    body = json.dumps(hook_request("patient-view", []))
    headers = {"Content-Type": content_type} if content_type else {}
    assert_outcome(client.post(PV, data=body, headers=headers), 415)


def test_fhir_json_content_type_is_accepted(client: FlaskClient) -> None:
    body = json.dumps(hook_request("patient-view", [condition("E11.9")]))
    assert client.post(PV, data=body, content_type="application/fhir+json; charset=utf-8").status_code == 200


def test_unobtainable_required_data_is_412(client: FlaskClient) -> None:
    body = hook_request("patient-view", prefetch={"patient": patient()})  # no conditions, no fhirServer
    outcome = assert_outcome(client.post(PV, json=body), 412)
    assert outcome["issue"][0]["code"] == "incomplete"
    assert any("conditions" in i["diagnostics"] for i in outcome["issue"])


def test_fhir_server_failure_on_required_data_is_412(client: FlaskClient, fhir_server) -> None:
    fhir_server.expect_request("/fhir/Condition").respond_with_json(operation_outcome(), status=500)
    body = hook_request("patient-view", prefetch={"patient": patient(), "conditions": operation_outcome()})
    body["fhirServer"] = fhir_server.url_for("/fhir")
    outcome = assert_outcome(client.post(PV, json=body), 412)
    assert "HTTP 500" in json.dumps(outcome)


def test_a_bug_is_500_without_details(make_app, monkeypatch) -> None:
    app: Flask = make_app()

    def explode(*args, **kwargs):
        raise RuntimeError("secret patient detail pat-1")

    monkeypatch.setattr("hooks.common.build_facts", explode)
    response = app.test_client().post(PV, json=hook_request("patient-view", [condition("E11.9")]))
    body = assert_outcome(response, 500)
    assert "secret" not in json.dumps(body)


def test_missing_optional_data_for_a_dvt_is_said_in_the_card(client: FlaskClient) -> None:
    """Never a silent 'no card': medications could not be read, so the card says anticoagulation is unchecked."""
    prefetch = {"patient": patient(), "conditions": bundle(condition("I82.451", onset=2))}
    response = client.post(PV, json=hook_request("patient-view", prefetch=prefetch))
    assert response.status_code == 200
    [card] = response.get_json()["cards"]
    assert card["detail"].startswith("**Current anticoagulation could not be checked** (medication data unavailable)")
    assert card["summary"].startswith("Current anticoagulation could not be checked")


def test_a_chunked_body_over_the_limit_is_413_not_400(client: FlaskClient) -> None:
    """Before: werkzeug cut a chunked body at MAX_CONTENT_LENGTH silently and the rest was "not valid JSON" (400)."""
    limit = client.application.config["MAX_CONTENT_LENGTH"]
    chunked = {"wsgi.input_terminated": True}
    big = io.BytesIO(b'{"a": "' + b"x" * limit + b'"}')
    response = client.post(
        PV,
        input_stream=big,
        content_type="application/json",
        environ_overrides=chunked,
        headers={"Transfer-Encoding": "chunked"},
    )
    body = assert_outcome(response, 413)
    assert "larger than" in body["issue"][0]["diagnostics"]
    small = io.BytesIO(json.dumps(hook_request("patient-view", [])).encode())
    response = client.post(
        PV,
        input_stream=small,
        content_type="application/json",
        environ_overrides=chunked,
        headers={"Transfer-Encoding": "chunked"},
    )
    assert response.status_code == 200
