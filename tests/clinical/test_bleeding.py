"""Bleeding-risk category (CHEST AT9/2016 Table 2, docs/clinical/RULES.md "Bleeding risk"): each factor, each
threshold, the counts."""

from __future__ import annotations

import pytest

from cds_service.clinical.bleeding import BleedingCategory, assess_bleeding
from tests.builders import TODAY, age_birth, condition, distal_dvt, facts_of, medication_request, observation, patient
from tests.builders import procedure as surgery


def risk(*resources: dict, age: int = 50, gender: str = "female"):
    facts = facts_of([distal_dvt(), *resources], patient_resource=patient(birth=age_birth(age), gender=gender))
    return assess_bleeding(facts, today=TODAY)


def codes(result) -> set[str]:
    return {f.code for f in result.factors}


def platelets(value: float) -> dict:
    return observation("777-3", value=value, unit="10*3/uL", ucum="10*3/uL")


def hb(value: float) -> dict:
    return observation("718-7", value=value, unit="g/dL", ucum="g/dL")


@pytest.mark.parametrize(
    ("age", "factors"),
    [(65, set()), (66, {"age-over-65"}), (75, {"age-over-65"}), (76, {"age-over-65", "age-over-75"})],
)
def test_age_thresholds(age: int, factors: set[str]) -> None:
    assert codes(risk(age=age)) & {"age-over-65", "age-over-75"} == factors


def test_age_over_75_is_two_factors_so_high() -> None:
    assert risk(age=80).category == BleedingCategory.HIGH
    assert risk(age=70).category == BleedingCategory.MODERATE
    assert (
        risk(
            age=40,
        ).category
        == BleedingCategory.LOW
    )


@pytest.mark.parametrize(
    ("value", "factor", "category"),
    [
        (49, "severe-thrombocytopenia", BleedingCategory.HIGH),
        (50, "thrombocytopenia", BleedingCategory.MODERATE),
        (99, "thrombocytopenia", BleedingCategory.MODERATE),
        (100, None, BleedingCategory.LOW),
    ],
)
def test_platelet_thresholds(value: float, factor: str | None, category: BleedingCategory) -> None:
    result = risk(platelets(value), hb(14))
    assert (codes(result) & {"thrombocytopenia", "severe-thrombocytopenia"}) == ({factor} if factor else set())
    assert result.category == category


@pytest.mark.parametrize(
    ("gender", "value", "anaemic"),
    [("female", 11.9, True), ("female", 12.0, False), ("male", 12.9, True), ("male", 13.0, False)],
)
def test_anaemia_thresholds_by_sex(gender: str, value: float, anaemic: bool) -> None:
    assert ("anaemia" in codes(risk(hb(value), gender=gender))) is anaemic


def test_anaemia_condition_counts_too() -> None:
    assert "anaemia" in codes(risk(condition("D63.0", display="Anemia in neoplastic disease", onset=100)))


@pytest.mark.parametrize(("creatinine", "renal"), [(2.0, True), (1.7, False)])
def test_renal_failure_from_crcl_below_30(creatinine: float, renal: bool) -> None:
    # Cockcroft-Gault, woman, 60 y, 60 kg: (140 - 60) × 60 / (72 × 2.0) × 0.85 = 28.3 ; with 1.7: 33.3
    weight = observation("29463-7", value=60, unit="kg", ucum="kg")
    creat = observation("2160-0", value=creatinine, unit="mg/dL", ucum="mg/dL")
    assert ("renal-failure" in codes(risk(weight, creat, age=60, gender="female"))) is renal


@pytest.mark.parametrize(("egfr", "renal"), [(29, True), (30, False)])
def test_renal_failure_from_egfr(egfr: float, renal: bool) -> None:
    result = risk(observation("98979-8", value=egfr, unit="mL/min/{1.73_m2}", ucum="mL/min/{1.73_m2}"))
    assert ("renal-failure" in codes(result)) is renal


def test_renal_failure_from_ckd_and_dialysis() -> None:
    assert "renal-failure" in codes(risk(condition("N18.5", display="Chronic kidney disease, stage 5", onset=400)))
    dialysis = surgery("90935", "Hemodialysis", surgical=False, days=3, system="http://www.ama-assn.org/go/cpt")
    assert "renal-failure" in codes(risk(dialysis))


@pytest.mark.parametrize(
    ("code", "factor"),
    [
        ("K74.60", "liver-failure"),
        ("I63.9", "previous-stroke"),
        ("Z86.73", "previous-stroke"),
        ("E11.9", "diabetes"),
        ("F10.20", "alcohol-abuse"),
        ("Z91.81", "frequent-falls"),
        ("R58", "previous-bleeding"),
        ("D68.00", "previous-bleeding"),
        ("C50.911", "cancer"),
    ],
)
def test_condition_factors(code: str, factor: str) -> None:
    assert factor in codes(risk(condition(code, onset=400)))


