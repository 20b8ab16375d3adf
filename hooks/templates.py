"""Prefetch templates shared by the four services (CDS Hooks 2.0 tokens and query forms only).

Only ``{{context.patientId}}`` / ``{{context.encounterId}}`` tokens, instance reads, type searches with
reference and token parameters (``:in`` not needed), ``_sort`` and ``_count``. Observation code filters are
built from the same value sets the rules read, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from urllib.parse import quote

from cds_service.clinical import lookback
from cds_service.clinical.config import RuleConfig
from cds_service.clinical.ddimer import DDIMER_SETS
from cds_service.clinical.facts import LAB_SETS, ULTRASOUND_SETS
from cds_service.clinical.terminology import codes_of, query_systems, valueset
from cds_service.clinical.thrombosis import CONDITION_SETS
from cds_service.fhir.prefetch import FetchPart, PrefetchKey


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

# How the service asks for a key itself (FetchPart): CDS Hooks 2.0 templates have no relative dates, so the bounds
# are added only to the service's own queries, from the windows the rules read (clinical/lookback.py). `_count` is
# the number of results a key usually has, so that one page holds them on a server that pages (Medplum's default
# page is 20; a key asked without `_count` took 11 sequential pages for a 220-Condition record).
PAGE_ALL = 1000  # as many as servers put on one page (Medplum's maximum); a server that caps lower links the rest
_WINDOWED_LABS = lookback.windowed(LAB_SETS)
_HISTORY_LABS = lookback.whole_history(LAB_SETS)
# The Observation groups asked with a window, by the name their FetchPart gives it.
OBSERVATION_GROUPS: dict[str, tuple[str, ...]] = {"ddimer": DDIMER_SETS, "labs": _WINDOWED_LABS}


def lookbacks(config: RuleConfig) -> dict[str, int]:
    """Days back of every named window a FetchPart may ask for, under this configuration."""
    return lookback.query_lookbacks(config, OBSERVATION_GROUPS)


def _observations(valuesets: tuple[str, ...], tail: str = "&_sort=-date") -> str:
    return "Observation?patient={{context.patientId}}&code=" + _codes(*valuesets) + tail


PATIENT = PrefetchKey("patient", "Patient/{{context.patientId}}", required=True)
# Conditions have no window: a history of VTE, stroke or falls counts however old, and no code filter: a DVT written
# only in words is read by its text.
CONDITIONS = PrefetchKey(
    "conditions", "Condition?patient={{context.patientId}}", required=True, fetch=(FetchPart(count=PAGE_ALL),)
)
# DVT_CDS_PREFETCH=lean: the Conditions that can say a DVT of this episode (acute, suspected or unreadable; a chronic
# one alone is an earlier episode and gives no card) — a chart without one, nor a recent venous duplex study, is
# answered without the rest of its record. A DVT written only in words, with no code, is not found this way (the
# README says so).
DVT_CONDITION_SETS = tuple(vs for vs, _ in CONDITION_SETS)


def _any_system_codes(*valuesets: str) -> str:
    """Codes without a system (FHIR: a token without ``|`` matches the code in any system), ICD-10-CM also without
    its dot: the ways EHRs store them (OIDs, MIMIC's own systems, ``I82461``) in a URL a server accepts."""
    codes = [code for vs in valuesets for system in valueset(vs).include for code in codes_of(vs, system)]
    return ",".join(dict.fromkeys(c for code in codes for c in (code, code.replace(".", ""))))


DVT_CONDITIONS = PrefetchKey(
    "dvtConditions",
    "Condition?patient={{context.patientId}}&code=" + _any_system_codes(*DVT_CONDITION_SETS),
    required=True,
    fetch=(FetchPart(count=100),),
)
DDIMER = PrefetchKey(
    "ddimer",
    _observations(DDIMER_SETS, "&_sort=-date&_count=50"),
    # A result dated only by `issued` has no `date` a server searches on: the undated part finds it.
    fetch=(FetchPart(lookback="ddimer", count=50), FetchPart(undated=True, count=50)),
)
# Every duplex study counts (earlier episodes, residual thrombus): no window.
ULTRASOUND = PrefetchKey("ultrasound", _observations(ULTRASOUND_SETS), fetch=(FetchPart(count=100),))
ULTRASOUND_REPORTS = PrefetchKey(
    "ultrasoundReports",
    "DiagnosticReport?patient={{context.patientId}}&code=" + _DUPLEX + "&_sort=-date",
    fetch=(FetchPart(count=100),),
)
# Epic and Oracle Health code imaging reports locally (an Epic procedure id, a code set 72 event code): found by
# category and read by title (docs/clinical/RULES.md R-TEXT-1). US Core's Radiology and Cardiology categories
# (LOINC LP29684-5, LP29708-2; vascular labs file under either) and HL7 v2-0074 RAD, RUS, VUS, IMG
# (VENDOR-SHAPES.md §1, §2, §4).
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
    "labs",
    _observations(LAB_SETS, "&_sort=-date&_count=200"),
    fetch=(
        FetchPart(_observations(_WINDOWED_LABS), lookback="labs", count=200, valuesets=_WINDOWED_LABS),
        FetchPart(_observations(_WINDOWED_LABS), undated=True, count=200, valuesets=_WINDOWED_LABS),
        # Pregnancy status and the patient's preference: the newest decides however old it is.
        FetchPart(_observations(_HISTORY_LABS), count=200, valuesets=_HISTORY_LABS),
    ),
)
# US Core: a server that references Medications SHALL support _include for them; with it the drug of an Epic
# order (medicationReference) arrives in the same answer. Beyond the 2.0 query list, and said so in the README;
# a client that cannot include omits the key's Medications and the service reads them itself.
MEDICATIONS = PrefetchKey(
    "medications",
    "MedicationRequest?patient={{context.patientId}}&status=active,on-hold&_include=MedicationRequest:medication",
    fetch=(FetchPart(count=100),),
)
# An open inpatient stay with no period is a current admission (riskfactors.inpatient): the undated part finds it.
ENCOUNTERS = PrefetchKey(
    "encounters",
    "Encounter?patient={{context.patientId}}&_sort=-date&_count=100",
    fetch=(FetchPart(lookback="encounters", count=100), FetchPart(undated=True, count=100)),
)
# No procedure rule reads an undated procedure (surgery, delivery and dialysis all need a date): no undated part.
PROCEDURES = PrefetchKey(
    "procedures",
    "Procedure?patient={{context.patientId}}&_sort=-date&_count=100",
    fetch=(FetchPart(lookback="procedures", count=100),),
)
IMAGING_ORDERS = PrefetchKey(
    "imagingOrders",
    "ServiceRequest?patient={{context.patientId}}&code=" + _DUPLEX,
    fetch=(FetchPart(count=100),),
)
ENCOUNTER = PrefetchKey("encounter", "Encounter/{{context.encounterId}}")

