"""The patient's record for the pathway view, read the way a patient-view call reads it when nothing was prefetched.

Same prefetch templates (with the site's ConceptMap local codes), same resolver, same follow-up reads (report text
in Binary, Medications not included), same ConceptMap pass: the page and the cards see the same record. The one
difference: a key a hook call cannot work without (the Patient, the Conditions) does not end the read with a
412 here; it is reported, and the page says what could not be read instead of showing an assessment built on
missing data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

from cds_service.clinical.followups import ATTACHMENT_BYTES, needed_reads
from cds_service.fhir.client import FhirClient
from cds_service.fhir.conceptmaps import SiteConceptMaps
from cds_service.fhir.followup import read_followups
from cds_service.fhir.prefetch import PrefetchKey, PrefetchResolver
from cds_service.fhir.record import DataGap, PatientRecord


@dataclass
class Reading:
    record: PatientRecord
    missing_required: list[DataGap]  # gaps in data the assessment cannot do without
    fetch_ms: float

    @property
    def complete_enough(self) -> bool:
        return not self.missing_required


class RecordReader:
    def __init__(
        self,
        client: FhirClient,
        keys: Sequence[PrefetchKey],
        concept_maps: SiteConceptMaps,
        *,
        max_entries: int,
        timeout_s: float,
        lookbacks: Mapping[str, int] | None = None,
    ):
        self._client = client
        self._lookbacks = lookbacks
        self._required = {key.name for key in keys if key.required}
        # Resolved with nothing prefetched: every key is fetched. None is "required" to the resolver (no 412).
        self._keys = tuple(replace(key, required=False) for key in keys)
        self._concept_maps = concept_maps
        self._max_entries = max_entries
        self._timeout_s = timeout_s

    def read(
        self,
        *,
        fhir_server: str,
        patient_id: str,
        access_token: str,
        today: date,
        server_allowed: Callable[[str], tuple[bool, str]],
    ) -> Reading:
        started = time.monotonic()
        deadline = started + self._timeout_s
        budget = self._client.call_budget()
        resolver = PrefetchResolver(
            self._client, server_allowed, max_entries=self._max_entries, lookbacks=self._lookbacks
        )
        record = resolver.resolve(
            self._keys,
            context={"patientId": patient_id},
            patient_id=patient_id,
            prefetch=None,
            fhir_server=fhir_server,
            access_token=access_token,
            deadline=deadline,
            today=today,
            server_allowed=server_allowed,
            budget=budget,
        )
        self._concept_maps.apply_record(record)
        needs = needed_reads(record, [])
        if needs:
            read_followups(
                self._client,
                record,
                attachments=needs.attachments,
                medications=needs.medications,
                fhir_server=fhir_server,
                access_token=access_token,
                deadline=deadline,
                server_allowed=server_allowed,
                attachment_bytes=ATTACHMENT_BYTES,
                budget=budget,
            )
            self._concept_maps.apply_record(record)
        missing = [gap for gap in record.gaps if gap.key in self._required and not gap.partial]
        if record.patient is None and not any(gap.resource_type == "Patient" for gap in missing):
            missing.append(DataGap("patient", "Patient", "the FHIR server has no such patient"))
        return Reading(record, missing, round((time.monotonic() - started) * 1000, 1))
