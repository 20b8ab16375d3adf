"""Benchmark records and hook requests built from third-party Synthea data plus a distal DVT.

* typical: Synthea patient 8e1a0a7c… (151 resources) + a gastrocnemius-vein DVT, its D-dimer and ultrasound;
* large: Synthea patient 79a66c97… (2,768 resources) + the same DVT.

Prefetch is rendered from the service's own templates against the record with the replay's FHIR-search emulator,
so the bench sends what an EHR following the templates would send. ``variant(k)`` is the same record as another
patient: every id its own, every date k days earlier, so no cache keyed by a patient, a resource or a text can
answer twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.load import PLACEHOLDER
from cds_service.fhir.prefetch import render
from cds_service.replay.scenarios import shift_dates
from cds_service.replay.search import search, searchset

SYNTHEA = Path(__file__).resolve().parents[1] / "tests" / "data" / "third-party" / "sample-bulk-10-patients"
TYPICAL = "8e1a0a7c-e308-444b-075a-3c2b1f60f881"
LARGE = "79a66c97-6131-3213-f3c9-4606946ab056"
TYPES = ("Patient", "Condition", "Encounter", "MedicationRequest", "Procedure")


def synthea(patient_id: str) -> list[dict[str, Any]]:
    found = []
    for kind in TYPES:
        for line in (SYNTHEA / f"{kind}.000.ndjson").read_text().splitlines():
            resource = json.loads(line)
            ref = resource.get("subject", {}).get("reference", "")
            if (kind == "Patient" and resource["id"] == patient_id) or ref == f"Patient/{patient_id}":
                found.append(resource)
    return found


def distal_dvt(patient_id: str, now: datetime) -> list[dict[str, Any]]:
    def when(days: int) -> str:
        return (now - timedelta(days=days)).isoformat(timespec="seconds").replace("+00:00", "Z")

    subject = {"reference": f"Patient/{patient_id}"}
    us = "urn:distal-dvt-cds:venous-ultrasound"
    return [
        {
            "resourceType": "Condition",
            "id": f"bench-dvt-{patient_id[:8]}",
            "subject": subject,
            "clinicalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
            },
            "verificationStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
                ]
            },
            "code": {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/sid/icd-10-cm",
                        "code": "I82.462",
                        "display": "Acute embolism and thrombosis of left calf muscular vein",
                    }
                ]
            },
            "onsetDateTime": when(2),
        },
        {
            "resourceType": "Observation",
            "id": f"bench-ddimer-{patient_id[:8]}",
            "status": "final",
            "subject": subject,
            "code": {"coding": [{"system": "http://loinc.org", "code": "48065-7"}]},
            "effectiveDateTime": when(2),
            "valueQuantity": {"value": 0.9, "unit": "mg/L FEU", "system": "http://unitsofmeasure.org", "code": "mg/L"},
        },
        {
            "resourceType": "Observation",
            "id": f"bench-us-{patient_id[:8]}",
            "status": "final",
            "subject": subject,
            "category": [
                {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging"}
                    ]
                }
            ],
            "code": {"coding": [{"system": "http://loinc.org", "code": "39420-5"}]},
            "effectiveDateTime": when(2),
            "component": [
                {
                    "code": {"coding": [{"system": us, "code": "thrombosed-vein"}]},
                    "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "264481007"}]},
                },
                {
                    "code": {"coding": [{"system": us, "code": "side"}]},
                    "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "7771000"}]},
                },
                {
                    "code": {"coding": [{"system": us, "code": "thrombus-length"}]},
                    "valueQuantity": {"value": 3, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"},
                },
            ],
        },
    ]


def record(patient_id: str, now: datetime) -> list[dict[str, Any]]:
    return synthea(patient_id) + distal_dvt(patient_id, now)


def variant(resources: list[dict[str, Any]], patient_id: str, k: int) -> tuple[list[dict[str, Any]], str]:
    """The record as patient ``k``: ids suffixed (references follow), dates ``k`` days earlier; k = 0 is the record."""
    if k == 0:
        return resources, patient_id
    suffix = f"-v{k}"
    ids = {(r["resourceType"], r["id"]) for r in resources if isinstance(r.get("id"), str)}

    def renamed(value: Any) -> Any:
        if isinstance(value, dict):
            out = {key: renamed(v) for key, v in value.items()}
            if isinstance(out.get("resourceType"), str) and (out["resourceType"], out.get("id")) in ids:
                out["id"] += suffix
            ref = out.get("reference")
            if isinstance(ref, str) and tuple(ref.split("/")[-2:]) in ids:
                out["reference"] = ref + suffix
            return out
        if isinstance(value, list):
            return [renamed(v) for v in value]
        return value

    return shift_dates([renamed(r) for r in resources], -k), patient_id + suffix


def drafts(patient_id: str, now: datetime) -> dict[str, Any]:
    subject = {"reference": f"Patient/{patient_id}"}
    apixaban = {
        "resourceType": "MedicationRequest",
        "id": "bench-draft-apixaban",
        "status": "draft",
        "intent": "order",
        "subject": subject,
        "authoredOn": now.isoformat(timespec="seconds"),
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "1364445",
                    "display": "apixaban 5 MG Oral Tablet",
                }
            ]
        },
        "dosageInstruction": [
            {
                "timing": {
                    "repeat": {
                        "frequency": 2,
                        "period": 1,
                        "periodUnit": "d",
                        "boundsDuration": {
                            "value": 30,
                            "unit": "days",
                            "code": "d",
                            "system": "http://unitsofmeasure.org",
                        },
                    }
                },
                "doseAndRate": [
                    {"doseQuantity": {"value": 5, "unit": "mg", "code": "mg", "system": "http://unitsofmeasure.org"}}
                ],
            }
        ],
    }
    limited = {
        "resourceType": "ServiceRequest",
        "id": "bench-draft-us",
        "status": "draft",
        "intent": "order",
        "subject": subject,
        "code": {"coding": [{"system": "http://loinc.org", "code": "46301-8"}]},
    }
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": apixaban}, {"resource": limited}]}


def hook_request(
    service: dict[str, Any],
    resources: list[dict[str, Any]],
    patient_id: str,
    now: datetime,
    *,
    prefetch: bool,
    fhir_server: str | None = None,
) -> dict[str, Any]:
    hook = service["hook"]
    encounters = [r for r in resources if r["resourceType"] == "Encounter"]
    context: dict[str, Any] = {"userId": "Practitioner/bench", "patientId": patient_id}
    if encounters:
        context["encounterId"] = encounters[-1]["id"]
    if hook in ("order-select", "order-sign"):
        context["draftOrders"] = drafts(patient_id, now)
    if hook == "order-select":
        context["selections"] = ["MedicationRequest/bench-draft-apixaban"]
    body: dict[str, Any] = {"hook": hook, "hookInstance": PLACEHOLDER, "context": context}
    if fhir_server:
        body["fhirServer"] = fhir_server
    if prefetch:
        body["prefetch"] = {}
        for key, template in service.get("prefetch", {}).items():
            query = render(template, context)
            if query is None:
                continue
            kind, found = search(query, resources)
            body["prefetch"][key] = found if kind == "read" else searchset(found)  # type: ignore[arg-type]
    return body


def count_resources(body: dict[str, Any]) -> int:
    total = 0
    for value in (body.get("prefetch") or {}).values():
        if isinstance(value, dict):
            total += len(value.get("entry", [])) if value.get("resourceType") == "Bundle" else 1
    return total


def bench_now() -> datetime:
    return datetime.now(UTC)
