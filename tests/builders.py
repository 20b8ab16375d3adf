"""FHIR R4 resource builders for tests: small, explicit, realistic (US Core-style coding, resolvable references).

Dates are relative to ``NOW``, a fixed instant that is deliberately not today's date, so a test that
accidentally reads the wall clock fails.
"""

from __future__ import annotations

import base64
import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cds_service.clinical import terminology as tx

NOW = datetime(2026, 3, 16, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
PATIENT_ID = "pat-1"

ICD = tx.ICD10CM
SCT = tx.SNOMED
LOINC = tx.LOINC
RX = tx.RXNORM
UCUM = tx.UCUM
US_SYSTEM = "urn:distal-dvt-cds:venous-ultrasound"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

_ids = itertools.count(1)

# Veins by SNOMED body structure (docs/clinical/RULES.md R-DX-1)
GASTROCNEMIUS = ("264481007", "Gastrocnemius vein")
SOLEAL = ("397427005", "Soleal vein")
PERONEAL = ("71758008", "Peroneal vein")
POSTERIOR_TIBIAL = ("4258007", "Posterior tibial vein")
ANTERIOR_TIBIAL = ("26703007", "Anterior tibial vein")
POPLITEAL = ("56849005", "Popliteal vein")
FEMORAL = ("397364003", "Femoral vein")
RIGHT = ("24028007", "Right")
LEFT = ("7771000", "Left")


def next_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def day(offset: int) -> str:
    """The date ``offset`` days before NOW (negative: after)."""
    return (TODAY - timedelta(days=offset)).isoformat()


def instant(offset_days: float) -> str:
    return (NOW - timedelta(days=offset_days)).isoformat().replace("+00:00", "Z")


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


def concept(system: str, code: str, display: str | None = None, text: str | None = None) -> dict[str, Any]:
    cc: dict[str, Any] = {"coding": [coding(system, code, display)]}
    if text:
        cc["text"] = text
    return cc


def subject(patient_id: str = PATIENT_ID) -> dict[str, str]:
    return {"reference": f"Patient/{patient_id}"}


def patient(patient_id: str = PATIENT_ID, *, birth: str | None = "1970-05-01", gender: str | None = "female") -> dict:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id,
        "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": f"MRN-{patient_id}"}],
        "name": [{"family": "Test", "given": ["Pat"]}],
    }
    if birth:
        resource["birthDate"] = birth
    if gender:
        resource["gender"] = gender
    return resource


def age_birth(years: int, *, days_before_birthday: int = 10) -> str:
    """A birth date making the patient exactly ``years`` old at NOW."""
    birthday_this_year = TODAY + timedelta(days=days_before_birthday)
    return date(birthday_this_year.year - years - 1, birthday_this_year.month, birthday_this_year.day).isoformat()


def condition(
    code: str | None = None,
    *,
    system: str = ICD,
    display: str | None = None,
    text: str | None = None,
    onset: int | None = 2,
    clinical: str | None = "active",
    verification: str | None = "confirmed",
    body_sites: list[tuple[str, str]] | None = None,
    severity: str | None = None,
    abatement: int | None = None,
    category: str = "encounter-diagnosis",
    resource_id: str | None = None,
    patient_id: str = PATIENT_ID,
) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": resource_id or next_id("cond"),
        "subject": subject(patient_id),
        "category": [concept("http://terminology.hl7.org/CodeSystem/condition-category", category)],
    }
    if code is not None:
        resource["code"] = concept(system, code, display, text)
    elif text is not None:
        resource["code"] = {"text": text}
    if clinical:
        resource["clinicalStatus"] = concept(CLINICAL, clinical)
    if verification:
        resource["verificationStatus"] = concept(VERIFICATION, verification)
    if onset is not None:
        resource["onsetDateTime"] = day(onset)
    if abatement is not None:
        resource["abatementDateTime"] = day(abatement)
    if body_sites:
        resource["bodySite"] = [concept(SCT, c, d) for c, d in body_sites]
    if severity:
        resource["severity"] = concept(SCT, severity, "Severe" if severity == "24484000" else None)
    return resource


