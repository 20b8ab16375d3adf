"""Checks on drafted orders (docs/clinical/RULES.md R-ORDER-2, R-ORDER-3, R-ORDER-4, R-PREG-3, R-PITFALL-1)."""

from __future__ import annotations

import pytest

from cds_service.clinical import orders
from tests.builders import (
    SCT,
    TODAY,
    age_birth,
    apixaban,
    assess_of,
    concept,
    condition,
    distal_dvt,
    facts_of,
    medication_request,
    observation,
    patient,
    provoked_by_surgery,
    service_request,
)


def drafts(*resources: dict, weight: float | None = None):
    return orders.read_drafts(list(resources), weight_kg=weight)


PREGNANT = observation("82810-3", value_concept=concept(SCT, "77386006", "Pregnant"))


@pytest.mark.parametrize(
    ("draft", "conflict"),
    [
        (medication_request("855332", "warfarin sodium 5 MG Oral Tablet", dose=5, per_day=1, status="draft"), True),
        (apixaban(status="draft"), True),
        (medication_request("1232082", "rivaroxaban 15 MG Oral Tablet", dose=15, status="draft"), True),
        (
            medication_request("854248", "1 ML enoxaparin sodium 100 MG/ML Prefilled Syringe", dose=80, status="draft"),
            False,
        ),
    ],
)
def test_pregnancy_conflict(draft: dict, conflict: bool) -> None:
    facts = facts_of([distal_dvt(), PREGNANT])
    [found] = drafts(draft).anticoagulants
    assert orders.pregnancy_conflict(found, facts) is conflict
    assert orders.pregnancy_conflict(found, facts_of([distal_dvt()])) is False


@pytest.mark.parametrize(
    ("days", "problem"), [(30, True), (82, True), (83, False), (90, False), (97, False), (98, True), (180, True)]
)
def test_duration_for_isolated_distal_dvt(days: int, problem: bool) -> None:
    assessment = assess_of([distal_dvt()])
    [found] = drafts(apixaban(status="draft", days=days)).anticoagulants
    assert (orders.duration_problem(found, assessment) is not None) is problem


def test_duration_longer_is_fine_in_cancer_and_unknown_is_not_flagged() -> None:
    cancer = assess_of([distal_dvt(), condition("C18.9", onset=100)])
    [long_course] = drafts(apixaban(status="draft", days=180)).anticoagulants
    assert orders.duration_problem(long_course, cancer) is None
    [short] = drafts(apixaban(status="draft", days=30)).anticoagulants
    assert orders.duration_problem(short, cancer) is not None
    [unknown] = drafts(apixaban(status="draft")).anticoagulants
    assert orders.duration_problem(unknown, assess_of([distal_dvt()])) is None


def test_duration_is_not_checked_without_an_isolated_distal_dvt() -> None:
    [found] = drafts(apixaban(status="draft", days=30)).anticoagulants
    assert orders.duration_problem(found, assess_of([condition("I82.431", onset=2)])) is None


def renal_facts(creatinine: float):
    # woman, 60 y, 70 kg: CrCl (140 - 60) × 70 / (72 × 2.4) × 0.85 = 27.5 mL/min; with 1.0: 66
    weight = observation("29463-7", value=70, unit="kg", ucum="kg")
    creat = observation("2160-0", value=creatinine, unit="mg/dL", ucum="mg/dL")
    return facts_of([distal_dvt(), weight, creat], patient_resource=patient(birth=age_birth(60), gender="female"))


@pytest.mark.parametrize(
    ("code", "display", "flagged"),
    [
        ("1037045", "dabigatran etexilate 150 MG Oral Capsule", True),
        ("1599555", "edoxaban 60 MG Oral Tablet", True),
        ("1364445", "apixaban 5 MG Oral Tablet", True),  # caution
        ("1232086", "rivaroxaban 20 MG Oral Tablet", True),  # caution
        ("861356", "0.8 ML fondaparinux sodium 12.5 MG/ML Prefilled Syringe", True),
    ],
)
def test_renal_cautions_below_crcl_30(code: str, display: str, flagged: bool) -> None:
    [found] = drafts(medication_request(code, display, dose=1, dose_unit="{tbl}", status="draft")).anticoagulants
    assert bool(orders.cautions(found, renal_facts(2.4))) is flagged
    assert orders.cautions(found, renal_facts(1.0)) == []


def male_renal_facts(weight: float):
    # man, 60 y, creatinine 3.0 mg/dL: CrCl (140 - 60) × weight / (72 × 3.0) = 30.0 mL/min at 81 kg
    weight_obs = observation("29463-7", value=weight, unit="kg", ucum="kg")
    creat = observation("2160-0", value=3.0, unit="mg/dL", ucum="mg/dL")
    return facts_of([distal_dvt(), weight_obs, creat], patient_resource=patient(birth=age_birth(60), gender="male"))


