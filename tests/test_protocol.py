"""The CDS Hooks wire models: what we accept, what we reject, what we send."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cds_service.protocol import (
    Action,
    Card,
    CdsResponse,
    Coding,
    EncounterDischargeContext,
    FeedbackRequest,
    HookRequest,
    OrderSelectContext,
    OrderSignContext,
    PatientViewContext,
    Source,
    Suggestion,
    prune_empty,
)

BASE = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "context": {}}


def test_request_tolerates_unknown_fields_and_extensions() -> None:
    request = HookRequest.model_validate(
        {**BASE, "extension": {"com.epic.cdshooks.request.fhir-version": "R4"}, "somethingNew": 1}
    )
    assert request.extension == {"com.epic.cdshooks.request.fhir-version": "R4"}


@pytest.mark.parametrize(
    "change",
    [
        {"hook": 5},
        {"hookInstance": ""},
        {"context": "patient"},
        {"prefetch": {"patient": "Patient/1"}},
        {"fhirServer": "not a url"},
        {"fhirServer": "ftp://fhir.example.org"},
        {"fhirAuthorization": {"access_token": "t", "token_type": "Bearer"}},  # cds-r-1: needs fhirServer
        {"fhirServer": "https://fhir.example.org", "fhirAuthorization": {"token_type": "Bearer"}},
        {"fhirServer": "https://fhir.example.org", "fhirAuthorization": {"access_token": "t", "token_type": "MAC"}},
    ],
)
def test_request_rejects_wrong_types_and_broken_invariants(change: dict) -> None:
    with pytest.raises(ValidationError):
        HookRequest.model_validate({**BASE, **change})


def test_missing_required_fields_are_rejected() -> None:
    for missing in ("hook", "hookInstance", "context"):
        body = {k: v for k, v in BASE.items() if k != missing}
        with pytest.raises(ValidationError):
            HookRequest.model_validate(body)


def test_access_token_is_secret_in_repr() -> None:
    request = HookRequest.model_validate(
        {
            **BASE,
            "fhirServer": "https://fhir.example.org/r4/",
            "fhirAuthorization": {
                "access_token": "s3cr3t-token",
                "token_type": "bearer",
                "expires_in": 300,
                "scope": "patient/*.read",
                "subject": "cds",
            },
        }
    )
    assert "s3cr3t-token" not in repr(request)
    assert request.access_token == "s3cr3t-token"
    assert request.fhirServer == "https://fhir.example.org/r4"


def test_null_prefetch_values_are_accepted() -> None:
    request = HookRequest.model_validate({**BASE, "prefetch": {"patient": None}})
    assert request.prefetch == {"patient": None}


@pytest.mark.parametrize(
    "patient_id", ["123", "eq081-VQEgP8drUUqCWzHfw3", "T1wI5bk8n1YVgvWk9D05BmRV0Pi3ECImNSK8DKyKltsMB" * 4]
)
def test_context_accepts_fhir_and_epic_ids(patient_id: str) -> None:
    assert PatientViewContext.model_validate({"patientId": patient_id}).patientId == patient_id


@pytest.mark.parametrize("patient_id", ["", "a/b", "x?y=1", "a b", "../../etc", "p#1"])
def test_context_rejects_ids_that_would_change_a_url(patient_id: str) -> None:
    with pytest.raises(ValidationError):
        PatientViewContext.model_validate({"patientId": patient_id})


def test_order_contexts_need_draft_orders_and_selections() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "MedicationRequest", "id": "m1"}}],
    }
    sign = OrderSignContext.model_validate({"patientId": "p", "draftOrders": bundle})
    assert sign.draft_resources()[0]["id"] == "m1"
    with pytest.raises(ValidationError):
        OrderSignContext.model_validate({"patientId": "p"})
    with pytest.raises(ValidationError):
        OrderSignContext.model_validate({"patientId": "p", "draftOrders": {"resourceType": "Patient"}})
    with pytest.raises(ValidationError):
        OrderSelectContext.model_validate({"patientId": "p", "draftOrders": bundle, "selections": []})
    with pytest.raises(ValidationError):
        OrderSelectContext.model_validate({"patientId": "p", "draftOrders": bundle, "selections": ["m1"]})
    assert OrderSelectContext.model_validate(
        {"patientId": "p", "draftOrders": bundle, "selections": ["MedicationRequest/m1"]}
    ).selections == ["MedicationRequest/m1"]


def test_encounter_discharge_requires_the_encounter() -> None:
    with pytest.raises(ValidationError):
        EncounterDischargeContext.model_validate({"patientId": "p"})
    assert EncounterDischargeContext.model_validate({"patientId": "p", "encounterId": "e1"}).encounterId == "e1"


def _card(**kwargs) -> Card:
    values = {"summary": "s", "indicator": "info", "source": Source(label="x")}
    values.update(kwargs)
    return Card(**values)


def test_card_serialisation_omits_absent_optional_fields() -> None:
    body = CdsResponse(cards=[_card()]).to_json()
    card = body["cards"][0]
    assert set(card) == {"uuid", "summary", "indicator", "source"}
    assert card["source"] == {"label": "x"}
    assert CdsResponse(cards=[]).to_json() == {"cards": []}


def test_summary_must_be_under_140_characters() -> None:
    _card(summary="x" * 139)
    with pytest.raises(ValidationError):
        _card(summary="x" * 140)


def test_suggestions_need_selection_behavior_and_at_most_one_recommended() -> None:
    one = Suggestion(
        label="a",
        isRecommended=True,
        actions=[Action(type="create", description="d", resource={"resourceType": "ServiceRequest"})],
    )
    two = Suggestion(label="b", isRecommended=True)
    with pytest.raises(ValidationError):
        _card(suggestions=[one])
    with pytest.raises(ValidationError):
        _card(suggestions=[one, two], selectionBehavior="at-most-one")
    assert _card(suggestions=[one, two], selectionBehavior="any").suggestions


def test_override_reasons_need_display() -> None:
    with pytest.raises(ValidationError):
        _card(overrideReasons=[Coding(system="s", code="c")])


def test_prune_empty_drops_null_and_empty_members_recursively() -> None:
    assert prune_empty({"a": None, "b": "", "c": [], "d": {}, "e": {"f": None, "g": 1}, "h": [{"i": []}]}) == {
        "e": {"g": 1},
        "h": [{}],
    }


def test_feedback_accepts_spec_epic_and_batched_shapes() -> None:
    parsed = FeedbackRequest.model_validate(
        {
            "feedback": [
                {
                    "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
                    "outcome": "accepted",
                    "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
                    "outcomeTimestamp": "2021-12-11T10:05:31Z",
                },
                {
                    "card": "123456",
                    "outcome": "overridden",
                    "outcomeTimestamp": "2021-12-11T10:05:31-05:00",
                    "overrideReasons": {
                        "reason": {"code": "1", "system": "urn:epic", "display": "Not relevant"},
                        "userComment": "free text",
                    },
                    "extension": {"com.epic.cdshooks.feedback.overrideReason.reasonCategory": "x"},
                },
                {
                    "card": "789",
                    "outcome": "overridden",
                    "outcomeTimestamp": "2021-12-11T10:05:31",
                    "overrideReasons": [{"reason": {"code": "2", "system": "urn:epic"}}],
                },
            ]
        }
    )
    assert [f.card for f in parsed.feedback] == ["4e0a3a1e-3283-4575-ab82-028d55fe2719", "123456", "789"]
    assert parsed.feedback[1].overrideReason.reason.display == "Not relevant"
    assert parsed.feedback[1].outcomeTimestamp.utcoffset().total_seconds() == 0
    assert parsed.feedback[2].overrideReason.reason.code == "2"


@pytest.mark.parametrize(
    "item",
    [
        {"card": "c", "outcome": "ignored", "outcomeTimestamp": "2021-12-11T10:05:31Z"},
        {"card": "", "outcome": "accepted", "outcomeTimestamp": "2021-12-11T10:05:31Z"},
        {"card": "c", "outcome": "accepted", "outcomeTimestamp": "yesterday"},
        {"card": "c", "outcome": "accepted"},
    ],
)
def test_feedback_rejects_invalid_items(item: dict) -> None:
    with pytest.raises(ValidationError):
        FeedbackRequest.model_validate({"feedback": [item]})
    with pytest.raises(ValidationError):
        FeedbackRequest.model_validate({"feedback": []})
