"""What the record points at that the first round of reads did not bring (clinical/followups.py): the text of the
newest final venous duplex reports held at a presentedForm URL, and the Medication of a current or draft
MedicationRequest that is neither contained, in the record, nor in the draft orders."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.clinical.followups import MAX_MEDICATIONS, MAX_REPORTS, FollowUps, needed_reads
from cds_service.fhir.record import PatientRecord
from tests.builders import LOINC, PATIENT_ID, RX, concept, instant, patient, subject

CPT = "http://www.ama-assn.org/go/cpt"
EPIC_PROCEDURE = "urn:oid:1.2.840.114350.1.13.0.1.7.2.696580"


def form(url: str | None, content_type: str | None = "text/plain", **extra: Any) -> dict[str, Any]:
    attachment: dict[str, Any] = {**extra}
    if content_type is not None:
        attachment["contentType"] = content_type
    if url is not None:
        attachment["url"] = url
    return attachment


def report(
    rid: str,
    *forms: dict[str, Any],
    code: dict[str, Any] | None = None,
    status: str = "final",
    days: float | None = 1,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "status": status,
        "subject": subject(),
        "code": code if code is not None else concept(LOINC, "39420-5", "US.doppler Lower extremity vein - bilateral"),
    }
    if days is not None:
        resource["effectiveDateTime"] = instant(days)
    if forms:
        resource["presentedForm"] = list(forms)
    return resource


def medication_request(
    rid: str,
    reference: dict[str, Any] | None = None,
    *,
    status: str = "active",
    intent: str = "order",
    contained: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": intent,
        "subject": subject(),
        "authoredOn": instant(1),
    }
    if reference is not None:
        resource["medicationReference"] = reference
    else:
        resource["medicationCodeableConcept"] = concept(RX, "1364445", "apixaban 5 MG Oral Tablet")
    if contained:
        resource["contained"] = contained
    return resource


def medication(rid: str) -> dict[str, Any]:
    return {"resourceType": "Medication", "id": rid, "code": concept(RX, "1364445", "apixaban 5 MG Oral Tablet")}


def ref(target: str, display: str | None = None) -> dict[str, Any]:
    reference: dict[str, Any] = {"reference": target}
    if display:
        reference["display"] = display
    return reference


def record_with(*resources: dict[str, Any]) -> PatientRecord:
    record = PatientRecord(patient_id=PATIENT_ID)
    record.add([patient(), *resources])
    return record


# --- report text ------------------------------------------------------------------------------------------------
def test_nothing_to_read() -> None:
    needs = needed_reads(record_with(report("r1")))
    assert needs == FollowUps()
    assert not needs
    assert not needed_reads(PatientRecord(patient_id=PATIENT_ID), [])


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/html",
        "application/xhtml",
        "application/xhtml+xml",
        "text/rtf",
        "text/plain; charset=utf-8",
        "TEXT/HTML",
    ],
)
def test_text_forms_of_a_final_duplex_report_are_listed(content_type: str) -> None:
    needs = needed_reads(record_with(report("r1", form("Binary/r1", content_type))))
    assert needs.attachments == ["Binary/r1"]
    assert needs.medications == []
    assert needs


@pytest.mark.parametrize(
    ("content_type", "extra"),
    [
        ("application/pdf", {}),
        ("image/jpeg", {}),
        ("application/octet-stream", {}),
        (None, {}),
        ("text/plain", {"data": "SU1QUkVTU0lPTjogTm8gRFZULg=="}),  # inline: nothing to fetch
    ],
    ids=["pdf", "image", "octet-stream", "no-content-type", "inline-data"],
)
def test_forms_that_are_not_fetched_text_are_skipped(content_type: str | None, extra: dict[str, Any]) -> None:
    needs = needed_reads(record_with(report("r1", form("Binary/r1", content_type, **extra))))
    assert needs.attachments == []


def test_forms_without_a_url_are_skipped() -> None:
    needs = needed_reads(record_with(report("r1", form(None), form(""), "not an attachment", form("Binary/ok"))))  # type: ignore[arg-type]
    assert needs.attachments == ["Binary/ok"]


def test_every_text_form_of_a_report_is_listed_once() -> None:
    r1 = report("r1", form("Binary/a"), form("Binary/pdf", "application/pdf"), form("Binary/b", "text/html"))
    r2 = report("r2", form("Binary/a"), days=3)  # the same document attached to two reports
    assert needed_reads(record_with(r1, r2)).attachments == ["Binary/a", "Binary/b"]


@pytest.mark.parametrize(
    ("status", "listed"),
    [
        ("final", True),
        ("amended", True),
        ("corrected", True),
        ("appended", False),
        ("preliminary", False),
        ("partial", False),
        ("registered", False),
        ("cancelled", False),
        ("entered-in-error", False),
        ("unknown", False),
    ],
)
def test_only_final_amended_or_corrected_reports(status: str, listed: bool) -> None:
    needs = needed_reads(record_with(report("r1", form("Binary/r1"), status=status)))
    assert needs.attachments == (["Binary/r1"] if listed else [])


@pytest.mark.parametrize(
    "code",
    [
        concept(LOINC, "39420-5"),
        concept(LOINC, "39443-7"),
        concept(LOINC, "39432-0"),
        concept(LOINC, "30881-7"),
        concept(LOINC, "48692-8"),
        concept(CPT, "93970"),
        concept(CPT, "93971"),
        {"coding": [{"system": EPIC_PROCEDURE, "code": "IMG1234"}], "text": "US Venous Doppler Lower Ext Left"},
        concept(EPIC_PROCEDURE, "IMG1234", "VAS LE VENOUS DUPLEX BILATERAL"),
        {"text": "Duplex venous bilateral legs"},
    ],
    ids=["39420-5", "39443-7", "39432-0", "30881-7", "48692-8", "93970", "93971", "title", "display", "text-only"],
)
def test_duplex_reports_are_recognised_by_code_or_title(code: dict[str, Any]) -> None:
    assert needed_reads(record_with(report("r1", form("Binary/r1"), code=code))).attachments == ["Binary/r1"]


@pytest.mark.parametrize(
    "code",
    [
        concept(LOINC, "36643-5", "XR Chest 2 Views"),
        {"coding": [{"system": EPIC_PROCEDURE, "code": "IMG99"}], "text": "XR Chest 2 Views"},
        {"coding": [{"system": EPIC_PROCEDURE, "code": "IMG77"}], "text": "US Arterial Doppler Lower Ext Left"},
        {"coding": [{"system": EPIC_PROCEDURE, "code": "IMG78"}], "text": "US Venous Doppler Upper Extremity Left"},
        concept(LOINC, "24604-1", "MG Breast Diagnostic"),
        {},
    ],
    ids=["chest-xray-loinc", "chest-xray-title", "arterial", "upper-extremity", "mammogram", "no-code"],
)
def test_other_reports_are_not_read(code: dict[str, Any]) -> None:
    resource = report("r1", form("Binary/r1"), code=code)
    if not code:
        del resource["code"]
    assert needed_reads(record_with(resource)).attachments == []


def test_newest_reports_first() -> None:
    old = report("old", form("Binary/old"), days=30)
    new = report("new", form("Binary/new"), days=1)
    middle = report("middle", form("Binary/middle"), days=7)
    undated = report("undated", form("Binary/undated"), days=None)
    issued = report("issued", form("Binary/issued"), days=None)
    issued["issued"] = instant(3)
    period = report("period", form("Binary/period"), days=None)
    period["effectivePeriod"] = {"start": instant(14), "end": instant(14)}
    needs = needed_reads(record_with(old, undated, new, issued, period, middle))
    assert needs.attachments == [
        "Binary/new",
        "Binary/issued",
        "Binary/middle",
        "Binary/period",
        "Binary/old",
        "Binary/undated",
    ]


def test_at_most_the_newest_max_reports() -> None:
    reports = [report(f"r{n}", form(f"Binary/r{n}"), days=n) for n in range(MAX_REPORTS + 3, 0, -1)]  # oldest first
    needs = needed_reads(record_with(*reports))
    assert needs.attachments == [f"Binary/r{n}" for n in range(1, MAX_REPORTS + 1)]


def test_the_report_bound_counts_final_duplex_reports_only() -> None:
    noise = [report(f"p{n}", form(f"Binary/p{n}"), status="preliminary", days=0.5) for n in range(MAX_REPORTS)]
    noise += [
        report(f"x{n}", form(f"Binary/x{n}"), code=concept(LOINC, "36643-5"), days=0.5) for n in range(MAX_REPORTS)
    ]
    duplexes = [report(f"r{n}", form(f"Binary/r{n}"), days=n + 1) for n in range(MAX_REPORTS)]
    needs = needed_reads(record_with(*noise, *duplexes))
    assert needs.attachments == [f"Binary/r{n}" for n in range(MAX_REPORTS)]


def test_draft_reports_are_not_read() -> None:
    draft = report("d1", form("Binary/d1"))
    assert needed_reads(record_with(), [draft]).attachments == []


# --- medications ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "listed"),
    [("active", True), ("on-hold", True)]
    + [(s, False) for s in ("completed", "stopped", "cancelled", "draft", "entered-in-error", "unknown")],
)
def test_the_medication_of_a_current_request_is_listed(status: str, listed: bool) -> None:
    needs = needed_reads(record_with(medication_request("mr1", ref("Medication/m1"), status=status)))
    assert needs.medications == (["Medication/m1"] if listed else [])
    assert needs.attachments == []


def test_a_proposal_is_not_a_current_order() -> None:
    needs = needed_reads(record_with(medication_request("mr1", ref("Medication/m1"), intent="proposal")))
    assert needs.medications == []


def test_medications_already_at_hand_are_not_listed() -> None:
    contained = medication_request("mr1", ref("#med"), contained=[{**medication("med")}])
    in_record = medication_request("mr2", ref("Medication/m2"))
    coded = medication_request("mr3")
    missing_contained = medication_request("mr4", ref("#nowhere"))  # a broken contained reference has no URL either
    needs = needed_reads(record_with(contained, in_record, medication("m2"), coded, missing_contained))
    assert needs.medications == []


def test_absolute_and_versioned_references_are_read_as_medication_ids() -> None:
    absolute = medication_request("mr1", ref("https://ehr.example.org/fhir/Medication/m1"))
    versioned = medication_request("mr2", ref("Medication/m2/_history/3"))
    in_record = medication_request("mr3", ref("https://ehr.example.org/fhir/Medication/m3/_history/1"))
    needs = needed_reads(record_with(absolute, versioned, in_record, medication("m3")))
    assert needs.medications == ["Medication/m1", "Medication/m2"]


@pytest.mark.parametrize(
    "reference",
    [
        {"identifier": {"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.698288", "value": "12345"}},
        {"display": "apixaban 5 MG Oral Tablet"},
        {"identifier": {"value": "12345"}, "display": "apixaban"},
        {},
    ],
    ids=["identifier", "display", "identifier-and-display", "empty"],
)
def test_a_logical_reference_is_never_listed(reference: dict[str, Any]) -> None:
    needs = needed_reads(record_with(medication_request("mr1", reference)), [medication_request("d1", reference)])
    assert needs.medications == []


def test_a_reference_to_something_else_is_not_listed() -> None:
    substance = medication_request("mr1", ref("Substance/s1"))
    bundle_entry = medication_request("mr2", ref("urn:uuid:0b1e4c5a-8a4b-4b8e-9e8f-1c2d3e4f5a6b"))
    needs = needed_reads(record_with(substance, bundle_entry))
    assert needs.medications == []


def test_draft_requests_whose_medication_is_nowhere_are_listed() -> None:
    drafts = [
        medication_request("d1", ref("Medication/in-drafts"), status="draft"),
        medication("in-drafts"),
        medication_request("d2", ref("Medication/in-record"), status="draft"),
        medication_request("d3", ref("#c"), status="draft", contained=[medication("c")]),
        medication_request("d4", ref("Medication/missing"), status="draft"),
    ]
    needs = needed_reads(record_with(medication("in-record")), drafts)
    assert needs.medications == ["Medication/missing"]


def test_medications_are_listed_once_in_order_and_bounded() -> None:
    requests = [medication_request(f"mr{n}", ref(f"Medication/m{n}")) for n in range(MAX_MEDICATIONS + 4)]
    repeat = medication_request("again", ref("Medication/m0"))
    drafts = [medication_request("d1", ref("Medication/m1"), status="draft")]
    needs = needed_reads(record_with(repeat, *requests), drafts)
    assert needs.medications == [f"Medication/m{n}" for n in range(MAX_MEDICATIONS)]


def test_reports_and_medications_together() -> None:
    needs = needed_reads(
        record_with(report("r1", form("Binary/r1")), medication_request("mr1", ref("Medication/m1"))),
        [medication_request("d1", ref("Medication/m2"), status="draft")],
    )
    assert needs == FollowUps(attachments=["Binary/r1"], medications=["Medication/m1", "Medication/m2"])
