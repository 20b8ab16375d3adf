"""Prefetch templates shared by the four services (CDS Hooks 2.0 tokens and query forms only).

Only ``{{context.patientId}}`` / ``{{context.encounterId}}`` tokens, instance reads, type searches with
reference and token parameters (``:in`` not needed), ``_sort`` and ``_count``. Observation code filters are
built from the same value sets the rules read, so the two cannot drift apart.
"""

from __future__ import annotations

from cds_service.clinical.ddimer import DDIMER_SETS
from cds_service.clinical.facts import LAB_SETS, ULTRASOUND_SETS
from cds_service.clinical.terminology import codes_of, valueset
from cds_service.fhir.prefetch import PrefetchKey


def _codes(*valuesets: str) -> str:
    """system|code tokens of every enumerated code of the value sets (keyword rules cannot be searched)."""
    tokens = dict.fromkeys(
        f"{system}|{code}" for vs in valuesets for system in valueset(vs).include for code in codes_of(vs, system)
    )
    return ",".join(tokens)


_DUPLEX = _codes(*ULTRASOUND_SETS)

PATIENT = PrefetchKey("patient", "Patient/{{context.patientId}}", required=True)
CONDITIONS = PrefetchKey("conditions", "Condition?patient={{context.patientId}}", required=True)
DDIMER = PrefetchKey(
    "ddimer",
    "Observation?patient={{context.patientId}}&code=" + _codes(*DDIMER_SETS) + "&_sort=-date&_count=50",
)
ULTRASOUND = PrefetchKey("ultrasound", "Observation?patient={{context.patientId}}&code=" + _DUPLEX + "&_sort=-date")
ULTRASOUND_REPORTS = PrefetchKey(
    "ultrasoundReports", "DiagnosticReport?patient={{context.patientId}}&code=" + _DUPLEX + "&_sort=-date"
)
LABS = PrefetchKey(
    "labs", "Observation?patient={{context.patientId}}&code=" + _codes(*LAB_SETS) + "&_sort=-date&_count=200"
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
