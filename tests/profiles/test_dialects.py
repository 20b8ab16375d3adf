"""Requests as Epic and the CDS Hooks sandbox send them, Epic's native triggers, Oracle Health's discharge, and the
profiles' reshaping rules one by one."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from flask import Flask

from cds_service.profiles import OrderCatalog, ShapeContext, profile
from cds_service.profiles.epic import camel
from cds_service.profiles.oracle import tables_to_bullets
from cds_service.protocol import Action, Card, Coding, Link, Source, Suggestion
from tests.builders import (
    PATIENT_ID,
    apixaban,
    condition,
    ddimer,
    distal_dvt,
    draft_orders,
    encounter,
    hook_request,
    medication_request,
    observation,
    provoked_by_surgery,
)

EPIC_BASE = "https://fhir.example-epic.org/api/FHIR/R4"
TRIGGER = "com.epic.cdshooks.request.bpa-trigger-action"


def topics(body: dict[str, Any]) -> list[str]:
    return sorted(c["source"]["topic"]["code"] for c in body["cards"])


def post(app: Flask, hook: str, body: dict[str, Any]) -> dict[str, Any]:
    response = app.test_client().post(f"/cds-services/distal-dvt-{hook}", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def epic_shaped(request: dict[str, Any], trigger: str | None = None) -> dict[str, Any]:
    """Epic's request: its extension block (spec version 1.0), absolute references, and an OperationOutcome
    entry in an empty search (CONFORMANCE.md §4)."""
    shaped = copy.deepcopy(request)
    shaped["extension"] = {
        "com.epic.cdshooks.request.cds-hooks-specification-version": "1.0",
        "com.epic.cdshooks.request.fhir-version": "R4",
        "com.epic.cdshooks.request.criteria-id": "1234",
        "com.epic.cdshooks.request.epic-version": "11.2",
    }
    if trigger:
        shaped["extension"][TRIGGER] = trigger
    for value in shaped.get("prefetch", {}).values():
        for entry in (value or {}).get("entry", []) if isinstance(value, dict) else []:
            subject = entry.get("resource", {}).get("subject")
            if isinstance(subject, dict) and subject.get("reference", "").startswith("Patient/"):
                subject["reference"] = f"{EPIC_BASE}/{subject['reference']}"
    empty = shaped["prefetch"].get("procedures")
    if isinstance(empty, dict) and not empty.get("entry"):
        empty["entry"] = [
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "information", "code": "informational", "diagnostics": "No results."}],
                },
                "search": {"mode": "outcome"},
            }
        ]
    return shaped


# --- Epic-shaped requests through every hook --------------------------------------------------------------------
@pytest.mark.parametrize("hook", ["patient-view", "order-select", "order-sign", "encounter-discharge"])
def test_epic_shaped_requests_give_the_same_answer(make_app, hook: str) -> None:
    pregnant = condition("Z33.1", display="Pregnant state, incidental")
    record = [
        distal_dvt(),
        ddimer(900, days=2),
        pregnant,
        encounter("IMP", status="in-progress", end=None, resource_id="e1"),
    ]
    warfarin = medication_request("855332", "warfarin sodium 5 MG Oral Tablet", dose=5, per_day=1, status="draft")
    context: dict[str, Any] = {"encounterId": "e1"}
    if hook in ("order-select", "order-sign"):
        context["draftOrders"] = draft_orders(warfarin)
    if hook == "order-select":
        context["selections"] = [f"MedicationRequest/{warfarin['id']}"]
    plain = hook_request(hook, record, **context)
    hl7 = make_app()
    epic = make_app(ehr_profile="epic")
    expected = topics(post(hl7, hook, plain))
    assert expected, hook
    assert topics(post(hl7, hook, epic_shaped(plain))) == expected  # Epic's request shape changes nothing
    shaped = post(epic, hook, epic_shaped(plain))
    assert sorted(profile("epic").topic_from_code(t) for t in topics(shaped)) == expected


def test_epic_discharge_trigger_runs_the_discharge_checks_in_patient_view(make_app) -> None:
    app = make_app(ehr_profile="epic")
    request = hook_request("patient-view", [distal_dvt(), provoked_by_surgery()])
    assert topics(post(app, "patient-view", epic_shaped(request))) == ["DistalDvtSerialImaging"]
    discharge = post(app, "patient-view", epic_shaped(request, trigger="27"))
    assert topics(discharge) == ["DistalDvtSurveillanceGap"]
    assert discharge["cards"][0]["indicator"] == "critical"


@pytest.mark.parametrize("trigger", ["18", "23"])
def test_epic_order_triggers_check_the_drafts_sent_with_patient_view(make_app, trigger: str) -> None:
    pregnant = observation(
        "82810-3", value_concept={"coding": [{"system": "http://snomed.info/sct", "code": "77386006"}]}
    )
    warfarin = medication_request("855332", "warfarin sodium 5 MG Oral Tablet", dose=5, per_day=1, status="draft")
    request = hook_request("patient-view", [distal_dvt(), pregnant], draftOrders=draft_orders(warfarin))
    app = make_app(ehr_profile="epic")
    without = topics(post(app, "patient-view", epic_shaped(request)))
    assert "PregnancyAnticoagulant" not in without  # chart open: no order checks
    with_trigger = topics(post(app, "patient-view", epic_shaped(request, trigger=trigger)))
    assert "PregnancyAnticoagulant" in with_trigger


def test_oracle_patient_view_runs_the_discharge_checks_when_the_encounter_is_being_discharged(make_app) -> None:
    leaving = encounter("IMP", status="finished", start=5, end=0, resource_id="e-leaving")
    long_gone = encounter("IMP", status="finished", start=60, end=50, resource_id="e-old")
    oracle = make_app(ehr_profile="oracle")
    hl7 = make_app()
    record = [distal_dvt(), provoked_by_surgery()]
    discharging = hook_request("patient-view", [*record, leaving], encounterId="e-leaving")
    discharge_answer = topics(
        post(
            hl7, "encounter-discharge", hook_request("encounter-discharge", [*record, leaving], encounterId="e-leaving")
        )
    )
    assert discharge_answer == ["distal-dvt-surveillance-gap"]
    assert topics(post(oracle, "patient-view", discharging)) == discharge_answer
    # the specification's patient-view is the chart-open answer, whatever the encounter is doing
    assert topics(post(hl7, "patient-view", discharging)) == ["distal-dvt-anticoagulate"]
    visiting = hook_request("patient-view", [*record, long_gone], encounterId="e-old")
    chart_open = topics(post(hl7, "patient-view", visiting))
    assert "distal-dvt-surveillance-gap" not in chart_open
    assert topics(post(oracle, "patient-view", visiting)) == chart_open  # an old encounter is not a discharge


# --- the CDS Hooks sandbox's draft orders -------------------------------------------------------------------------
def sandbox_draft(medication: dict[str, Any]) -> dict[str, Any]:
    """How cds-hooks/sandbox builds a draft (VENDOR-SHAPES.md §6): category and reasonCode single objects, a dose
    in {pill}, no text, no route; the Bundle has no type."""
    return {
        "resourceType": "MedicationRequest",
        "id": "request-123",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "authoredOn": "2026-03-16",
        "medicationCodeableConcept": medication,
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {"doseQuantity": {"value": 1, "system": "http://unitsofmeasure.org", "code": "{pill}"}}
                ],
            }
        ],
        "dispenseRequest": {
            "expectedSupplyDuration": {"value": 30, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}
        },
        "category": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category", "code": "community"}
            ]
        },
        "reasonCode": {"coding": [{"system": "http://snomed.info/sct", "code": "128053003"}]},
    }


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_a_sandbox_draft_with_category_as_an_object_is_checked(client, hook: str) -> None:
    warfarin = {
        "text": "Warfarin Sodium 5 MG Oral Tablet",
        "coding": [
            {
                "display": "Warfarin Sodium 5 MG Oral Tablet",
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "855332",
            }
        ],
    }
    pregnant = condition("Z33.1", display="Pregnant state, incidental")
    context: dict[str, Any] = {
        "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": sandbox_draft(warfarin)}]}
    }
    if hook == "order-select":
        context["selections"] = ["MedicationRequest/request-123"]
    response = client.post(
        f"/cds-services/distal-dvt-{hook}", json=hook_request(hook, [distal_dvt(), pregnant], **context)
    )
    assert response.status_code == 200
    assert "pregnancy-anticoagulant" in topics(response.get_json())  # not "All clear!"


def test_a_draft_that_cannot_be_read_is_said_never_silence(client) -> None:
    unreadable = sandbox_draft({"text": "warfarin 5 mg"})
    unreadable["dosageInstruction"] = "take one tablet daily"  # not a Dosage at all: still invalid after normalising
    context = {"draftOrders": {"resourceType": "Bundle", "entry": [{"resource": unreadable}]}}
    body = client.post(
        "/cds-services/distal-dvt-order-sign", json=hook_request("order-sign", [distal_dvt()], **context)
    )
    cards = body.get_json()["cards"]
    [card] = [c for c in cards if c["source"]["topic"]["code"] == "draft-order-not-checked"]
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Could not check warfarin 5 mg: it is not valid FHIR R4")


def test_a_drafted_drug_that_cannot_be_identified_is_said(client) -> None:
    unknown = apixaban(status="draft")
    del unknown["medicationCodeableConcept"]
    unknown["medicationReference"] = {"reference": "Medication/not-in-the-bundle"}
    context = {"draftOrders": draft_orders(unknown)}
    body = client.post(
        "/cds-services/distal-dvt-order-sign", json=hook_request("order-sign", [distal_dvt()], **context)
    )
    assert "draft-order-not-checked" in topics(body.get_json())


def test_two_drafted_anticoagulants_are_both_checked(client) -> None:
    first = apixaban(status="draft")
    second = medication_request("855332", "warfarin sodium 5 MG Oral Tablet", dose=5, per_day=1, status="draft")
    context = {"draftOrders": draft_orders(first, second)}
    body = client.post(
        "/cds-services/distal-dvt-order-sign", json=hook_request("order-sign", [distal_dvt()], **context)
    )
    cautions = [c for c in body.get_json()["cards"] if c["source"]["topic"]["code"] == "anticoagulant-caution"]
    assert len(cautions) == 2  # one per drafted anticoagulant, not one per topic
    assert all("Another anticoagulant is drafted too" in c["detail"] for c in cautions)


# --- the reshaping rules ------------------------------------------------------------------------------------------
def _card(*suggestions: Suggestion, indicator: str = "warning", detail: str = "", topic: str = "x") -> Card:
    return Card(
        summary="s",
        detail=detail or None,
        indicator=indicator,  # type: ignore[arg-type]
        source=Source(label="l", topic=Coding(system="urn:t", code=topic)),
        suggestions=list(suggestions) or None,
        selectionBehavior="at-most-one" if suggestions else None,
    )


def _create(kind: str, description: str, key: str | None = None) -> Action:
    resource: dict[str, Any] = {"resourceType": kind}
    if kind == "MedicationRequest":
        resource["medicationCodeableConcept"] = {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1364445"}]
        }
    else:
        resource["code"] = {"coding": [{"system": "http://loinc.org", "code": "39420-5"}]}
    return Action(type="create", description=description, resource=resource, order_key=key)


def test_epic_splits_suggestions_into_one_action_each_and_uses_any() -> None:
    replace = Suggestion(
        label="Replace warfarin with enoxaparin",
        isRecommended=True,
        actions=[
            Action(type="delete", description="Remove the drafted warfarin", resourceId="MedicationRequest/w"),
            _create("MedicationRequest", "Order enoxaparin 1 mg/kg every 12 hours"),
        ],
    )
    scans = Suggestion(
        label="Serial imaging",
        actions=[_create("ServiceRequest", "day 7 on 2026-03-23"), _create("ServiceRequest", "day 14 on 2026-03-30")],
        order_set_key="orderset.serial-imaging.bilateral",
    )
    [card] = profile("epic").shape(
        [_card(replace, scans, topic="pregnancy-anticoagulant")], ShapeContext("order-sign", OrderCatalog())
    )
    assert card.selectionBehavior == "any"
    assert [len(s.actions or []) for s in card.suggestions or []] == [1, 1, 1, 1]
    assert [s.isRecommended for s in card.suggestions or []][:2] == [True, True]
    assert card.source.topic is not None
    assert card.source.topic.code == "PregnancyAnticoagulant"
    medication = (card.suggestions or [])[1].actions[0].resource  # type: ignore[index]
    assert medication["medicationCodeableConcept"]["coding"][0]["system"] == "urn:oid:2.16.840.1.113883.6.88"


def test_epic_uses_the_sites_order_set_for_serial_imaging() -> None:
    catalog = OrderCatalog(
        {
            "orderset.serial-imaging.bilateral": [
                {"system": "urn:com.epic.cdshooks.action.code.system.orderset-item", "code": "77"}
            ]
        }
    )
    scans = Suggestion(
        label="Serial imaging",
        actions=[
            _create("ServiceRequest", "Order duplex on 2026-03-23"),
            _create("ServiceRequest", "Order duplex on 2026-03-30"),
        ],
        order_set_key="orderset.serial-imaging.bilateral",
    )
    [card] = profile("epic").shape([_card(scans)], ShapeContext("patient-view", catalog))
    [suggestion] = card.suggestions or []
    [action] = suggestion.actions or []
    assert action.resource["code"]["coding"][0]["code"] == "77"  # type: ignore[index]
    assert "2026-03-23" in action.description
    assert "2026-03-30" in action.description


def test_every_profile_puts_the_sites_order_code_first() -> None:
    catalog = OrderCatalog({"anticoagulation.apixaban.3-months": [{"system": "urn:site", "code": "A1"}]})
    order = Suggestion(
        label="a", actions=[_create("MedicationRequest", "Order apixaban", "anticoagulation.apixaban.3-months")]
    )
    other = Suggestion(
        label="b", actions=[_create("MedicationRequest", "Order apixaban", "anticoagulation.enoxaparin.renal")]
    )
    for name in ("hl7", "epic", "oracle"):
        [card] = profile(name).shape([_card(order, other)], ShapeContext("patient-view", catalog))
        mapped, unmapped = [s.actions[0].resource["medicationCodeableConcept"]["coding"] for s in card.suggestions]  # type: ignore[index]
        assert mapped[0] == {"system": "urn:site", "code": "A1"}
        assert len(mapped) == 2
        assert all(c.get("system") != "urn:site" for c in unmapped)


def test_oracle_turns_tables_into_bullets_and_keeps_critical_for_harm_only() -> None:
    table = (
        "Intro\n\n| Factor | Favours |\n|---|---|\n| positive D-dimer | anticoagulation |\n| muscular | serial |\n\nEnd"
    )
    assert tables_to_bullets(table) == "Intro\n\n- positive D-dimer (anticoagulation)\n- muscular (serial)\n\nEnd"
    shaped = profile("oracle").shape(
        [
            _card(indicator="critical", detail=table, topic="distal-dvt-anticoagulate"),
            _card(indicator="critical", topic="proximal-dvt"),
        ],
        ShapeContext("patient-view", OrderCatalog()),
    )
    assert [c.indicator for c in shaped] == ["warning", "critical"]
    assert "|" not in (shaped[0].detail or "")


def test_epic_topic_codes_are_alphanumeric_and_map_back() -> None:
    assert camel("distal-dvt-anticoagulate") == "DistalDvtAnticoagulate"
    assert profile("epic").topic_from_code("DistalDvtAnticoagulate") == "distal-dvt-anticoagulate"
    assert profile("hl7").topic_code("proximal-dvt") == "proximal-dvt"


def test_the_pathway_link_is_kept_by_every_profile_and_oracle_sends_no_app_context() -> None:
    link = Link(label="Open the DVT pathway view", url="https://cds.example/smart/launch", type="smart")
    card = _card(topic="distal-dvt-anticoagulate").model_copy(update={"links": [link]})
    for name in ("hl7", "epic", "oracle"):
        [shaped] = profile(name).shape([card], ShapeContext("patient-view", OrderCatalog()))
        assert shaped.links == [link]
    with_context = card.model_copy(update={"links": [link.model_copy(update={"appContext": "episode=1"})]})
    [epic] = profile("epic").shape([with_context], ShapeContext("patient-view", OrderCatalog()))
    [oracle] = profile("oracle").shape([with_context], ShapeContext("patient-view", OrderCatalog()))
    assert epic.links[0].appContext == "episode=1"  # type: ignore[index]
    assert oracle.links == [link]  # "appContext is not currently supported"


def test_cards_through_http_link_to_the_pathway_view_under_the_public_base_url(make_app) -> None:
    app = make_app(public_base_url="https://cds.hospital.example/")
    body = post(app, "patient-view", hook_request("patient-view", [distal_dvt(), ddimer(900, days=2)]))
    [card] = body["cards"]
    assert card["links"] == [
        {"label": "Open the DVT pathway view", "url": "https://cds.hospital.example/smart/launch", "type": "smart"}
    ]