def observation(
    code: str,
    *,
    system: str = LOINC,
    value: float | None = None,
    unit: str | None = None,
    ucum: str | None = None,
    days: float = 1,
    status: str = "final",
    category: str = "laboratory",
    interpretation: str | None = None,
    ref_high: float | None = None,
    ref_unit: str | None = None,
    comparator: str | None = None,
    value_string: str | None = None,
    value_concept: dict | None = None,
    value_boolean: bool | None = None,
    resource_id: str | None = None,
    patient_id: str = PATIENT_ID,
) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id or next_id("obs"),
        "status": status,
        "category": [concept("http://terminology.hl7.org/CodeSystem/observation-category", category)],
        "code": concept(system, code),
        "subject": subject(patient_id),
        "effectiveDateTime": instant(days),
    }
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if unit:
            quantity["unit"] = unit
        if ucum:
            quantity["system"], quantity["code"] = UCUM, ucum
        if comparator:
            quantity["comparator"] = comparator
        resource["valueQuantity"] = quantity
    if value_string is not None:
        resource["valueString"] = value_string
    if value_concept is not None:
        resource["valueCodeableConcept"] = value_concept
    if value_boolean is not None:
        resource["valueBoolean"] = value_boolean
    if interpretation:
        resource["interpretation"] = [concept(INTERPRETATION, interpretation)]
    if ref_high is not None:
        high: dict[str, Any] = {"value": ref_high}
        if ref_unit or unit:
            high["unit"] = ref_unit or unit
        resource["referenceRange"] = [{"high": high}]
    return resource


def ddimer(value: float | None = None, unit: str = "ng/mL", *, code: str = "48065-7", **kwargs: Any) -> dict:
    return observation(code, value=value, unit=unit, **kwargs)


def duplex(
    veins: list[tuple[str, str]] | None = None,
    *,
    side: tuple[str, str] | None = None,
    length: tuple[float, str] | None = None,
    diameter: tuple[float, str] | None = None,
    distance_cm: float | None = None,
    no_thrombus: bool = False,
    days: float = 1,
    code: str = "39420-5",
    status: str = "final",
    resource_id: str | None = None,
) -> dict:
    components: list[dict[str, Any]] = []
    for c, d in veins or []:
        components.append({"code": concept(US_SYSTEM, "thrombosed-vein"), "valueCodeableConcept": concept(SCT, c, d)})
    if side:
        components.append({"code": concept(US_SYSTEM, "side"), "valueCodeableConcept": concept(SCT, *side)})
    if length:
        components.append(
            {
                "code": concept(US_SYSTEM, "thrombus-length"),
                "valueQuantity": {"value": length[0], "unit": length[1], "system": UCUM, "code": length[1]},
            }
        )
    if diameter:
        components.append(
            {
                "code": concept(US_SYSTEM, "thrombus-diameter"),
                "valueQuantity": {"value": diameter[0], "unit": diameter[1], "system": UCUM, "code": diameter[1]},
            }
        )
    if distance_cm is not None:
        components.append(
            {
                "code": concept(US_SYSTEM, "distance-to-popliteal"),
                "valueQuantity": {"value": distance_cm, "unit": "cm", "system": UCUM, "code": "cm"},
            }
        )
    if no_thrombus:
        components.append({"code": concept(US_SYSTEM, "no-thrombus"), "valueBoolean": True})
    resource = observation(code, days=days, status=status, category="imaging", resource_id=resource_id or next_id("us"))
    if components:
        resource["component"] = components
    return resource


def narrative_report(
    text: str,
    *,
    days: int = 1,
    title: str = "US Venous Doppler Lower Extremity Left",
    code: dict[str, Any] | None = None,
    html: bool = False,
    **extra: Any,
) -> dict:
    """A venous duplex DiagnosticReport known only by its words: a title (or the ``code`` given) and its text as
    ``conclusion``, or as an inline HTML ``presentedForm``."""
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": next_id("dr"),
        "status": "final",
        "subject": subject(),
        "code": code if code is not None else {"text": title},
        "effectiveDateTime": day(days),
    }
    if html:
        data = base64.b64encode(f"<html><body><p>{text}</p></body></html>".encode()).decode()
        resource["presentedForm"] = [{"contentType": "text/html", "data": data}]
    else:
        resource["conclusion"] = text
    resource.update(extra)
    return resource


