"""The FHIR client under the faults an SRE found: a query cancelled at the deadline, a server trickling its body,
an error answer spoiling a pooled connection, and parallel reads holding memory without a bound per call.

Every server here is on loopback; the trickling one is a raw socket so each byte's timing is ours."""

from __future__ import annotations

import json
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import orjson
import pytest
from flask import Flask
from pytest_httpserver import HTTPServer

from cds_service.fhir.client import ByteBudget, FhirClient, FhirQuery
from tests.builders import bundle, condition, distal_dvt, hook_request, operation_outcome, patient

PV = "/cds-services/distal-dvt-patient-view"
BODY = json.dumps(bundle(condition("I82.461"))).encode()


class LoopbackServer:
    """A raw-socket HTTP/1.1 server on loopback, so the timing and the packets of every answer are ours."""

    def __init__(self) -> None:
        self.requests = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/fhir"

    def close(self) -> None:
        self._stop.set()
        self._accepting.join(timeout=2)
        for thread in self._threads:
            thread.join(timeout=2)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._connection, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _connection(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.1)
            pending = b""
            try:
                while not self._stop.is_set():  # keep-alive: one request after another
                    try:
                        data = conn.recv(4096)
                    except TimeoutError:
                        continue
                    if not data:
                        return
                    pending += data
                    while b"\r\n\r\n" in pending:
                        head, pending = pending.split(b"\r\n\r\n", 1)
                        with self._lock:
                            self.requests += 1
                        if not self._answer(conn, head.split(b" ")[1].decode()):
                            return
            except OSError:
                return  # the client hung up: what a client that honours its deadline does

    def _answer(self, conn: socket.socket, path: str) -> bool:
        """Answer one request; False to close the connection."""
        raise NotImplementedError


class TrickleServer(LoopbackServer):
    """Answers 200 with a FHIR Bundle, one byte every ``interval`` seconds (``Content-Length`` or chunked)."""

    def __init__(self, *, chunked: bool = False, interval: float = 0.05):
        self.chunked = chunked
        self.interval = interval
        super().__init__()

    def _answer(self, conn: socket.socket, path: str) -> bool:
        framing = b"Transfer-Encoding: chunked" if self.chunked else b"Content-Length: %d" % len(BODY)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n" + framing + b"\r\n\r\n")
        for i in range(len(BODY)):
            if self._stop.wait(self.interval):
                return False
            byte = BODY[i : i + 1]
            conn.sendall(b"1\r\n" + byte + b"\r\n" if self.chunked else byte)
        if self.chunked:
            conn.sendall(b"0\r\n\r\n")
        return True


class FixedAnswerServer(LoopbackServer):
    """Answers ``ok`` in one piece, built once (serving it allocates nothing, so tracemalloc sees the client alone).

    A path containing "Broken" gets ``broken`` the way a server across a real network often arrives: its headers
    first, its body a moment later. urllib3 checks a pooled connection by looking for unread bytes on its socket,
    and the body of an answer left unread is not there yet: only reading it to its end (or closing the connection)
    keeps it from being taken for the next answer on that connection."""

    def __init__(self, ok: bytes, broken: bytes = b"", *, body_after_s: float = 0.05):
        self.ok = ok
        head, _, body = broken.partition(b"\r\n\r\n")
        self.broken_head, self.broken_body = head + b"\r\n\r\n", body
        self.body_after_s = body_after_s
        super().__init__()

    def _answer(self, conn: socket.socket, path: str) -> bool:
        if "Broken" not in path:
            conn.sendall(self.ok)
            return True
        conn.sendall(self.broken_head)
        if self._stop.wait(self.body_after_s):
            return False
        conn.sendall(self.broken_body)
        return True


