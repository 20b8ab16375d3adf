"""Records as Epic, Oracle Health and MIMIC write them (issue: read the record as EHRs write it): narrative
reports through the whole clinical core, local and OID codes, medication references, doses in words."""

from __future__ import annotations

import pytest

from cds_service.clinical.assessment import Option, Situation
from cds_service.clinical.medications import dose_from_text, duration_days
from cds_service.clinical.model import Side, VeinClass
from cds_service.clinical.thrombosis import duplex_recognition
from cds_service.clinical.topics import Topic
from tests.builders import (
    LOINC,
    UCUM,
    apixaban,
    assess_of,
    concept,
    condition,
    distal_dvt,
    facts_of,
    medication_request,
    muscular_dvt,
    narrative_report,
    observation,
    provoked_by_surgery,
)

MIMIC_ICD10 = "http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-diagnosis-icd10"
ICD_OID = "urn:oid:2.16.840.1.113883.6.90"
CPT_OID = "urn:oid:2.16.840.1.113883.6.12"


def report(text: str, *, days: int = 1, title: str = "US Venous Doppler Lower Extremity Left", **extra: object) -> dict:
    """A narrative-only venous duplex DiagnosticReport with a local code (its title is all there is)."""
    local = {"coding": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.696580", "code": "IMG812"}], "text": title}
    return narrative_report(text, days=days, code=local, **extra)


# --- report text through the clinical core --------------------------------------------------------------------
def test_a_report_only_dvt_is_a_dvt_with_its_sentences() -> None:
    result = assess_of(
        [report("Acute occlusive thrombus in the left peroneal veins, 6.2 cm in length."), provoked_by_surgery()]
    )
    assert result.situation == Situation.DISTAL_DECISION
    assert result.recommendation == Topic.ANTICOAGULATE
    [factor] = [f for f in result.for_anticoagulation if f.code == "extensive-thrombosis"]
    assert factor.sources[0].quote == "Acute occlusive thrombus in the left peroneal veins, 6.2 cm in length."
    assert result.episode is not None
    assert result.episode.from_report_text
    assert result.episode.side == Side.LEFT


def test_a_coded_unspecified_dvt_plus_a_report_naming_a_calf_vein_is_distal_not_location_unknown() -> None:
    unspecified = condition("I82.402", display="DVT of unspecified deep veins of left lower extremity")
    text = "The femoral and popliteal veins are compressible. Nonocclusive thrombus in the left posterior tibial veins."
    result = assess_of([unspecified, report(text), provoked_by_surgery()])
    assert result.situation == Situation.DISTAL_DECISION
    assert result.recommendation == Topic.SERIAL_IMAGING


def test_negated_superficial_and_indication_text_never_make_a_dvt() -> None:
    for text in (
        "INDICATION: Left calf pain, rule out DVT.\nIMPRESSION: No DVT in the left lower extremity.",
        "Occlusive thrombus in the great saphenous vein. The deep veins are fully compressible.",
        "COMPARISON: Prior study showed peroneal vein thrombus.\nIMPRESSION: Negative study.",
    ):
        assert assess_of([report(text)]).situation == Situation.NO_DVT, text


def test_chronic_thrombus_in_text_is_prior_vte_not_an_episode() -> None:
    text = "Chronic partially recanalized thrombus with wall thickening in the left posterior tibial vein."
    facts = facts_of([report(text)])
    assert not [t for t in facts.thromboses if t.acute]
    assert facts.prior_vte.present
    assert facts.prior_vte.sources[0].quote


def test_superficial_femoral_vein_thrombus_is_proximal_dvt() -> None:
    result = assess_of([report("Occlusive thrombus in the left superficial femoral vein.")])
    assert result.situation == Situation.PROXIMAL_UNTREATED
    assert result.recommendation == Topic.PROXIMAL_DVT


def test_a_possible_thrombus_is_suspected_not_a_dvt() -> None:
    facts = facts_of([report("Possible nonocclusive thrombus in a left gastrocnemius vein.")])
    assert not facts.thromboses
    assert facts.suspected
    assert facts.suspected[0].source.quote


@pytest.mark.parametrize(
    ("repeat", "situation", "proximal"),
    [
        ("Thrombus now extends into the left popliteal vein.", Situation.EXTENSION_PROXIMAL, True),
        ("New thrombus in the left posterior tibial veins.", Situation.EXTENSION_DISTAL, False),
        ("Interval propagation of the left calf thrombus.", Situation.EXTENSION_DISTAL, False),
        (
            "Unchanged nonocclusive thrombus in the left peroneal vein, no propagation.",
            Situation.DISTAL_SURVEILLANCE,
            None,
        ),
        ("The previously seen peroneal vein thrombus has resolved.", Situation.DISTAL_SURVEILLANCE, None),
    ],
)
def test_repeat_studies_read_from_text(repeat: str, situation: Situation, proximal: bool | None) -> None:
    first = report("Acute thrombus in the left peroneal vein, 3 cm in length.", days=8)
    result = assess_of([distal_dvt(onset=8), first, report(repeat, days=1), provoked_by_surgery()])
    assert result.situation == situation
    if proximal is not None:
        assert result.extension is not None
        assert result.extension.proximal is proximal
        assert result.extension.study.quote  # the sentence that shows it


def test_a_repeat_study_that_could_not_be_read_is_not_surveillance() -> None:
    first = report("Acute thrombus in the left peroneal vein.", days=8)
    unreadable = report("", days=1)
    del unreadable["conclusion"]
    unreadable["presentedForm"] = [{"contentType": "application/pdf", "url": "Binary/pdf-1"}]
    result = assess_of([distal_dvt(onset=8), first, unreadable, provoked_by_surgery()])
    assert result.situation == Situation.DISTAL_DECISION
    assert any(
        "could not be read, so it was not counted as surveillance" in n
        for n in facts_of([distal_dvt(onset=8), first, unreadable, provoked_by_surgery()]).data_notes
    )


def test_thrombus_an_older_study_already_showed_is_not_read_as_new_without_an_acuity_word() -> None:
    old = report("Thrombus in the left peroneal vein.", days=120)
    again = report("Thrombus in the left peroneal vein.", days=1)
    facts = facts_of([old, again])
    assert not [t for t in facts.thromboses if t.acute]
    stated = report("Acute thrombus in the left peroneal vein.", days=1)
    assert [t for t in facts_of([old, stated]).thromboses if t.acute]


def test_titles_recognise_local_venous_duplex_codes_and_nothing_else() -> None:
    def code(text: str) -> dict:
        return {"coding": [{"system": "https://fhir.cerner.com/t/codeSet/72", "code": "4152901"}], "text": text}

    for title in ("US Venous Doppler Lower Ext Left", "VAS DUPLEX VENOUS LOWER EXTREMITY BILATERAL", "US DVT LEFT LEG"):
        assert duplex_recognition(code(title)) == "title", title
    for title in ("Arterial Doppler lower extremity", "US venous duplex upper extremity", "XR chest 2 views"):
        assert duplex_recognition(code(title)) is None, title
    assert duplex_recognition(concept(LOINC, "39420-5")) == "code"
    assert duplex_recognition({"coding": [{"system": CPT_OID, "code": "93971"}]}) == "code"


# --- codes from the real world --------------------------------------------------------------------------------
def test_mimic_and_oid_icd_systems_are_icd10cm() -> None:
    mimic = condition("I82442", system=MIMIC_ICD10, clinical=None)
    [thrombosis] = facts_of([mimic]).thromboses
    assert thrombosis.vein_class == VeinClass.DISTAL_AXIAL
    assert thrombosis.side == Side.LEFT
    [by_oid] = facts_of([condition("I82.451", system=ICD_OID)]).thromboses
    assert by_oid.vein_class == VeinClass.DISTAL_AXIAL
    assert by_oid.side == Side.RIGHT


def test_one_clot_on_the_problem_list_and_as_an_encounter_diagnosis_is_one_vein() -> None:
    twice = [
        muscular_dvt(category="problem-list-item"),
        condition("I82.4Z2", display="Acute embolism and thrombosis of unspecified deep veins of left distal lower"),
        provoked_by_surgery(),
    ]
    result = assess_of(twice)
    assert "extensive-thrombosis" not in {f.code for f in result.for_anticoagulation}
    assert result.recommendation == Topic.SERIAL_IMAGING


def test_a_local_d_dimer_code_is_read_by_its_name_and_says_so() -> None:
    local = observation("1510883", system="urn:oid:1.2.840.114350.1.13.0.1.7.2.768282", value=1.2, unit="ug/mL FEU")
    local["code"]["coding"][0]["display"] = "D-Dimer, Quant"
    facts = facts_of([distal_dvt(), local])
    assert facts.ddimer is not None
    assert facts.ddimer.positive is True
    assert any("recognised as a D-dimer by its text" in n for n in facts.data_notes)


# --- medications as EHRs record them --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "amount", "per_day"),
    [
        ("40 mg, Subcutaneous, Daily", 40, 1),
        ("5 mg BID", 5, 2),
        ("2.5 mg twice daily", 2.5, 2),
        ("1 mg/kg q12h", 80, 2),
        ("Take 1 tablet (80 mg total) by mouth every 12 (twelve) hours.", 80, 2),
        ("enoxaparin 40 mg/0.4 mL SC once daily", 40, 1),
        ("5000 units subcutaneously every 8 hours", 5000, 3),
        ("10 mg 2 times daily for 7 days", 10, 2),
    ],
)
def test_doses_written_in_words(text: str, amount: float, per_day: float) -> None:
    assert dose_from_text(text, 80.0) == (pytest.approx(amount), pytest.approx(per_day))