# Which value sets each code-filtered key asks for: a site's local codes mapped onto them are asked for too.
CODE_FILTERED: dict[str, tuple[str, ...]] = {
    "dvtConditions": DVT_CONDITION_SETS,
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


def _with_codes(template: str, local_codes: list[str]) -> str:
    if not local_codes or "&code=" not in template:
        return template
    head, _, rest = template.partition("&code=")
    codes, sep, tail = rest.partition("&")
    tokens = ",".join(search_token(t) for t in local_codes)
    return f"{head}&code={codes},{tokens}{sep}{tail}"


def with_local_codes(key: PrefetchKey, local_codes: list[str]) -> PrefetchKey:
    """The key's template with the site's local ``system|code`` tokens added to its ``code=`` filter (fetch parts
    without a template of their own ask the key's template, so they get them too)."""
    template = _with_codes(key.template, local_codes)
    return key if template == key.template else replace(key, template=template)


def with_site_codes(key: PrefetchKey, local_for: Callable[[tuple[str, ...]], list[str]]) -> PrefetchKey:
    """The key with the local codes a site maps onto its value sets: in its template, and in each fetch part with a
    template of its own (for that part's value sets)."""
    if key.name in CODE_FILTERED:
        key = with_local_codes(key, local_for(CODE_FILTERED[key.name]))
    parts = tuple(
        replace(p, template=_with_codes(p.template, local_for(p.valuesets))) if p.template and p.valuesets else p
        for p in key.fetch
    )
    return replace(key, fetch=parts) if parts != key.fetch else key


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
# DVT_CDS_PREFETCH=lean: what a chart open asks for first. The duplex keys are read whole as under full prefetch
# (a patient has few studies; the older ones are the earlier episodes a DVT's assessment reads).
SCREEN: tuple[PrefetchKey, ...] = (PATIENT, DVT_CONDITIONS, ULTRASOUND, ULTRASOUND_REPORTS, IMAGING_REPORTS)
