"""The patient-level factors (docs/clinical/RULES.md R-RISK-5 to R-RISK-11, R-SERIAL-4, R-PREG-1, R-BLEED-8), each
from its FHIR source, each window at and beside its edge."""

from __future__ import annotations

import pytest

from cds_service.clinical.config import RuleConfig
from tests.builders import (
    ICD,
    SCT,
    concept,
    condition,
    distal_dvt,
    encounter,
    facts_of,
    medication_request,
    observation,
    procedure,
)


def provoking_kinds(*resources: dict) -> set[str]:
    return {p.kind for p in facts_of([distal_dvt(onset=0), *resources]).provoking}


# --- provoking factors (90 days before diagnosis) ---------------------------------------------------------------
@pytest.mark.parametrize(("days", "provoked"), [(89, True), (90, True), (91, False)])
def test_surgery_provokes_within_90_days(days: int, provoked: bool) -> None:
    assert ("surgery" in provoking_kinds(procedure(days=days))) is provoked


def test_non_surgical_procedures_do_not_provoke() -> None:
    assert (
        provoking_kinds(procedure("710824005", "Assessment of health and social care needs", surgical=False)) == set()
    )


def test_surgery_recognised_by_cpt_range_and_by_text() -> None:
    assert "surgery" in provoking_kinds(
        procedure("27447", "Arthroplasty, knee", surgical=False, system="http://www.ama-assn.org/go/cpt")
    )
    assert "surgery" in provoking_kinds(
        procedure("999", "Laparoscopic cholecystectomy", surgical=False, system="urn:local")
    )
    assert (
        provoking_kinds(procedure("99213", "Office visit", surgical=False, system="http://www.ama-assn.org/go/cpt"))
        == set()
    )


def test_cancelled_surgery_does_not_provoke() -> None:
    assert provoking_kinds(procedure(status="not-done")) == set()


@pytest.mark.parametrize(
    ("klass", "provoked"),
    [("IMP", True), ("ACUTE", True), ("NONAC", True), ("OBSENC", False), ("EMER", False), ("AMB", False)],
)
def test_hospitalization_is_an_inpatient_class(klass: str, provoked: bool) -> None:
    assert ("hospitalization" in provoking_kinds(encounter(klass, start=20, end=15))) is provoked


@pytest.mark.parametrize(("end", "provoked"), [(89, True), (90, True), (92, False)])
def test_hospitalization_window(end: int, provoked: bool) -> None:
    assert ("hospitalization" in provoking_kinds(encounter("IMP", start=end + 3, end=end))) is provoked


def test_leg_trauma_and_immobilization_and_estrogen() -> None:
    kinds = provoking_kinds(
        condition("S82.201A", display="Unspecified fracture of right tibia", onset=20),
        condition("Z74.01", display="Bed confinement status", onset=10),
        medication_request(
            "1000126",
            "ethinyl estradiol 0.035 MG / norethindrone 1 MG Oral Tablet",
            dose=1,
            per_day=1,
            text="Estradiol-containing contraceptive",
        ),
    )
    assert {"leg-trauma", "immobilization", "estrogen"} <= kinds


def test_cast_recognised_from_text() -> None:
    assert "immobilization" in provoking_kinds(condition(text="Below-knee plaster cast, left leg", onset=10))


# --- inpatient, recent hospitalization, recent surgery ----------------------------------------------------------
def test_inpatient_from_the_context_encounter_or_an_open_stay() -> None:
    stay = encounter("IMP", status="in-progress", start=3, end=None, resource_id="stay")
    assert facts_of([distal_dvt(), stay]).inpatient.present  # an open inpatient stay
    finished = encounter("IMP", start=3, end=1, resource_id="ctx")
    assert facts_of([distal_dvt(), finished], encounter_id="ctx").inpatient.present
    assert not facts_of([distal_dvt(), finished]).inpatient.present
    assert not facts_of([distal_dvt(), encounter("EMER", status="in-progress", end=None)]).inpatient.present


@pytest.mark.parametrize(("end", "recent"), [(89, True), (90, True), (91, False)])
def test_recent_hospitalization_window_90_days(end: int, recent: bool) -> None:
    assert facts_of([distal_dvt(), encounter("IMP", start=end + 4, end=end)]).recent_hospitalization.present is recent


@pytest.mark.parametrize(("days", "recent"), [(29, True), (30, True), (31, False)])
def test_recent_surgery_window_30_days(days: int, recent: bool) -> None:
    assert facts_of([distal_dvt(), procedure(days=days)]).recent_surgery.present is recent


def test_windows_are_settings() -> None:
    config = RuleConfig(recent_surgery_days=60, recent_hospitalization_days=120)
    assert facts_of([distal_dvt(), procedure(days=45)], config=config).recent_surgery.present
    assert facts_of([distal_dvt(), encounter("IMP", start=110, end=100)], config=config).recent_hospitalization.present


# --- severe symptoms --------------------------------------------------------------------------------------------
def test_severe_from_condition_severity() -> None:
    assert facts_of([distal_dvt(severity="24484000")]).severe_symptoms.present
    assert not facts_of([distal_dvt(severity="6736007")]).severe_symptoms.present


@pytest.mark.parametrize(("score", "days", "severe"), [(7, 1, True), (6, 1, False), (10, 3, True), (9, 4, False)])
def test_severe_from_pain_score(score: int, days: int, severe: bool) -> None:
    pain = observation("72514-3", value=score, unit="{score}", days=days, category="survey")
    assert facts_of([distal_dvt(), pain]).severe_symptoms.present is severe