def test_recent_active_bleeding_is_a_single_severe_factor() -> None:
    result = risk(condition("K92.0", display="Hematemesis", onset=3))
    assert {"active-bleeding", "previous-bleeding"} <= codes(result)
    assert result.category == BleedingCategory.HIGH
    assert [f.code for f in result.severe] == ["active-bleeding"]


def test_metastatic_cancer_is_a_second_factor() -> None:
    result = risk(
        condition("C34.90", onset=200), condition("C79.51", display="Secondary malignant neoplasm of bone", onset=100)
    )
    assert {"cancer", "metastatic-cancer"} <= codes(result)
    assert result.category == BleedingCategory.HIGH


def test_antiplatelet_and_nsaid() -> None:
    result = risk(
        medication_request("243670", "aspirin 81 MG Oral Tablet", dose=81, per_day=1),
        medication_request("5640", "ibuprofen", dose=400, per_day=3),
    )
    assert {"antiplatelet", "nsaid"} <= codes(result)
    nsaid = next(f for f in result.factors if f.code == "nsaid")
    assert nsaid.uncertain_source  # RULES.md R-BLEED-7: NSAID's place in the 2016 table is unverified


@pytest.mark.parametrize(("days", "severe"), [(1, True), (2, True), (3, False)])
def test_surgery_within_2_days_is_severe(days: int, severe: bool) -> None:
    result = risk(surgery(days=days))
    assert "recent-surgery" in codes(result)
    assert bool(result.severe) is severe


def test_category_counts() -> None:
    assert risk().category == BleedingCategory.LOW
    assert risk(condition("E11.9", onset=300)).category == BleedingCategory.MODERATE
    assert risk(condition("E11.9", onset=300), condition("I63.9", onset=900)).category == BleedingCategory.HIGH


def test_not_assessed_factors_are_listed_never_absent() -> None:
    result = risk()
    text = " ".join(result.not_assessed)
    assert "thrombocytopenia" in text  # no platelet count
    assert "comorbidity" in text
    gaps = assess_bleeding(facts_of([distal_dvt()], gaps=(("labs", "Observation"),)), today=TODAY)
    assert any("anaemia" in n for n in gaps.not_assessed)


def test_missing_birth_date_is_not_assessed() -> None:
    facts = facts_of([distal_dvt()], patient_resource=patient(birth=None))
    assert any(n.startswith("age") for n in assess_bleeding(facts, today=TODAY).not_assessed)


def test_caveat_says_the_scheme_is_not_validated() -> None:
    assert "not been validated" in risk().caveat


def test_thrombophilia_is_not_a_bleeding_risk() -> None:
    """VSAC 'Bleeding Disorder' lists factor V Leiden and antiphospholipid syndrome: clot risks, left out."""
    assert "previous-bleeding" not in codes(risk(condition("D68.51", onset=900), condition("D68.61", onset=900)))


def test_a_bleeding_disorder_is_not_active_bleeding() -> None:
    result = risk(condition("D68.01", display="Von Willebrand disease, type 1", onset=3))
    assert "previous-bleeding" in codes(result)
    assert "active-bleeding" not in codes(result)


def male_crcl(weight: float) -> list[dict]:
    # Cockcroft-Gault, man, 60 y, creatinine 3.0 mg/dL: (140 - 60) × weight / (72 × 3.0) → 81 kg gives exactly 30.0
    return [observation("29463-7", value=weight, unit="kg", ucum="kg"), observation("2160-0", value=3.0, unit="mg/dL")]


@pytest.mark.parametrize(("weight", "renal"), [(80, True), (81, False), (82, False)])
def test_renal_failure_at_and_beside_crcl_30(weight: float, renal: bool) -> None:
    assert ("renal-failure" in codes(risk(*male_crcl(weight), age=60, gender="male"))) is renal


@pytest.mark.parametrize(("code", "display"), [("N18.4", "Chronic kidney disease, stage 4"), ("N18.5", None)])
def test_ckd_stage_4_and_5_are_renal_failure(code: str, display: str | None) -> None:
    assert "renal-failure" in codes(risk(condition(code, display=display, onset=400)))


def test_hepatic_failure_is_liver_failure() -> None:
    assert "liver-failure" in codes(risk(condition("K72.90", display="Hepatic failure, unspecified", onset=30)))


def test_prasugrel_is_antiplatelet_therapy() -> None:
    result = risk(medication_request("613391", "prasugrel", dose=10, per_day=1))
    assert "antiplatelet" in codes(result)


def test_poor_anticoagulant_control_is_not_assessed_on_warfarin_and_never_counted() -> None:
    # Control means time in the INR range, which applies to a vitamin K antagonist; the INR history is not read.
    on_warfarin = risk(medication_request("855332", "warfarin sodium 5 MG Oral Tablet", dose=5, per_day=1))
    assert any(n.startswith("poor anticoagulant control") for n in on_warfarin.not_assessed)
    assert not any("anticoagulant control" in f.label for f in on_warfarin.factors)
    assert not any(n.startswith("poor anticoagulant control") for n in risk().not_assessed)
