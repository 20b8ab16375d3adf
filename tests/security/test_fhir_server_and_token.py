"""The access token stays home: only allowlisted https fhirServers are contacted, and the token is never
logged, stored or echoed."""

from __future__ import annotations

import json

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import text

from cds_service.security import fhir_server_policy
from cds_service.settings import Settings
from tests.builders import bundle, condition, hook_request, operation_outcome, patient

TOKEN = "eyJhbGciOiJSUzI1NiJ9.ACCESS-TOKEN-THAT-MUST-NOT-LEAK.sig"
PV = "/cds-services/distal-dvt-patient-view"


def with_token(body: dict, server: str) -> dict:
    body["fhirServer"] = server
    body["fhirAuthorization"] = {
        "access_token": TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "cds-client",
    }
    return body


def test_policy(db_url: str) -> None:
    prod = fhir_server_policy(
        Settings(auth="jwt", database_url=db_url, fhir_server_allowlist=["https://ehr.example.org/fhir"])
    )
    assert prod("https://ehr.example.org/fhir")[0]
    assert prod("https://ehr.example.org/fhir/R4")[0]
    assert not prod("https://ehr.example.org/fhirx")[0]
    assert not prod("https://evil.example.com/fhir")[0]
    assert not prod("http://ehr.example.org/fhir")[0]  # https only in production
    assert not prod("https://user:pass@ehr.example.org/fhir")[0]
    empty = fhir_server_policy(Settings(auth="jwt", database_url=db_url))
    assert not empty("https://ehr.example.org/fhir")[0]
    dev = fhir_server_policy(Settings(auth="off", database_url=db_url))
    assert dev("http://127.0.0.1:8090/fhir")[0]
    assert dev("https://launch.smarthealthit.org/v/r4/fhir")[0]
    assert not dev("http://ehr.example.org/fhir")[0]  # plain http only on loopback, even in development


def test_server_not_on_the_allowlist_is_never_contacted(make_app, fhir_server: HTTPServer) -> None:
    app = make_app(fhir_server_allowlist=["https://ehr.example.org/fhir"])
    body = with_token(
        hook_request("patient-view", prefetch={"patient": patient(), "conditions": bundle()}),
        fhir_server.url_for("/fhir"),
    )
    response = app.test_client().post(PV, json=body)
    assert response.status_code == 200  # proceeds on prefetch alone
    assert fhir_server.log == []


def test_server_not_on_the_allowlist_and_data_needed_is_412(make_app, fhir_server: HTTPServer) -> None:
    app = make_app(fhir_server_allowlist=["https://ehr.example.org/fhir"])
    body = with_token(hook_request("patient-view", prefetch={"patient": patient()}), fhir_server.url_for("/fhir"))
    response = app.test_client().post(PV, json=body)
    assert response.status_code == 412
    assert "ALLOWLIST" in json.dumps(response.get_json())
    assert fhir_server.log == []


def test_the_token_goes_to_the_allowlisted_server(make_app, fhir_server: HTTPServer) -> None:
    app = make_app(fhir_server_allowlist=[fhir_server.url_for("/fhir")])
    fhir_server.expect_request("/fhir/Condition").respond_with_json(bundle(condition("E11.9")))
    body = with_token(hook_request("patient-view", prefetch={"patient": patient()}), fhir_server.url_for("/fhir"))
    assert app.test_client().post(PV, json=body).status_code == 200
    assert fhir_server.log[0][0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_the_token_is_never_logged_stored_or_echoed(
    make_app, fhir_server: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    fhir_server.expect_request("/fhir/Condition").respond_with_data(f"boom {TOKEN}", status=500)
    fhir_server.expect_request("/fhir/MedicationRequest").respond_with_json(operation_outcome(text=TOKEN), status=401)
    body = with_token(hook_request("patient-view", prefetch={"patient": patient()}), fhir_server.url_for("/fhir"))
    caplog.set_level("DEBUG")
    response = app.test_client().post(PV, json=body)
    assert response.status_code == 412
    assert TOKEN not in response.get_data(as_text=True)
    assert all(TOKEN not in record.getMessage() and TOKEN not in str(record.__dict__) for record in caplog.records)
    app.extensions["dvt_cds"]["audit"].flush()
    store = app.extensions["dvt_cds"]["store"]
    with store.engine.connect() as conn:
        for table in ("decision_audit", "feedback", "issued_card", "seen_jti"):
            assert TOKEN not in json.dumps([list(r) for r in conn.execute(text(f"SELECT * FROM {table}"))], default=str)  # noqa: S608


def test_the_token_is_not_in_a_validation_error(make_app) -> None:
    body = hook_request("patient-view", prefetch={"patient": patient()})
    body["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer"}  # no fhirServer: invalid
    response = make_app().test_client().post(PV, json=body)
    assert response.status_code == 400
    assert TOKEN not in response.get_data(as_text=True)
