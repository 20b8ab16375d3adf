"""Invoking a service: validation, hook matching, the vertical slice (a real card for a distal DVT) and
{"cards": []} for a patient without DVT."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient

from tests.builders import GASTROCNEMIUS, LEFT, condition, ddimer, duplex, hook_request, patient

PV = "/cds-services/distal-dvt-patient-view"


def post(client: FlaskClient, path: str, body: object, **kwargs):
    return client.post(path, data=json.dumps(body), content_type="application/json", **kwargs)


def assert_no_empty_members(value: object, path: str = "") -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            assert child not in (None, "", [], {}) or (path == "" and key == "cards"), f"{path}.{key} is empty"
            assert_no_empty_members(child, f"{path}.{key}")
    elif isinstance(value, list):
        for i, child in enumerate(value):
            assert_no_empty_members(child, f"{path}[{i}]")


def test_no_dvt_gives_no_cards(client: FlaskClient) -> None:
    body = hook_request("patient-view", [condition("E11.9", display="Type 2 diabetes mellitus without complications")])
    response = post(client, PV, body)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


def test_distal_dvt_gets_a_real_recommendation_card(client: FlaskClient) -> None:
    resources = [
        condition("I82.462", display="Acute embolism and thrombosis of left calf muscular vein", onset=2),
        ddimer(1200, "ng/mL", days=2),
        duplex([GASTROCNEMIUS], side=LEFT, days=2),
    ]
    response = post(client, PV, hook_request("patient-view", resources))
    assert response.status_code == 200
    body = response.get_json()
    assert_no_empty_members(body)
    [card] = body["cards"]
    assert card["source"]["topic"]["system"] == "urn:distal-dvt-cds:card-topic"
    assert card["source"]["topic"]["code"] in ("distal-dvt-anticoagulate", "distal-dvt-shared-decision")
    assert len(card["summary"]) < 140
    assert card["indicator"] == "warning"
    assert "- Positive D-dimer: 1200 ng/mL" in card["detail"]  # the deciding factor, its evidence and date
    assert "Observation/" not in card["detail"]  # resources by what they are, never by id
    assert "**Evidence:** CHEST 2016 Grade 2C" in card["detail"]
    assert card["links"][0]["type"] == "smart"  # the full explanation and the references: the pathway view
    assert card["selectionBehavior"] == "at-most-one"
    assert sum(1 for s in card["suggestions"] if s.get("isRecommended")) == 1


def test_cards_differ_with_the_facts(client: FlaskClient) -> None:
    """No canned card: the same DVT with and without a positive D-dimer is decided differently."""
    base = [
        condition("I82.442", display="Acute embolism and thrombosis of left tibial vein", onset=2),
        condition("Z96.651", display="Presence of right artificial knee joint"),
    ]
    provoked = [
        *base,
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": "Patient/pat-1"},
            "period": {"start": "2026-03-01T00:00:00Z", "end": "2026-03-05T00:00:00Z"},
        },
    ]
    without = post(client, PV, hook_request("patient-view", provoked)).get_json()["cards"][0]
    with_ddimer = post(client, PV, hook_request("patient-view", [*provoked, ddimer(900, days=2)])).get_json()["cards"][
        0
    ]
    assert without["source"]["topic"]["code"] != with_ddimer["source"]["topic"]["code"] or (
        without["detail"] != with_ddimer["detail"]
    )
    assert "Positive D-dimer" in with_ddimer["detail"]
    assert "Positive D-dimer" not in without["detail"]


def test_hook_must_match_the_service(client: FlaskClient) -> None:
    body = hook_request("order-sign", [condition("I82.461")])
    response = post(client, PV, body)
    assert response.status_code == 400
    assert "patient-view" in response.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.pop("context"),
        lambda b: b["context"].pop("patientId"),
        lambda b: b.update(context={"patientId": 42}),
        lambda b: b.update(hookInstance=None),
        lambda b: b.update(prefetch=[1, 2]),
        lambda b: b.update(fhirAuthorization={"access_token": "x", "token_type": "Bearer"}),
    ],
)
def test_invalid_requests_are_400_with_where_not_what(client: FlaskClient, mutate) -> None:
    body = hook_request("patient-view", [condition("I82.461")])
    mutate(body)
    response = post(client, PV, body)
    assert response.status_code == 400
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"


def test_unknown_fields_and_extensions_are_tolerated(client: FlaskClient) -> None:
    body = hook_request("patient-view", [condition("E11.9")])
    body["extension"] = {"com.epic.cdshooks.request.bpa-trigger-action": "60"}
    body["somethingFromSpec3"] = {"a": 1}
    body["context"]["newField"] = "x"
    assert post(client, PV, body).status_code == 200


def test_decision_is_audited_without_phi(client: FlaskClient, store) -> None:
    body = hook_request("patient-view", [condition("I82.462", onset=2)], patient_resource=patient(birth="1950-01-01"))
    response = post(client, PV, body)
    card = response.get_json()["cards"][0]
    client.application.extensions["dvt_cds"]["audit"].flush()  # the audit is written in the background
    [row] = store.decisions(body["hookInstance"])
    assert row["status"] == 200
    assert row["topics"] == [card["source"]["topic"]["code"]]
    assert "pat-1" not in json.dumps(row, default=str)
