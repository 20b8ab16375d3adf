"""The decision (docs/clinical/RULES.md "The decision", R-DECIDE-1 to R-DECIDE-4): each factor for anticoagulation (A)
and serial imaging (S) at and beside its threshold, the three rules, the profiles, surveillance and extension,
proximal and location-unknown DVT."""

from __future__ import annotations

import pytest

from cds_service.clinical.assessment import Option, Situation
from cds_service.clinical.config import RuleConfig
from cds_service.clinical.model import Side
from cds_service.clinical.topics import Topic
from tests.builders import (
    GASTROCNEMIUS,
    LEFT,
    LOINC,
    PERONEAL,
    POPLITEAL,
    POSTERIOR_TIBIAL,
    RIGHT,
    SCT,
    SOLEAL,
    age_birth,
    apixaban,
    assess_of,
    concept,
    condition,
    ddimer,
    distal_dvt,
    duplex,
    encounter,
    medication_request,
    muscular_dvt,
    observation,
    patient,
    procedure,
    provoked_by_surgery,
    service_request,
)

CHEST = RuleConfig(profile="chest")


def a_codes(result) -> set[str]:
    return {f.code for f in result.for_anticoagulation}


def s_codes(result) -> set[str]:
    return {f.code for f in result.for_serial_imaging}


def baseline(*extra: dict) -> list[dict]:
    """An axial distal DVT with a provoking factor and nothing else: no A factor, no S factor."""
    return [distal_dvt(), provoked_by_surgery(), *extra]


def test_baseline_has_no_factor() -> None:
    result = assess_of(baseline())
    assert result.situation == Situation.DISTAL_DECISION
    assert a_codes(result) == set()
    assert s_codes(result) == set()


# --- A factors --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "present"), [(499, False), (500, True)])
def test_positive_ddimer(value: float, present: bool) -> None:
    assert ("positive-d-dimer" in a_codes(assess_of(baseline(ddimer(value, days=2))))) is present


@pytest.mark.parametrize(("length", "present"), [(5.0, False), (5.1, True), (49, False), (51, True)])
def test_length_over_5_cm(length: float, present: bool) -> None:
    unit = "cm" if length < 10 else "mm"
    study = duplex([PERONEAL], side=LEFT, length=(length, unit), days=2)
    assert ("extensive-thrombosis" in a_codes(assess_of(baseline(study)))) is present


def test_two_veins() -> None:
    one = duplex([PERONEAL], side=LEFT, days=2)
    two = duplex([PERONEAL, POSTERIOR_TIBIAL], side=LEFT, days=2)
    assert "extensive-thrombosis" not in a_codes(assess_of(baseline(one)))
    result = assess_of(baseline(two))
    assert "extensive-thrombosis" in a_codes(result)
    assert "2 veins" in next(f for f in result.for_anticoagulation if f.code == "extensive-thrombosis").detail


@pytest.mark.parametrize(("diameter", "present"), [(7.0, False), (7.1, True), (0.7, False), (0.8, True)])
def test_diameter_over_7_mm(diameter: float, present: bool) -> None:
    unit = "mm" if diameter > 1 else "cm"
    study = duplex([PERONEAL], side=LEFT, diameter=(diameter, unit), days=2)
    assert ("diameter-over-7mm" in a_codes(assess_of(baseline(study)))) is present


@pytest.mark.parametrize(("distance", "present"), [(4.9, True), (5.0, True), (5.1, False)])
def test_close_to_proximal_veins(distance: float, present: bool) -> None:
    study = duplex([PERONEAL], side=LEFT, distance_cm=distance, days=2)
    assert ("close-to-proximal-veins" in a_codes(assess_of(baseline(study)))) is present


def test_close_to_proximal_is_a_setting() -> None:
    study = duplex([PERONEAL], side=LEFT, distance_cm=7, days=2)
    config = RuleConfig(close_to_popliteal_cm=8)
    assert "close-to-proximal-veins" in a_codes(assess_of(baseline(study), config=config))


def test_unprovoked() -> None:
    assert "unprovoked" in a_codes(assess_of([distal_dvt()]))
    assert "unprovoked" in a_codes(assess_of([distal_dvt(), provoked_by_surgery(days=95)]))
    assert "unprovoked" not in a_codes(assess_of([distal_dvt(), provoked_by_surgery(days=85)]))