def answer(status: str, body: bytes, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/fhir+json", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture(params=[False, True], ids=["content-length", "chunked"])
def trickle(request: pytest.FixtureRequest) -> Iterator[TrickleServer]:
    server = TrickleServer(chunked=request.param)
    yield server
    server.close()


@pytest.fixture
def make_client() -> Iterator[Callable[..., FhirClient]]:
    clients: list[FhirClient] = []

    def make(**overrides: int | float) -> FhirClient:
        values: dict = {
            "request_timeout_s": 1.0,
            "max_pages": 3,
            "max_response_bytes": 50_000,
            "max_entries": 100,
            "max_parallel": 4,
        }
        values.update(overrides)
        clients.append(FhirClient(**values))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def queries(base: str, count: int, path: str = "Condition?patient=p") -> list[FhirQuery]:
    return [FhirQuery(f"k{i}", f"{base}/{path}&n={i}", "Condition", is_read=False) for i in range(count)]


LATE = ("deadline exceeded", "FHIR server timed out")


# --- 1. a query cancelled at the deadline ---------------------------------------------------------------------------
def test_queries_still_queued_at_the_deadline_fail_without_an_exception(
    make_client: Callable[..., FhirClient], trickle: TrickleServer
) -> None:
    client = make_client(max_parallel=2)  # 6 queries, 2 workers: 4 are still queued at the deadline
    started = time.monotonic()
    results = client.fetch_many(queries(trickle.base, 6), base_url=trickle.base, token=None, deadline=started + 0.3)
    assert time.monotonic() - started < 0.7
    assert sorted(results) == [f"k{i}" for i in range(6)]
    assert all(not r.ok and r.reason in LATE for r in results.values()), [r.reason for r in results.values()]


# --- 2. the deadline inside reads -----------------------------------------------------------------------------------
def test_a_trickled_body_is_cut_at_the_deadline(make_client: Callable[..., FhirClient], trickle: TrickleServer) -> None:
    client = make_client()
    started = time.monotonic()
    [query] = queries(trickle.base, 1)
    result = client.fetch(query, base_url=trickle.base, token=None, deadline=started + 0.5)
    assert time.monotonic() - started < 0.9
    assert not result.ok
    assert result.reason in LATE


def test_fetch_many_returns_at_the_deadline_and_frees_its_workers(
    make_client: Callable[..., FhirClient], trickle: TrickleServer, fhir_server: HTTPServer
) -> None:
    client = make_client(max_parallel=4)
    started = time.monotonic()
    slow = client.fetch_many(queries(trickle.base, 4), base_url=trickle.base, token=None, deadline=started + 0.5)
    assert time.monotonic() - started < 0.9
    assert all(not r.ok and r.reason in LATE for r in slow.values())
    # The next call gets the workers: none of them is still reading the trickle.
    fhir_server.expect_request("/fhir/Condition").respond_with_data(BODY, content_type="application/fhir+json")
    base = fhir_server.url_for("/fhir")
    fast = client.fetch_many(queries(base, 4), base_url=base, token=None, deadline=time.monotonic() + 1.0)
    assert [r.ok for r in fast.values()] == [True] * 4, [r.reason for r in fast.values()]


def test_a_hook_call_against_a_trickling_fhir_server_answers_in_time(
    make_app: Callable[..., Flask], trickle: TrickleServer
) -> None:
    app = make_app(call_deadline_s=1.0, fhir_max_parallel=4)
    client = app.test_client()
    assert client.post(PV, json=hook_request("patient-view", [distal_dvt()])).status_code == 200  # warm up
    body = hook_request("patient-view", prefetch={"patient": patient(), "conditions": bundle(distal_dvt())})
    body["fhirServer"] = trickle.base  # every other key is fetched from it, and it trickles
    started = time.monotonic()
    response = client.post(PV, json=body)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["cards"]
    assert trickle.requests > 0
    assert elapsed < 1.6


# --- 3. an error answer and the pooled connection ------------------------------------------------------------------
OUTCOME = json.dumps(operation_outcome()).encode()


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(answer("500 Internal Server Error", OUTCOME), id="500"),
        pytest.param(answer("503 Service Unavailable", b"x" * 2000, "Content-Type: text/plain"), id="503-text"),
        pytest.param(answer("401 Unauthorized", OUTCOME), id="401"),
        pytest.param(answer("404 Not Found", OUTCOME), id="404"),
        pytest.param(answer("302 Found", b"moved", "Location: https://elsewhere.example/x"), id="redirect-elsewhere"),
        pytest.param(answer("200 OK", b"[" * 60_000), id="too-large"),
        pytest.param(answer("200 OK", b"<html>oops</html>"), id="not-json"),
    ],
)
def test_an_error_answer_does_not_spoil_the_pooled_connection(
    make_client: Callable[..., FhirClient], broken: bytes
) -> None:
    server = FixedAnswerServer(answer("200 OK", BODY), broken)
    try:
        client = make_client(max_parallel=1)  # one pooled connection: the next query gets the one just used
        failed = []
        for _ in range(5):  # 5 x (an error answer, then 10 queries)
            broke = FhirQuery("broken", f"{server.base}/Broken", "Condition", is_read=False)
            result = client.fetch(broke, base_url=server.base, token=None, deadline=time.monotonic() + 2)
            assert not result.resources
            for query in queries(server.base, 10):
                result = client.fetch(query, base_url=server.base, token=None, deadline=time.monotonic() + 2)
                failed.extend([result.reason] if not result.ok else [])
    finally:
        server.close()
    assert failed == [], f"{len(failed)}/50 failed: {sorted(set(failed))}"


