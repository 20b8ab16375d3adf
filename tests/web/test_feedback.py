"""Feedback: validated, persisted, idempotent, lenient about real EHR variations."""

from __future__ import annotations

import json
from pathlib import Path

from flask.testing import FlaskClient

FB = "/cds-services/distal-dvt-patient-view/feedback"
AHRQ = Path(__file__).resolve().parents[1] / "data" / "ahrq-feedback.json"


def accepted(card: str = "4e0a3a1e-3283-4575-ab82-028d55fe2719") -> dict:
    return {
        "card": card,
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
        "outcomeTimestamp": "2026-03-16T10:05:31Z",
    }


def test_feedback_is_stored(client: FlaskClient, store) -> None:
    response = client.post(FB, json={"feedback": [accepted()]})
    assert response.status_code == 200
    assert response.get_json() == {"stored": 1, "duplicates": 0}
    [row] = store.feedback_rows()
    assert row["service_id"] == "distal-dvt-patient-view"
    assert row["outcome"] == "accepted"
    assert row["accepted_suggestions"] == ["e56e1945-20b3-4393-8503-a1a20fd73152"]


def test_same_card_and_outcome_twice_is_stored_once(client: FlaskClient, store) -> None:
    client.post(FB, json={"feedback": [accepted()]})
    again = client.post(FB, json={"feedback": [accepted(), accepted()]})
    assert again.get_json() == {"stored": 0, "duplicates": 2}
    assert len(store.feedback_rows()) == 1


def test_epic_shape_batched_and_non_uuid(client: FlaskClient, store) -> None:
    body = {
        "feedback": [
            {
                "card": "123456",
                "outcome": "overridden",
                "outcomeTimestamp": "2026-03-16T10:10:23Z",
                "overrideReasons": {
                    "reason": {"code": "3", "system": "urn:oid:1.2.840.114350", "display": "Patient declined"},
                    "userComment": "Patient John Smith refused",
                },
                "extension": {"com.epic.cdshooks.feedback.overrideReason.reasonTitle": "Declined"},
            },
            accepted("abc"),
        ]
    }
    response = client.post(FB, json=body)
    assert response.get_json() == {"stored": 2, "duplicates": 0}
    rows = {r["card_uuid"]: r for r in store.feedback_rows()}
    assert rows["123456"]["override_display"] == "Patient declined"
    assert rows["123456"]["override_has_comment"] is True
    assert "John Smith" not in json.dumps(store.feedback_rows(), default=str)  # free text is not kept


def test_third_party_feedback_example(client: FlaskClient) -> None:
    body = json.loads(AHRQ.read_text())
    assert client.post(FB, json=body).get_json() == {"stored": 2, "duplicates": 0}


def test_invalid_feedback_is_400(client: FlaskClient) -> None:
    for body in (
        {"feedback": [{"card": "x", "outcome": "maybe", "outcomeTimestamp": "2026-03-16T10:00:00Z"}]},
        {"feedback": "yes"},
        {},
        [1],
    ):
        response = client.post(FB, json=body)
        assert response.status_code == 400
        assert response.get_json()["resourceType"] == "OperationOutcome"