def test_unprovoked_is_not_claimed_without_the_data() -> None:
    result = assess_of([distal_dvt()], gaps=(("procedures", "Procedure"),))
    assert "unprovoked" not in a_codes(result)
    assert any("provoked could not be established" in m for m in result.missing)


def test_active_cancer_prior_vte_inpatient_severe() -> None:
    assert "active-cancer" in a_codes(assess_of(baseline(condition("C18.9", onset=100))))
    assert "prior-vte" in a_codes(assess_of(baseline(condition("Z86.718", onset=None))))
    stay = encounter("IMP", status="in-progress", start=3, end=None, resource_id="stay")
    assert "inpatient" in a_codes(assess_of(baseline(stay)))
    assert "severe-symptoms" in a_codes(assess_of([distal_dvt(severity="24484000"), provoked_by_surgery()]))


def test_seed_only_factors_and_the_chest_profile() -> None:
    hospital = encounter("IMP", start=50, end=40)  # provoking AND recent hospitalization
    surgery = procedure(days=20)  # provoking AND recent surgery
    covid = condition("U07.1", onset=10)
    seed = assess_of([distal_dvt(), hospital, surgery, covid])
    assert {"recent-hospitalization", "recent-surgery", "covid-19"} <= a_codes(seed)
    assert all(
        not f.chest
        for f in seed.for_anticoagulation
        if f.code in ("recent-hospitalization", "recent-surgery", "covid-19")
    )
    chest = assess_of([distal_dvt(), hospital, surgery, covid], config=CHEST)
    assert a_codes(chest) == set()
    assert chest.recommendation == Topic.SERIAL_IMAGING


# --- S factors --------------------------------------------------------------------------------------------------
def test_muscular_only() -> None:
    assert "muscular-veins-only" in s_codes(assess_of([muscular_dvt(), provoked_by_surgery()]))
    mixed = [muscular_dvt(), duplex([GASTROCNEMIUS, PERONEAL], side=LEFT, days=2), provoked_by_surgery()]
    assert "muscular-veins-only" not in s_codes(assess_of(mixed))


def test_bleeding_risk_factors() -> None:
    moderate = assess_of(baseline(), patient_resource=patient(birth=age_birth(70)))
    assert s_codes(moderate) == {"moderate-bleeding-risk"}
    high = assess_of(baseline(), patient_resource=patient(birth=age_birth(80)))
    assert s_codes(high) == {"high-bleeding-risk"}
    chest = assess_of(baseline(), patient_resource=patient(birth=age_birth(70)), config=CHEST)
    assert s_codes(chest) == set()  # moderate bleeding risk is seed-only


def test_patient_preference() -> None:
    pref = observation("avoid-anticoagulation", system="urn:distal-dvt-cds:preference", value_boolean=True)
    assert "patient-preference" in s_codes(assess_of(baseline(pref)))


# --- the three rules --------------------------------------------------------------------------------------------
def test_rule_1_no_a_factor_means_serial_imaging() -> None:
    result = assess_of(baseline())
    assert result.recommendation == Topic.SERIAL_IMAGING
    assert result.recommended == Option.SERIAL_IMAGING
    assert result.offer_anticoagulation  # the non-recommended alternative


def test_rule_2_a_without_s_means_anticoagulate() -> None:
    result = assess_of(baseline(ddimer(900, days=2)))
    assert result.recommendation == Topic.ANTICOAGULATE
    assert result.recommended == Option.ANTICOAGULATION
    assert result.offer_serial_imaging


def test_rule_3_shared_decision_favours_anticoagulation_by_default() -> None:
    result = assess_of([muscular_dvt(), provoked_by_surgery(), ddimer(900, days=2)])
    assert result.recommendation == Topic.SHARED_DECISION
    assert result.recommended == Option.ANTICOAGULATION


def test_rule_3_high_bleeding_risk_favours_serial_imaging() -> None:
    result = assess_of(baseline(ddimer(900, days=2)), patient_resource=patient(birth=age_birth(80)))
    assert result.recommendation == Topic.SHARED_DECISION
    assert result.recommended == Option.SERIAL_IMAGING


def test_rule_3_preference_favours_serial_imaging() -> None:
    pref = observation("avoid-anticoagulation", system="urn:distal-dvt-cds:preference", value_boolean=True)
    result = assess_of(baseline(ddimer(900, days=2), pref))
    assert result.recommended == Option.SERIAL_IMAGING