def test_prophylactic_enoxaparin_written_only_in_words_is_not_treatment() -> None:
    enoxaparin = medication_request("67108", "enoxaparin", per_day=None)
    enoxaparin["dosageInstruction"] = [{"text": "40 mg, Subcutaneous, Daily"}]
    result = assess_of([distal_dvt(), enoxaparin])
    assert result.situation == Situation.DISTAL_DECISION  # not counted as treatment: a decision is still needed
    apixaban_words = medication_request("1364430", "apixaban", per_day=None)
    apixaban_words["dosageInstruction"] = [{"text": "5 mg BID"}]
    assert assess_of([distal_dvt(), apixaban_words]).situation == Situation.DISTAL_ANTICOAGULATED


def test_the_ordered_dose_of_epic_typed_doses_decides() -> None:
    enoxaparin = medication_request("67108", "enoxaparin", dose=None, per_day=1)
    enoxaparin["dosageInstruction"][0]["doseAndRate"] = [
        {"type": {"text": "calculated"}, "doseQuantity": {"value": 80, "unit": "mg", "system": UCUM, "code": "mg"}},
        {"type": {"text": "admin-amount"}, "doseQuantity": {"value": 0.4, "unit": "mL", "system": UCUM, "code": "mL"}},
        {"type": {"text": "ordered"}, "doseQuantity": {"value": 40, "unit": "mg", "system": UCUM, "code": "mg"}},
    ]
    [use] = facts_of([distal_dvt(), enoxaparin]).anticoagulants
    assert use.daily_dose_mg == 40
    assert use.intensity.value == "prophylactic"


