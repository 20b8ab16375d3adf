"""Prefetch templates shared by the four services (CDS Hooks 2.0 tokens and query forms only).

Only ``{{context.patientId}}`` / ``{{context.encounterId}}`` tokens, instance reads, type searches with
reference and token parameters (``:in`` not needed), ``_sort`` and ``_count``. Observation code filters are
built from the same value sets the rules read, so the two cannot drift apart.
"""

from __future__ import annotations

from cds_service.clinical.terminology import CPT, LOINC, codes_of
from cds_service.fhir.prefetch import PrefetchKey


def _codes(system: str, *valuesets: str) -> str:
    codes = dict.fromkeys(code for vs in valuesets for code in codes_of(vs, system))
    return ",".join(f"{system}|{code}" for code in codes)


_DUPLEX = (
    _codes(LOINC, "venous-duplex-lower-extremity", "venous-ultrasound-limited")
    + ","
    + _codes(CPT, "venous-duplex-lower-extremity")
)

PATIENT = PrefetchKey("patient", "Patient/{{context.patientId}}", required=True)
CONDITIONS = PrefetchKey("conditions", "Condition?patient={{context.patientId}}", required=True)
DDIMER = PrefetchKey(
    "ddimer",
    "Observation?patient={{context.patientId}}&code="
    + _codes(LOINC, "observation-ddimer-feu", "observation-ddimer-ddu", "observation-ddimer-other")
    + "&_sort=-date&_count=50",
)
ULTRASOUND = PrefetchKey("ultrasound", "Observation?patient={{context.patientId}}&code=" + _DUPLEX + "&_sort=-date")
ULTRASOUND_REPORTS = PrefetchKey(
    "ultrasoundReports", "DiagnosticReport?patient={{context.patientId}}&code=" + _DUPLEX + "&_sort=-date"
)
LABS = PrefetchKey(
    "labs",
    "Observation?patient={{context.patientId}}&code="
    + _codes(
        LOINC,
        "observation-body-weight",
        "observation-creatinine",
        "observation-egfr",
        "observation-platelets",
        "observation-hemoglobin",
        "observation-pregnancy-status",
        "observation-pain-score",
    )
    + ",urn:distal-dvt-cds:preference|avoid-anticoagulation&_sort=-date&_count=200",
)
MEDICATIONS = PrefetchKey("medications", "MedicationRequest?patient={{context.patientId}}&status=active,on-hold")
ENCOUNTERS = PrefetchKey("encounters", "Encounter?patient={{context.patientId}}&_sort=-date&_count=100")
PROCEDURES = PrefetchKey("procedures", "Procedure?patient={{context.patientId}}&_sort=-date&_count=100")
IMAGING_ORDERS = PrefetchKey("imagingOrders", "ServiceRequest?patient={{context.patientId}}&code=" + _DUPLEX)
ENCOUNTER = PrefetchKey("encounter", "Encounter/{{context.encounterId}}")

PATIENT_DATA: tuple[PrefetchKey, ...] = (
    PATIENT,
    CONDITIONS,
    DDIMER,
    ULTRASOUND,
    ULTRASOUND_REPORTS,
    LABS,
    MEDICATIONS,
    ENCOUNTERS,
    PROCEDURES,
    IMAGING_ORDERS,
)