def test_active_cancer_favours_anticoagulation_even_with_high_bleeding_risk() -> None:
    cancer = condition("C18.9", onset=100)
    result = assess_of([distal_dvt(), cancer], patient_resource=patient(birth=age_birth(80)))
    assert result.recommendation == Topic.SHARED_DECISION
    assert result.recommended == Option.ANTICOAGULATION
    assert any(c.key == "nccn-cat" for c in result.citations)


def test_active_cancer_with_an_absolute_contraindication_favours_serial_imaging() -> None:
    platelets = observation("777-3", value=40, unit="10*3/uL", ucum="10*3/uL")
    result = assess_of([distal_dvt(), condition("C18.9", onset=100), platelets])
    assert result.recommended == Option.SERIAL_IMAGING
    assert any("absolute contraindication" in c for c in result.caveats)


def test_acute_pulmonary_embolism_means_anticoagulation_only() -> None:
    result = assess_of(baseline(condition("I26.99", onset=2)), patient_resource=patient(birth=age_birth(80)))
    assert result.recommendation == Topic.ANTICOAGULATE
    assert not result.offer_serial_imaging


# --- managed, surveillance, extension ---------------------------------------------------------------------------
def test_anticoagulated_distal_dvt_needs_no_card() -> None:
    result = assess_of(baseline(apixaban(dose=5, per_day=2)))
    assert result.situation == Situation.DISTAL_ANTICOAGULATED
    assert result.recommendation is None


def test_prophylactic_dose_is_not_management() -> None:
    enox = medication_request("854235", "0.4 ML enoxaparin sodium 100 MG/ML Prefilled Syringe", dose=40, per_day=1)
    assert assess_of(baseline(enox)).recommendation == Topic.SERIAL_IMAGING


@pytest.mark.parametrize(("due_in", "planned"), [(13, True), (14, True), (15, False)])
def test_repeat_imaging_due_within_14_days_is_surveillance(due_in: int, planned: bool) -> None:
    result = assess_of(baseline(service_request("39432-0", due_in=due_in)))
    assert (result.situation == Situation.DISTAL_SURVEILLANCE) is planned


def test_cancelled_order_is_not_surveillance() -> None:
    assert assess_of(baseline(service_request(status="revoked"))).situation == Situation.DISTAL_DECISION


def test_repeat_study_done_is_surveillance() -> None:
    first = duplex([PERONEAL], side=LEFT, days=2, resource_id="first")
    repeat = duplex([PERONEAL], side=LEFT, days=0, resource_id="repeat")
    result = assess_of([distal_dvt(onset=2), first, repeat, provoked_by_surgery()])
    assert result.situation == Situation.DISTAL_SURVEILLANCE


def test_proximal_extension_on_repeat_imaging() -> None:
    first = duplex([PERONEAL], side=LEFT, days=8)
    later = duplex([PERONEAL, POPLITEAL], side=LEFT, days=1)
    result = assess_of([distal_dvt(onset=8), first, later])
    assert result.situation == Situation.EXTENSION_PROXIMAL
    assert result.recommendation == Topic.EXTENSION
    assert result.extension.proximal
    assert not result.offer_serial_imaging


def test_distal_extension_new_vein_or_longer() -> None:
    first = duplex([GASTROCNEMIUS], side=LEFT, length=(3, "cm"), days=8)
    new_vein = duplex([GASTROCNEMIUS, SOLEAL], side=LEFT, days=1)
    longer = duplex([GASTROCNEMIUS], side=LEFT, length=(4.5, "cm"), days=1)
    same = duplex([GASTROCNEMIUS], side=LEFT, length=(3, "cm"), days=1)
    for study, extended in ((new_vein, True), (longer, True), (same, False)):
        result = assess_of([muscular_dvt(onset=8), first, study])
        assert (result.situation == Situation.EXTENSION_DISTAL) is extended
        if extended:
            assert not result.extension.proximal


def test_more_precise_description_is_not_extension() -> None:
    """I82.46- 'calf muscular vein' then an ultrasound naming the gastrocnemius vein: the same thrombus."""
    later = duplex([GASTROCNEMIUS], side=LEFT, days=1)
    result = assess_of([muscular_dvt(onset=8), later, service_request("39420-5", due_in=5)])
    assert result.situation == Situation.DISTAL_SURVEILLANCE


