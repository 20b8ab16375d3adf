"""Where a fact came from, in clinical words and a date ("D-dimer 900 ng/mL FEU, 13 Mar 2026"), never a raw id.

The clinical core keeps each fact's ``SourceRef`` (``Observation/abc``, a date, how it was matched). A clinician
needs what the resource is: this looks the reference up in the record that was read and names it by its own
words (the code's text or display, the value, the drug), as the EHR shows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_service.clinical.ddimer import interpret, is_ddimer
from cds_service.clinical.fhirdata import concept_text, listed
from cds_service.clinical.model import ClinicalFacts, SourceRef
from cds_service.fhir.record import PatientRecord

# ``how`` as the core writes it when it is a code, not words: "LOINC 48065-7", "ICD-10-CM I82.461".
_CODE_LABEL = re.compile(r"^(LOINC|ICD-10(-CM)?|SNOMED( CT)?|RxNorm|CPT|UCUM|HCPCS|text)\b", re.IGNORECASE)
_CODE_SUFFIX = re.compile(r"\s*\((LOINC|ICD-10(-CM)?|SNOMED( CT)?|RxNorm|CPT)[^)]*\)\s*$", re.IGNORECASE)
_KIND_WORDS = {
    "Condition": "diagnosis",
    "Observation": "result",
    "DiagnosticReport": "report",
    "MedicationRequest": "medication order",
    "MedicationStatement": "medication",
    "Encounter": "encounter",
    "Procedure": "procedure",
    "ServiceRequest": "order",
    "Patient": "patient record",
}


@dataclass(frozen=True)
class SourceWords:
    what: str
    when: date | None = None
    quote: str | None = None  # the report sentence a fact was read from


def day(when: date | None) -> str:
    """``13 Mar 2026``: unambiguous in every locale a clinician reads English in."""
    return f"{when.day} {when:%b %Y}" if when else "no date"


class SourceWording:
    def __init__(self, record: PatientRecord, facts: ClinicalFacts):
        self._resources = {
            f"{kind}/{r['id']}": r
            for kind, items in record.by_type.items()
            for r in items
            if isinstance(r.get("id"), str)
        }
        self._duplex = {study.source.reference: study for study in facts.imaging}

    def words(self, ref: SourceRef) -> SourceWords:
        return SourceWords(self.what(ref), ref.when, ref.quote)

    def many(self, refs: list[SourceRef]) -> list[SourceWords]:
        return list(dict.fromkeys(self.words(ref) for ref in refs))

    def what(self, ref: SourceRef) -> str:
        kind = ref.reference.split("/", 1)[0]
        resource = self._resources.get(ref.reference)
        how = "" if _CODE_LABEL.match(ref.how) else _CODE_SUFFIX.sub("", ref.how).strip()
        if ref.reference in self._duplex:
            return "venous duplex ultrasound"
        if resource is None:
            return how or _KIND_WORDS.get(kind, "record entry")
        if kind == "Patient":
            return f"{how} (date of birth)" if how else "patient record"
        if kind == "Observation":
            return _observation(resource) or how or "result"
        if kind == "MedicationRequest":
            return how or _medication(resource) or "medication order"
        if kind == "Encounter":
            return how or _encounter(resource)
        text = _first_concept_text(resource, ("code", "type"))
        if kind == "DiagnosticReport" and not text:
            return "report"
        return text or how or _KIND_WORDS.get(kind, "record entry")


def _first_concept_text(resource: dict[str, Any], elements: tuple[str, ...]) -> str:
    for element in elements:
        for concept in listed(resource, element):
            text = concept_text(concept)
            if text:
                return text
    return ""


def _observation(resource: dict[str, Any]) -> str:
    if is_ddimer(resource):
        reading = interpret(resource)
        return f"D-dimer {reading.value_text}" if reading is not None and reading.value_text else "D-dimer"
    name = concept_text(resource.get("code"))
    value = _value(resource)
    return f"{name} {value}".strip()


def _value(resource: dict[str, Any]) -> str:
    quantity = resource.get("valueQuantity")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
        unit = quantity.get("unit") or quantity.get("code") or ""
        return f"{quantity.get('comparator', '')}{quantity['value']:g} {unit}".strip()
    if isinstance(resource.get("valueString"), str):
        return resource["valueString"][:60]
    if isinstance(resource.get("valueBoolean"), bool):
        return "yes" if resource["valueBoolean"] else "no"
    if isinstance(resource.get("valueCodeableConcept"), dict):
        return concept_text(resource["valueCodeableConcept"])
    return ""


def _medication(resource: dict[str, Any]) -> str:
    return concept_text(resource.get("medicationCodeableConcept"))


def _encounter(resource: dict[str, Any]) -> str:
    text = _first_concept_text(resource, ("type",))
    if text:
        return text
    klass = resource.get("class")
    if isinstance(klass, dict) and isinstance(klass.get("display"), str):
        return f"{klass['display']} encounter"
    return "encounter"
