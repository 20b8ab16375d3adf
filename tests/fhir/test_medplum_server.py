"""The medplum test FHIR server (tests/medplum) answers the service's prefetch queries as a FHIR server should.

One server per module; each test that changes the data reloads the small chart below.
Needs `npm ci --prefix tests/medplum` (the helper's error says so when it is missing).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from cds_service.fhir.prefetch import PrefetchKey
from hooks import templates
from tests.medplum_server import MedplumServer, MedplumServerError

LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
PREFERENCE = "urn:distal-dvt-cds:preference"


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _subject(patient: str) -> dict[str, str]:
    return {"reference": f"Patient/{patient}"}


def _observation(id_: str, patient: str, system: str, code: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": _concept(system, code),
        "subject": _subject(patient),
        "effectiveDateTime": when,
    }


def _chart() -> list[dict[str, Any]]:
    """pat-1's chart with a decoy for every filter, and pat-2 holding the same codes."""
    resources: list[dict[str, Any]] = []
    for pid in ("pat-1", "pat-2"):
        p = pid[-1]
        resources += [
            {"resourceType": "Patient", "id": pid, "name": [{"family": f"Test{p}"}], "gender": "female"},
            {
                "resourceType": "Condition",
                "id": f"cond-dvt-{p}",
                "code": _concept(ICD10, "I82.461"),
                "subject": _subject(pid),
                "recordedDate": "2026-03-12",
            },
            _observation(f"obs-ddimer-{p}", pid, LOINC, "48065-7", "2026-03-10T08:00:00Z"),
            _observation(f"obs-duplex-{p}", pid, LOINC, "39420-5", "2026-03-12T09:30:00+01:00"),
            _observation(f"obs-creatinine-{p}", pid, LOINC, "2160-0", "2026-03-11T07:00:00Z"),
            {
                "resourceType": "MedicationRequest",
                "id": f"medreq-active-{p}",
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {"text": "apixaban 5 mg"},
                "subject": _subject(pid),
            },
            {
                "resourceType": "Encounter",
                "id": f"enc-ed-{p}",
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
                "subject": _subject(pid),
                "period": {"start": "2026-03-12T08:00:00Z", "end": "2026-03-12T14:00:00Z"},
            },
            {
                "resourceType": "Procedure",
                "id": f"proc-appendectomy-{p}",
                "status": "completed",
                "code": {"text": "appendectomy"},
                "subject": _subject(pid),
                "performedPeriod": {"start": "2026-01-30T10:00:00Z", "end": "2026-01-30T11:00:00Z"},
            },
            {
                "resourceType": "ServiceRequest",
                "id": f"sr-duplex-{p}",
                "status": "active",
                "intent": "order",
                "code": _concept(LOINC, "39420-5"),
                "subject": _subject(pid),
            },
            {
                "resourceType": "DiagnosticReport",
                "id": f"dr-duplex-{p}",
                "status": "final",
                "category": [_concept("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD")],
                "code": _concept(CPT, "93970"),
                "subject": _subject(pid),
                "effectiveDateTime": "2026-03-12T10:00:00Z",
            },
        ]
    # pat-1 only: decoys the code, status and sort logic must get right.
    resources += [
        _observation("obs-ddimer-old-1", "pat-1", LOINC, "48066-5", "2025-11-02"),  # second D-dimer code, older
        _observation("obs-wrong-system-1", "pat-1", "http://example.org/codes", "48065-7", "2026-03-11"),
        _observation("obs-temperature-1", "pat-1", LOINC, "8310-5", "2026-03-12"),  # in no value set
        _observation("obs-preference-1", "pat-1", PREFERENCE, "avoid-anticoagulation", "2026-03-09"),
        {
            "resourceType": "MedicationRequest",
            "id": "medreq-onhold-1",
            "status": "on-hold",
            "intent": "order",
            "medicationCodeableConcept": {"text": "warfarin"},
            "subject": _subject("pat-1"),
        },
        {
            "resourceType": "MedicationRequest",
            "id": "medreq-stopped-1",
            "status": "stopped",
            "intent": "order",
            "medicationCodeableConcept": {"text": "enoxaparin"},
            "subject": _subject("pat-1"),
        },
        {
            "resourceType": "Encounter",
            "id": "enc-clinic-1",  # newer than enc-ed-1
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": _subject("pat-1"),
            "period": {"start": "2026-03-15T09:00:00Z"},
        },
        {
            "resourceType": "Procedure",
            "id": "proc-biopsy-1",  # a dateTime newer than the appendectomy's Period
            "status": "completed",
            "code": {"text": "skin biopsy"},
            "subject": _subject("pat-1"),
            "performedDateTime": "2026-02-20",
        },
        {
            "resourceType": "ServiceRequest",
            "id": "sr-xray-1",
            "status": "active",
            "intent": "order",
            "code": _concept(LOINC, "36643-5"),
            "subject": _subject("pat-1"),
        },
        {
            "resourceType": "DiagnosticReport",
            "id": "dr-duplex-loinc-1",
            "status": "final",
            "category": [_concept(LOINC, "LP29684-5")],
            "code": _concept(LOINC, "39420-5"),
            "subject": _subject("pat-1"),
            "effectiveDateTime": "2026-03-13",
        },
        {
            "resourceType": "DiagnosticReport",
            "id": "dr-cbc-1",
            "status": "final",
            "category": [_concept("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB")],
            "code": _concept(LOINC, "58410-2"),
            "subject": _subject("pat-1"),
            "effectiveDateTime": "2026-03-13",
        },
    ]
    return resources


