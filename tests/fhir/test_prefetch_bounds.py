"""The bounds a service puts on a query it runs itself (PrefetchKey.fetch_since_days, fetch_pages): a date floor
and a page count that a CDS Hooks 2.0 template cannot express, applied to the service's own fetch only, never
to the continuation of a prefetch the EHR paginated; and the client's general page bound still marks truncation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cds_service.fhir.client import FhirClient
from cds_service.fhir.prefetch import PrefetchKey, PrefetchResolver
from cds_service.fhir.record import DataGap, PatientRecord
from tests.builders import PATIENT_ID, bundle, concept, operation_outcome, subject

TODAY = date(2026, 3, 16)
REPORTS = PrefetchKey(
    "imagingReports",
    "DiagnosticReport?patient={{context.patientId}}&category=RUS&_sort=-date&_count=50",
    fetch_since_days=730,
    fetch_pages=1,
)
UNBOUNDED = PrefetchKey("conditions", "Condition?patient={{context.patientId}}")
CONTEXT = {"patientId": PATIENT_ID, "userId": "Practitioner/1"}


def make_client(max_pages: int) -> FhirClient:
    return FhirClient(
        request_timeout_s=1.0, max_pages=max_pages, max_response_bytes=1_000_000, max_entries=1000, max_parallel=4
    )


@pytest.fixture
def client() -> Iterator[FhirClient]:
    fhir = make_client(5)
    yield fhir
    fhir.close()


def report(rid: str) -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "status": "final",
        "subject": subject(),
        "code": concept("http://loinc.org", "39420-5"),
    }


def resolve(
    client: FhirClient,
    server: HTTPServer,
    keys: tuple[PrefetchKey, ...],
    prefetch: dict[str, Any] | None = None,
    today: date | None = TODAY,
) -> PatientRecord:
    return PrefetchResolver(client, lambda url: (True, "")).resolve(
        keys,
        context=CONTEXT,
        patient_id=PATIENT_ID,
        prefetch=prefetch,
        fhir_server=server.url_for("/fhir"),
        access_token=None,
        deadline=time.monotonic() + 2,
        today=today,
    )


def requested(server: HTTPServer) -> list[dict[str, list[str]]]:
    return [{k: entry[0].args.getlist(k) for k in entry[0].args} for entry in server.log]


def ids(record: PatientRecord, kind: str = "DiagnosticReport") -> list[str]:
    return [r["id"] for r in record.resources(kind)]


# --- the date floor ---------------------------------------------------------------------------------------------
def test_a_key_the_service_fetches_itself_gets_the_date_floor(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/DiagnosticReport").respond_with_json(bundle(report("r1")))
    record = resolve(client, httpserver, (REPORTS,))  # absent from the prefetch: fetched
    assert ids(record) == ["r1"]
    assert record.sources == {"imagingReports": "fhir"}
    assert record.gaps == []
    assert requested(httpserver) == [
        {
            "patient": [PATIENT_ID],
            "category": ["RUS"],
            "_sort": ["-date"],
            "_count": ["50"],
            "date": ["ge2024-03-16"],  # 730 days before today
        }
    ]


@pytest.mark.parametrize(("days", "floor"), [(0, "ge2026-03-16"), (1, "ge2026-03-15"), (30, "ge2026-02-14")])
def test_the_floor_counts_days_back_from_today(
    client: FhirClient, httpserver: HTTPServer, days: int, floor: str
) -> None:
    httpserver.expect_request("/fhir/DiagnosticReport").respond_with_json(bundle())
    key = PrefetchKey("imagingReports", REPORTS.template, fetch_since_days=days)
    resolve(client, httpserver, (key,))
    assert [q["date"] for q in requested(httpserver)] == [[floor]]


def test_a_key_refetched_after_an_operation_outcome_gets_the_date_floor(
    client: FhirClient, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/fhir/DiagnosticReport").respond_with_json(bundle(report("r1")))
    record = resolve(client, httpserver, (REPORTS,), prefetch={"imagingReports": operation_outcome()})
    assert ids(record) == ["r1"]
    assert [q["date"] for q in requested(httpserver)] == [["ge2024-03-16"]]


def test_no_floor_without_today_or_without_fetch_since_days(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/DiagnosticReport").respond_with_json(bundle())
    httpserver.expect_request("/fhir/Condition").respond_with_json(bundle())
    resolve(client, httpserver, (REPORTS, UNBOUNDED), today=None)
    resolve(client, httpserver, (UNBOUNDED,))
    assert len(httpserver.log) == 3
    assert all("date" not in query for query in requested(httpserver))


def test_a_prefetched_key_is_not_fetched_at_all(client: FhirClient, httpserver: HTTPServer) -> None:
    record = resolve(client, httpserver, (REPORTS,), prefetch={"imagingReports": bundle(report("old"))})
    assert ids(record) == ["old"]
    assert httpserver.log == []


def test_a_continuation_of_a_paginated_prefetch_gets_no_date_floor(client: FhirClient, httpserver: HTTPServer) -> None:
    base = httpserver.url_for("/fhir")
    httpserver.expect_request("/fhir/DiagnosticReport", query_string={"page": "2"}).respond_with_json(
        bundle(report("r2"))
    )
    first = bundle(report("r1"), next_url=f"{base}/DiagnosticReport?page=2")
    record = resolve(client, httpserver, (REPORTS,), prefetch={"imagingReports": first})
    assert ids(record) == ["r1", "r2"]
    assert record.sources == {"imagingReports": "prefetch+fhir"}
    assert record.gaps == []
    assert requested(httpserver) == [{"page": ["2"]}]  # the next link as the EHR wrote it


# --- the page count ---------------------------------------------------------------------------------------------
def paged(server: HTTPServer, pages: int) -> None:
    """``pages`` pages of DiagnosticReports: the query answers page 1, which links to the next by a ``page``
    parameter, and so on."""
    base = server.url_for("/fhir")

    def answer(request: Request) -> Response:
        page = int(request.args.get("page", "1"))
        nxt = f"{base}/DiagnosticReport?page={page + 1}" if page < pages else None
        body = bundle(report(f"r{page}"), next_url=nxt)
        return Response(json.dumps(body), content_type="application/fhir+json")

    server.expect_request("/fhir/DiagnosticReport").respond_with_handler(answer)


def test_fetch_pages_one_stops_after_one_page_without_a_gap(client: FhirClient, httpserver: HTTPServer) -> None:
    paged(httpserver, 3)
    record = resolve(client, httpserver, (REPORTS,))
    assert ids(record) == ["r1"]
    assert len(httpserver.log) == 1  # the next link was not followed
    assert record.gaps == []  # asking for the newest page only is not missing data
    assert not [gap for gap in record.gaps if gap.resource_type == "DiagnosticReport"]


def test_fetch_pages_is_followed_up_to_its_count(client: FhirClient, httpserver: HTTPServer) -> None:
    paged(httpserver, 4)
    key = PrefetchKey("imagingReports", REPORTS.template, fetch_pages=2)
    record = resolve(client, httpserver, (key,))
    assert ids(record) == ["r1", "r2"]
    assert len(httpserver.log) == 2
    assert record.gaps == []


def test_the_clients_page_bound_still_marks_truncation(httpserver: HTTPServer) -> None:
    paged(httpserver, 4)
    small = make_client(2)
    try:
        key = PrefetchKey("imagingReports", REPORTS.template, fetch_pages=3)  # asks for more than the client reads
        record = resolve(small, httpserver, (key,))
        assert ids(record) == ["r1", "r2"]
        assert record.gaps == [DataGap("imagingReports", "DiagnosticReport", "stopped after 2 pages", partial=True)]
        httpserver.clear_log()
        unbounded = PrefetchKey("imagingReports", REPORTS.template)
        record = resolve(small, httpserver, (unbounded,))
        assert ids(record) == ["r1", "r2"]
        assert [g.partial for g in record.gaps] == [True]
        assert "stopped after 2 pages" in record.gaps[0].reason
    finally:
        small.close()


def test_a_key_without_fetch_pages_reads_every_page(client: FhirClient, httpserver: HTTPServer) -> None:
    paged(httpserver, 3)
    key = PrefetchKey("imagingReports", REPORTS.template, fetch_since_days=730)
    record = resolve(client, httpserver, (key,))
    assert ids(record) == ["r1", "r2", "r3"]
    assert record.gaps == []
