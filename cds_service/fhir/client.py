"""Queries to the EHR's FHIR server: parallel, under one deadline per call, bounded paging.

The access token goes only to URLs under the ``fhirServer`` base the EHR named (a ``next`` link or a
redirect elsewhere is not followed), and it is never logged. Every failure (timeout, HTTP error, a body
that is not FHIR JSON, a body too large) comes back as a ``FetchResult`` with a reason that is safe to log
and to show: no URL (it holds the patient id), no token, no server-supplied text.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import certifi
import orjson
import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, TimeoutError

from cds_service import metrics
from cds_service.egress import DIRECT, Egress
from cds_service.fhir.batch import EntryAnswer, batch_body, relative_url, split_answer
from cds_service.fhir.bundles import read_bundle_page
from cds_service.fhir.capabilities import ServerCapabilities

log = logging.getLogger(__name__)

_MIN_REQUEST_TIMEOUT_S = 0.05
_MAX_REDIRECTS = 3
_READ_BYTES = 65536
# An error answer's body is read up to this much so its connection can be reused; a longer one costs the
# connection instead (closing is cheaper than reading megabytes nobody wants).
_DRAIN_BYTES = 65536
DEFAULT_CALL_MAX_BYTES = 48 * 1024 * 1024
# A CapabilityStatement is read in the background, once per server: a large one (Epic's lists every resource) is
# given room and time no call's query gets.
_CAPABILITY_BYTES = 16 * 1024 * 1024
_CAPABILITY_TIMEOUT_S = 10.0
_FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class FhirQuery:
    key: str
    url: str  # absolute
    resource_type: str
    is_read: bool
    max_bytes: int | None = None  # a tighter cap than the client's (a Binary report text)
    accept: str | None = None  # the Accept header when a server needs an exact one (Oracle Health's Binary)
    max_pages: int | None = None  # fewer pages than the client's bound (a query asking only for the newest)


@dataclass
class FetchResult:
    key: str
    ok: bool
    resources: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None  # why it failed, or why it is partial
    not_found: bool = False
    truncated: bool = False
    pages: int = 0
    elapsed_ms: float = 0.0


class _Failure(Exception):
    def __init__(self, reason: str, *, not_found: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.not_found = not_found


class ByteBudget:
    """The bytes of FHIR responses one call may hold, shared by all its parallel reads (prefetch and follow-ups).

    The per-response cap alone lets every parallel read hold that much at once (16 reads x 32 MiB is 512 MiB per
    worker on one burst). The bytes of a read that fails are given back: its body is dropped, so it holds nothing.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    @property
    def reason(self) -> str:
        return f"FHIR responses for this call passed {self.limit} bytes"

    def take(self, size: int) -> bool:
        with self._lock:
            if self._used + size > self.limit:
                return False
            self._used += size
            return True

    def give_back(self, size: int) -> None:
        with self._lock:
            self._used = max(0, self._used - size)


@dataclass(frozen=True)
class _Call:
    """What every read of one call shares."""

    deadline: float  # monotonic
    budget: ByteBudget


@dataclass
class _FirstPage:
    """A query's first answer, read from a batch: its paging goes on from ``next_url`` like any other's."""

    result: FetchResult
    next_url: str | None
    started: float
    failure: _Failure | None = None


def same_base(base_url: str, url: str) -> bool:
    """True when ``url`` lies under ``base_url`` (same scheme, host, port and path prefix)."""
    base, target = urlsplit(base_url), urlsplit(url)

    def origin(parts: Any) -> tuple[str, str, int | None]:
        default = {"http": 80, "https": 443}.get(parts.scheme.lower())
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default

    if origin(base) != origin(target):
        return False
    prefix = base.path.rstrip("/")
    return target.path == prefix or target.path.startswith(prefix + "/")


