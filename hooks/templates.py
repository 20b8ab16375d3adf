"""Prefetch templates shared by the four services (CDS Hooks 2.0 tokens and query forms only).

Only ``{{context.patientId}}`` / ``{{context.encounterId}}`` tokens, instance reads, type searches with
reference and token parameters (``:in`` not needed), ``_sort`` and ``_count``. Observation code filters are
built from the same value sets the rules read, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import quote

from cds_service.clinical.ddimer import DDIMER_SETS
from cds_service.clinical.facts import LAB_SETS, ULTRASOUND_SETS
from cds_service.clinical.terminology import codes_of, query_systems, valueset
from cds_service.fhir.prefetch import PrefetchKey


def _codes(*valuesets: str) -> str:
    """system|code tokens of every enumerated code of the value sets, under every spelling of its system (keyword
    rules cannot be searched)."""
    tokens = dict.fromkeys(
        f"{spelling}|{code}"
        for vs in valuesets
        for system in valueset(vs).include
        for code in codes_of(vs, system)
        for spelling in query_systems(system)
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
# Epic and Oracle Health code imaging reports locally (an Epic procedure id, a code set 72 event code): found by
# category and read by title (KNOWLEDGE.md §2b). US Core's Radiology and Cardiology categories (LOINC LP29684-5,
# LP29708-2; vascular labs file under either) and HL7 v2-0074 RAD, RUS, VUS, IMG (VENDOR-SHAPES.md §1, §2, §4).
IMAGING_CATEGORIES = (
    "http://loinc.org|LP29684-5",
    "http://loinc.org|LP29708-2",
    "http://terminology.hl7.org/CodeSystem/v2-0074|RAD",
    "http://terminology.hl7.org/CodeSystem/v2-0074|RUS",
    "http://terminology.hl7.org/CodeSystem/v2-0074|VUS",
    "http://terminology.hl7.org/CodeSystem/v2-0074|IMG",
)
IMAGING_REPORT_DAYS = 730  # reports older than two years add nothing a coded history (Z86.718) does not
IMAGING_REPORTS = PrefetchKey(
    "imagingReports",
    "DiagnosticReport?patient={{context.patientId}}&category="
    + ",".join(IMAGING_CATEGORIES)
    + "&_sort=-date&_count=50",
    fetch_since_days=IMAGING_REPORT_DAYS,
    fetch_pages=1,
)
LABS = PrefetchKey(
    "labs", "Observation?patient={{context.patientId}}&code=" + _codes(*LAB_SETS) + "&_sort=-date&_count=200"
)
# US Core: a server that references Medications SHALL support _include for them; with it the drug of an Epic
# order (medicationReference) arrives in the same answer. Beyond the 2.0 query list, and said so in the README;
# a client that cannot include omits the key's Medications and the service reads them itself.
MEDICATIONS = PrefetchKey(
    "medications",
    "MedicationRequest?patient={{context.patientId}}&status=active,on-hold&_include=MedicationRequest:medication",
)
ENCOUNTERS = PrefetchKey("encounters", "Encounter?patient={{context.patientId}}&_sort=-date&_count=100")
PROCEDURES = PrefetchKey("procedures", "Procedure?patient={{context.patientId}}&_sort=-date&_count=100")
IMAGING_ORDERS = PrefetchKey("imagingOrders", "ServiceRequest?patient={{context.patientId}}&code=" + _DUPLEX)
ENCOUNTER = PrefetchKey("encounter", "Encounter/{{context.encounterId}}")

# Which value sets each code-filtered key asks for: a site's local codes mapped onto them are asked for too.
CODE_FILTERED: dict[str, tuple[str, ...]] = {
    "ddimer": DDIMER_SETS,
    "ultrasound": ULTRASOUND_SETS,
    "ultrasoundReports": ULTRASOUND_SETS,
    "labs": LAB_SETS,
    "imagingOrders": ULTRASOUND_SETS,
}


def search_token(token: str) -> str:
    """A ``system|code`` token as a search value: FHIR's escapes for ``,``, ``|``, ``$`` and ``\\`` inside the
    system and the code (the separating ``|`` stays), then URL encoding of what a query string cannot hold."""
    system, _, code = token.partition("|")

    def escaped(part: str) -> str:
        part = part.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")
        return quote(part, safe=":/.-_~")

    return f"{escaped(system)}|{escaped(code)}"


def with_local_codes(key: PrefetchKey, local_codes: list[str]) -> PrefetchKey:
    """The key's template with the site's local ``system|code`` tokens added to its ``code=`` filter."""
    if not local_codes or "&code=" not in key.template:
        return key
    head, _, rest = key.template.partition("&code=")
    codes, sep, tail = rest.partition("&")
    tokens = ",".join(search_token(t) for t in local_codes)
    return replace(key, template=f"{head}&code={codes},{tokens}{sep}{tail}")


def standard_codes(valuesets: tuple[str, ...]) -> set[tuple[str, str]]:
    return {(system, code) for vs in valuesets for system in valueset(vs).include for code in codes_of(vs, system)}


PATIENT_DATA: tuple[PrefetchKey, ...] = (
    PATIENT,
    CONDITIONS,
    DDIMER,
    ULTRASOUND,
    ULTRASOUND_REPORTS,
    IMAGING_REPORTS,
    LABS,
    MEDICATIONS,
    ENCOUNTERS,
    PROCEDURES,
    IMAGING_ORDERS,
)
