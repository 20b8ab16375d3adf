"""PatientRecord: the FHIR resources of one call, indexed by type, and what could not be read.

Resources stay raw JSON until a rule asks for them: the clinical code selects by type and code on the raw
dicts first and validates (``fhir.resources.R4B``) only what it reads, because validating a whole large
record costs about a second (DESIGN.md). A resource that fails validation is skipped and reported, never
fatal. Data that could not be obtained is recorded as a ``DataGap`` so a card can say what it could not
evaluate instead of silently treating "unknown" as "absent".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

log = logging.getLogger(__name__)

_PATIENT_REF = re.compile(r"(?:^|/)Patient/([^/]+?)(?:/_history/[^/]+)?$")
# Where each resource type points at its patient (R4).
_SUBJECT_FIELDS = ("subject", "patient")


@dataclass(frozen=True)
class DataGap:
    """A prefetch key whose data is missing (``partial=False``) or incomplete (``partial=True``)."""

    key: str
    resource_type: str
    reason: str
    partial: bool = False

    def describe(self) -> str:
        what = "incomplete" if self.partial else "not available"
        return f"{self.resource_type} data {what} ({self.reason})"


@dataclass(frozen=True)
class Attachment:
    """The content behind an attachment ``url`` (a report's ``presentedForm``), fetched from the FHIR server; or
    why it could not be (``data`` None)."""

    url: str
    content_type: str = ""
    data: bytes | None = None
    reason: str | None = None


@dataclass
class PatientRecord:
    patient_id: str
    by_type: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    gaps: list[DataGap] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # prefetch key -> prefetch | fhir | none
    notes: list[str] = field(default_factory=list)  # data-quality notes safe to show (no PHI)
    attachments: dict[str, Attachment] = field(default_factory=dict)  # presentedForm url (as written) -> content
    _seen: set[tuple[str, str]] = field(default_factory=set, repr=False)
    _typed: dict[int, Any] = field(default_factory=dict, repr=False)
    _foreign: int = field(default=0, repr=False)
    _foreign_note: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._own_reference = f"Patient/{self.patient_id}"

    # --- building ------------------------------------------------------------------------------------------------
    def add(self, resources: Iterable[dict[str, Any]]) -> None:
        for resource in resources:
            kind = resource.get("resourceType")
            if not isinstance(kind, str):
                continue
            if not self._belongs_to_patient(kind, resource):
                self._foreign += 1
                continue
            rid = resource.get("id")
            if isinstance(rid, str):
                if (kind, rid) in self._seen:
                    continue
                self._seen.add((kind, rid))
            self.by_type.setdefault(kind, []).append(resource)

    def add_gap(self, gap: DataGap) -> None:
        self.gaps.append(gap)

    def finish(self) -> PatientRecord:
        """Say how many resources of another patient were dropped; again after a second round, in the same place."""
        note = f"{self._foreign} resource(s) belonging to another patient were ignored"
        if self._foreign_note in self.notes:
            self.notes[self.notes.index(self._foreign_note)] = note
        elif self._foreign:
            self.notes.append(note)
        self._foreign_note = note if self._foreign else None
        return self

    def _belongs_to_patient(self, kind: str, resource: dict[str, Any]) -> bool:
        if kind == "Patient":
            rid = resource.get("id")
            return rid is None or rid == self.patient_id
        for name in _SUBJECT_FIELDS:
            ref = resource.get(name)
            if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
                reference = ref["reference"]
                if reference == self._own_reference:
                    return True  # the common case, without a regex
                match = _PATIENT_REF.search(reference)
                # urn:uuid and contained references cannot be checked here; keep them.
                return match is None or match.group(1) == self.patient_id
        return True

    # --- reading -------------------------------------------------------------------------------------------------
    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        return self.by_type.get(resource_type, [])

    @property
    def patient(self) -> dict[str, Any] | None:
        patients = self.resources("Patient")
        return patients[0] if patients else None

    def typed(self, resource: dict[str, Any]) -> Any | None:
        """The validated R4B model of one raw resource, or None (reported once) when it is invalid."""
        key = id(resource)
        if key in self._typed:
            return self._typed[key]
        model = None
        kind = resource.get("resourceType", "?")
        try:
            model = model_class(kind).model_validate(_read_part(kind, resource))
        except (ValidationError, ValueError, TypeError) as exc:
            count = len(exc.errors()) if isinstance(exc, ValidationError) else 1
            self.notes.append(f"a {kind} resource failed FHIR R4 validation ({count} error(s)) and was skipped")
            log.info("invalid resource skipped", extra={"resource_type": kind, "errors": count})
        self._typed[key] = model
        return model


# Elements no rule reads (docs/clinical/READING.md lists what is read). They are left out of validation: a Synthea
# Patient's race/ethnicity extensions, identifiers, names and addresses cost ~3 ms of pydantic work per call and
# decide nothing, and a malformed address should not blind the service to the birth date. Everything a rule reads
# is still validated, so no card is built from unvalidated content.
_UNREAD = frozenset({"text", "meta", "identifier", "extension", "implicitRules", "language"})
_UNREAD_BY_TYPE = {
    "Patient": _UNREAD
    | {
        "name",
        "telecom",
        "address",
        "maritalStatus",
        "multipleBirthBoolean",
        "multipleBirthInteger",
        "photo",
        "contact",
        "communication",
        "generalPractitioner",
        "managingOrganization",
        "link",
    },
}


def validation_problem(resource: dict[str, Any]) -> str | None:
    """Why ``resource`` fails R4 validation of what the rules read (in words, no values), or None when it passes."""
    kind = resource.get("resourceType")
    try:
        model_class(kind if isinstance(kind, str) else "?").model_validate(_read_part(str(kind), resource))
    except ValidationError as error:
        return f"it is not valid FHIR R4 ({error.error_count()} error(s))"
    except (ValueError, TypeError, KeyError, AttributeError):
        return "it is not a FHIR resource this service reads"
    return None


def _read_part(kind: str, resource: dict[str, Any]) -> dict[str, Any]:
    unread = _UNREAD_BY_TYPE.get(kind, _UNREAD)
    if unread.isdisjoint(resource):
        return resource
    return {key: value for key, value in resource.items() if key not in unread}


@cache
def model_class(resource_type: str) -> Any:
    if not resource_type.isalpha():
        raise ValueError("not a resource type")
    return get_fhir_model_class(resource_type)