def _collection(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


@pytest.fixture(scope="module")
def medplum() -> Iterator[MedplumServer]:
    server = MedplumServer().start()
    yield server
    # Stopping is tested here rather than with a second server (start-up is the slow part).
    proc, url = server.process, server.base_url
    server.stop()
    assert proc is not None
    assert proc.returncode == 0  # SIGTERM handled: a clean exit
    assert not server.running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/metadata", timeout=5)


@pytest.fixture
def loaded(medplum: MedplumServer) -> MedplumServer:
    medplum.reset()
    medplum.load(_collection(_chart()))
    return medplum


def _get(server: MedplumServer, query: str) -> requests.Response:
    response = requests.get(f"{server.base_url}/{query}", headers={"Accept": "application/fhir+json"}, timeout=30)
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    return response


def _search(server: MedplumServer, query: str) -> list[str]:
    """Every id the search returns, in order, following next links."""
    ids: list[str] = []
    url: str | None = f"{server.base_url}/{query}"
    pages = 0
    while url is not None:
        assert url.startswith(server.base_url + "/"), url
        response = requests.get(url, timeout=30)
        assert response.status_code == 200, response.text
        bundle = response.json()
        assert bundle["resourceType"] == "Bundle"
        assert bundle["type"] == "searchset"
        for entry in bundle.get("entry", []):
            assert entry["search"] == {"mode": "match"}
            resource = entry["resource"]
            assert entry["fullUrl"] == f"{server.base_url}/{resource['resourceType']}/{resource['id']}"
            ids.append(resource["id"])
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
        pages += 1
        assert pages < 50
    return ids


def _render(template: str, patient: str = "pat-1", encounter: str = "enc-ed-1") -> str:
    return template.replace("{{context.patientId}}", patient).replace("{{context.encounterId}}", encounter)


# -- the prefetch templates, exactly as the services declare them ---------------------------------------------

EXPECTED_SEARCH = {
    "conditions": ["cond-dvt-1"],
    "ddimer": ["obs-ddimer-1", "obs-ddimer-old-1"],  # -date
    "ultrasound": ["obs-duplex-1"],
    "ultrasoundReports": ["dr-duplex-loinc-1", "dr-duplex-1"],  # -date
    "imagingReports": ["dr-duplex-loinc-1", "dr-duplex-1"],  # by category (-date): the lab report is not returned
    "labs": ["obs-creatinine-1", "obs-preference-1"],  # -date
    "medications": ["medreq-active-1", "medreq-onhold-1"],
    "encounters": ["enc-clinic-1", "enc-ed-1"],  # -date
    "procedures": ["proc-biopsy-1", "proc-appendectomy-1"],  # -date: dateTime vs Period
    "imagingOrders": ["sr-duplex-1"],
}
SORTED = {"ddimer", "ultrasound", "ultrasoundReports", "imagingReports", "labs", "encounters", "procedures"}
SEARCH_KEYS = {key.name: key for key in templates.PATIENT_DATA if not key.is_read}


def test_every_patient_search_template_is_covered() -> None:
    assert set(SEARCH_KEYS) == set(EXPECTED_SEARCH)
    assert {name for name, key in SEARCH_KEYS.items() if "_sort=-date" in key.template} == SORTED
    assert f"{LOINC}|48065-7" in templates.DDIMER.template
    assert f"{LOINC}|48066-5" in templates.DDIMER.template
    assert f"{LOINC}|39420-5" in templates.IMAGING_ORDERS.template
    assert f"{CPT}|93970" in templates.ULTRASOUND_REPORTS.template
    assert f"{PREFERENCE}|avoid-anticoagulation" in templates.LABS.template
    assert f"{LOINC}|2160-0" in templates.LABS.template


@pytest.mark.parametrize("name", sorted(EXPECTED_SEARCH))
def test_prefetch_search_returns_exactly_the_patients_matching_resources(loaded: MedplumServer, name: str) -> None:
    ids = _search(loaded, _render(SEARCH_KEYS[name].template))
    if name in SORTED:
        assert ids == EXPECTED_SEARCH[name]
    else:
        assert sorted(ids) == sorted(EXPECTED_SEARCH[name])


@pytest.mark.parametrize("name", sorted(EXPECTED_SEARCH))
def test_prefetch_search_for_the_other_patient_sees_only_theirs(loaded: MedplumServer, name: str) -> None:
    ids = _search(loaded, _render(SEARCH_KEYS[name].template, patient="pat-2"))
    assert ids, name
    assert all(i.endswith("-2") for i in ids), ids


def test_search_for_an_unknown_patient_is_an_empty_searchset(loaded: MedplumServer) -> None:
    response = _get(loaded, _render(templates.CONDITIONS.template, patient="nobody"))
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 0
    assert "entry" not in bundle


def test_patient_and_subject_reference_forms_agree(loaded: MedplumServer) -> None:
    bare = _search(loaded, "Observation?patient=pat-1")
    assert len(bare) == 7
    assert sorted(_search(loaded, "Observation?patient=Patient/pat-1")) == sorted(bare)
    assert sorted(_search(loaded, "Observation?subject=Patient/pat-1")) == sorted(bare)
    assert sorted(_search(loaded, "Observation?patient=pat-1,pat-2")) == sorted(
        [*bare, "obs-ddimer-2", "obs-duplex-2", "obs-creatinine-2"]
    )


def test_unencoded_pipes_in_the_query_are_accepted(loaded: MedplumServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", loaded.port, timeout=30)
    try:
        connection.request("GET", "/fhir/" + _render(templates.IMAGING_ORDERS.template))
        response = connection.getresponse()
        bundle = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 200
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["sr-duplex-1"]


# -- reads ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [templates.PATIENT, templates.ENCOUNTER], ids=lambda k: k.name)
def test_prefetch_read_templates(loaded: MedplumServer, key: PrefetchKey) -> None:
    response = _get(loaded, _render(key.template))
    assert response.status_code == 200
    resource = response.json()
    assert (resource["resourceType"], resource["id"]) == {
        "patient": ("Patient", "pat-1"),
        "encounter": ("Encounter", "enc-ed-1"),
    }[key.name]
    assert response.headers["ETag"].startswith('W/"')


def test_read_of_an_absent_resource_is_404_with_an_operation_outcome(loaded: MedplumServer) -> None:
    response = _get(loaded, "Patient/nobody")
    assert response.status_code == 404
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "not-found"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nowhere", 404),
        ("GET", "/fhir/NotAType/1", 404),
        ("GET", "/fhir/Observation?no-such-param=1", 400),
        ("GET", "/fhir/Observation?patient=pat-1&_sort=no-such-param", 400),
        ("GET", "/fhir/Observation?_count=ten", 400),
        ("POST", "/fhir/Patient", 400),  # not JSON
    ],
)
def test_bad_requests_get_operation_outcomes(medplum: MedplumServer, method: str, path: str, status: int) -> None:
    response = requests.request(
        method, medplum.root_url + path, data="{not json", headers={"Content-Type": "application/fhir+json"}, timeout=30
    )
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    assert response.json()["resourceType"] == "OperationOutcome"
    assert medplum.running