# --- 4. memory: one byte budget per call ----------------------------------------------------------------------------
def test_parallel_reads_of_one_call_share_a_byte_budget(make_client: Callable[..., FhirClient]) -> None:
    budget_bytes = 4 * 1024 * 1024
    big = condition("I82.461")
    big["note"] = [{"text": "x" * 1024 * 1024}]
    large = json.dumps(bundle(big)).encode()
    server = FixedAnswerServer(answer("200 OK", large))
    client = make_client(max_parallel=16, max_response_bytes=4 * len(large), call_max_bytes=budget_bytes)
    budget = client.call_budget()
    tracemalloc.start()
    try:
        orjson.loads(large)  # what parsing one body takes at its peak: orjson holds the GIL, so one at a time
        one_parse = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        results = client.fetch_many(
            queries(server.base, 16), base_url=server.base, token=None, deadline=time.monotonic() + 10, budget=budget
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        server.close()
    read = [r for r in results.values() if r.ok]
    refused = [r for r in results.values() if not r.ok]
    assert 1 <= len(read) <= budget_bytes // len(large)
    assert {r.reason for r in refused} == {f"FHIR responses for this call passed {budget_bytes} bytes"}
    assert budget.used == len(read) * len(large) <= budget_bytes
    # One call holds what its budget allows (raw bodies, then their parsed copies) and one parse at a time, not
    # 16 bodies and their copies.
    assert peak - one_parse < 2 * budget_bytes, f"peak {peak / 2**20:.1f} MiB, one parse {one_parse / 2**20:.1f} MiB"


def test_the_budget_is_shared_by_fetches_of_the_same_call(
    make_client: Callable[..., FhirClient], fhir_server: HTTPServer
) -> None:
    fhir_server.expect_request("/fhir/Condition").respond_with_data(BODY, content_type="application/fhir+json")
    client = make_client()
    base = fhir_server.url_for("/fhir")
    budget = ByteBudget(len(BODY) * 3)
    first = client.fetch_many(queries(base, 2), base_url=base, token=None, deadline=time.monotonic() + 2, budget=budget)
    second = client.fetch_many(
        queries(base, 2), base_url=base, token=None, deadline=time.monotonic() + 2, budget=budget
    )
    assert [r.ok for r in first.values()] == [True, True]
    assert sorted(r.ok for r in second.values()) == [False, True]  # room for one more body, not two
    assert budget.used == len(BODY) * 3


def test_a_budget_is_per_call(make_app: Callable[..., Flask], fhir_server: HTTPServer) -> None:
    """The app's client hands each call a fresh budget of DVT_CDS_FHIR_CALL_MAX_BYTES."""
    app = make_app(fhir_call_max_bytes=4096)
    client: FhirClient = app.extensions["dvt_cds"]["fhir_client"]
    assert client.call_budget() is not client.call_budget()
    assert client.call_budget().limit == 4096
