"""Cards: real R4 orders in suggestions, summaries under 140 characters, escaped resource text, the why in a few
lines (the deciding factors with their evidence and date), and the link to the pathway view for the rest."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service import cards
from cds_service.cards import DETAIL_MAX, CardContext, fit, md
from cds_service.cards.markdown import day
from cds_service.clinical.topics import Topic
from tests.builders import LEFT as LEFT_SIDE
from tests.builders import (
    NOW,
    PERONEAL,
    POPLITEAL,
    SCT,
    TODAY,
    age_birth,
    assess_of,
    concept,
    condition,
    ddimer,
    distal_dvt,
    duplex,
    encounter,
    facts_of,
    medication_request,
    muscular_dvt,
    observation,
    patient,
    provoked_by_surgery,
    service_request,
)

MODELS = {"MedicationRequest": MedicationRequest, "ServiceRequest": ServiceRequest}


RESOURCE_ID = re.compile(r"\b[A-Z][a-z]+(?:[A-Z][a-z]+)*/[A-Za-z0-9\-.]+")
BASE_URL = "https://cds.hospital.example"


def build(resources: list[dict], base_url: str | None = None, **kwargs):
    facts = facts_of(resources, **kwargs)
    assessment = assess_of(resources, **kwargs)
    ctx = CardContext(patient_id="pat-1", encounter_id="enc-1", now=NOW, facts=facts, base_url=base_url)
    topic = assessment.recommendation
    if topic in (Topic.ANTICOAGULATE, Topic.SERIAL_IMAGING, Topic.SHARED_DECISION):
        return cards.recommendation_card(assessment, ctx), assessment
    return {
        Topic.EXTENSION: cards.extension_card,
        Topic.PROXIMAL_DVT: cards.proximal_card,
        Topic.LOCATION_UNKNOWN: cards.location_unknown_card,
        Topic.BILATERAL_SURVEILLANCE: cards.bilateral_card,
    }[topic](assessment, ctx), assessment


SITUATIONS = {
    "serial": [distal_dvt(), provoked_by_surgery()],
    "anticoagulate": [distal_dvt(), ddimer(900, days=2)],
    "shared": [muscular_dvt(), ddimer(900, days=2), provoked_by_surgery()],
    "pregnant": [
        distal_dvt(),
        ddimer(900, days=2),
        observation("82810-3", value_concept=concept(SCT, "77386006")),
        observation("29463-7", value=72, unit="kg"),
    ],
    "extension": [
        distal_dvt(onset=8),
        duplex([PERONEAL], side=LEFT_SIDE, days=8),
        duplex([POPLITEAL], side=LEFT_SIDE, days=1),
    ],
    "proximal": [condition("I82.431", onset=2)],
    "unknown": [condition("I82.409", onset=2)],
    "bilateral": [
        condition("I82.461", onset=2),
        duplex([("264481007", "Gastrocnemius vein")], code="39443-7", days=2),
        service_request("39443-7", due_in=5),
        provoked_by_surgery(),
    ],
}


@pytest.mark.parametrize("name", SITUATIONS)
def test_every_card_is_well_formed(name: str) -> None:
    card, _assessment = build(SITUATIONS[name])
    body = card.to_json()
    assert len(body["summary"]) < 140
    assert body["source"]["topic"]["system"] == "urn:distal-dvt-cds:card-topic"
    assert body["source"]["label"]
    assert body["source"]["url"].startswith("https://")
    detail = body["detail"]
    assert len(detail) <= DETAIL_MAX
    assert "**Evidence:**" in detail
    assert not RESOURCE_ID.search(detail)  # resources are named by what they are and their date
    assert not any(line.startswith("|") for line in detail.splitlines())
    if card.suggestions:
        assert body["selectionBehavior"] == "at-most-one"
        assert sum(bool(s.get("isRecommended")) for s in body["suggestions"]) == 1


@pytest.mark.parametrize("name", SITUATIONS)
def test_suggested_orders_validate_as_r4(name: str) -> None:
    card, _ = build(SITUATIONS[name])
    resources = [a.resource for s in card.suggestions or [] for a in s.actions or [] if a.resource]
    assert resources
    for resource in resources:
        model = MODELS[resource["resourceType"]].model_validate(resource)
        assert model.status == "draft"
        assert model.intent == "order"
        assert resource["subject"] == {"reference": "Patient/pat-1"}
        assert resource["encounter"] == {"reference": "Encounter/enc-1"}


def test_serial_imaging_orders_are_at_7_and_14_days_both_legs_for_muscular() -> None:
    card, _ = build(SITUATIONS["shared"])
    serial = next(s for s in card.suggestions if s.label.startswith("Serial imaging"))
    dates = [a.resource["occurrenceDateTime"] for a in serial.actions]
    assert dates == [(TODAY + timedelta(days=7)).isoformat(), (TODAY + timedelta(days=14)).isoformat()]
    assert {a.resource["code"]["coding"][0]["code"] for a in serial.actions} == {"39420-5"}
    axial, _ = build(SITUATIONS["serial"])
    serial_axial = next(s for s in axial.suggestions if s.label.startswith("Serial imaging"))
    assert {a.resource["code"]["coding"][0]["code"] for a in serial_axial.actions} == {"39432-0"}  # left leg


def test_anticoagulation_order_is_apixaban_for_3_months() -> None:
    card, _ = build(SITUATIONS["anticoagulate"])
    [suggestion] = [s for s in card.suggestions if s.isRecommended]
    order = suggestion.actions[0].resource
    assert order["medicationCodeableConcept"]["coding"][0]["code"] == "1364445"
    assert [d["doseAndRate"][0]["doseQuantity"]["value"] for d in order["dosageInstruction"]] == [10, 5]
    assert order["dispenseRequest"]["expectedSupplyDuration"]["value"] == 90
    assert order["reasonReference"][0]["reference"].startswith("Condition/")


def test_pregnancy_order_is_weight_based_enoxaparin() -> None:
    card, _ = build(SITUATIONS["pregnant"])
    order = next(
        a.resource
        for s in card.suggestions
        for a in s.actions
        if a.resource and a.resource["resourceType"] == "MedicationRequest"
    )
    assert order["medicationCodeableConcept"]["coding"][0]["code"] == "67108"
    assert order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] == {
        "value": 72,
        "unit": "mg",
        "system": "http://unitsofmeasure.org",
        "code": "mg",
    }
    assert order["dosageInstruction"][0]["timing"]["repeat"]["frequency"] == 2


def test_detail_names_factors_with_source_and_date() -> None:
    card, _ = build(SITUATIONS["anticoagulate"])
    drawn = day(TODAY - timedelta(days=2), TODAY)  # "14 Mar": the date as a clinician reads it
    assert f"- Positive D-dimer: 900 ng/mL (≥ 500 ng/mL FEU), {drawn}" in card.detail.splitlines()
    assert f"acute DVT of the left peroneal vein (diagnosis {drawn})" in card.detail
    assert "Observation/" not in card.detail
    assert "Condition/" not in card.detail
    assert card.detail.startswith("**Anticoagulate:**")


def test_detail_has_at_most_five_factor_bullets_and_names_the_rest() -> None:
    many = [
        distal_dvt(severity="24484000"),
        ddimer(900, days=2),
        condition("C18.9", onset=100),
        condition("Z86.718", onset=None),
        duplex(
            [PERONEAL, ("4258007", "Posterior tibial vein")],
            side=LEFT_SIDE,
            length=(8, "cm"),
            diameter=(9, "mm"),
            distance_cm=2,
            days=2,
        ),
    ]
    card, assessment = build(many)
    bullets = [line for line in card.detail.splitlines() if line.startswith("- ")]
    assert len(assessment.for_anticoagulation) >= 6
    assert len(bullets) <= 5
    [others] = [b for b in bullets if b.startswith("- Also: ")]  # by name; each with its source in the pathway view
    named = sum(1 for f in assessment.for_anticoagulation if md(f.label.split(" (")[0]) in others)
    assert named + sum(1 for b in bullets if not b.startswith("- Also: ")) >= len(assessment.for_anticoagulation)


def test_seed_only_factors_count_without_project_jargon() -> None:
    stay = encounter("IMP", start=50, end=40)  # a recent hospitalization: a seed-only factor
    card, assessment = build([distal_dvt(), ddimer(900, days=2), stay])
    seed_only = next(f for f in assessment.for_anticoagulation if f.code == "recent-hospitalization")
    assert not seed_only.chest  # the decision knows where each factor comes from (the pathway view says it)
    assert any(line.startswith("- Recent hospitalization: within 90 days") for line in card.detail.splitlines())
    assert "seed" not in card.detail.lower()
    assert "Listed by" not in card.detail


def test_location_unknown_card_asks_for_the_vein_or_a_whole_leg_duplex() -> None:
    card, _ = build(SITUATIONS["unknown"])
    assert "document the vein" in card.summary
    assert "whole-leg duplex" in card.summary
    assert card.suggestions[0].label == "Order a whole-leg venous duplex ultrasound"


def test_pregnancy_cards_cite_blood_2020() -> None:
    card, _ = build(SITUATIONS["pregnant"])
    [evidence] = [line for line in card.detail.splitlines() if line.startswith("**Evidence:**")]
    assert "Blood 2020;136:2133" in evidence


@pytest.mark.parametrize("name", SITUATIONS)
def test_every_figure_is_attributed_never_stated_as_a_recommendation(name: str) -> None:
    card, _ = build(SITUATIONS[name])
    figures = [line for line in card.detail.replace(". ", ".\n").splitlines() if "%" in line]
    for line in figures:
        assert "a study" in line or "CHEST estimate" in line, line


def test_resource_text_cannot_inject_markup() -> None:
    order = medication_request("0", "x", per_day=None)
    del order["medicationCodeableConcept"]
    hostile = "<script>alert(1)</script> [click](javascript:alert(1)) | **x**"
    order["medicationReference"] = {"reference": "Medication/not-sent", "display": hostile}
    card, _ = build([distal_dvt(), provoked_by_surgery(), order])
    assert "alert(1)" in card.detail  # the text is shown (the drug that could not be read) ...
    assert "<script>" not in card.detail
    assert "[click](javascript" not in card.detail
    assert "\\<script\\>" in card.detail  # ... but inert


def test_md_escapes_and_fit_truncates() -> None:
    assert md("a|b*c_d<e>[f]`g`") == "a\\|b\\*c\\_d\\<e\\>\\[f\\]\\`g\\`"
    assert md("line\nbreak") == "line break"
    assert md("R&D") == "R&amp;D"
    assert len(fit("x" * 300)) == 139
    assert fit("short") == "short"


def test_long_factor_lists_keep_the_summary_short() -> None:
    many = [
        distal_dvt(severity="24484000"),
        ddimer(900, days=2),
        condition("C18.9", onset=100),
        condition("Z86.718", onset=None),
        duplex(
            [PERONEAL, ("4258007", "Posterior tibial vein")],
            side=LEFT_SIDE,
            length=(8, "cm"),
            diameter=(9, "mm"),
            distance_cm=2,
            days=2,
        ),
    ]
    card, assessment = build(many)
    assert len(assessment.for_anticoagulation) >= 6
    assert len(card.summary) < 140


def test_card_states_what_could_not_be_evaluated() -> None:
    card, _ = build([distal_dvt(), provoked_by_surgery()], gaps=(("medications", "MedicationRequest"),))
    assert card.summary.startswith("Current anticoagulation could not be checked: ")
    assert card.detail.startswith("**Current anticoagulation could not be checked** (medication data unavailable).")
    [line] = [line for line in card.detail.splitlines() if line.startswith("**Could not be evaluated:**")]
    assert line == "**Could not be evaluated:** creatinine (renal function); platelets; haemoglobin."
    card, _ = build([distal_dvt(), provoked_by_surgery()], gaps=(("labs", "Observation"),))
    assert "**Could not be evaluated:** results (labs, D-dimer, ultrasound) (not available)" in card.detail


def test_what_is_missing_is_said_once() -> None:
    card, _ = build(SITUATIONS["serial"])
    detail = card.detail.lower()
    for said in ("platelets", "haemoglobin", "creatinine", "d-dimer within 14 days"):
        assert detail.count(said) == 1, said
    [line] = [line for line in card.detail.splitlines() if line.startswith("**Could change this:**")]
    assert "no D-dimer within 14 days of diagnosis" in line


@pytest.mark.parametrize("name", SITUATIONS)
def test_recommendation_extension_and_surveillance_cards_link_to_the_pathway_view(name: str) -> None:
    card, _ = build(SITUATIONS[name], base_url=BASE_URL + "/")
    topic = card.source.topic.code if card.source.topic else ""
    if topic in {t.value for t in cards.PATHWAY_TOPICS}:
        assert card.to_json()["links"] == [
            {"label": "Open the DVT pathway view", "url": f"{BASE_URL}/smart/launch", "type": "smart"}
        ]
    else:  # proximal DVT, veins not documented: nothing more to explain than the card says
        assert card.links is None
    without, _ = build(SITUATIONS[name])
    assert without.links is None  # no public base URL, no link


def test_why_an_option_is_favoured_is_decided_by_the_clinical_core() -> None:
    card, assessment = build(SITUATIONS["shared"])
    assert assessment.favoured_reason == "no high bleeding risk and no stated preference against anticoagulation"
    assert assessment.grade == "CHEST 2016 Grade 2C; CHEST 2021 weak, low-certainty (values and preferences decide)"
    assert f"Why anticoagulation: {assessment.favoured_reason}." in card.detail
    assert f"**Evidence:** {assessment.grade}" in card.detail


def test_card_json_has_no_empty_members() -> None:
    card, _ = build(SITUATIONS["bilateral"], patient_resource=patient(birth=age_birth(40)))
    text = json.dumps(card.to_json())
    assert "null" not in text
    assert "[]" not in text
    assert "{}" not in text