# -- paging ---------------------------------------------------------------------------------------------------


def test_count_one_pages_through_every_result_with_absolute_next_links(loaded: MedplumServer) -> None:
    everything = _search(loaded, "Observation?patient=pat-1&_sort=-date")
    first = _get(loaded, "Observation?patient=pat-1&_sort=-date&_count=1").json()
    assert len(first["entry"]) == 1
    assert first["total"] == len(everything) == 7
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    parts = urlsplit(next_url)
    assert (parts.scheme, parts.hostname, parts.port) == ("http", "127.0.0.1", loaded.port)
    assert parts.path == "/fhir/Observation"
    assert _search(loaded, "Observation?patient=pat-1&_sort=-date&_count=1") == everything
    assert _search(loaded, "Observation?patient=pat-1&_sort=-date&_count=3") == everything


@pytest.mark.parametrize("name", sorted(EXPECTED_SEARCH))
def test_prefetch_templates_paged_one_at_a_time(loaded: MedplumServer, name: str) -> None:
    template = _render(SEARCH_KEYS[name].template)
    base, _, query = template.partition("?")
    params = [p for p in query.split("&") if not p.startswith("_count=")]
    ids = _search(loaded, f"{base}?{'&'.join([*params, '_count=1'])}")
    if name in SORTED:
        assert ids == EXPECTED_SEARCH[name]
    else:
        assert sorted(ids) == sorted(EXPECTED_SEARCH[name])