def test_other_leg_thrombus_is_not_extension() -> None:
    first = duplex([PERONEAL], side=LEFT, days=8)
    other_leg = duplex([SOLEAL], side=RIGHT, days=1)
    assert assess_of([distal_dvt(onset=8), first, other_leg]).situation != Situation.EXTENSION_DISTAL


def test_extension_when_already_anticoagulated_is_managed() -> None:
    first = duplex([PERONEAL], side=LEFT, days=8)
    later = duplex([POPLITEAL], side=LEFT, days=1)
    result = assess_of([distal_dvt(onset=8), first, later, apixaban()])
    assert result.recommendation is None


def test_bilateral_surveillance_for_muscular_vein_with_other_leg_never_imaged() -> None:
    right_only = duplex([SOLEAL], side=RIGHT, code="39443-7", days=2)
    planned_right = service_request("39443-7", due_in=5)
    dvt = condition("I82.461", onset=2)
    result = assess_of([dvt, right_only, planned_right, provoked_by_surgery()])
    assert result.recommendation == Topic.BILATERAL_SURVEILLANCE
    both_planned = assess_of([dvt, right_only, service_request("39420-5", due_in=5), provoked_by_surgery()])
    assert both_planned.recommendation is None
    axial = assess_of(
        [
            distal_dvt(code="I82.451", onset=2),
            duplex([PERONEAL], code="39443-7", days=2),
            planned_right,
            provoked_by_surgery(),
        ]
    )
    assert axial.recommendation is None  # bilateral surveillance is for muscular-vein thrombosis


# --- proximal, location unknown, suspected, none ----------------------------------------------------------------
def test_proximal_dvt_not_anticoagulated() -> None:
    result = assess_of([condition("I82.431", onset=2)])
    assert result.recommendation == Topic.PROXIMAL_DVT
    assert assess_of([condition("I82.431", onset=2), apixaban()]).recommendation is None


def test_distal_plus_proximal_is_not_isolated() -> None:
    result = assess_of([distal_dvt(), condition("I82.432", onset=2)])
    assert result.recommendation == Topic.PROXIMAL_DVT


def test_location_unknown() -> None:
    assert assess_of([condition("I82.409", onset=2)]).recommendation == Topic.LOCATION_UNKNOWN
    assert assess_of([condition("404223003", system=SCT, onset=2)]).recommendation == Topic.LOCATION_UNKNOWN
    assert assess_of([condition("I82.409", onset=2), apixaban()]).recommendation is None


def test_location_from_ultrasound_resolves_an_unspecified_condition() -> None:
    result = assess_of([condition("404223003", system=SCT, onset=2), duplex([SOLEAL], side=LEFT, days=2)])
    assert result.situation in (Situation.DISTAL_DECISION, Situation.DISTAL_SURVEILLANCE)


def test_no_dvt_and_suspected_dvt_give_no_recommendation() -> None:
    assert assess_of([condition("E11.9")]).situation == Situation.NO_DVT
    suspected = assess_of([distal_dvt(verification="differential")])
    assert suspected.situation == Situation.SUSPECTED
    assert suspected.recommendation is None


def test_pe_without_dvt_gives_no_recommendation() -> None:
    result = assess_of([condition("I26.99", onset=2), condition("706870000", system=SCT, onset=2)])
    assert result.situation == Situation.NO_DVT


# --- imaging plan and what is missing ---------------------------------------------------------------------------
def test_imaging_legs() -> None:
    assert assess_of([muscular_dvt()]).imaging_side == Side.BILATERAL
    assert assess_of([distal_dvt()]).imaging_side == Side.LEFT
    assert assess_of([distal_dvt(code="I82.459")]).imaging_side == Side.BILATERAL


def test_missing_data_is_listed() -> None:
    result = assess_of(baseline())
    missing = " ".join(result.missing)
    assert "no D-dimer" in missing
    assert "thrombus length not recorded" in missing
    with_data = assess_of(
        baseline(
            ddimer(300, days=2),
            duplex([PERONEAL], side=LEFT, length=(2, "cm"), diameter=(4, "mm"), distance_cm=10, days=2),
        )
    )
    assert "no D-dimer" not in " ".join(with_data.missing)
    assert "length not recorded" not in " ".join(with_data.missing)


def test_text_only_dvt_carries_a_caveat() -> None:
    result = assess_of([condition(text="Acute DVT left peroneal vein", onset=2), provoked_by_surgery()])
    assert any("recognised from text" in c for c in result.caveats)


