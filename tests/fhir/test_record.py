"""The validation gate: what a rule reads is validated against R4; what no rule reads does not decide anything."""

from __future__ import annotations

from tests.builders import distal_dvt, facts_of, patient, record_of


def test_a_malformed_element_no_rule_reads_does_not_hide_the_birth_date() -> None:
    resource = patient(birth="1950-01-01")
    resource["address"] = [{"line": "not a list"}]
    resource["extension"] = [{"url": 42}]
    resource["text"] = {"status": "bogus-status", "div": 7}
    facts = facts_of([distal_dvt()], patient_resource=resource)
    assert facts.patient.age is not None
    assert facts.patient.age >= 75


def test_a_malformed_element_a_rule_reads_skips_the_resource_and_says_so() -> None:
    resource = patient()
    resource["birthDate"] = "the fifth of May"
    record = record_of([distal_dvt()], patient_resource=resource)
    assert record.typed(resource) is None
    assert any("Patient resource failed FHIR R4 validation" in note for note in record.notes)
    assert facts_of([distal_dvt()], patient_resource=resource).patient.age is None


def test_a_condition_with_an_invalid_code_is_skipped_even_with_valid_narrative() -> None:
    dvt = distal_dvt()
    dvt["code"] = {"coding": "I82.441"}
    record = record_of([dvt])
    assert record.typed(dvt) is None
    assert record.typed(record.patient) is not None


def test_the_raw_resource_is_not_modified_by_validation() -> None:
    resource = patient()
    resource["text"] = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}
    before = dict(resource)
    record_of([], patient_resource=resource).typed(resource)
    assert resource == before
