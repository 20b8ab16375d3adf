"""Paging: each query follows its own next link as soon as its page arrives, in parallel with the other queries'
pages (no waves: a slow query does not hold back another query's next page).

The server holds chosen requests until another chosen request has arrived (a bounded wait): when the client pages
as it should both are in flight together and the wait ends at once; when it does not, the wait runs out and the
test fails on what the server saw, not on a time."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cds_service.fhir.client import FhirClient, FhirQuery
from tests.builders import bundle, condition

HOLD_S = 5.0  # far longer than loopback needs, short enough that a failing test ends


@pytest.fixture
def client() -> Iterator[FhirClient]:
    fhir = FhirClient(request_timeout_s=8, max_pages=5, max_response_bytes=1_000_000, max_entries=1000, max_parallel=8)
    yield fhir
    fhir.close()


class PagedServer:
    """Queries ``q=A``, ``q=B``, … of ``pages`` pages each; ``hold(q, page, until)`` makes that page wait for the
    request of another (query, page) and records whether it came."""

    def __init__(self, server: HTTPServer, pages: int):
        self.base = server.url_for("/fhir")
        self.pages = pages
        self.arrived: dict[tuple[str, int], threading.Event] = {}
        self.holds: dict[tuple[str, int], tuple[str, int]] = {}
        self.met: dict[tuple[str, int], bool] = {}
        self._lock = threading.Lock()
        server.expect_request("/fhir/Condition").respond_with_handler(self._answer)

    def event(self, query: str, page: int) -> threading.Event:
        with self._lock:
            return self.arrived.setdefault((query, page), threading.Event())

    def hold(self, query: str, page: int, until: tuple[str, int]) -> None:
        self.holds[(query, page)] = until

    def _answer(self, request: Request) -> Response:
        query, page = request.args["q"], int(request.args.get("page", "1"))
        self.event(query, page).set()
        if (query, page) in self.holds:
            self.met[(query, page)] = self.event(*self.holds[(query, page)]).wait(HOLD_S)
        nxt = f"{self.base}/Condition?q={query}&page={page + 1}" if page < self.pages else None
        body = bundle(condition(resource_id=f"{query}{page}"), next_url=nxt)
        return Response(json.dumps(body), content_type="application/fhir+json")


def run(client: FhirClient, server: HTTPServer, names: str) -> Callable[[], dict[str, list[str]]]:
    queries = [FhirQuery(q, server.url_for(f"/fhir/Condition?q={q}"), "Condition", False) for q in names]
    results = client.fetch_many(queries, base_url=server.url_for("/fhir"), token=None, deadline=time.monotonic() + 20)
    return {key: [r["id"] for r in result.resources] for key, result in results.items()}  # type: ignore[return-value]


def test_next_pages_of_different_queries_are_in_flight_together(client: FhirClient, fhir_server: HTTPServer) -> None:
    paged = PagedServer(fhir_server, pages=3)
    paged.hold("A", 2, until=("B", 2))
    paged.hold("B", 2, until=("A", 2))
    got = run(client, fhir_server, "AB")
    assert paged.met == {("A", 2): True, ("B", 2): True}
    assert got == {"A": ["A1", "A2", "A3"], "B": ["B1", "B2", "B3"]}


def test_a_page_is_followed_as_soon_as_it_arrives_not_after_the_slowest_query(
    client: FhirClient, fhir_server: HTTPServer
) -> None:
    # B's first page is held until A has asked for its third page: paging in waves (every query's page 1, then
    # every page 2, ...) would never ask for A's page 2 while B's page 1 is outstanding.
    paged = PagedServer(fhir_server, pages=3)
    paged.hold("B", 1, until=("A", 3))
    got = run(client, fhir_server, "AB")
    assert paged.met == {("B", 1): True}
    assert got["A"] == ["A1", "A2", "A3"]
    assert got["B"] == ["B1", "B2", "B3"]


def test_every_query_pages_in_parallel(client: FhirClient, fhir_server: HTTPServer) -> None:
    paged = PagedServer(fhir_server, pages=2)
    # Each query's second page waits for the next query's: only all four in flight at once let them all through.
    for query, other in zip("ABCD", "BCDA", strict=True):
        paged.hold(query, 2, until=(other, 2))
    got = run(client, fhir_server, "ABCD")
    assert all(paged.met.values())
    assert len(paged.met) == 4
    assert got == {q: [f"{q}1", f"{q}2"] for q in "ABCD"}