def medication_request(
    rxnorm: str,
    display: str,
    *,
    dose: float | None = None,
    dose_unit: str = "mg",
    per_day: int | None = 2,
    status: str = "active",
    intent: str = "order",
    days: int | None = None,
    text: str | None = None,
    resource_id: str | None = None,
    authored: int = 1,
) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": resource_id or next_id("medrx"),
        "status": status,
        "intent": intent,
        "medicationCodeableConcept": concept(RX, rxnorm, display, text),
        "subject": subject(),
        "authoredOn": day(authored),
    }
    if dose is not None or per_day is not None or days is not None:
        dosage: dict[str, Any] = {"sequence": 1}
        repeat: dict[str, Any] = {}
        if per_day is not None:
            repeat.update({"frequency": per_day, "period": 1, "periodUnit": "d"})
        if days is not None:
            repeat["boundsDuration"] = {"value": days, "unit": "days", "system": UCUM, "code": "d"}
        if repeat:
            dosage["timing"] = {"repeat": repeat}
        if dose is not None:
            dosage["doseAndRate"] = [
                {"doseQuantity": {"value": dose, "unit": dose_unit, "system": UCUM, "code": dose_unit}}
            ]
        resource["dosageInstruction"] = [dosage]
    return resource


def apixaban(dose: float = 5, per_day: int = 2, **kwargs: Any) -> dict:
    return medication_request("1364445", "apixaban 5 MG Oral Tablet", dose=dose, per_day=per_day, **kwargs)


def encounter(
    klass: str = "IMP",
    *,
    status: str = "finished",
    start: int = 20,
    end: int | None = 10,
    resource_id: str | None = None,
) -> dict:
    period: dict[str, str] = {"start": instant(start)}
    if end is not None:
        period["end"] = instant(end)
    return {
        "resourceType": "Encounter",
        "id": resource_id or next_id("enc"),
        "status": status,
        "class": coding(tx.ACT_CODE, klass),
        "subject": subject(),
        "period": period,
    }


def procedure(
    code: str = "80146002",
    display: str = "Appendectomy",
    *,
    surgical: bool = True,
    days: int = 10,
    system: str = SCT,
    status: str = "completed",
) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": next_id("proc"),
        "status": status,
        "code": concept(system, code, display),
        "subject": subject(),
        "performedDateTime": instant(days),
    }
    if surgical:
        resource["category"] = concept(SCT, "387713003", "Surgical procedure")
    return resource


def service_request(
    code: str = "39420-5",
    *,
    due_in: int | None = 7,
    status: str = "active",
    intent: str = "order",
    system: str = LOINC,
    text: str | None = None,
) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": next_id("sr"),
        "status": status,
        "intent": intent,
        "code": concept(system, code, None, text),
        "subject": subject(),
    }
    if due_in is not None:
        resource["occurrenceDateTime"] = day(-due_in)
    return resource


def bundle(*resources: dict, next_url: str | None = None, outcome: dict | None = None) -> dict:
    entries = [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": r, "search": {"mode": "match"}} for r in resources]
    if outcome is not None:
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    result: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(resources), "entry": entries}
    if not entries:
        del result["entry"]
    if next_url:
        result["link"] = [{"relation": "next", "url": next_url}]
    return result


def operation_outcome(severity: str = "error", code: str = "processing", text: str = "failed") -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code, "diagnostics": text}]}


_OBSERVATION_KEYS = (
    ("ddimer", ("observation-ddimer-feu", "observation-ddimer-ddu", "observation-ddimer-other")),
    ("ultrasound", ("venous-duplex-lower-extremity", "venous-ultrasound-limited")),
)
_TYPE_KEYS = {
    "Condition": "conditions",
    "MedicationRequest": "medications",
    "Encounter": "encounters",
    "Procedure": "procedures",
    "ServiceRequest": "imagingOrders",
    "DiagnosticReport": "ultrasoundReports",
}


