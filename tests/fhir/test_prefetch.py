"""Prefetch resolution: each of the five states an EHR may send a key in (CONFORMANCE.md §1.4), the fetch
fallback, and the 412 when data the service cannot work without is unobtainable."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request

from cds_service.errors import PreconditionFailed
from cds_service.fhir.client import FhirClient
from cds_service.fhir.prefetch import PrefetchKey, PrefetchResolver, render
from tests.builders import PATIENT_ID, bundle, condition, operation_outcome, patient

PATIENT = PrefetchKey("patient", "Patient/{{context.patientId}}", required=True)
CONDITIONS = PrefetchKey("conditions", "Condition?patient={{context.patientId}}", required=True)
MEDS = PrefetchKey("medications", "MedicationRequest?patient={{context.patientId}}&status=active")
ENCOUNTER = PrefetchKey("encounter", "Encounter/{{context.encounterId}}")
KEYS = (PATIENT, CONDITIONS, MEDS, ENCOUNTER)
CONTEXT = {"patientId": PATIENT_ID, "userId": "Practitioner/1"}


@pytest.fixture
def client() -> Iterator[FhirClient]:
    fhir = FhirClient(
        request_timeout_s=1.0, max_pages=5, max_response_bytes=1_000_000, max_entries=1000, max_parallel=8
    )
    yield fhir
    fhir.close()


@pytest.fixture
def resolver(client: FhirClient) -> PrefetchResolver:
    return PrefetchResolver(client, lambda url: (True, ""))


def resolve(
    resolver: PrefetchResolver,
    prefetch: dict | None,
    *,
    server: str | None = None,
    token: str | None = None,
    keys: tuple[PrefetchKey, ...] = KEYS,
    context: dict | None = None,
):
    return resolver.resolve(
        keys,
        context=context or CONTEXT,
        patient_id=PATIENT_ID,
        prefetch=prefetch,
        fhir_server=server,
        access_token=token,
        deadline=time.monotonic() + 2,
    )


def full(**overrides: object) -> dict:
    values: dict = {"patient": patient(), "conditions": bundle(condition("I82.461")), "medications": bundle()}
    values.update(overrides)
    return values


# --- rendering --------------------------------------------------------------------------------------------------
def test_render_fills_allowed_tokens_and_escapes_values() -> None:
    assert render("Patient/{{context.patientId}}", {"patientId": "abc"}) == "Patient/abc"
    assert render("Condition?patient={{ context.patientId }}", {"patientId": "a+b"}) == "Condition?patient=a%2Bb"
    assert render("PractitionerRole?_id={{userPractitionerRoleId}}", {"userId": "PractitionerRole/9"}) == (
        "PractitionerRole?_id=9"
    )
    assert render("Encounter/{{context.encounterId}}", {"patientId": "p"}) is None
    assert render("Practitioner/{{userPractitionerId}}", {"userId": "PractitionerRole/9"}) is None


# --- 1. key present ---------------------------------------------------------------------------------------------
def test_present_keys_are_used_without_fetching(resolver: PrefetchResolver, fhir_server: HTTPServer) -> None:
    record = resolve(resolver, full(), server=fhir_server.url_for("/fhir"))
    assert [c["code"]["coding"][0]["code"] for c in record.resources("Condition")] == ["I82.461"]
    assert record.patient["id"] == PATIENT_ID
    assert record.sources == {"patient": "prefetch", "conditions": "prefetch", "medications": "prefetch"}
    assert record.gaps == []
    assert fhir_server.log == []  # encounter key skipped (no encounterId in context): nothing fetched


# --- 2. key null ------------------------------------------------------------------------------------------------
def test_null_search_means_no_data(resolver: PrefetchResolver) -> None:
    record = resolve(resolver, full(medications=None, conditions=None))
    assert record.resources("MedicationRequest") == []
    assert record.resources("Condition") == []
    assert record.gaps == []


def test_null_required_read_is_fetched(resolver: PrefetchResolver, fhir_server: HTTPServer) -> None:
    fhir_server.expect_request(f"/fhir/Patient/{PATIENT_ID}").respond_with_json(patient())
    record = resolve(resolver, full(patient=None), server=fhir_server.url_for("/fhir"))
    assert record.patient["id"] == PATIENT_ID
    assert record.sources["patient"] == "fhir"


def test_null_required_read_without_server_is_412(resolver: PrefetchResolver) -> None:
    with pytest.raises(PreconditionFailed) as raised:
        resolve(resolver, full(patient=None))
    assert any(d.startswith("patient:") for d in raised.value.details)


# --- 3. empty searchset -----------------------------------------------------------------------------------------
def test_empty_bundle_is_empty_not_missing(resolver: PrefetchResolver, fhir_server: HTTPServer) -> None:
    record = resolve(resolver, full(conditions=bundle()), server=fhir_server.url_for("/fhir"))
    assert record.resources("Condition") == []
    assert record.gaps == []
    assert fhir_server.log == []


# --- 4. OperationOutcome ----------------------------------------------------------------------------------------
def test_operation_outcome_alone_is_refetched(resolver: PrefetchResolver, fhir_server: HTTPServer) -> None:
    fhir_server.expect_request("/fhir/Condition", query_string={"patient": PATIENT_ID}).respond_with_json(
        bundle(condition("I82.452"))
    )
    record = resolve(resolver, full(conditions=operation_outcome()), server=fhir_server.url_for("/fhir"))
    assert record.sources["conditions"] == "fhir"
    assert record.resources("Condition")[0]["code"]["coding"][0]["code"] == "I82.452"


def test_epic_style_informational_outcome_entry_is_an_empty_result(
    resolver: PrefetchResolver, fhir_server: HTTPServer
) -> None:
    epic = bundle(outcome=operation_outcome("information", "informational", "Resource request returns no results."))
    epic["total"] = 0
    record = resolve(resolver, full(medications=epic), server=fhir_server.url_for("/fhir"))
    assert record.resources("MedicationRequest") == []
    assert record.resources("OperationOutcome") == []
    assert record.gaps == []
    assert fhir_server.log == []


def test_error_outcome_entries_without_matches_are_refetched(
    resolver: PrefetchResolver, fhir_server: HTTPServer
) -> None:
    fhir_server.expect_request("/fhir/MedicationRequest").respond_with_json(bundle())
    record = resolve(
        resolver, full(medications=bundle(outcome=operation_outcome())), server=fhir_server.url_for("/fhir")
    )
    assert record.sources["medications"] == "fhir"
    assert len(fhir_server.log) == 1


def test_outcome_that_cannot_be_refetched_is_a_gap_or_412(resolver: PrefetchResolver) -> None:
    record = resolve(resolver, full(medications=operation_outcome()))
    assert [(g.key, g.partial) for g in record.gaps] == [("medications", False)]
    assert "OperationOutcome" in record.gaps[0].reason
    with pytest.raises(PreconditionFailed):
        resolve(resolver, full(conditions=operation_outcome()))


# --- 5. paginated -----------------------------------------------------------------------------------------------
def test_paginated_prefetch_is_continued_from_the_next_link(
    resolver: PrefetchResolver, fhir_server: HTTPServer
) -> None:
    base = fhir_server.url_for("/fhir")
    fhir_server.expect_request("/fhir/Condition", query_string={"page": "2"}).respond_with_json(
        bundle(condition("I82.442", resource_id="c2"), next_url=f"{base}/Condition?page=3")
    )
    fhir_server.expect_request("/fhir/Condition", query_string={"page": "3"}).respond_with_json(
        bundle(condition("I82.443", resource_id="c3"))
    )
    first = bundle(condition("I82.441", resource_id="c1"), next_url=f"{base}/Condition?page=2")
    record = resolve(resolver, full(conditions=first), server=base, token="tok")
    assert [c["id"] for c in record.resources("Condition")] == ["c1", "c2", "c3"]
    assert record.sources["conditions"] == "prefetch+fhir"
    assert all(req.headers["Authorization"] == "Bearer tok" for req, _ in fhir_server.log)


def test_paginated_prefetch_without_server_keeps_the_first_page_as_partial(resolver: PrefetchResolver) -> None:
    first = bundle(condition("I82.441", resource_id="c1"), next_url="https://ehr.example.org/fhir/Condition?page=2")
    record = resolve(resolver, full(conditions=first))
    assert [c["id"] for c in record.resources("Condition")] == ["c1"]
    assert [(g.key, g.partial) for g in record.gaps] == [("conditions", True)]


# --- absent keys ------------------------------------------------------------------------------------------------
def test_absent_keys_are_fetched_in_parallel_with_the_token(
    resolver: PrefetchResolver, fhir_server: HTTPServer
) -> None:
    fhir_server.expect_request(f"/fhir/Patient/{PATIENT_ID}").respond_with_json(patient())
    fhir_server.expect_request("/fhir/Condition").respond_with_json(bundle(condition("I82.461")))
    fhir_server.expect_request(
        "/fhir/MedicationRequest", query_string={"patient": PATIENT_ID, "status": "active"}
    ).respond_with_json(bundle())
    fhir_server.expect_request("/fhir/Encounter/enc-9").respond_with_json(
        {"resourceType": "Encounter", "id": "enc-9", "status": "in-progress", "class": {"code": "IMP"}}
    )
    record = resolve(
        resolver, None, server=fhir_server.url_for("/fhir"), token="abc", context={**CONTEXT, "encounterId": "enc-9"}
    )
    assert record.sources == {"patient": "fhir", "conditions": "fhir", "medications": "fhir", "encounter": "fhir"}
    assert len(fhir_server.log) == 4
    assert {req.headers.get("Authorization") for req, _ in fhir_server.log} == {"Bearer abc"}


def test_fetch_without_a_token_sends_no_authorization(resolver: PrefetchResolver, fhir_server: HTTPServer) -> None:
    fhir_server.expect_request("/fhir/MedicationRequest").respond_with_json(bundle())
    resolve(resolver, {k: v for k, v in full().items() if k != "medications"}, server=fhir_server.url_for("/fhir"))
    request: Request = fhir_server.log[0][0]
    assert "Authorization" not in request.headers


def test_absent_required_key_without_server_is_412(resolver: PrefetchResolver) -> None:
    with pytest.raises(PreconditionFailed) as raised:
        resolve(resolver, {"patient": patient()})
    assert raised.value.details == ["conditions: not prefetched; no fhirServer in the request"]


def test_absent_optional_key_without_server_is_a_gap(resolver: PrefetchResolver) -> None:
    record = resolve(resolver, {"patient": patient(), "conditions": bundle()})
    assert [(g.key, g.resource_type) for g in record.gaps] == [("medications", "MedicationRequest")]
    assert record.sources["medications"] == "none"


def test_disallowed_server_is_never_contacted(client: FhirClient, fhir_server: HTTPServer) -> None:
    resolver = PrefetchResolver(client, lambda url: (False, "fhirServer not on DVT_CDS_FHIR_SERVER_ALLOWLIST"))
    record = resolve(
        resolver, {"patient": patient(), "conditions": bundle()}, server=fhir_server.url_for("/fhir"), token="t"
    )
    assert fhir_server.log == []
    assert "ALLOWLIST" in record.gaps[0].reason


def test_not_found_read_of_an_optional_resource_is_not_a_gap(
    resolver: PrefetchResolver, fhir_server: HTTPServer
) -> None:
    fhir_server.expect_request("/fhir/Encounter/gone").respond_with_json(operation_outcome(), status=404)
    record = resolve(resolver, full(), server=fhir_server.url_for("/fhir"), context={**CONTEXT, "encounterId": "gone"})
    assert record.gaps == []
    assert record.resources("Encounter") == []


def test_not_found_patient_is_412(resolver: PrefetchResolver, fhir_server: HTTPServer) -> None:
    fhir_server.expect_request(f"/fhir/Patient/{PATIENT_ID}").respond_with_json(operation_outcome(), status=404)
    with pytest.raises(PreconditionFailed):
        resolve(resolver, {k: v for k, v in full().items() if k != "patient"}, server=fhir_server.url_for("/fhir"))


def test_resources_of_another_patient_are_dropped_and_reported(resolver: PrefetchResolver) -> None:
    mine = condition("I82.461", resource_id="mine")
    theirs = condition("I82.431", resource_id="theirs", patient_id="someone-else")
    absolute = condition("I82.462", resource_id="absolute")
    absolute["subject"] = {"reference": f"https://ehr.example.org/fhir/Patient/{PATIENT_ID}"}
    record = resolve(resolver, full(conditions=bundle(mine, theirs, absolute)))
    assert sorted(c["id"] for c in record.resources("Condition")) == ["absolute", "mine"]
    assert record.notes == ["1 resource(s) belonging to another patient were ignored"]


def test_duplicate_resources_across_keys_are_kept_once(resolver: PrefetchResolver) -> None:
    same = condition("I82.461", resource_id="same")
    keys = (PATIENT, CONDITIONS, PrefetchKey("more", "Condition?patient={{context.patientId}}&clinical-status=active"))
    record = resolve(resolver, {"patient": patient(), "conditions": bundle(same), "more": bundle(same)}, keys=keys)
    assert len(record.resources("Condition")) == 1
