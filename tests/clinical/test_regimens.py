"""Which regimen the population calls for
(docs/clinical/RULES.md "Regimens and durations": R-REGIMEN-1 to R-REGIMEN-3, R-CANCER-2; R-PREG-2)."""

from __future__ import annotations

import pytest

from cds_service.clinical.regimens import choose_regimen
from tests.builders import SCT, age_birth, concept, condition, distal_dvt, facts_of, observation, patient


def regimen(*resources: dict, **kwargs):
    return choose_regimen(facts_of([distal_dvt(), *resources], **kwargs))


def test_standard_is_apixaban_for_3_months() -> None:
    r = regimen()
    assert r.agent == "apixaban"
    assert r.rxnorm_code == "1364445"
    assert [(p.dose, p.per_day, p.days) for p in r.phases] == [(10, 2, 7), (5, 2, 83)]
    assert r.total_days == 90
    assert "rivaroxaban 15 mg twice daily with food for 21 days" in r.notes[0]


def test_pregnancy_is_therapeutic_lmwh_without_warfarin_or_doac() -> None:
    status = observation("82810-3", value_concept=concept(SCT, "77386006", "Pregnant"))
    r = regimen(status)
    assert r.agent == "enoxaparin"
    assert (r.phases[0].dose, r.phases[0].unit, r.phases[0].per_day) == (1, "mg/kg", 2)
    assert "6 weeks after delivery" in r.duration_text
    assert "at least 3 months in total" in r.duration_text
    assert "No warfarin" in r.notes[0]
    assert r.citation.key == "blood-2020-pregnancy"


def test_postpartum_is_lmwh_too() -> None:
    delivery = condition("O80", onset=10, clinical="resolved")
    assert regimen(delivery).agent == "enoxaparin"


def test_active_cancer_follows_nccn() -> None:
    r = regimen(condition("C18.9", onset=100))
    assert r.population == "cancer"
    assert r.agent == "apixaban"
    assert "as long as the cancer or its treatment is active" in r.duration_text
    assert "LMWH is preferred with gastric" in r.notes[0]
    assert "edoxaban after at least 5 days of parenteral anticoagulation" in r.notes[0]


def test_crcl_below_30_is_enoxaparin_once_daily() -> None:
    weight = observation("29463-7", value=60, unit="kg", ucum="kg")
    creat = observation("2160-0", value=2.0, unit="mg/dL", ucum="mg/dL")  # woman 60 y: CrCl 28.3
    r = regimen(weight, creat, patient_resource=patient(birth=age_birth(60), gender="female"))
    assert r.population == "renal"
    assert (r.agent, r.phases[0].per_day) == ("enoxaparin", 1)
    low = observation("2160-0", value=1.7, unit="mg/dL", ucum="mg/dL")  # CrCl 33.3
    assert regimen(weight, low, patient_resource=patient(birth=age_birth(60), gender="female")).agent == "apixaban"


@pytest.mark.parametrize(("weight", "population"), [(80, "renal"), (81, "standard"), (82, "standard")])
def test_renal_regimen_at_and_beside_crcl_30(weight: float, population: str) -> None:
    # man, 60 y, creatinine 3.0 mg/dL: CrCl (140 - 60) × weight / (72 × 3.0) = 30.0 mL/min at 81 kg
    weight_obs = observation("29463-7", value=weight, unit="kg", ucum="kg")
    creat = observation("2160-0", value=3.0, unit="mg/dL", ucum="mg/dL")
    r = regimen(weight_obs, creat, patient_resource=patient(birth=age_birth(60), gender="male"))
    assert r.population == population
    assert (r.agent == "enoxaparin") is (population == "renal")


def test_proximal_dvt_is_at_least_3_months() -> None:
    from tests.builders import assess_of

    result = assess_of([condition("I82.431", onset=2)])
    assert result.regimen.duration_text.startswith("at least 3 months")
    assert "isolated distal" not in result.regimen.duration_text
