"""FHIR data no one here wrote (tests/data/third-party, provenance in its README) through every hook.

Synthea patients, CMS190 pulmonary-embolism test cases and the HL7 R4 specification examples: no 5xx, no DVT
card for patients without DVT, and no serial-imaging card for a patient with pulmonary embolism. The AHRQ hook
requests are replayed as they are (their prefetch keys are not ours and their FHIR server is not reachable: 412)
and re-shaped to our templates (200, no DVT card). The Inferno CRD card responses check our wire models against
cards a conformance kit uses.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from cds_service.app import create_app
from cds_service.clinical.fhirdata import parse_date
from cds_service.clinical.topics import Topic
from cds_service.fhir.prefetch import render
from cds_service.protocol import Card
from cds_service.replay.search import search, searchset
from cds_service.settings import Settings
from hooks import SERVICES
from tests.inprocess import close_app

DATA = Path(__file__).resolve().parent / "data" / "third-party"
# The topics that say a DVT is in the record: by the topic codes' convention, those naming a DVT.
DVT_TOPICS = {topic.value for topic in Topic if "dvt" in topic.value}
DATE_FIELDS = ("onsetDateTime", "recordedDate", "effectiveDateTime", "authoredOn", "performedDateTime", "issued")


def synthea() -> Iterator[tuple[str, str, list[dict]]]:
    folder = DATA / "sample-bulk-10-patients"
    by_patient: dict[str, list[dict]] = defaultdict(list)
    for kind in ("Patient", "Condition", "Encounter", "MedicationRequest", "Procedure"):
        for line in (folder / f"{kind}.000.ndjson").read_text().splitlines():
            resource = json.loads(line)
            pid = resource["id"] if kind == "Patient" else resource["subject"]["reference"].split("/")[-1]
            by_patient[pid].append(resource)
    for pid, resources in sorted(by_patient.items()):
        yield "synthea", pid, resources


def cms190() -> Iterator[tuple[str, str, list[dict]]]:
    for folder in sorted(p for p in (DATA / "ecqm-CMS190-PE-testcases").iterdir() if p.is_dir()):
        resources = [json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))]
        pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        yield "cms190-pe", pid, resources


def spec_examples() -> Iterator[tuple[str, str, list[dict]]]:
    resources = []
    for path in sorted((DATA / "hl7-fhir-r4-spec-examples").glob("*.json")):
        resource = json.loads(path.read_text())
        if resource.get("resourceType") == "Bundle":
            resources.extend(e["resource"] for e in resource.get("entry", []) if "resource" in e)
        else:
            resources.append(resource)
    patients = {r["id"]: r for r in resources if r.get("resourceType") == "Patient" and "id" in r}
    by_patient: dict[str, list[dict]] = {pid: [p] for pid, p in patients.items()}
    for resource in resources:
        ref = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
        pid = ref.split("/")[-1] if ref.startswith("Patient/") else None
        if pid in by_patient:
            by_patient[pid].append(resource)
    for pid, items in sorted(by_patient.items()):
        yield "hl7-examples", pid, items


PATIENTS = [*synthea(), *cms190(), *spec_examples()]


def latest(resources: list[dict]) -> datetime:
    """The day after the newest dated fact of the record: the record seen as current."""
    dates = [parse_date(r.get(f)) for r in resources for f in DATE_FIELDS]
    dates += [parse_date((r.get("period") or {}).get("start")) for r in resources]
    found = [d for d in dates if d is not None]
    day = max(found) if found else datetime(2026, 1, 1, tzinfo=UTC).date()
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC) + timedelta(days=1)


CLOCK = {"now": datetime(2026, 1, 1, tzinfo=UTC)}


@pytest.fixture(scope="module")
def third_party_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    db = tmp_path_factory.mktemp("third-party") / "store.sqlite3"
    app = create_app(Settings(auth="off", database_url=f"sqlite:///{db}"), clock=lambda: CLOCK["now"])
    yield app
    close_app(app)


def request_for(service: Any, resources: list[dict], pid: str) -> dict[str, Any]:
    encounters = [r for r in resources if r["resourceType"] == "Encounter" and "id" in r]
    context: dict[str, Any] = {"userId": "Practitioner/third-party", "patientId": pid}
    if encounters:
        context["encounterId"] = encounters[-1]["id"]
    elif service.hook == "encounter-discharge":
        context["encounterId"] = "no-such-encounter"
    if service.hook in ("order-select", "order-sign"):
        duplex = {
            "resourceType": "ServiceRequest",
            "id": "tp-duplex",
            "status": "draft",
            "intent": "order",
            "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "39420-5"}]},
        }
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": duplex}]}
        if service.hook == "order-select":
            context["selections"] = ["ServiceRequest/tp-duplex"]
    prefetch = {}
    for key in service.prefetch:
        query = render(key.template, context)
        if query is not None:
            kind, found = search(query, resources)
            prefetch[key.name] = found if kind == "read" else searchset(found)  # type: ignore[arg-type]
    return {"hook": service.hook, "hookInstance": f"third-party-{pid}", "context": context, "prefetch": prefetch}


@pytest.mark.parametrize(("source", "pid", "resources"), PATIENTS, ids=[f"{s}-{p}" for s, p, _ in PATIENTS])
def test_every_patient_through_every_hook(third_party_app: Flask, source: str, pid: str, resources: list[dict]) -> None:
    CLOCK["now"] = latest(resources)
    client = third_party_app.test_client()
    has_pe = any(
        "I26" in json.dumps(r.get("code", {})) or "706870000" in json.dumps(r.get("code", {}))
        for r in resources
        if r.get("resourceType") == "Condition"
    )
    if source == "cms190-pe":
        assert has_pe  # every CMS190 test case carries a pulmonary embolism
    for service in SERVICES:
        response = client.post(f"/cds-services/{service.id}", json=request_for(service, resources, pid))
        assert response.status_code == 200, (service.id, response.get_json())
        topics = {c["source"]["topic"]["code"] for c in response.get_json()["cards"]}
        assert not topics & DVT_TOPICS, (service.id, topics)  # none of these patients has a DVT
        if has_pe:
            assert "distal-dvt-serial-imaging" not in topics


def test_pe_patients_are_really_there() -> None:
    pe = [pid for source, pid, resources in PATIENTS if source == "cms190-pe"]
    assert len(pe) == 7


@pytest.mark.parametrize(
    "path",
    [
        *sorted((DATA / "ahrq-cql-services-hook-requests").glob("*_*.json")),
        DATA / "ahrq-cql-services-hook-requests" / "unhealthy_patient.json",
    ],
    ids=lambda p: p.stem,
)
def test_ahrq_hook_requests(third_party_app: Flask, path: Path) -> None:
    request = json.loads(path.read_text())
    client = third_party_app.test_client()
    as_sent = client.post("/cds-services/distal-dvt-patient-view", json=request)
    # Their prefetch keys are not ours and http://example.org is not a fhirServer we may contact: the data this
    # service needs is unobtainable, which the specification answers with 412.
    assert as_sent.status_code == 412
    assert as_sent.get_json()["resourceType"] == "OperationOutcome"
    resources = [request["prefetch"]["Patient"]]
    for key in ("Condition", "MedicationRequest"):
        value = request["prefetch"].get(key) or {}
        resources += [e["resource"] for e in value.get("entry", []) if "resource" in e]
    pid = request["prefetch"]["Patient"]["id"]
    for resource in resources[1:]:
        resource["subject"] = {"reference": f"Patient/{pid}"}  # their bundles use urn:uuid references
    CLOCK["now"] = latest(resources)
    [service] = [s for s in SERVICES if s.hook == "patient-view"]
    reshaped = client.post(f"/cds-services/{service.id}", json=request_for(service, resources, pid))
    assert reshaped.status_code == 200
    assert not {c["source"]["topic"]["code"] for c in reshaped.get_json()["cards"]} & DVT_TOPICS


@pytest.mark.parametrize("path", sorted((DATA / "inferno-crd-card-responses").glob("*.json")), ids=lambda p: p.stem)
def test_our_card_model_reads_conformance_kit_cards(path: Path) -> None:
    body = json.loads(path.read_text())
    for card in body.get("cards", []):
        parsed = Card.model_validate(card)
        assert len(parsed.summary) < 140
