"""Weight, creatinine clearance (Cockcroft–Gault), eGFR, platelets, haemoglobin: units and recency."""

from __future__ import annotations

import pytest

from tests.builders import age_birth, facts_of, observation, patient


def labs_of(*observations: dict, birth: str = "1956-01-01", gender: str = "male"):
    return facts_of(list(observations), patient_resource=patient(birth=birth, gender=gender)).labs


def test_cockcroft_gault_male_and_female() -> None:
    # (140 - 70) × 70 / (72 × 1.0) = 68.1 ; × 0.85 = 57.9
    weight, creat = (
        observation("29463-7", value=70, unit="kg", ucum="kg"),
        observation("2160-0", value=1.0, unit="mg/dL", ucum="mg/dL"),
    )
    male = labs_of(weight, creat, birth=age_birth(70), gender="male")
    female = labs_of(weight, creat, birth=age_birth(70), gender="female")
    assert male.crcl_ml_min.value == pytest.approx(68.1, abs=0.1)
    assert female.crcl_ml_min.value == pytest.approx(57.85, abs=0.06)
    assert "Cockcroft-Gault" in male.crcl_ml_min.source.how


def test_creatinine_in_umol_per_litre_and_weight_in_pounds() -> None:
    labs = labs_of(
        observation("29463-7", value=154.3, unit="[lb_av]", ucum="[lb_av]"),
        observation("14682-9", value=88.4, unit="umol/L", ucum="umol/L"),
        birth=age_birth(70),
    )
    assert labs.weight.value == pytest.approx(70, abs=0.1)
    assert labs.creatinine_mg_dl.value == pytest.approx(1.0)
    assert labs.crcl_ml_min.value == pytest.approx(68.1, abs=0.2)


def test_no_crcl_without_sex_weight_or_creatinine() -> None:
    creat = observation("2160-0", value=1.0, unit="mg/dL", ucum="mg/dL")
    assert labs_of(creat).crcl_ml_min is None
    assert labs_of(creat, observation("29463-7", value=70, unit="kg"), gender="unknown").crcl_ml_min is None


@pytest.mark.parametrize(
    ("unit", "value", "expected"), [("10*3/uL", 150, 150), ("10*9/L", 150, 150), ("/uL", 150000, 150), ("K/uL", 80, 80)]
)
def test_platelet_units(unit: str, value: float, expected: float) -> None:
    assert labs_of(observation("777-3", value=value, unit=unit, ucum=unit)).platelets.value == expected


@pytest.mark.parametrize(
    ("code", "unit", "value", "expected"),
    [("718-7", "g/dL", 11.5, 11.5), ("718-7", "g/L", 115, 11.5), ("59260-0", "mmol/L", 7.0, 11.28)],
)
def test_haemoglobin_units(code: str, unit: str, value: float, expected: float) -> None:
    assert labs_of(observation(code, value=value, unit=unit, ucum=unit)).hemoglobin_g_dl.value == pytest.approx(
        expected
    )


def test_unknown_unit_is_skipped_and_reported() -> None:
    facts = facts_of([observation("777-3", value=150, unit="bananas")])
    assert facts.labs.platelets is None
    assert any("not understood" in note for note in facts.data_notes)


@pytest.mark.parametrize(("days", "used"), [(29, True), (30, True), (31, False)])
def test_labs_older_than_30_days_are_not_used(days: int, used: bool) -> None:
    assert (labs_of(observation("777-3", value=150, unit="10*3/uL", days=days)).platelets is not None) is used


def test_newest_result_wins_and_egfr_is_not_crcl() -> None:
    labs = labs_of(
        observation("777-3", value=90, unit="10*3/uL", days=10),
        observation("777-3", value=140, unit="10*3/uL", days=1),
        observation("62238-1", value=25, unit="mL/min/{1.73_m2}", ucum="mL/min/{1.73_m2}"),
    )
    assert labs.platelets.value == 140
    assert labs.egfr.value == 25
    assert labs.crcl_ml_min is None
