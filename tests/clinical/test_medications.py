"""Anticoagulant recognition, daily dose, treatment vs prophylactic intensity, duration
(docs/clinical/RULES.md R-MED-1, R-MED-2)."""

from __future__ import annotations

import pytest

from cds_service.clinical.medications import (
    MedicationLookup,
    anticoagulant_of,
    duration_days,
    intensity,
    medication_use,
    strength_of,
)
from cds_service.clinical.model import DoseIntensity
from tests.builders import RX, concept, distal_dvt, facts_of, medication_request


@pytest.mark.parametrize(
    ("code", "agent"),
    [
        ("1364430", "apixaban"),
        ("1364445", "apixaban"),
        ("1364447", "apixaban"),
        ("1364436", "apixaban"),
        ("1992427", "apixaban"),
        ("1114195", "rivaroxaban"),
        ("1232082", "rivaroxaban"),
        ("1549682", "rivaroxaban"),
        ("1037045", "dabigatran"),
        ("1599555", "edoxaban"),
        ("855332", "warfarin"),
        ("11289", "warfarin"),
        ("854248", "enoxaparin"),
        ("67108", "enoxaparin"),
        ("978740", "dalteparin"),
        ("861363", "fondaparinux"),
        ("1361574", "heparin"),
        ("5224", "heparin"),
    ],
)
def test_agents_by_rxnorm(code: str, agent: str) -> None:
    drug = anticoagulant_of(concept(RX, code))
    assert drug is not None
    assert drug.agent == agent
    assert not drug.match.by_text


@pytest.mark.parametrize("code", ["309362", "1191", "5640", "105899"])  # clopidogrel, aspirin, ibuprofen, naproxen
def test_non_anticoagulants_are_not_anticoagulants(code: str) -> None:
    assert anticoagulant_of(concept(RX, code)) is None


def test_local_codes_are_recognised_by_name_and_flagged() -> None:
    drug = anticoagulant_of(
        {"coding": [{"system": "urn:oid:1.2.3.epic", "code": "55555", "display": "ELIQUIS 5 MG TAB"}]}
    )
    assert drug.agent == "apixaban"
    assert drug.match.by_text


@pytest.mark.parametrize(
    ("display", "strength"),
    [
        ("apixaban 5 MG Oral Tablet", 5.0),
        ("0.4 ML enoxaparin sodium 100 MG/ML Prefilled Syringe", 40.0),
        ("1 ML enoxaparin sodium 150 MG/ML Prefilled Syringe", 150.0),
        ("0.2 ML dalteparin sodium 25000 UNT/ML Prefilled Syringe", 5000.0),
        ("warfarin sodium 2.5 MG Oral Tablet", 2.5),
    ],
)
def test_strength_from_rxnorm_display(display: str, strength: float) -> None:
    assert strength_of(display)[0] == pytest.approx(strength)


def use(code: str, display: str, **kwargs):
    request = medication_request(code, display, **kwargs)
    drug = anticoagulant_of(MedicationLookup([]).concept(request))
    return medication_use(request, drug, weight_kg=None)


@pytest.mark.parametrize(
    ("dose", "per_day", "expected"),
    [
        (2.5, 2, DoseIntensity.PROPHYLACTIC),
        (5, 1, DoseIntensity.PROPHYLACTIC),
        (5, 2, DoseIntensity.TREATMENT),
        (10, 2, DoseIntensity.TREATMENT),
    ],
)
def test_apixaban_prophylactic_limit_is_5mg_a_day(dose: float, per_day: int, expected: DoseIntensity) -> None:
    assert use("1364445", "apixaban 5 MG Oral Tablet", dose=dose, per_day=per_day).intensity == expected


@pytest.mark.parametrize(
    ("dose", "expected"),
    [(10, DoseIntensity.PROPHYLACTIC), (15, DoseIntensity.TREATMENT), (20, DoseIntensity.TREATMENT)],
)
def test_rivaroxaban_prophylactic_limit_is_10mg(dose: float, expected: DoseIntensity) -> None:
    assert use("1114195", "rivaroxaban", dose=dose, per_day=1).intensity == expected


@pytest.mark.parametrize(
    ("dose", "per_day", "expected"),
    [
        (40, 1, DoseIntensity.PROPHYLACTIC),
        (30, 2, DoseIntensity.PROPHYLACTIC),
        (70, 1, DoseIntensity.TREATMENT),
        (80, 2, DoseIntensity.TREATMENT),
    ],
)
def test_enoxaparin_without_weight(dose: float, per_day: int, expected: DoseIntensity) -> None:
    assert use("67108", "enoxaparin", dose=dose, per_day=per_day).intensity == expected


def test_enoxaparin_with_weight_uses_mg_per_kg() -> None:
    request = medication_request("67108", "enoxaparin", dose=60, per_day=1)
    drug = anticoagulant_of(request["medicationCodeableConcept"])
    assert medication_use(request, drug, weight_kg=59).intensity == DoseIntensity.TREATMENT  # ≥ 1 mg/kg/day
    assert medication_use(request, drug, weight_kg=61).intensity == DoseIntensity.PROPHYLACTIC