def test_count_limits_the_page_and_there_is_no_next_link_on_the_last(loaded: MedplumServer) -> None:
    bundle = _get(loaded, _render(templates.DDIMER.template)).json()  # _count=50 > 2 matches
    assert [link["relation"] for link in bundle["link"]] == ["self"]
    assert bundle["total"] == 2


# -- loading and resetting ------------------------------------------------------------------------------------


def test_load_keeps_ids_and_references(loaded: MedplumServer) -> None:
    for resource in _chart():
        response = _get(loaded, f"{resource['resourceType']}/{resource['id']}")
        assert response.status_code == 200, resource["id"]
        stored = response.json()
        stored.pop("meta")
        assert stored == resource


def test_load_accepts_a_transaction_of_puts_and_a_transaction_with_creates(medplum: MedplumServer) -> None:
    medplum.reset()
    puts = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in _chart()[:3]
        ],
    }
    medplum.load(puts)
    assert _search(medplum, "Condition?patient=pat-1") == ["cond-dvt-1"]
    creates = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:7f6c4c7e-7f0a-4b44-9f38-2f0a0e7c1a11",
                "resource": {"resourceType": "Patient", "name": [{"family": "New"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Condition",
                    "code": _concept(ICD10, "I82.461"),
                    "subject": {"reference": "urn:uuid:7f6c4c7e-7f0a-4b44-9f38-2f0a0e7c1a11"},
                },
                "request": {"method": "POST", "url": "Condition"},
            },
        ],
    }
    response = medplum.load(creates)
    patient_id = response["entry"][0]["resource"]["id"]
    assert _search(medplum, f"Condition?patient={patient_id}") == [response["entry"][1]["resource"]["id"]]


def test_a_transaction_posted_to_the_base_is_a_fhir_transaction(medplum: MedplumServer) -> None:
    medplum.reset()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": r, "request": {"method": "PUT", "url": f"Patient/{r['id']}"}} for r in _chart()[:1]],
    }
    response = requests.post(
        medplum.base_url, json=bundle, headers={"Content-Type": "application/fhir+json"}, timeout=30
    )
    assert response.status_code == 200
    assert response.json()["type"] == "transaction-response"
    assert _get(medplum, "Patient/pat-1").status_code == 200


def test_load_refuses_resources_without_ids(medplum: MedplumServer) -> None:
    with pytest.raises(MedplumServerError, match="needs an id"):
        medplum.load(_collection([{"resourceType": "Patient"}]))


def test_reset_empties_the_store(loaded: MedplumServer) -> None:
    assert _search(loaded, "Patient")
    loaded.reset()
    assert _get(loaded, "Patient/pat-1").status_code == 404
    for name in EXPECTED_SEARCH:
        assert _search(loaded, _render(SEARCH_KEYS[name].template)) == []


def test_metadata_is_a_capability_statement(medplum: MedplumServer) -> None:
    response = _get(medplum, "metadata")
    assert response.json()["resourceType"] == "CapabilityStatement"


def test_start_explains_how_to_install_when_node_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda _name: None)
    with pytest.raises(MedplumServerError, match="npm ci --prefix tests/medplum"):
        MedplumServer().start()
