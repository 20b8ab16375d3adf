"""A DVT diagnosis whose Condition is not valid FHIR R4 (the CDS Hooks sandbox's default DSTU2 server, an STU3
interface, a broken feed) is never silence: patient-view says it could not be read and recommends nothing built on
it."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.builders import PATIENT_ID, apixaban, distal_dvt, hook_request


def dstu2_condition(
    verification: str = "confirmed", code: str = "128053003", display: str = "Deep venous thrombosis"
) -> dict[str, Any]:
    """A DSTU2 Condition: ``patient`` for ``subject``, statuses as plain strings, ``dateRecorded``."""
    return {
        "resourceType": "Condition",
        "id": "dstu2-dvt",
        "patient": {"reference": f"Patient/{PATIENT_ID}"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]},
        "clinicalStatus": "active",
        "verificationStatus": verification,
        "dateRecorded": "2026-11-28",
    }


def cards(client: FlaskClient, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.post("/cds-services/distal-dvt-patient-view", json=hook_request("patient-view", resources))
    assert response.status_code == 200
    return response.get_json()["cards"]


def test_an_unreadable_dvt_diagnosis_is_said_not_silenced(client: FlaskClient) -> None:
    [card] = cards(client, [dstu2_condition()])
    assert card["source"]["topic"]["code"] == "dvt-location-unknown"
    assert card["indicator"] == "info"
    assert card["summary"].startswith("A DVT diagnosis could not be read (not valid FHIR R4)")
    assert "the record holds a DVT diagnosis this service could not read (not valid FHIR R4" in card["detail"]
    assert "Condition/" not in card["detail"]  # said in words, never by resource id
    assert "suggestions" not in card  # no order built on a record the service could not read


def test_a_refuted_unreadable_diagnosis_gives_no_card(client: FlaskClient) -> None:
    assert cards(client, [dstu2_condition(verification="refuted")]) == []


def test_an_unreadable_condition_that_is_not_a_dvt_gives_no_card(client: FlaskClient) -> None:
    assert cards(client, [dstu2_condition(code="38341003", display="Hypertension")]) == []


def test_an_anticoagulated_patient_gets_no_card_for_it(client: FlaskClient) -> None:
    assert cards(client, [dstu2_condition(), apixaban()]) == []


def test_a_readable_dvt_beside_it_decides_and_the_unreadable_one_is_noted(client: FlaskClient) -> None:
    [card] = cards(client, [dstu2_condition(), distal_dvt()])
    assert card["source"]["topic"]["code"] != "dvt-location-unknown"
    assert "a Condition resource failed FHIR R4 validation" in card["detail"]
