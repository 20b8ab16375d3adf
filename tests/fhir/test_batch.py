"""FHIR batch: a call's first round of queries in one POST where the server's CapabilityStatement declares
``batch`` (read once per server, in the background, and kept), each search's next pages as GETs as they come, and
separate parallel GETs for whatever a batch cannot answer: an entry it failed, an answer that is not a usable
batch-response, a server that refuses the POST (then not asked to batch again for a while)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cds_service.fhir.batch import batch_body, relative_url, split_answer
from cds_service.fhir.capabilities import MAX_SERVERS, ServerCapabilities, declares_batch
from cds_service.fhir.client import FhirClient, FhirQuery
from tests.builders import bundle, condition, ddimer, patient

TOKEN = "tok-batch-1"
HOLD_S = 5.0
DECLARES_BATCH = {
    "resourceType": "CapabilityStatement",
    "rest": [{"mode": "server", "interaction": [{"code": "transaction"}, {"code": "batch"}]}],
}


@pytest.fixture
def client() -> Iterator[FhirClient]:
    fhir = FhirClient(
        request_timeout_s=8, max_pages=5, max_response_bytes=1_000_000, max_entries=1000, max_parallel=8, batch=True
    )
    yield fhir
    fhir.close()


class FakeEhr:
    """A FHIR server over a few resources: GET reads and searches (``q`` names a canned search, ``page`` its
    page), POST [base] a batch answered from the same GET logic; every request is logged."""

    def __init__(self, server: HTTPServer, *, batch: bool = True):
        self.server = server
        self.base = server.url_for("/fhir")
        self.log: list[tuple[str, str, dict[str, Any] | None]] = []
        self.entry_status: dict[str, str] = {}  # relative URL -> status the batch gives it instead of answering
        self.batch_answer: Any = None  # replaces the whole batch answer when set
        self.batch_status = 200
        self.holds: dict[str, str] = {}  # path?query -> the one whose arrival it waits for
        self.arrived: dict[str, threading.Event] = {}
        self.met: dict[str, bool] = {}
        self._lock = threading.Lock()
        statement = DECLARES_BATCH if batch else {"resourceType": "CapabilityStatement", "rest": [{"mode": "server"}]}
        server.expect_request("/fhir/metadata").respond_with_json(statement)
        server.expect_request("/fhir", method="POST").respond_with_handler(self._batch)
        server.expect_request("/fhir/Patient/p").respond_with_handler(lambda r: self._get(r, "Patient/p"))
        server.expect_request("/fhir/Patient/gone").respond_with_handler(lambda r: self._get(r, "Patient/gone"))
        server.expect_request("/fhir/Condition").respond_with_handler(lambda r: self._get(r, "Condition"))
        server.expect_request("/fhir/Observation").respond_with_handler(lambda r: self._get(r, "Observation"))

    def requests(self, method: str | None = None) -> list[str]:
        return [target for m, target, _ in self.log if method is None or m == method]

    def posted_urls(self) -> list[list[str]]:
        return [[e["request"]["url"] for e in body["entry"]] for m, _, body in self.log if m == "POST" and body]

    def _event(self, target: str) -> threading.Event:
        with self._lock:
            return self.arrived.setdefault(target, threading.Event())

    def answer(self, target: str) -> tuple[int, dict[str, Any]]:
        path, _, query = target.partition("?")
        args = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        if path == "Patient/p":
            return 200, patient("p")
        if path == "Patient/gone":
            return 404, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}
        page, pages = int(args.get("page", "1")), int(args.get("pages", "1"))
        nxt = f"{self.base}/{path}?{query.split('&page=')[0]}&page={page + 1}" if page < pages else None
        maker = condition if path == "Condition" else ddimer
        return 200, bundle(maker(resource_id=f"{path}-{args.get('q', 'x')}-{page}"), next_url=nxt)

    def _get(self, request: Request, path: str) -> Response:
        target = f"{path}?{request.query_string.decode()}" if request.query_string else path
        self.log.append(("GET", target, None))
        self._event(target).set()
        if target in self.holds:
            self.met[target] = self._event(self.holds[target]).wait(HOLD_S)
        status, body = self.answer(target)
        return Response(json.dumps(body), status=status, content_type="application/fhir+json")

    def _batch(self, request: Request) -> Response:
        body = json.loads(request.data)
        self.log.append(("POST", "", body))
        assert request.headers.get("Authorization") == f"Bearer {TOKEN}"
        if self.batch_status != 200:
            return Response("no batch here", status=self.batch_status)
        if self.batch_answer is not None:
            return Response(json.dumps(self.batch_answer), content_type="application/fhir+json")
        entries = []
        for entry in body["entry"]:
            url = entry["request"]["url"]
            if url in self.entry_status:
                issue = [{"severity": "error", "code": "not-supported"}]
                outcome = {"resourceType": "OperationOutcome", "issue": issue}
                entries.append({"resource": outcome, "response": {"status": self.entry_status[url]}})
                continue
            status, resource = self.answer(url)
            entries.append({"resource": resource, "response": {"status": f"{status} OK"}})
        answer = {"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        return Response(json.dumps(answer), content_type="application/fhir+json")


def queries(ehr: FakeEhr, *targets: str) -> list[FhirQuery]:
    return [
        FhirQuery(target, f"{ehr.base}/{target}", target.split("/")[0].split("?")[0], "?" not in target)
        for target in targets
    ]


def fetch(client: FhirClient, ehr: FakeEhr, *targets: str) -> dict[str, Any]:
    results = client.fetch_many(queries(ehr, *targets), base_url=ehr.base, token=TOKEN, deadline=time.monotonic() + 20)
    return {key: [r["id"] for r in result.resources] if result.ok else result.reason for key, result in results.items()}


# --- the CapabilityStatement ------------------------------------------------------------------------------------
def test_batch_is_what_the_capability_statement_declares() -> None:
    assert declares_batch(DECLARES_BATCH)
    assert not declares_batch({"resourceType": "CapabilityStatement", "rest": [{"mode": "server"}]})
    assert not declares_batch({"resourceType": "CapabilityStatement", "rest": [{"mode": "client", **DECLARES_BATCH}]})
    assert not declares_batch({"resourceType": "OperationOutcome"})
    assert not declares_batch(None)


def test_the_statement_is_read_once_in_the_background_and_kept() -> None:
    reads: list[str] = []
    started: list[Any] = []
    now = [0.0]
    caps = ServerCapabilities(lambda url: reads.append(url) or DECLARES_BATCH, started.append, clock=lambda: now[0])
    assert caps.batch("https://ehr/fhir") is None  # unknown: the read is started, the call does not wait
    assert caps.batch("https://ehr/fhir/") is None  # one read in flight per server
    assert len(started) == 1
    started[0]()
    assert caps.batch("https://ehr/fhir") is True
    assert reads == ["https://ehr/fhir"]
    now[0] += 3601  # an hour later it is read again
    assert caps.batch("https://ehr/fhir") is None
    assert len(started) == 2


def test_a_server_whose_statement_cannot_be_read_or_whose_batch_failed_is_asked_again_later() -> None:
    now = [0.0]
    caps = ServerCapabilities(lambda url: None, lambda fn: fn(), clock=lambda: now[0], retry_s=300)
    assert caps.batch("https://ehr/fhir") is None
    assert caps.batch("https://ehr/fhir") is False
    now[0] += 301
    assert caps.batch("https://ehr/fhir") is None
    ok = ServerCapabilities(lambda url: DECLARES_BATCH, lambda fn: fn(), clock=lambda: now[0], retry_s=300)
    assert ok.refresh("https://ehr/fhir") is True
    ok.refuse("https://ehr/fhir")
    assert ok.batch("https://ehr/fhir") is False


def test_the_cache_is_bounded() -> None:
    caps = ServerCapabilities(lambda url: DECLARES_BATCH, lambda fn: fn())
    for n in range(MAX_SERVERS + 50):
        caps.refresh(f"https://ehr{n}/fhir")
    assert len(caps._known) == MAX_SERVERS


def test_the_bundle_and_the_answer() -> None:
    assert relative_url("https://ehr/fhir/Condition?patient=p", "https://ehr/fhir") == "Condition?patient=p"
    assert json.loads(batch_body(["Patient/p"])) == {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Patient/p"}}],
    }
    answer = {"resourceType": "Bundle", "type": "batch-response", "entry": [{"response": {"status": "201 Created"}}]}
    assert [(e.status, e.resource) for e in split_answer(answer, 1)] == [(201, None)]
    assert split_answer(answer, 2) is None
    assert split_answer({"resourceType": "Bundle", "type": "searchset", "entry": []}, 0) is None


# --- the client -------------------------------------------------------------------------------------------------
def test_the_first_round_goes_as_one_batch_and_next_pages_as_gets(client: FhirClient, fhir_server: HTTPServer) -> None:
    ehr = FakeEhr(fhir_server)
    assert client.capabilities.refresh(ehr.base) is True
    got = fetch(client, ehr, "Patient/p", "Condition?q=a&pages=3", "Observation?q=b")
    assert got == {
        "Patient/p": ["p"],
        "Condition?q=a&pages=3": ["Condition-a-1", "Condition-a-2", "Condition-a-3"],
        "Observation?q=b": ["Observation-b-1"],
    }
    assert ehr.posted_urls() == [["Patient/p", "Condition?q=a&pages=3", "Observation?q=b"]]
    assert ehr.requests("GET") == ["Condition?q=a&pages=3&page=2", "Condition?q=a&pages=3&page=3"]


def test_next_pages_after_a_batch_are_fetched_in_parallel(client: FhirClient, fhir_server: HTTPServer) -> None:
    ehr = FakeEhr(fhir_server)
    client.capabilities.refresh(ehr.base)
    ehr.holds = {"Condition?q=a&pages=2&page=2": "Observation?q=b&pages=2&page=2"}
    ehr.holds["Observation?q=b&pages=2&page=2"] = "Condition?q=a&pages=2&page=2"
    got = fetch(client, ehr, "Condition?q=a&pages=2", "Observation?q=b&pages=2")
    assert ehr.met == dict.fromkeys(ehr.holds, True)
    assert got["Condition?q=a&pages=2"] == ["Condition-a-1", "Condition-a-2"]


def test_the_first_call_to_a_new_server_does_not_wait_for_its_statement(
    client: FhirClient, fhir_server: HTTPServer
) -> None:
    ehr = FakeEhr(fhir_server)
    fetch(client, ehr, "Patient/p", "Condition?q=a")  # the statement is read meanwhile
    assert ehr.posted_urls() == []
    assert sorted(ehr.requests("GET")) == ["Condition?q=a", "Patient/p"]
    for _ in range(100):  # bounded: the background read is loopback work
        if client.capabilities.batch(ehr.base) is not None:
            break
        time.sleep(0.02)
    fetch(client, ehr, "Patient/p", "Condition?q=a")
    assert len(ehr.posted_urls()) == 1


def test_no_batch_where_the_server_does_not_declare_it(client: FhirClient, fhir_server: HTTPServer) -> None:
    ehr = FakeEhr(fhir_server, batch=False)
    assert client.capabilities.refresh(ehr.base) is False
    assert fetch(client, ehr, "Patient/p", "Condition?q=a") == {"Patient/p": ["p"], "Condition?q=a": ["Condition-a-1"]}
    assert ehr.posted_urls() == []


def test_a_refused_batch_falls_back_to_gets_and_is_not_tried_again(client: FhirClient, fhir_server: HTTPServer) -> None:
    ehr = FakeEhr(fhir_server)
    client.capabilities.refresh(ehr.base)
    ehr.batch_status = 501
    assert fetch(client, ehr, "Patient/p", "Condition?q=a") == {"Patient/p": ["p"], "Condition?q=a": ["Condition-a-1"]}
    assert sorted(ehr.requests("GET")) == ["Condition?q=a", "Patient/p"]
    fetch(client, ehr, "Patient/p", "Condition?q=a")
    assert len(ehr.posted_urls()) == 1  # the second call went straight to GETs


@pytest.mark.parametrize(
    "answer",
    [
        {"resourceType": "Bundle", "type": "batch-response", "entry": []},  # one entry short
        {"resourceType": "Bundle", "type": "searchset"},
        {"resourceType": "OperationOutcome", "issue": []},
    ],
)
def test_an_unusable_batch_answer_falls_back_to_gets(
    client: FhirClient, fhir_server: HTTPServer, answer: dict[str, Any]
) -> None:
    ehr = FakeEhr(fhir_server)
    client.capabilities.refresh(ehr.base)
    ehr.batch_answer = answer
    assert fetch(client, ehr, "Patient/p", "Condition?q=a") == {"Patient/p": ["p"], "Condition?q=a": ["Condition-a-1"]}
    assert client.capabilities.batch(ehr.base) is False


def test_an_entry_the_batch_could_not_answer_is_asked_alone(client: FhirClient, fhir_server: HTTPServer) -> None:
    ehr = FakeEhr(fhir_server)
    client.capabilities.refresh(ehr.base)
    ehr.entry_status = {"Observation?q=b": "400 Bad Request"}
    got = fetch(client, ehr, "Patient/p", "Condition?q=a", "Observation?q=b")
    assert got == {"Patient/p": ["p"], "Condition?q=a": ["Condition-a-1"], "Observation?q=b": ["Observation-b-1"]}
    assert ehr.requests("GET") == ["Observation?q=b"]
    assert client.capabilities.batch(ehr.base) is True  # one entry is not the server's batch failing


def test_a_read_not_found_in_a_batch_is_not_found(client: FhirClient, fhir_server: HTTPServer) -> None:
    ehr = FakeEhr(fhir_server)
    client.capabilities.refresh(ehr.base)
    results = client.fetch_many(
        queries(ehr, "Patient/gone", "Condition?q=a"), base_url=ehr.base, token=TOKEN, deadline=time.monotonic() + 20
    )
    assert results["Patient/gone"].ok
    assert results["Patient/gone"].not_found
    assert ehr.requests("GET") == []


def test_a_binary_keeps_its_own_request(client: FhirClient, fhir_server: HTTPServer) -> None:
    ehr = FakeEhr(fhir_server)
    client.capabilities.refresh(ehr.base)
    binary = FhirQuery("b", f"{ehr.base}/Patient/p", "Patient", True, max_bytes=50_000, accept="application/fhir+json")
    client.fetch_many(
        [*queries(ehr, "Condition?q=a", "Observation?q=b"), binary],
        base_url=ehr.base,
        token=TOKEN,
        deadline=time.monotonic() + 20,
    )
    assert ehr.posted_urls() == [["Condition?q=a", "Observation?q=b"]]
    assert ehr.requests("GET") == ["Patient/p"]


def test_one_query_is_not_batched(client: FhirClient, fhir_server: HTTPServer) -> None:
    ehr = FakeEhr(fhir_server)
    client.capabilities.refresh(ehr.base)
    fetch(client, ehr, "Condition?q=a")
    assert ehr.posted_urls() == []


def test_batch_off_by_default_in_the_client(fhir_server: HTTPServer) -> None:
    fhir = FhirClient(request_timeout_s=8, max_pages=5, max_response_bytes=1_000_000, max_entries=1000, max_parallel=8)
    try:
        ehr = FakeEhr(fhir_server)
        fhir.capabilities.refresh(ehr.base)
        fetch(fhir, ehr, "Patient/p", "Condition?q=a")
        assert ehr.posted_urls() == []
    finally:
        fhir.close()
