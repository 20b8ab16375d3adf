"""Run one synthetic call through the clinical core when a worker starts, so the first real call does not pay
for compiling value sets, building FHIR model validators and importing lazily loaded modules (≈0.6 s)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from cds_service import cards
from cds_service.clinical import terminology
from cds_service.clinical.assessment import assess
from cds_service.clinical.config import RuleConfig
from cds_service.clinical.facts import build_facts
from cds_service.fhir.record import PatientRecord

_SUBJECT = {"reference": "Patient/warm-up"}
_CONCEPT = "http://terminology.hl7.org/CodeSystem/"
_RESOURCES = [
    {"resourceType": "Patient", "id": "warm-up", "gender": "female", "birthDate": "1970-01-01"},
    {
        "resourceType": "Condition",
        "id": "c",
        "subject": _SUBJECT,
        "onsetDateTime": "{today}",
        "clinicalStatus": {"coding": [{"system": _CONCEPT + "condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I82.462"}]},
    },
    {
        "resourceType": "Observation",
        "id": "d",
        "status": "final",
        "subject": _SUBJECT,
        "effectiveDateTime": "{today}",
        "code": {"coding": [{"system": "http://loinc.org", "code": "48065-7"}]},
        "valueQuantity": {"value": 900, "unit": "ng/mL"},
    },
    {
        "resourceType": "Observation",
        "id": "u",
        "status": "final",
        "subject": _SUBJECT,
        "effectiveDateTime": "{today}",
        "code": {"coding": [{"system": "http://loinc.org", "code": "39420-5"}]},
        "component": [
            {
                "code": {"coding": [{"system": "urn:distal-dvt-cds:venous-ultrasound", "code": "thrombosed-vein"}]},
                "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "264481007"}]},
            }
        ],
    },
    {
        "resourceType": "MedicationRequest",
        "id": "m",
        "status": "active",
        "intent": "order",
        "subject": _SUBJECT,
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "243670"}]
        },
    },
    {
        "resourceType": "Encounter",
        "id": "e",
        "status": "finished",
        "subject": _SUBJECT,
        "class": {"system": _CONCEPT + "v3-ActCode", "code": "IMP"},
        "period": {"start": "{today}", "end": "{today}"},
    },
    {
        "resourceType": "Procedure",
        "id": "p",
        "status": "completed",
        "subject": _SUBJECT,
        "performedDateTime": "{today}",
        "code": {"text": "Laparoscopic appendectomy"},
    },
    {
        # A narrative-only report: builds the medspaCy report pipeline (~0.5 s) once per worker, at start.
        "resourceType": "DiagnosticReport",
        "id": "r",
        "status": "final",
        "subject": _SUBJECT,
        "effectiveDateTime": "{today}",
        "code": {"text": "US venous duplex lower extremity left"},
        "conclusion": "Acute occlusive thrombus in the left peroneal vein, 4 cm long. The popliteal vein is patent.",
    },
    {
        "resourceType": "ServiceRequest",
        "id": "s",
        "status": "active",
        "intent": "order",
        "subject": _SUBJECT,
        "code": {"coding": [{"system": "http://loinc.org", "code": "39420-5"}]},
    },
]


def warm_up() -> None:
    for vs_id in terminology.valueset_ids():
        terminology.valueset(vs_id)
    now = datetime.now(UTC)
    today = now.date().isoformat()
    record = PatientRecord(patient_id="warm-up")
    record.add(json.loads(json.dumps(_RESOURCES).replace("{today}", today)))  # nested dates too
    facts = build_facts(record.finish(), today=now.date(), config=RuleConfig())
    assessment = assess(facts, today=now.date(), config=RuleConfig())
    context = cards.CardContext(patient_id="warm-up", encounter_id=None, now=now, facts=facts)
    if assessment.regimen is not None:
        cards.medication_request(assessment.regimen, context, assessment.episode)