@pytest.mark.parametrize(("weight", "flagged"), [(80, True), (81, False), (82, False)])
@pytest.mark.parametrize(
    ("code", "display"),
    [
        ("1037045", "dabigatran etexilate 150 MG Oral Capsule"),
        ("861356", "0.8 ML fondaparinux sodium 12.5 MG/ML Prefilled Syringe"),
    ],
)
def test_renal_caution_at_and_beside_crcl_30(code: str, display: str, weight: float, flagged: bool) -> None:
    [found] = drafts(medication_request(code, display, dose=1, dose_unit="{tbl}", status="draft")).anticoagulants
    assert bool(orders.cautions(found, male_renal_facts(weight))) is flagged


def test_platelets_below_50() -> None:
    facts = facts_of([distal_dvt(), observation("777-3", value=45, unit="10*3/uL")])
    [found] = drafts(apixaban(status="draft")).anticoagulants
    assert any("Platelets 45" in c for c in orders.cautions(found, facts))
    ok = facts_of([distal_dvt(), observation("777-3", value=50, unit="10*3/uL")])
    assert orders.cautions(found, ok) == []


@pytest.mark.parametrize(("weight", "flagged"), [(120, False), (121, True)])
def test_weight_over_120_kg_with_dabigatran(weight: float, flagged: bool) -> None:
    facts = facts_of([distal_dvt(), observation("29463-7", value=weight, unit="kg")])
    [found] = drafts(
        medication_request("1037045", "dabigatran etexilate 150 MG Oral Capsule", dose=150, status="draft")
    ).anticoagulants
    assert any("120 kg" in c for c in orders.cautions(found, facts)) is flagged


def test_interactions_antiplatelet_and_duplicate_anticoagulation() -> None:
    facts = facts_of(
        [
            distal_dvt(),
            medication_request("309362", "clopidogrel 75 MG Oral Tablet", dose=75, per_day=1),
            medication_request("2002", "carbamazepine", dose=200, per_day=2),
            apixaban(),
        ]
    )
    [found] = drafts(
        medication_request("1232086", "rivaroxaban 20 MG Oral Tablet", dose=20, per_day=1, status="draft")
    ).anticoagulants
    text = " ".join(orders.cautions(found, facts))
    assert "Antiplatelet" in text
    assert "Interacting drug" in text
    assert "Already on an anticoagulant" in text


def test_heparin_after_hit() -> None:
    facts = facts_of([distal_dvt(), condition("D75.822", onset=400, clinical="resolved")])
    [found] = drafts(
        medication_request("854248", "1 ML enoxaparin sodium 100 MG/ML Prefilled Syringe", dose=80, status="draft")
    ).anticoagulants
    assert any("heparin-induced" in c for c in orders.cautions(found, facts))


def test_serial_imaging_alternative_only_without_a_factors() -> None:
    [found] = drafts(apixaban(status="draft")).anticoagulants
    assert orders.serial_imaging_alternative(found, assess_of([distal_dvt(), provoked_by_surgery()]))
    assert not orders.serial_imaging_alternative(found, assess_of([distal_dvt()]))  # unprovoked: an A factor


@pytest.mark.parametrize(
    ("request_kwargs", "limited"),
    [
        ({"code": "46301-8"}, True),
        ({"code": "39420-5"}, False),
        ({"code": "93971", "system": "http://www.ama-assn.org/go/cpt", "text": "Limited venous duplex, 2-point"}, True),
        ({"code": "39443-7", "text": "Compression ultrasound, proximal-only"}, True),
    ],
)
def test_limited_ultrasound_is_recognised(request_kwargs: dict, limited: bool) -> None:
    [found] = drafts(service_request(status="draft", **request_kwargs)).ultrasounds
    assert found.limited is limited


def test_limited_ultrasound_problem_needs_dvt_suspected_or_active() -> None:
    [found] = drafts(service_request("46301-8", status="draft")).ultrasounds
    assert orders.limited_ultrasound_problem(found, facts_of([distal_dvt()]), assess_of([distal_dvt()]))
    suspected = [distal_dvt(verification="differential")]
    assert orders.limited_ultrasound_problem(found, facts_of(suspected), assess_of(suspected))
    nothing = [condition("E11.9")]
    assert orders.limited_ultrasound_problem(found, facts_of(nothing), assess_of(nothing)) is None
    reasoned = service_request("46301-8", status="draft")
    reasoned["reasonCode"] = [concept(SCT, "128053003", "Deep venous thrombosis")]
    [with_reason] = drafts(reasoned).ultrasounds
    assert orders.limited_ultrasound_problem(with_reason, facts_of(nothing), assess_of(nothing))


def test_today_is_not_the_wall_clock() -> None:
    assert TODAY.isoformat() == "2026-03-16"
