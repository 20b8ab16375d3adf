"""The hooks' cards (docs/clinical/RULES.md "Cards and hooks" R-HOOK-1 to R-HOOK-3, and the order checks R-ORDER-1 to
R-ORDER-4, R-PREG-3, R-PITFALL-1, R-IMAGING-4), one by one, through the HTTP API of each service."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.builders import (
    GASTROCNEMIUS,
    LEFT,
    PERONEAL,
    POPLITEAL,
    SCT,
    apixaban,
    concept,
    condition,
    ddimer,
    distal_dvt,
    draft_orders,
    duplex,
    encounter,
    hook_request,
    medication_request,
    muscular_dvt,
    observation,
    provoked_by_surgery,
    service_request,
)


def call(client: FlaskClient, hook: str, resources: list[dict], **context) -> list[dict]:
    response = client.post(f"/cds-services/distal-dvt-{hook}", json=hook_request(hook, resources, **context))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["cards"]


def topics(cards: list[dict]) -> list[tuple[str, str]]:
    return [(c["source"]["topic"]["code"], c["indicator"]) for c in cards]


# --- patient-view -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ([distal_dvt(), provoked_by_surgery()], "distal-dvt-serial-imaging"),
        ([distal_dvt(), ddimer(900, days=2)], "distal-dvt-anticoagulate"),
        ([muscular_dvt(), ddimer(900, days=2), provoked_by_surgery()], "distal-dvt-shared-decision"),
    ],
)
def test_patient_view_recommendation(client: FlaskClient, resources: list[dict], expected: str) -> None:
    assert topics(call(client, "patient-view", resources)) == [(expected, "warning")]


@pytest.mark.parametrize(
    ("profile", "expected"), [("seed", "distal-dvt-shared-decision"), ("chest", "distal-dvt-serial-imaging")]
)
def test_rule_profile_setting_decides_the_seed_only_factors(make_app, profile: str, expected: str) -> None:
    # Surgery 20 days ago: under seed a recent-surgery factor for anticoagulation and, as a bleeding factor, a
    # moderate bleeding risk for serial imaging (both seed only); under CHEST it only makes the episode provoked.
    client = make_app(rule_profile=profile).test_client()
    assert topics(call(client, "patient-view", [distal_dvt(), provoked_by_surgery(days=20)])) == [(expected, "warning")]


def test_patient_view_extension(client: FlaskClient) -> None:
    first = duplex([PERONEAL], side=LEFT, days=8)
    proximal = duplex([PERONEAL, POPLITEAL], side=LEFT, days=1)
    assert topics(call(client, "patient-view", [distal_dvt(onset=8), first, proximal])) == [
        ("distal-dvt-extension", "critical")
    ]
    calf = duplex([PERONEAL, ("4258007", "Posterior tibial vein")], side=LEFT, days=1)
    assert topics(call(client, "patient-view", [distal_dvt(onset=8), first, calf])) == [
        ("distal-dvt-extension", "warning")
    ]


def test_patient_view_proximal_dvt(client: FlaskClient) -> None:
    assert topics(call(client, "patient-view", [condition("I82.432", onset=3)])) == [("proximal-dvt", "critical")]


def test_patient_view_bilateral_surveillance(client: FlaskClient) -> None:
    resources = [
        condition("I82.461", onset=2),
        duplex([GASTROCNEMIUS], code="39443-7", days=2),
        service_request("39443-7", due_in=5),
        provoked_by_surgery(),
    ]
    assert topics(call(client, "patient-view", resources)) == [("distal-dvt-bilateral-surveillance", "info")]


def test_patient_view_location_unknown(client: FlaskClient) -> None:
    assert topics(call(client, "patient-view", [condition("I82.409", onset=2)])) == [("dvt-location-unknown", "info")]


# --- order-select and order-sign --------------------------------------------------------------------------------
PREGNANT = observation("82810-3", value_concept=concept(SCT, "77386006", "Pregnant"))


def orders_call(
    client: FlaskClient, hook: str, resources: list[dict], drafts: list[dict], selections: list[str] | None = None
) -> list[dict]:
    context: dict = {"draftOrders": draft_orders(*drafts)}
    if hook == "order-select":
        context["selections"] = selections or [f"{d['resourceType']}/{d['id']}" for d in drafts]
    return call(client, hook, resources, **context)


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_pregnancy_anticoagulant(client: FlaskClient, hook: str) -> None:
    warfarin = medication_request(
        "855332", "warfarin sodium 5 MG Oral Tablet", dose=5, per_day=1, status="draft", resource_id="w1"
    )
    cards = orders_call(client, hook, [distal_dvt(), ddimer(900, days=2), PREGNANT], [warfarin])
    assert ("pregnancy-anticoagulant", "critical") in topics(cards)
    card = next(c for c in cards if c["source"]["topic"]["code"] == "pregnancy-anticoagulant")
    actions = card["suggestions"][0]["actions"]
    assert actions[0] == {
        "type": "delete",
        "description": "Remove the drafted warfarin",
        "resourceId": "MedicationRequest/w1",
    }
    assert actions[1]["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "67108"


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_anticoagulation_duration(client: FlaskClient, hook: str) -> None:
    cards = orders_call(client, hook, [distal_dvt(), ddimer(900, days=2)], [apixaban(status="draft", days=30)])
    assert topics(cards) == [("anticoagulation-duration", "info")]


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_anticoagulant_caution(client: FlaskClient, hook: str) -> None:
    platelets = observation("777-3", value=40, unit="10*3/uL")
    cards = orders_call(client, hook, [distal_dvt(), ddimer(900, days=2), platelets], [apixaban(status="draft")])
    assert ("anticoagulant-caution", "warning") in topics(cards)


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_serial_imaging_alternative(client: FlaskClient, hook: str) -> None:
    cards = orders_call(client, hook, [distal_dvt(), provoked_by_surgery()], [apixaban(status="draft")])
    assert topics(cards) == [("distal-dvt-serial-imaging", "info")]
    suggestion = cards[0]["suggestions"][0]
    assert [a["type"] for a in suggestion["actions"]] == ["delete", "create", "create"]


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_limited_compression_ultrasound(client: FlaskClient, hook: str) -> None:
    limited = service_request("46301-8", status="draft")
    suspected = [distal_dvt(verification="differential")]
    if hook == "order-select":
        context = {"draftOrders": draft_orders(limited), "selections": [f"ServiceRequest/{limited['id']}"]}
        cards = call(client, hook, suspected, **context)
    else:
        cards = orders_call(client, hook, suspected, [limited])
    assert topics(cards) == [("limited-compression-ultrasound", "warning")]


def test_order_select_looks_only_at_the_selections(client: FlaskClient) -> None:
    risky = medication_request("855332", "warfarin sodium 5 MG Oral Tablet", dose=5, status="draft", resource_id="w2")
    harmless = service_request("39420-5", status="draft")
    cards = orders_call(
        client,
        "order-select",
        [distal_dvt(), ddimer(900, days=2), PREGNANT],
        [risky, harmless],
        selections=[f"ServiceRequest/{harmless['id']}"],
    )
    assert cards == []
    signed = orders_call(client, "order-sign", [distal_dvt(), ddimer(900, days=2), PREGNANT], [risky, harmless])
    assert ("pregnancy-anticoagulant", "critical") in topics(signed)


def test_medication_reference_inside_draft_orders(client: FlaskClient) -> None:
    med = {
        "resourceType": "Medication",
        "id": "med-x",
        "code": concept("http://www.nlm.nih.gov/research/umls/rxnorm", "855332", "warfarin sodium 5 MG Oral Tablet"),
    }
    draft = medication_request("855332", "x", dose=5, status="draft", resource_id="w3")
    del draft["medicationCodeableConcept"]
    draft["medicationReference"] = {"reference": "Medication/med-x"}
    cards = call(client, "order-sign", [distal_dvt(), PREGNANT], draftOrders=draft_orders(draft, med))
    assert ("pregnancy-anticoagulant", "critical") in topics(cards)


# --- encounter-discharge ----------------------------------------------------------------------------------------
def test_encounter_discharge_surveillance_gap(client: FlaskClient) -> None:
    stay = encounter("IMP", status="in-progress", start=4, end=None, resource_id="stay-1")
    cards = call(client, "encounter-discharge", [distal_dvt(), stay, provoked_by_surgery()], encounterId="stay-1")
    assert topics(cards) == [("distal-dvt-surveillance-gap", "critical")]
    assert {s["label"].split(":")[0] for s in cards[0]["suggestions"]} == {"Anticoagulate", "Serial imaging"}


def test_encounter_discharge_with_imaging_arranged(client: FlaskClient) -> None:
    stay = encounter("IMP", status="in-progress", start=4, end=None, resource_id="stay-2")
    resources = [distal_dvt(), stay, service_request("39432-0", due_in=6)]
    assert call(client, "encounter-discharge", resources, encounterId="stay-2") == []


# --- no card ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hook", ["patient-view", "encounter-discharge"])
def test_no_dvt_or_managed_means_no_card(client: FlaskClient, hook: str) -> None:
    context = {"encounterId": "stay-3"} if hook == "encounter-discharge" else {}
    stay = encounter("IMP", status="in-progress", start=4, end=None, resource_id="stay-3")
    assert call(client, hook, [condition("E11.9"), stay], **context) == []
    assert call(client, hook, [distal_dvt(), apixaban(), stay], **context) == []


def test_order_sign_with_nothing_to_say(client: FlaskClient) -> None:
    assert (
        orders_call(client, "order-sign", [distal_dvt(), ddimer(900, days=2)], [apixaban(status="draft", days=90)])
        == []
    )
