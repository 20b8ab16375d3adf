"""D-dimer positivity (docs/clinical/RULES.md R-DDIMER-1 to R-DDIMER-6):
interpretation, then reference range, then 500 FEU / 250 DDU."""

from __future__ import annotations

import pytest

from cds_service.clinical.ddimer import interpret, newest_ddimer
from tests.builders import TODAY, concept, ddimer


def positive(obs: dict) -> bool | None:
    result = interpret(obs)
    assert result is not None
    return result.positive


@pytest.mark.parametrize(("value", "expected"), [(499, False), (500, True), (501, True)])
def test_feu_cutoff_500(value: float, expected: bool) -> None:
    assert positive(ddimer(value, "ng/mL", code="48065-7")) is expected


@pytest.mark.parametrize(("value", "expected"), [(249, False), (250, True), (251, True)])
def test_ddu_cutoff_250(value: float, expected: bool) -> None:
    assert positive(ddimer(value, "ng/mL", code="48066-5")) is expected


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (0.49, "mg/L", False),
        (0.5, "mg/L", True),
        (0.49, "ug/mL", False),
        (0.5, "ug/mL", True),
        (0.49, "µg/mL", False),
        (0.5, "μg/mL FEU", True),
        (499, "ug/L", False),
        (500, "ug/L", True),
        (499, "ng/mL{FEU}", False),
        (500, "ng/mL{FEU}", True),
    ],
)
def test_unit_conversion_feu(value: float, unit: str, expected: bool) -> None:
    assert positive(ddimer(value, unit, code="48065-7")) is expected


def test_unit_annotation_wins_over_a_mislabelled_loinc() -> None:
    # 48066-5 is a DDU code, but the lab wrote FEU beside the number (RESEARCH.md §3.4): 400 FEU < 500.
    assert positive(ddimer(0.4, "mg/L FEU", code="48066-5")) is False
    assert positive(ddimer(0.4, "mg/L", code="48066-5")) is True  # 400 DDU ≥ 250


def test_interpretation_comes_first() -> None:
    assert positive(ddimer(100, "ng/mL", interpretation="H")) is True
    assert positive(ddimer(5000, "ng/mL", interpretation="N")) is False
    for flag in ("HH", "POS", "A", "DET"):
        assert positive(ddimer(None, interpretation=flag)) is True
    assert positive(ddimer(None, interpretation="NEG")) is False


def test_reference_range_comes_before_the_default_cutoff() -> None:
    assert positive(ddimer(0.45, "mg/L", ref_high=0.4)) is True  # above the lab's limit, below 500
    assert positive(ddimer(0.4, "mg/L", ref_high=0.4)) is False  # at the upper limit: within range
    assert positive(ddimer(600, "ng/mL", ref_high=700)) is False
    assert positive(ddimer(0.6, "mg/L", ref_high=550, ref_unit="ng/mL")) is True  # range in another unit


def test_comparators() -> None:
    assert positive(ddimer(0.27, "mg/L", comparator="<")) is False
    assert positive(ddimer(5, "mg/L", comparator=">")) is True
    assert positive(ddimer(None, value_string="<0.27 mg/L FEU")) is False
    assert positive(ddimer(None, value_string=">20 ug/mL FEU")) is True


def test_qualitative_results() -> None:
    assert positive(ddimer(None, code="15179-5", value_concept={"text": "Positive"})) is True
    assert positive(ddimer(None, code="15179-5", value_concept={"text": "Not detected"})) is False


def test_unknown_assay_type_is_decisive_only_outside_both_cutoffs() -> None:
    assert positive(ddimer(600, "ng/mL", code="3246-6")) is True
    assert positive(ddimer(200, "ng/mL", code="3246-6")) is False
    result = interpret(ddimer(300, "ng/mL", code="3246-6"))
    assert result.positive is None
    assert "unknown" in result.reason


def test_unknown_unit_is_reported() -> None:
    result = interpret(ddimer(3, "furlongs", code="48065-7"))
    assert result.positive is None


def test_no_value_at_all_is_not_a_result() -> None:
    obs = ddimer(None)
    obs["dataAbsentReason"] = concept("http://terminology.hl7.org/CodeSystem/data-absent-reason", "error")
    assert interpret(obs) is None


@pytest.mark.parametrize(("days_from_diagnosis", "found"), [(13, True), (14, True), (15, False)])
def test_window_is_14_days_of_diagnosis(days_from_diagnosis: int, found: bool) -> None:
    diagnosis = TODAY
    obs = ddimer(900, days=days_from_diagnosis)
    assert (newest_ddimer([obs], diagnosis=diagnosis, today=TODAY) is not None) is found


def test_newest_result_wins() -> None:
    old = ddimer(900, days=5, resource_id="old")
    new = ddimer(300, days=1, resource_id="new")
    result = newest_ddimer([new, old], diagnosis=TODAY, today=TODAY)
    assert result.source.reference == "Observation/new"
    assert result.positive is False


def test_non_final_results_are_ignored() -> None:
    assert newest_ddimer([ddimer(900, status="preliminary")], diagnosis=TODAY, today=TODAY) is None
    assert newest_ddimer([ddimer(900, status="cancelled")], diagnosis=TODAY, today=TODAY) is None


def test_ucum_code_with_the_assay_type_only_in_the_display_unit() -> None:
    # {"code": "mg/L", "unit": "mg/L FEU"}: the unit from the code, FEU from the display.
    assert positive(ddimer(0.49, "mg/L FEU", ucum="mg/L")) is False
    assert positive(ddimer(0.5, "mg/L FEU", ucum="mg/L")) is True
    assert positive(ddimer(0.3, "ug/mL DDU", ucum="ug/mL", code="48065-7")) is True  # 300 DDU ≥ 250


def _with_range_text(observation: dict, text: str) -> dict:
    observation["referenceRange"] = [{"text": text}]
    return observation


@pytest.mark.parametrize(("value", "expected"), [(0.48, False), (0.49, False), (0.50, True)])
def test_a_reference_range_given_only_as_text_up_to_its_limit(value: float, expected: bool) -> None:
    # "0.00 - 0.49 ug/mL FEU": 0.49 is still normal (B / @), 0.50 is above it (A).
    assert positive(_with_range_text(ddimer(value, "ug/mL"), "0.00 - 0.49 ug/mL FEU")) is expected


@pytest.mark.parametrize(("value", "expected"), [(0.49, False), (0.50, True), (0.51, True)])
def test_a_reference_range_written_as_below_a_limit_excludes_the_limit(value: float, expected: bool) -> None:
    # "<0.50 ug/mL FEU": normal is below 0.50, so 0.50 itself is abnormal.
    assert positive(_with_range_text(ddimer(value, "ug/mL FEU"), "<0.50 ug/mL FEU")) is expected


def test_a_value_above_the_analytic_range_takes_its_unit_from_the_reference_range() -> None:
    above = _with_range_text(ddimer(code="48065-7", value_string=">20.00"), "<0.50 ug/mL FEU")
    assert positive(above) is True
    below = _with_range_text(ddimer(code="48065-7", value_string="<0.27"), "<0.50 ug/mL FEU")
    assert positive(below) is False


@pytest.mark.parametrize(("value", "expected"), [(0.49, False), (0.50, True), (0.92, True)])
def test_mcg_is_a_spelling_of_micrograms(value: float, expected: bool) -> None:
    assert positive(ddimer(value, "mcg/mL FEU")) is expected  # 500 ng/mL FEU cutoff: B / @ / A