def test_a_dispense_supply_is_not_a_treatment_duration_but_stated_words_are() -> None:
    supply = apixaban(per_day=2)
    supply["dispenseRequest"] = {"expectedSupplyDuration": {"value": 30, "unit": "Day", "system": UCUM, "code": "d"}}
    assert duration_days(supply) is None
    worded = apixaban(per_day=2)
    worded["dosageInstruction"][0]["text"] = "5 mg twice daily for 3 months"
    assert duration_days(worded) == 91


def test_a_medication_that_cannot_be_read_leaves_anticoagulation_unchecked() -> None:
    unknown = medication_request("0", "x", per_day=None)
    del unknown["medicationCodeableConcept"]
    unknown["medicationReference"] = {"reference": "Medication/not-here"}
    facts = facts_of([distal_dvt(), unknown])
    assert facts.unidentified_medications == ["Medication/not-here"]
    assert facts.anticoagulation_unchecked
    assert any("Current anticoagulation could not be checked" in c for c in assess_of([distal_dvt(), unknown]).caveats)
    named = dict(unknown, medicationReference={"reference": "Medication/not-here", "display": "LISINOPRIL 10 MG TAB"})
    assert not facts_of([distal_dvt(), named]).anticoagulation_unchecked  # a drug product's name is read
    enox = dict(unknown, medicationReference={"reference": "Medication/x", "display": "ENOXAPARIN 40 MG/0.4 ML SC"})
    assert [u.agent for u in facts_of([distal_dvt(), enox]).anticoagulants] == ["enoxaparin"]


def test_an_included_medication_is_read_by_its_codes() -> None:
    included = {
        "resourceType": "Medication",
        "id": "med-apx",
        "code": concept("http://www.nlm.nih.gov/research/umls/rxnorm", "1364430"),
    }
    order = apixaban(per_day=2)
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": "Medication/med-apx"}
    result = assess_of([distal_dvt(), order, included])
    assert result.situation == Situation.DISTAL_ANTICOAGULATED
    assert result.recommended is None or result.recommended == Option.ANTICOAGULATION