class FhirClient:
    """One per application: a pooled HTTP connection manager and a bounded thread pool shared by all calls.

    The transport is urllib3 (the engine under ``requests``) used directly: a call fans out ~11 queries, and
    ``requests``' per-request work (settings merge, hooks, cookie jar) cost ~1.6 ms each against ~0.6 ms, which
    under the GIL added ~15 ms to every call on the fetch path (bench: 11 parallel GETs on loopback, 25.7 vs
    9.9 ms). Nothing is taken from the environment (no .netrc; the site's proxy only as ``egress`` says,
    DVT_CDS_HTTPS_PROXY); certificates are checked against certifi's bundle, as ``requests`` does.
    """

    def __init__(
        self,
        *,
        request_timeout_s: float,
        max_pages: int,
        max_response_bytes: int,
        max_entries: int,
        max_parallel: int,
        call_max_bytes: int = DEFAULT_CALL_MAX_BYTES,
        egress: Egress = DIRECT,
        batch: bool = False,
    ):
        self.request_timeout_s = request_timeout_s
        self.max_pages = max_pages
        self.max_response_bytes = max_response_bytes
        self.max_entries = max_entries
        self.call_max_bytes = call_max_bytes
        self._http = egress.pool_manager(
            num_pools=32, maxsize=max_parallel, retries=False, cert_reqs="CERT_REQUIRED", ca_certs=certifi.where()
        )
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="fhir-fetch")
        self.batch = batch  # a call's first round as one FHIR batch, where the server declares it
        self.capabilities = ServerCapabilities(self._read_capabilities, self._pool.submit)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.clear()

    def call_budget(self) -> ByteBudget:
        """A fresh byte budget for one call: pass the same one to every fetch of that call."""
        return ByteBudget(self.call_max_bytes)

    # -------------------------------------------------------------------------------------------------------------
    def fetch_many(
        self,
        queries: Iterable[FhirQuery],
        *,
        base_url: str,
        token: str | None,
        deadline: float,
        budget: ByteBudget | None = None,
    ) -> dict[str, FetchResult]:
        """Run every query in parallel; whatever has not finished by ``deadline`` (monotonic) has failed.

        Where the server declares ``batch`` the queries' first pages are asked in one request, and each search's
        ``next`` pages as they come back; what a batch cannot answer is asked alone (separate GETs, in parallel).
        """
        call = _Call(deadline, budget or self.call_budget())
        queries = list(queries)
        batched = [q for q in queries if self._batchable(q, base_url)] if self.batch and len(queries) > 1 else []
        if len(batched) > 1 and self.capabilities.batch(base_url):
            return self._fetch_batched(queries, batched, base_url, token, call)
        futures: dict[Future[FetchResult], FhirQuery] = {}
        for query in queries:
            futures[self._pool.submit(self._fetch, query, base_url, token, call)] = query
        if not futures:
            return {}
        wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        return {query.key: self._outcome(future, query) for future, query in futures.items()}

    @staticmethod
    def _batchable(query: FhirQuery, base_url: str) -> bool:
        # A report's Binary keeps its own request: its Accept header and its byte cap are its own.
        return query.accept is None and query.max_bytes is None and same_base(base_url, query.url)

    def _fetch_batched(
        self, queries: list[FhirQuery], batched: list[FhirQuery], base_url: str, token: str | None, call: _Call
    ) -> dict[str, FetchResult]:
        alone = [q for q in queries if all(q is not b for b in batched)]
        futures: dict[Future[FetchResult], FhirQuery] = {
            self._pool.submit(self._fetch, query, base_url, token, call): query for query in alone
        }
        first = self._pool.submit(self._first_pages, batched, base_url, token, call)
        wait([first], timeout=max(0.0, call.deadline - time.monotonic()))
        first.cancel()
        results: dict[str, FetchResult] = {}
        pages = first.result() if first.done() and not first.cancelled() and first.exception() is None else []
        if first.done() and not first.cancelled() and pages is None:
            self.capabilities.refuse(base_url)  # not a usable batch answer: separate GETs for a while
            metrics.FHIR_BATCHES.labels("fallback").inc()
        elif pages:
            metrics.FHIR_BATCHES.labels("ok").inc()
        for index, query in enumerate(batched):
            page = pages[index] if pages else None
            if not first.done() or first.cancelled():
                metrics.FHIR_FETCHES.labels("failed").inc()
                results[query.key] = FetchResult(query.key, ok=False, reason="deadline exceeded")
            elif page is not None and page.next_url is None:
                results[query.key] = self._fetch(query, base_url, token, call, page)  # complete: nothing to ask
            else:
                futures[self._pool.submit(self._fetch, query, base_url, token, call, page)] = query
        if futures:
            wait(futures, timeout=max(0.0, call.deadline - time.monotonic()))
        results.update({query.key: self._outcome(future, query) for future, query in futures.items()})
        return results

    def _first_pages(
        self, batched: list[FhirQuery], base_url: str, token: str | None, call: _Call
    ) -> list[_FirstPage | None] | None:
        """Every query's first page from one batch; an entry None is asked alone; None: the whole batch was not
        usable (the server refused it, or its answer is not a batch-response of one entry per request)."""
        started = time.monotonic()
        body = batch_body([relative_url(q.url, base_url) for q in batched])
        try:
            answer = self._post_json(base_url, body, token=token, call=call)
        except _Failure:
            return None
        entries = split_answer(answer, len(batched))
        if entries is None:
            return None
        return [self._first_page(q, e, base_url, started) for q, e in zip(batched, entries, strict=True)]

    def _first_page(self, query: FhirQuery, entry: EntryAnswer, base_url: str, started: float) -> _FirstPage | None:
        result = FetchResult(query.key, ok=False)
        if entry.status in (404, 410) and query.is_read:
            return _FirstPage(result, None, started, _Failure(f"HTTP {entry.status}", not_found=True))
        if entry.status is None or not 200 <= entry.status < 300 or entry.resource is None:
            return None  # what the server could not answer in a batch it may answer alone
        try:
            next_url = self._take_page(query, entry.resource, result, base_url)
        except _Failure:
            return None
        return _FirstPage(result, next_url, started)

    @staticmethod
    def _outcome(future: Future[FetchResult], query: FhirQuery) -> FetchResult:
        # A query still queued must not start after its call has given up on it. One already running cannot be
        # cancelled, but it stops by itself: no read of it blocks past the deadline (_read_some).
        future.cancel()
        if future.cancelled() or not future.done():
            metrics.FHIR_FETCHES.labels("failed").inc()
            return FetchResult(query.key, ok=False, reason="deadline exceeded")
        error = future.exception()  # done and not cancelled: this never raises
        if error is not None:
            metrics.FHIR_FETCHES.labels("failed").inc()
            log.error("fhir fetch crashed: %s", type(error).__name__, extra={"key": query.key})
            return FetchResult(query.key, ok=False, reason="internal error while fetching")
        return future.result()

    def fetch(
        self,
        query: FhirQuery,
        *,
        base_url: str,
        token: str | None,
        deadline: float,
        budget: ByteBudget | None = None,
    ) -> FetchResult:
        """One query, following ``next`` links within ``base_url`` up to the page bound."""
        return self._fetch(query, base_url, token, _Call(deadline, budget or self.call_budget()))

    def _fetch(
        self, query: FhirQuery, base_url: str, token: str | None, call: _Call, first: _FirstPage | None = None
    ) -> FetchResult:
        """The query's pages, one after the other as each arrives; from a batch's first page when it has one."""
        started = first.started if first else time.monotonic()
        result = first.result if first else FetchResult(query.key, ok=False)
        url: str | None = first.next_url if first else query.url
        try:
            if first is not None and first.failure is not None:
                raise first.failure
            while url is not None:
                if not same_base(base_url, url):
                    # A next link elsewhere would carry the token to another host: stop here.
                    if result.pages == 0:
                        raise _Failure("query URL outside fhirServer")
                    result.truncated = True
                    result.reason = "next link outside fhirServer not followed"
                    break
                page_limit = min(self.max_pages, query.max_pages or self.max_pages)
                if result.pages >= page_limit:
                    if query.max_pages is None or page_limit < query.max_pages:
                        result.truncated = True
                        result.reason = f"stopped after {page_limit} pages"
                    break
                body = self._get_json(url, base_url=base_url, token=token, call=call, query=query)
                url = self._take_page(query, body, result, base_url)
            result.ok = True
        except _Failure as failure:
            if failure.not_found:
                result.ok, result.not_found = True, True
            elif result.pages > 0:
                # Earlier pages were read: keep them and say the rest is missing.
                result.ok, result.truncated, result.reason = True, True, failure.reason
            else:
                result.reason = failure.reason
        result.elapsed_ms = (time.monotonic() - started) * 1000
        outcome = (
            "failed"
            if not result.ok
            else "not-found"
            if result.not_found
            else ("truncated" if result.truncated else "ok")
        )
        metrics.FHIR_FETCHES.labels(outcome).inc()
        return result

    # -------------------------------------------------------------------------------------------------------------
    def _take_page(self, query: FhirQuery, body: dict[str, Any], result: FetchResult, base_url: str) -> str | None:
        """One page into ``result``; the absolute URL of the next one, or None (none, or enough resources read)."""
        url = self._absorb(query, body, result)
        result.pages += 1
        if len(result.resources) > self.max_entries:
            del result.resources[self.max_entries :]
            result.truncated = True
            result.reason = f"stopped at {self.max_entries} resources"
            return None
        return urljoin(base_url + "/", url) if url is not None else None

    def _absorb(self, query: FhirQuery, body: dict[str, Any], result: FetchResult) -> str | None:
        """Add a response body's resources to ``result``; return the next page's URL, if any."""
        kind = body.get("resourceType")
        if query.is_read:
            if kind == query.resource_type:
                result.resources.append(body)
                return None
            if kind == "OperationOutcome":
                raise _Failure("server answered with an OperationOutcome")
            raise _Failure(f"expected {query.resource_type}, got {_kind(kind)}")
        if kind == "Bundle":
            page = read_bundle_page(body)
            if page.has_error and not page.resources:
                raise _Failure("search answered with an error OperationOutcome")
            result.resources.extend(page.resources)
            return page.next_url
        if kind == "OperationOutcome":
            raise _Failure("server answered with an OperationOutcome")
        raise _Failure(f"expected a Bundle, got {_kind(kind)}")

    def _get_json(self, url: str, *, base_url: str, token: str | None, call: _Call, query: FhirQuery) -> dict[str, Any]:
        headers = {"Accept": query.accept or "application/fhir+json, application/json;q=0.9"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        limit = query.max_bytes or self.max_response_bytes
        for _ in range(_MAX_REDIRECTS + 1):
            response = self._request(url, headers, call)
            location, raw = self._answer(response, url, call, limit)
            if location is None:
                return _parse(raw, call.budget)
            if not same_base(base_url, location):
                raise _Failure("redirect to another origin not followed")
            url = location
        raise _Failure("too many redirects")

    def _post_json(self, base_url: str, body: bytes, *, token: str | None, call: _Call) -> dict[str, Any]:
        """A batch to the base itself; its answer holds what separate answers would, so the call's budget bounds it."""
        headers = {"Accept": _FHIR_JSON, "Content-Type": _FHIR_JSON}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = self._request(base_url, headers, call, method="POST", body=body)
        location, raw = self._answer(response, base_url, call, max(self.max_response_bytes, call.budget.limit))
        if location is not None:
            raise _Failure("batch redirected: not followed")
        return _parse(raw, call.budget)

    def _read_capabilities(self, base_url: str) -> dict[str, Any] | None:
        """The server's CapabilityStatement (``GET [base]/metadata``, no token: it is public), or None."""
        call = _Call(time.monotonic() + _CAPABILITY_TIMEOUT_S, ByteBudget(_CAPABILITY_BYTES))
        url = f"{base_url}/metadata"
        query = FhirQuery("metadata", url, "CapabilityStatement", True, max_bytes=_CAPABILITY_BYTES, accept=_FHIR_JSON)
        try:
            return self._get_json(query.url, base_url=base_url, token=None, call=call, query=query)
        except _Failure:
            return None

    def _request(
        self, url: str, headers: dict[str, str], call: _Call, *, method: str = "GET", body: bytes | None = None
    ) -> urllib3.BaseHTTPResponse:
        remaining = call.deadline - time.monotonic()
        if remaining <= 0:
            raise _Failure("deadline exceeded")
        timeout = max(_MIN_REQUEST_TIMEOUT_S, min(self.request_timeout_s, remaining))
        try:
            return self._http.request(
                method,
                url,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                redirect=False,
                preload_content=False,
            )
        except NewConnectionError as exc:  # urllib3 makes it a kind of ConnectTimeoutError: test it first
            raise _Failure(f"FHIR server unreachable ({type(exc).__name__})") from exc
        except TimeoutError as exc:
            raise _Failure("FHIR server timed out") from exc
        except HTTPError as exc:
            raise _Failure(f"FHIR server unreachable ({type(exc).__name__})") from exc

    def _answer(
        self, response: urllib3.BaseHTTPResponse, url: str, call: _Call, limit: int
    ) -> tuple[str | None, bytearray]:
        """A redirect's absolute location, or the body of a success.

        The connection goes back to the pool only with its response read to the end: one with a body left unread
        would hand that body to the next query on it (http.client then fails it with ResponseNotReady).
        """
        reusable = False
        try:
            redirect = response.get_redirect_location()  # a 3xx with a Location header, as requests had it
            if redirect:
                reusable = _drain(response, call.deadline, self.request_timeout_s)
                return urljoin(url, redirect), bytearray()
            failure = _status_failure(response.status)
            if failure is not None:
                reusable = _drain(response, call.deadline, self.request_timeout_s)
                raise failure
            body = self._read_capped(response, call, limit)
            reusable = True
            return None, body
        finally:
            if not reusable:
                response.close()  # closes the connection: the pool opens a new one in its place
            response.release_conn()

    def _read_capped(self, response: urllib3.BaseHTTPResponse, call: _Call, limit: int) -> bytearray:
        body = bytearray()
        try:
            while chunk := _read_some(response, call.deadline, self.request_timeout_s):
                if len(body) + len(chunk) > limit:
                    raise _Failure("FHIR server response too large")
                if not call.budget.take(len(chunk)):
                    raise _Failure(call.budget.reason)
                body += chunk
        except _Failure:
            call.budget.give_back(len(body))  # this body is dropped: its bytes are free for the other reads
            raise
        return body


def _parse(raw: bytearray, budget: ByteBudget) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        budget.give_back(len(raw))
        raise _Failure("FHIR server sent a body that is not JSON") from exc
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        budget.give_back(len(raw))
        raise _Failure("FHIR server sent JSON that is not a FHIR resource")
    return body


def _status_failure(status: int) -> _Failure | None:
    if status in (404, 410):
        return _Failure(f"HTTP {status}", not_found=True)
    if status in (401, 403):
        return _Failure(f"FHIR server refused access (HTTP {status})")
    if status >= 400:
        return _Failure(f"FHIR server error (HTTP {status})")
    return None


def _read_some(response: urllib3.BaseHTTPResponse, deadline: float, request_timeout_s: float) -> bytes:
    """At most one socket read of the body, never blocking past ``deadline``; b"" at its end.

    A server trickling a byte every few hundred milliseconds satisfies every per-read timeout, so each read is
    given only the time left and reads what is there (``read1``) instead of waiting for a full chunk.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Failure("deadline exceeded")
    sock = getattr(response.connection, "sock", None)  # an HTTPConnection's socket; none once closed
    try:
        if sock is not None:
            sock.settimeout(min(request_timeout_s, remaining))
        return response.read1(_READ_BYTES)
    except TimeoutError as exc:
        past = time.monotonic() >= deadline
        raise _Failure("deadline exceeded" if past else "FHIR server timed out") from exc
    except (HTTPError, OSError) as exc:
        raise _Failure(f"FHIR server connection broken ({type(exc).__name__})") from exc


def _drain(response: urllib3.BaseHTTPResponse, deadline: float, request_timeout_s: float) -> bool:
    """Read an unwanted body (an error's, a redirect's) to its end; False when it is longer than _DRAIN_BYTES or
    does not end in time, and its connection must be closed instead."""
    drained = 0
    try:
        while chunk := _read_some(response, deadline, request_timeout_s):
            drained += len(chunk)
            if drained > _DRAIN_BYTES:
                return False
    except _Failure:
        return False
    return True


def _kind(kind: Any) -> str:
    return kind if isinstance(kind, str) and kind.isalnum() and len(kind) < 64 else "something else"