def test_tablet_and_syringe_doses_use_the_strength() -> None:
    u = use("1364445", "apixaban 5 MG Oral Tablet", dose=2, dose_unit="{tbl}", per_day=2)
    assert u.daily_dose_mg == 20
    syringe = use(
        "854235", "0.4 ML enoxaparin sodium 100 MG/ML Prefilled Syringe", dose=1, dose_unit="{syringe}", per_day=1
    )
    assert syringe.daily_dose_mg == 40
    assert syringe.intensity == DoseIntensity.PROPHYLACTIC


def test_mg_per_kg_needs_the_weight() -> None:
    request = medication_request("67108", "enoxaparin", dose=1, dose_unit="mg/kg", per_day=2)
    drug = anticoagulant_of(request["medicationCodeableConcept"])
    assert medication_use(request, drug, weight_kg=80).daily_dose_mg == 160
    assert medication_use(request, drug, weight_kg=None).intensity == DoseIntensity.UNKNOWN


def test_unknown_dose_counts_as_treatment_for_anticoagulation_status() -> None:
    facts = facts_of([distal_dvt(), medication_request("1364445", "apixaban 5 MG Oral Tablet", per_day=None)])
    assert facts.anticoagulants[0].intensity == DoseIntensity.UNKNOWN
    assert facts.anticoagulated


def test_prophylactic_dose_does_not_count_as_anticoagulated() -> None:
    facts = facts_of(
        [
            distal_dvt(),
            medication_request("854235", "0.4 ML enoxaparin sodium 100 MG/ML Prefilled Syringe", dose=40, per_day=1),
        ]
    )
    assert not facts.anticoagulated


def test_warfarin_and_edoxaban_are_always_treatment() -> None:
    assert intensity("warfarin", 1.0, {}, None) == DoseIntensity.TREATMENT
    assert intensity("edoxaban", None, {}, None) == DoseIntensity.TREATMENT


def test_iv_heparin_is_treatment() -> None:
    request = medication_request("5224", "heparin", dose=1000, dose_unit="[iu]", per_day=None)
    request["dosageInstruction"][0]["route"] = {"text": "intravenous"}
    drug = anticoagulant_of(request["medicationCodeableConcept"])
    assert medication_use(request, drug, weight_kg=None).intensity == DoseIntensity.TREATMENT


@pytest.mark.parametrize(
    ("status", "intent", "current"),
    [
        ("active", "order", True),
        ("on-hold", "plan", True),
        ("completed", "order", False),
        ("draft", "order", False),
        ("active", "proposal", False),
        ("stopped", "order", False),
    ],
)
def test_only_active_orders_count(status: str, intent: str, current: bool) -> None:
    facts = facts_of(
        [distal_dvt(), medication_request("1364445", "apixaban 5 MG Oral Tablet", dose=5, status=status, intent=intent)]
    )
    assert facts.anticoagulated is current


def test_medication_reference_is_resolved() -> None:
    med = {"resourceType": "Medication", "id": "m1", "code": concept(RX, "1364445", "apixaban 5 MG Oral Tablet")}
    request = medication_request("1364445", "x", dose=5)
    del request["medicationCodeableConcept"]
    request["medicationReference"] = {"reference": "Medication/m1"}
    assert MedicationLookup([med]).concept(request)["coding"][0]["code"] == "1364445"
    contained = dict(request, contained=[dict(med, id="c1")], medicationReference={"reference": "#c1"})
    assert MedicationLookup([]).concept(contained)["coding"][0]["code"] == "1364445"
    display_only = dict(request, medicationReference={"reference": "Medication/zz", "display": "Xarelto 20 mg"})
    assert anticoagulant_of(MedicationLookup([]).concept(display_only)).agent == "rivaroxaban"


def test_duration_from_phases_never_from_the_supply() -> None:
    two_phase = medication_request("1364445", "apixaban", dose=10, days=7)
    second = dict(two_phase["dosageInstruction"][0], sequence=2)
    second["timing"] = {
        "repeat": {
            "frequency": 2,
            "period": 1,
            "periodUnit": "d",
            "boundsDuration": {"value": 83, "unit": "days", "code": "d"},
        }
    }
    two_phase["dosageInstruction"].append(second)
    assert duration_days(two_phase) == 90
    months = medication_request("1364445", "apixaban", dose=5)
    months["dosageInstruction"][0]["timing"]["repeat"]["boundsDuration"] = {"value": 3, "unit": "months", "code": "mo"}
    assert duration_days(months) == 91
    supply = medication_request("1364445", "apixaban", dose=5)
    supply["dispenseRequest"] = {
        "expectedSupplyDuration": {"value": 30, "unit": "days", "code": "d"},
        "numberOfRepeatsAllowed": 2,
    }
    assert duration_days(supply) is None  # a dispense supply (even with refills) is not a treatment length
    assert duration_days(medication_request("1364445", "apixaban", dose=5)) is None


def test_antiplatelets_and_nsaids_are_read() -> None:
    facts = facts_of(
        [
            distal_dvt(),
            medication_request("309362", "clopidogrel 75 MG Oral Tablet", dose=75, per_day=1),
            medication_request("5640", "ibuprofen", dose=400, per_day=3),
        ]
    )
    assert [m.agent_class for m in facts.antiplatelets] == ["antiplatelet"]
    assert [m.agent_class for m in facts.nsaids] == ["nsaid"]