# --- cancer, prior VTE, COVID-19 --------------------------------------------------------------------------------
def test_active_cancer_and_metastatic() -> None:
    facts = facts_of(
        [
            distal_dvt(),
            condition("C50.911", display="Malignant neoplasm of right breast", onset=300),
            condition("C78.00", display="Secondary malignant neoplasm of lung", onset=60),
        ]
    )
    assert facts.active_cancer.present
    assert facts.metastatic_cancer.present


@pytest.mark.parametrize("status", ["remission", "resolved", "inactive"])
def test_cancer_not_active(status: str) -> None:
    assert not facts_of([distal_dvt(), condition("C50.911", clinical=status, onset=900)]).active_cancer.present


def test_skin_cancer_c44_is_not_active_cancer() -> None:
    assert not facts_of([distal_dvt(), condition("C44.91", onset=100)]).active_cancer.present


def test_snomed_cancer_by_display_text() -> None:
    facts = facts_of(
        [distal_dvt(), condition("254837009", system=SCT, display="Malignant neoplasm of breast (disorder)", onset=200)]
    )
    assert facts.active_cancer.present
    assert facts.active_cancer.note == "recognised from text"


def test_prior_vte_from_history_codes_old_dvt_and_old_pe() -> None:
    assert facts_of([distal_dvt(), condition("Z86.718", onset=None)]).prior_vte.present
    assert facts_of([distal_dvt(), condition("I82.452", onset=400, clinical="resolved")]).prior_vte.present
    assert facts_of([distal_dvt(), condition("I26.99", onset=400, clinical="resolved")]).prior_vte.present
    assert facts_of([distal_dvt(), condition("I82.532", onset=200)]).prior_vte.present
    assert not facts_of([distal_dvt()]).prior_vte.present


@pytest.mark.parametrize(("onset", "present"), [(29, True), (30, True), (31, False)])
def test_covid_within_30_days(onset: int, present: bool) -> None:
    assert facts_of([distal_dvt(), condition("U07.1", onset=onset)]).covid19.present is present


# --- pregnancy, postpartum, preference --------------------------------------------------------------------------
def test_pregnancy_from_condition_or_status_observation() -> None:
    assert facts_of([distal_dvt(), condition("Z33.1", onset=100)]).pregnant.present
    assert facts_of([distal_dvt(), condition("O26.891", onset=100)]).pregnant.present
    status = observation("82810-3", value_concept=concept(SCT, "77386006", "Pregnant"), category="social-history")
    assert facts_of([distal_dvt(), status]).pregnant.present


def test_newest_not_pregnant_status_overrides_a_condition() -> None:
    not_pregnant = observation("82810-3", value_concept=concept(SCT, "60001007", "Not pregnant"), days=1)
    assert not facts_of([distal_dvt(), condition("Z33.1", onset=100), not_pregnant]).pregnant.present


@pytest.mark.parametrize(("days", "postpartum"), [(41, True), (42, True), (43, False)])
def test_postpartum_is_6_weeks_after_delivery(days: int, postpartum: bool) -> None:
    delivery = condition(
        "O80", display="Encounter for full-term uncomplicated delivery", onset=days, clinical="resolved"
    )
    assert facts_of([distal_dvt(), delivery]).postpartum.present is postpartum


def test_postpartum_from_a_delivery_procedure() -> None:
    facts = facts_of([distal_dvt(), procedure("11466000", "Cesarean section", days=10, surgical=False)])
    assert facts.postpartum.present


def test_patient_preference_newest_wins() -> None:
    system = "urn:distal-dvt-cds:preference"
    yes = observation("avoid-anticoagulation", system=system, value_boolean=True, days=5, category="survey")
    no = observation("avoid-anticoagulation", system=system, value_boolean=False, days=1, category="survey")
    assert facts_of([distal_dvt(), yes]).prefers_no_anticoagulation.present
    assert not facts_of([distal_dvt(), yes, no]).prefers_no_anticoagulation.present


# --- data that could not be read --------------------------------------------------------------------------------
def test_unreadable_sources_make_factors_not_assessed() -> None:
    facts = facts_of(
        [distal_dvt()], gaps=(("encounters", "Encounter"), ("procedures", "Procedure"), ("labs", "Observation"))
    )
    assert facts.inpatient.present is None
    assert facts.recent_hospitalization.present is None
    assert facts.recent_surgery.present is None
    assert facts.prefers_no_anticoagulation.present is None
    assert len(facts.not_assessed) == 3


def test_invalid_resources_are_skipped_and_reported() -> None:
    broken = condition("C50.911", onset=100)
    broken["onsetDateTime"] = "last tuesday"
    facts = facts_of([distal_dvt(), broken])
    assert not facts.active_cancer.present
    assert any("failed FHIR R4 validation" in n for n in facts.data_notes)


def test_unrelated_conditions_are_not_validated() -> None:
    """Selection before validation: an invalid resource the rules do not read costs nothing and says nothing."""
    unrelated = condition("J45.909", display="Unspecified asthma, uncomplicated", onset=100)
    unrelated["onsetDateTime"] = "whenever"
    facts = facts_of([distal_dvt(), unrelated, condition("I10", system=ICD)])
    assert not any("validation" in n for n in facts.data_notes)
