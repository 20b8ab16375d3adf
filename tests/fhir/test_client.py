"""The FHIR client against a fake server with injected faults: parallelism, the call deadline, paging, where
the token may go, and every way a server can fail."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cds_service.fhir.client import FhirClient, FhirQuery, same_base
from tests.builders import bundle, condition, operation_outcome, patient

TOKEN = "tok-SECRET-123"


@pytest.fixture
def client() -> Iterator[FhirClient]:
    fhir = FhirClient(request_timeout_s=1.0, max_pages=3, max_response_bytes=50_000, max_entries=100, max_parallel=8)
    yield fhir
    fhir.close()


def search(server: HTTPServer, path: str = "/fhir/Condition?patient=p", key: str = "conditions") -> FhirQuery:
    return FhirQuery(key=key, url=server.url_for(path), resource_type=path.split("/")[-1].split("?")[0], is_read=False)


def fetch(
    client: FhirClient, server: HTTPServer, query: FhirQuery, *, deadline_s: float = 2.0, token: str | None = TOKEN
):
    return client.fetch(query, base_url=server.url_for("/fhir"), token=token, deadline=time.monotonic() + deadline_s)


def test_same_base() -> None:
    assert same_base("https://a.org/fhir", "https://a.org/fhir/Patient/1")
    assert same_base("https://a.org:443/fhir", "https://A.org/fhir?x=1")  # default port, host case
    assert same_base("https://a.org/fhir", "https://a.org/fhir")
    assert not same_base("https://a.org/fhir", "https://a.org/fhirx/Patient")
    assert not same_base("https://a.org/fhir", "http://a.org/fhir/Patient")
    assert not same_base("https://a.org/fhir", "https://b.org/fhir/Patient")
    assert not same_base("https://a.org/fhir", "https://a.org:8443/fhir/Patient")


def test_queries_run_in_parallel(client: FhirClient, fhir_server: HTTPServer) -> None:
    lock, state = threading.Lock(), {"now": 0, "max": 0}

    def slow(request: Request) -> Response:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.3)
        with lock:
            state["now"] -= 1
        return Response(json.dumps(bundle()), content_type="application/fhir+json")

    fhir_server.expect_request("/fhir/Condition").respond_with_handler(slow)
    queries = [search(fhir_server, f"/fhir/Condition?patient=p&n={i}", key=f"k{i}") for i in range(4)]
    results = client.fetch_many(
        queries, base_url=fhir_server.url_for("/fhir"), token=None, deadline=time.monotonic() + 5
    )
    assert all(r.ok for r in results.values())
    assert state["max"] == 4  # all four were in flight at once


def test_one_deadline_for_the_whole_call(client: FhirClient, fhir_server: HTTPServer) -> None:
    fhir_server.expect_request("/fhir/Condition").respond_with_handler(lambda r: (time.sleep(1.5), Response("{}"))[1])
    fhir_server.expect_request("/fhir/Patient/p").respond_with_json(patient("p"))
    queries = [search(fhir_server), FhirQuery("patient", fhir_server.url_for("/fhir/Patient/p"), "Patient", True)]
    started = time.monotonic()
    results = client.fetch_many(
        queries, base_url=fhir_server.url_for("/fhir"), token=None, deadline=time.monotonic() + 0.4
    )
    assert time.monotonic() - started < 1.2  # returned at the deadline, not when the slow server answered
    assert results["patient"].ok
    assert not results["conditions"].ok
    assert results["conditions"].reason in ("deadline exceeded", "FHIR server timed out")


def test_pagination_is_followed_up_to_the_bound(client: FhirClient, fhir_server: HTTPServer) -> None:
    for page in range(1, 6):
        nxt = fhir_server.url_for(f"/fhir/Condition?patient=p&page={page + 1}")
        fhir_server.expect_request(
            "/fhir/Condition", query_string={"patient": "p", "page": str(page)}
        ).respond_with_json(bundle(condition("I82.461", resource_id=f"c{page}"), next_url=nxt))
    result = fetch(client, fhir_server, search(fhir_server, "/fhir/Condition?patient=p&page=1"))
    assert result.ok
    assert result.truncated
    assert result.pages == 3
    assert [r["id"] for r in result.resources] == ["c1", "c2", "c3"]
    assert result.reason == "stopped after 3 pages"


def test_relative_next_links_resolve_against_the_server(client: FhirClient, fhir_server: HTTPServer) -> None:
    fhir_server.expect_request("/fhir/Condition", query_string="patient=p").respond_with_json(
        bundle(condition("I82.461", resource_id="a"), next_url="Condition?patient=p&page=2")
    )
    fhir_server.expect_request("/fhir/Condition", query_string="patient=p&page=2").respond_with_json(
        bundle(condition("I82.461", resource_id="b"))
    )
    result = fetch(client, fhir_server, search(fhir_server))
    assert [r["id"] for r in result.resources] == ["a", "b"]


def test_no_token_to_another_host_via_next_link(
    client: FhirClient, fhir_server: HTTPServer, other_server: HTTPServer
) -> None:
    other_server.expect_request("/fhir/Condition").respond_with_json(bundle())
    fhir_server.expect_request("/fhir/Condition").respond_with_json(
        bundle(condition("I82.461"), next_url=other_server.url_for("/fhir/Condition?page=2"))
    )
    result = fetch(client, fhir_server, search(fhir_server))
    assert result.ok
    assert result.truncated
    assert result.reason == "next link outside fhirServer not followed"
    assert other_server.log == []


def test_no_token_to_another_host_via_redirect(
    client: FhirClient, fhir_server: HTTPServer, other_server: HTTPServer
) -> None:
    other_server.expect_request("/steal").respond_with_json(bundle())
    fhir_server.expect_request("/fhir/Condition").respond_with_data(
        "", status=302, headers={"Location": other_server.url_for("/steal")}
    )
    result = fetch(client, fhir_server, search(fhir_server))
    assert not result.ok
    assert result.reason == "redirect to another origin not followed"
    assert other_server.log == []


def test_same_origin_redirect_is_followed(client: FhirClient, fhir_server: HTTPServer) -> None:
    fhir_server.expect_request("/fhir/Condition").respond_with_data(
        "", status=307, headers={"Location": "/fhir/Condition2?patient=p"}
    )
    fhir_server.expect_request("/fhir/Condition2").respond_with_json(bundle(condition("I82.461")))
    result = fetch(client, fhir_server, search(fhir_server))
    assert result.ok
    assert len(result.resources) == 1


def test_query_outside_the_server_is_refused(
    client: FhirClient, fhir_server: HTTPServer, other_server: HTTPServer
) -> None:
    query = FhirQuery("k", other_server.url_for("/fhir/Condition"), "Condition", False)
    result = fetch(client, fhir_server, query)
    assert not result.ok
    assert result.reason == "query URL outside fhirServer"
    assert other_server.log == []


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (500, "FHIR server error (HTTP 500)"),
        (503, "FHIR server error (HTTP 503)"),
        (400, "FHIR server error (HTTP 400)"),
        (401, "FHIR server refused access (HTTP 401)"),
        (403, "FHIR server refused access (HTTP 403)"),
    ],
)
def test_http_errors(client: FhirClient, fhir_server: HTTPServer, status: int, reason: str) -> None:
    fhir_server.expect_request("/fhir/Condition").respond_with_json(operation_outcome(), status=status)
    result = fetch(client, fhir_server, search(fhir_server))
    assert not result.ok
    assert result.reason == reason


def test_not_found_on_read_is_not_a_failure(client: FhirClient, fhir_server: HTTPServer) -> None:
    fhir_server.expect_request("/fhir/Encounter/x").respond_with_json(operation_outcome(), status=404)
    result = fetch(client, fhir_server, FhirQuery("e", fhir_server.url_for("/fhir/Encounter/x"), "Encounter", True))
    assert result.ok
    assert result.not_found
    assert result.resources == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("<html>Service Unavailable</html>", "FHIR server sent a body that is not JSON"),
        ("[1, 2, 3]", "FHIR server sent JSON that is not a FHIR resource"),
        ('{"hello": "world"}', "FHIR server sent JSON that is not a FHIR resource"),
        ('{"resourceType": "Patient", "id": "p"}', "expected a Bundle, got Patient"),
        ('{"resourceType": "OperationOutcome", "issue": []}', "server answered with an OperationOutcome"),
        (
            '{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "OperationOutcome", "issue": '
            '[{"severity": "error", "code": "exception"}]}}]}',
            "search answered with an error OperationOutcome",
        ),
        ("[" * 100_000, "FHIR server sent a body that is not JSON"),
    ],
)
def test_garbage_from_the_server(client: FhirClient, fhir_server: HTTPServer, body: str, reason: str) -> None:
    fhir_server.expect_request("/fhir/Condition").respond_with_data(body, content_type="application/json")
    result = fetch(client, fhir_server, search(fhir_server))
    assert not result.ok
    assert result.reason == ("FHIR server response too large" if len(body) > 50_000 else reason)


def test_oversized_response_is_cut_off(client: FhirClient, fhir_server: HTTPServer) -> None:
    fhir_server.expect_request("/fhir/Condition").respond_with_data(
        '{"resourceType": "Bundle", "entry": ['
        + ",".join(['{"resource": {"resourceType": "Condition"}}'] * 5000)
        + "]}",
        content_type="application/json",
    )
    result = fetch(client, fhir_server, search(fhir_server))
    assert not result.ok
    assert result.reason == "FHIR server response too large"


def test_unreachable_server(client: FhirClient) -> None:
    query = FhirQuery("k", "http://127.0.0.1:9/fhir/Condition", "Condition", False)
    result = client.fetch(query, base_url="http://127.0.0.1:9/fhir", token=TOKEN, deadline=time.monotonic() + 1)
    assert not result.ok
    assert result.reason.startswith("FHIR server unreachable")


def test_wrong_resource_type_on_read(client: FhirClient, fhir_server: HTTPServer) -> None:
    fhir_server.expect_request("/fhir/Patient/p").respond_with_json(bundle())
    result = fetch(client, fhir_server, FhirQuery("patient", fhir_server.url_for("/fhir/Patient/p"), "Patient", True))
    assert not result.ok
    assert result.reason == "expected Patient, got Bundle"


def test_failure_after_a_page_keeps_what_was_read(client: FhirClient, fhir_server: HTTPServer) -> None:
    fhir_server.expect_request("/fhir/Condition", query_string="patient=p").respond_with_json(
        bundle(condition("I82.461", resource_id="a"), next_url=fhir_server.url_for("/fhir/Condition?patient=p&page=2"))
    )
    fhir_server.expect_request("/fhir/Condition", query_string="patient=p&page=2").respond_with_data("oops", status=502)
    result = fetch(client, fhir_server, search(fhir_server))
    assert result.ok
    assert result.truncated
    assert [r["id"] for r in result.resources] == ["a"]
    assert result.reason == "FHIR server error (HTTP 502)"


def test_entry_bound_truncates(fhir_server: HTTPServer) -> None:
    small = FhirClient(request_timeout_s=1, max_pages=3, max_response_bytes=10_000_000, max_entries=2, max_parallel=2)
    try:
        fhir_server.expect_request("/fhir/Condition").respond_with_json(
            bundle(*[condition("I82.461") for _ in range(5)])
        )
        result = small.fetch(
            search(fhir_server), base_url=fhir_server.url_for("/fhir"), token=None, deadline=time.monotonic() + 2
        )
        assert result.ok
        assert result.truncated
        assert len(result.resources) == 2
    finally:
        small.close()


def test_the_token_never_appears_in_a_reason(client: FhirClient, fhir_server: HTTPServer) -> None:
    fhir_server.expect_request("/fhir/Condition").respond_with_data(f"error for token {TOKEN}", status=500)
    result = fetch(client, fhir_server, search(fhir_server))
    assert TOKEN not in (result.reason or "")
