"""What the record points at that the rules need and the first round of queries did not bring: the text of
venous duplex reports held in ``Binary`` resources (``presentedForm.url``), and the ``Medication`` of a current
``MedicationRequest`` that was neither contained, displayed by a known drug name, nor ``_include``d.

Pure: the fetch layer reads what this lists, under the same call deadline, and bounded here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cds_service.clinical.fhirdata import listed, observation_date, parse_date
from cds_service.clinical.medications import MedicationLookup, is_current
from cds_service.clinical.reports.narrative import MAX_ATTACHMENT_BYTES
from cds_service.clinical.thrombosis import is_venous_duplex
from cds_service.fhir.record import PatientRecord

MAX_REPORTS = 6  # the newest venous duplex reports whose text is fetched (a diagnosis and two repeats, both legs)
MAX_MEDICATIONS = 10  # Medications read one by one when the server did not include them
ATTACHMENT_BYTES = MAX_ATTACHMENT_BYTES * 2  # base64 inside a Binary's JSON is a third larger, plus the envelope
_FINAL = {"final", "amended", "corrected"}
_TEXT_FORMS = {"text/plain", "text/html", "application/xhtml", "application/xhtml+xml", "text/xhtml", "text/rtf"}


@dataclass
class FollowUps:
    attachments: list[str] = field(default_factory=list)  # presentedForm urls, as the reports wrote them
    medications: list[str] = field(default_factory=list)  # Medication/<id>

    def __bool__(self) -> bool:
        return bool(self.attachments or self.medications)


def needed_reads(record: PatientRecord, drafts: list[dict[str, Any]] | None = None) -> FollowUps:
    needs = FollowUps()
    reports = [
        r for r in record.resources("DiagnosticReport") if r.get("status") in _FINAL and is_venous_duplex(r.get("code"))
    ]
    reports.sort(key=lambda r: parse_date(r.get("effectiveDateTime")) or observation_date(r) or date.min)
    for report in reversed(reports[-MAX_REPORTS:]):
        for form in listed(report, "presentedForm"):
            if not isinstance(form, dict) or isinstance(form.get("data"), str):
                continue
            media = form.get("contentType")
            media = media.split(";")[0].strip().lower() if isinstance(media, str) else ""
            url = form.get("url")
            if isinstance(url, str) and url and media in _TEXT_FORMS and url not in needs.attachments:
                needs.attachments.append(url)
    draft_medications = [r for r in drafts or [] if r.get("resourceType") == "Medication"]
    lookup = MedicationLookup(record.resources("Medication") + draft_medications)
    requests = [r for r in record.resources("MedicationRequest") if is_current(r)]
    requests += [r for r in drafts or [] if r.get("resourceType") == "MedicationRequest"]
    for request in requests:
        missing = lookup.unresolved(request)
        # A logical reference (an identifier, a display only) has no URL to read.
        if (
            missing is not None
            and missing.startswith("Medication/")
            and missing not in needs.medications
            and len(needs.medications) < MAX_MEDICATIONS
        ):
            needs.medications.append(missing)
    return needs