def test_citations_are_chest_2016_and_2021() -> None:
    keys = [c.key for c in assess_of(baseline()).citations]
    assert keys[:2] == ["chest-2016", "chest-2021"]


def test_pain_concept_observations_do_not_break_anything() -> None:
    odd = observation("72514-3", value_concept=concept(SCT, "24484000"), days=1)
    assert assess_of(baseline(odd)).recommendation == Topic.SERIAL_IMAGING


# --- rules checked at and beside their edges (RULES.md R-DX-*, R-RISK-*, R-DECIDE-*) ------------------------------
def test_pregnancy_and_postpartum_provoke_so_the_dvt_is_not_unprovoked() -> None:
    assert "unprovoked" in a_codes(assess_of([distal_dvt()]))
    pregnant = assess_of([distal_dvt(), condition("Z33.1", display="Pregnant state, incidental", onset=100)])
    assert "unprovoked" not in a_codes(pregnant)
    assert pregnant.recommendation == Topic.SERIAL_IMAGING

    def delivery(days_ago: int) -> dict:
        return condition("O80", display="Full-term uncomplicated delivery", onset=days_ago, clinical="resolved")

    assert "unprovoked" not in a_codes(assess_of([distal_dvt(), delivery(20)]))  # postpartum (≤ 6 weeks)
    assert "unprovoked" in a_codes(assess_of([distal_dvt(), delivery(60)]))


def test_unprovoked_factor_says_what_was_looked_for() -> None:
    [factor] = [f for f in assess_of([distal_dvt()]).for_anticoagulation if f.code == "unprovoked"]
    assert "found in the record in the 90 days before diagnosis" in factor.detail
    assert factor.chest


def test_active_bleeding_with_cancer_is_an_absolute_contraindication() -> None:
    bleeding = condition("K92.0", display="Hematemesis", onset=3)
    result = assess_of([distal_dvt(), condition("C18.9", onset=100), bleeding])
    assert result.recommendation == Topic.SHARED_DECISION
    assert result.recommended == Option.SERIAL_IMAGING
    assert any("absolute contraindication" in c for c in result.caveats)


@pytest.mark.parametrize(("value", "recommended"), [(49, Option.SERIAL_IMAGING), (50, Option.ANTICOAGULATION)])
def test_cancer_contraindication_is_platelets_below_50(value: float, recommended: Option) -> None:
    platelets = observation("777-3", value=value, unit="10*3/uL", ucum="10*3/uL")
    result = assess_of([distal_dvt(), condition("C18.9", onset=100), platelets])
    assert result.recommended == recommended
    assert any("absolute contraindication" in c for c in result.caveats) is (value < 50)


def test_an_anticoagulant_of_unknown_dose_counts_as_treatment_and_says_so() -> None:
    unknown = medication_request("1364445", "apixaban 5 MG Oral Tablet", dose=None, per_day=None)
    result = assess_of([distal_dvt(), unknown])
    assert result.situation == Situation.DISTAL_ANTICOAGULATED
    assert any("without a readable dose was counted as treatment" in c for c in result.caveats)


def test_z86_711_history_of_pe_is_prior_vte() -> None:
    history = condition("Z86.711", display="Personal history of pulmonary embolism", onset=None)
    assert "prior-vte" in a_codes(assess_of(baseline(history)))


def test_covid19_by_snomed_is_a_seed_only_factor() -> None:
    covid = condition("840539006", system=SCT, display="Disease caused by SARS-CoV-2", onset=10)
    seed = assess_of(baseline(covid))
    assert "covid-19" in a_codes(seed)
    assert "covid-19" not in a_codes(assess_of(baseline(covid), config=CHEST))


@pytest.mark.parametrize(
    ("code", "system"), [("30881-7", LOINC), ("93970", "http://www.ama-assn.org/go/cpt"), ("39420-5", LOINC)]
)
def test_every_duplex_code_counts_as_serial_imaging_planned(code: str, system: str) -> None:
    result = assess_of(baseline(service_request(code, system=system, due_in=7)))
    assert result.situation == Situation.DISTAL_SURVEILLANCE


@pytest.mark.parametrize("klass", ["IMP", "ACUTE", "NONAC"])
def test_an_open_stay_of_each_inpatient_class_is_inpatient(klass: str) -> None:
    stay = encounter(klass, status="in-progress", start=3, end=None, resource_id="stay")
    assert "inpatient" in a_codes(assess_of(baseline(stay)))