def prefetch_for(
    resources: list[dict], *, patient_resource: dict | None = None, encounter_id: str | None = None
) -> dict:
    """A complete prefetch as an EHR would fill this project's templates: every key present."""
    keys: dict[str, list[dict]] = {
        k: []
        for k in (
            "conditions",
            "ddimer",
            "ultrasound",
            "ultrasoundReports",
            "labs",
            "medications",
            "encounters",
            "procedures",
            "imagingOrders",
        )
    }
    for resource in resources:
        kind = resource["resourceType"]
        if kind == "Observation":
            target = "labs"
            for key, sets in _OBSERVATION_KEYS:
                if tx.match_any(resource.get("code"), sets):
                    target = key
            keys[target].append(resource)
        elif kind in _TYPE_KEYS:
            keys[_TYPE_KEYS[kind]].append(resource)
    prefetch: dict[str, Any] = {key: bundle(*items) for key, items in keys.items()}
    prefetch["patient"] = patient_resource or patient()
    if encounter_id is not None:
        found = [r for r in resources if r["resourceType"] == "Encounter" and r["id"] == encounter_id]
        prefetch["encounter"] = found[0] if found else None
    return prefetch


def hook_request(
    hook: str,
    resources: list[dict] | None = None,
    *,
    prefetch: dict | None = None,
    patient_resource: dict | None = None,
    **context: Any,
) -> dict:
    ctx: dict[str, Any] = {"userId": "Practitioner/prac-1", "patientId": PATIENT_ID, **context}
    request: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": ctx}
    if prefetch is not None:
        request["prefetch"] = prefetch
    elif resources is not None:
        request["prefetch"] = prefetch_for(
            resources, patient_resource=patient_resource, encounter_id=context.get("encounterId")
        )
    return request


def draft_orders(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


# --- running the clinical core without HTTP ---------------------------------------------------------------------
def record_of(resources: list[dict], *, gaps: tuple[tuple[str, str], ...] = (), patient_resource: dict | None = None):
    """A PatientRecord as prefetch would build it; ``gaps`` are (key, resourceType) that could not be read."""
    from cds_service.fhir.record import DataGap, PatientRecord

    record = PatientRecord(patient_id=PATIENT_ID)
    record.add([patient_resource or patient(), *resources])
    for key, resource_type in gaps:
        record.add_gap(DataGap(key, resource_type, "FHIR server timed out"))
    return record.finish()


def facts_of(resources: list[dict], *, encounter_id: str | None = None, config=None, **kwargs: Any):
    from cds_service.clinical.config import RuleConfig
    from cds_service.clinical.facts import build_facts

    return build_facts(
        record_of(resources, **kwargs), today=TODAY, config=config or RuleConfig(), context_encounter_id=encounter_id
    )


def assess_of(resources: list[dict], *, config=None, **kwargs: Any):
    from cds_service.clinical.assessment import assess
    from cds_service.clinical.config import RuleConfig

    config = config or RuleConfig()
    return assess(facts_of(resources, config=config, **kwargs), today=TODAY, config=config)


def distal_dvt(**kwargs: Any) -> dict:
    """An acute left peroneal (axial) DVT diagnosed 2 days ago."""
    values = {"display": "Acute embolism and thrombosis of left peroneal vein", "onset": 2}
    values.update(kwargs)
    return condition(values.pop("code", "I82.452"), **values)


def muscular_dvt(**kwargs: Any) -> dict:
    values = {"display": "Acute embolism and thrombosis of left calf muscular vein", "onset": 2}
    values.update(kwargs)
    return condition(values.pop("code", "I82.462"), **values)


def provoked_by_surgery(days: int = 45) -> dict:
    """Surgery before the DVT: provoking (within 90 days) but not 'recent surgery' (30 days) at 45 days."""
    return procedure("80146002", "Appendectomy", days=days)
