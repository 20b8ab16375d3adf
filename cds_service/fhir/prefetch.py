"""Prefetch: render the templates, take what the EHR sent, fetch what it did not, into a PatientRecord.

Each key of a request's ``prefetch`` is in one of the states CONFORMANCE.md §1.4 lists, and each has one
answer here:

=====================================  =======================================================================
what the EHR sent for the key          what we do
=====================================  =======================================================================
absent                                 fetch it from ``fhirServer`` (if we may), else record a gap
``null``                               search: "no data" (empty); read of a required resource: fetch, else 412
empty searchset                        empty
OperationOutcome (alone, or as the     fetch it (the EHR could not); informational outcome entries in a
only error entries of a searchset)     searchset with matches are ignored
searchset with a ``next`` link         keep the page, fetch the following pages
resource / searchset with matches      use it
a read's resource with another id      fetch it (the Patient when its id is not ``context.patientId``)
(e.g. another patient's Patient)
a searchset whose every match names    fetch it (a few such entries among this patient's are dropped and
another Patient (``subject``/          counted by PatientRecord)
``patient``)
=====================================  =======================================================================

A required key that stays unobtainable ends the call with 412 (CDS Hooks 2.0: SHALL).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote, unquote

from cds_service.errors import PreconditionFailed
from cds_service.fhir.bundles import is_operation_outcome, read_bundle_page
from cds_service.fhir.client import ByteBudget, FetchResult, FhirClient, FhirQuery
from cds_service.fhir.record import DataGap, PatientRecord

_TOKEN = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9.]*)\s*\}\}")
# A reference naming a Patient, as record.py reads it (urn:uuid and contained references name none we can check).
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([^/]+?)(?:/_history/[^/]+)?$")
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


# Days added to every date bound the service puts on its own queries: a server compares instants in its own time
# zone (up to 14 h from UTC), a partial date is a range, and a call may straddle midnight.
DATE_MARGIN_DAYS = 7


@dataclass(frozen=True)
class FetchPart:
    """One query of the service's own fetch of a key: a key may be asked in parts (each Observation group with its
    own window, the undated remainder of a window) where one CDS Hooks 2.0 template cannot say it."""

    template: str | None = None  # None: the key's own template
    lookback: str | None = None  # a named window (clinical/lookback.py): ``date=ge`` that many days back (+ margin)
    undated: bool = False  # ``date:missing=true``: what a date bound cannot find, where the rules read it undated
    count: int | None = None  # ``_count`` of this query: results expected, so that one page usually holds them
    valuesets: tuple[str, ...] = ()  # what an own template's code filter asks for (the site's local codes are added)


@dataclass(frozen=True)
class PrefetchKey:
    """One prefetch template a service asks for; ``required`` keys end the call with 412 when unobtainable."""

    name: str
    template: str
    required: bool = False
    # When the service runs the query itself it may bound it tighter than a CDS Hooks 2.0 template can (no
    # relative dates in 2.0 tokens): only results dated within this many days, and at most this many pages.
    fetch_since_days: int | None = None
    fetch_pages: int | None = None
    # How the service asks for the key itself, when not as the template says (FetchPart); empty: as the template.
    fetch: tuple[FetchPart, ...] = ()

    @property
    def resource_type(self) -> str:
        match = re.match(r"[A-Za-z]+", self.template)
        if match is None:
            raise ValueError(f"template {self.template!r} does not start with a resource type")
        return match.group(0)

    @property
    def is_read(self) -> bool:
        return "?" not in self.template


def render(template: str, context: dict[str, Any]) -> str | None:
    """Fill the prefetch tokens the specification allows; None when a token has no value in this context."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        token = match.group(1)
        found: Any = None
        if token.startswith("context."):
            found = context.get(token.removeprefix("context."))
        elif token in _USER_TOKENS:
            user = context.get("userId")
            prefix = _USER_TOKENS[token] + "/"
            if isinstance(user, str) and user.startswith(prefix):
                found = user.removeprefix(prefix)
        if not isinstance(found, str) or not found:
            missing = True
            return ""
        return quote(found, safe="")

    rendered = _TOKEN.sub(value, template)
    return None if missing else rendered


@dataclass
class _KeyState:
    key: PrefetchKey
    rendered: str
    resources: list[dict[str, Any]]
    source: str = "prefetch"
    fetch_url: str | None = None  # what to fetch: the rendered query, or a next link to continue
    fetch_reason: str | None = None  # why a fetch is needed (for the gap if it cannot happen)
    continuation: bool = False


class PrefetchResolver:
    def __init__(
        self,
        client: FhirClient,
        server_allowed: Callable[[str], tuple[bool, str]],
        *,
        max_entries: int = 20_000,
        lookbacks: Mapping[str, int] | None = None,
    ):
        self._client = client
        self._server_allowed = server_allowed
        self._max_entries = max_entries
        self._lookbacks = lookbacks or {}  # named window -> days back (FetchPart.lookback); absent: no bound

    def resolve(
        self,
        keys: Sequence[PrefetchKey],
        *,
        context: dict[str, Any],
        patient_id: str,
        prefetch: dict[str, Any] | None,
        fhir_server: str | None,
        access_token: str | None,
        deadline: float,
        today: date | None = None,
        server_allowed: Callable[[str], tuple[bool, str]] | None = None,
        budget: ByteBudget | None = None,
        into: PatientRecord | None = None,
    ) -> PatientRecord:
        """The keys' resources in a record (``into``, to add a second round of keys to the first's record)."""
        record = into if into is not None else PatientRecord(patient_id=patient_id)
        sent = prefetch or {}
        states: list[_KeyState] = []
        for key in keys:
            rendered = render(key.template, context)
            if rendered is None:
                continue  # e.g. no encounterId in this context: the key does not apply
            states.append(self._classify(key, rendered, sent, patient_id))
        for state in states:
            if len(state.resources) > self._max_entries:
                del state.resources[self._max_entries :]
                state.fetch_url = None  # what was sent is already more than we read
                record.add_gap(
                    DataGap(
                        state.key.name,
                        state.key.resource_type,
                        f"stopped at {self._max_entries} resources",
                        partial=True,
                    )
                )

        to_fetch = [s for s in states if s.fetch_url is not None]
        results: dict[str, FetchResult] = {}
        if to_fetch:
            allowed, why_not = (False, "no fhirServer in the request")
            if fhir_server is not None:
                allowed, why_not = (server_allowed or self._server_allowed)(fhir_server)
            if allowed and fhir_server is not None:
                parts = {s.key.name: self._queries(s, fhir_server, context, today) for s in to_fetch}
                fetched = self._client.fetch_many(
                    [q for queries in parts.values() for q in queries],
                    base_url=fhir_server,
                    token=access_token,
                    deadline=deadline,
                    budget=budget,
                )
                results = {name: _merged(name, [fetched[q.key] for q in queries]) for name, queries in parts.items()}
            else:
                for state in to_fetch:
                    results[state.key.name] = FetchResult(state.key.name, ok=False, reason=why_not)

        failed_required: list[str] = []
        for state in states:
            record.add(state.resources)
            result = results.get(state.key.name)
            if state.fetch_url is None or result is None:
                record.sources[state.key.name] = state.source
                continue
            record.sources[state.key.name] = "prefetch+fhir" if state.continuation else "fhir"
            result = _named_only(state, result)
            record.add(result.resources)
            reason = f"{state.fetch_reason}; {result.reason}" if result.reason else state.fetch_reason
            if not result.ok:
                if state.continuation:
                    record.add_gap(DataGap(state.key.name, state.key.resource_type, reason or "", partial=True))
                    continue
                record.sources[state.key.name] = "none"
                record.add_gap(DataGap(state.key.name, state.key.resource_type, reason or ""))
                if state.key.required:
                    failed_required.append(f"{state.key.name}: {reason}")
            elif result.not_found and state.key.required:
                failed_required.append(f"{state.key.name}: {state.key.resource_type} not found on fhirServer")
            elif result.truncated:
                record.add_gap(DataGap(state.key.name, state.key.resource_type, result.reason or "", partial=True))
        if failed_required:
            raise PreconditionFailed(
                "Data this service cannot work without could not be obtained by prefetch or from fhirServer",
                details=failed_required,
            )
        return record.finish()

    def _queries(
        self, state: _KeyState, fhir_server: str, context: dict[str, Any], today: date | None
    ) -> list[FhirQuery]:
        """The queries the service runs for a key: the template (or the EHR's next link) as it is, or the key's
        fetch parts, each bounded to the window the rules read."""
        key = state.key

        def query(name: str, url: str) -> FhirQuery:
            return FhirQuery(
                key=name,
                url=_absolute(fhir_server, url),
                resource_type=key.resource_type,
                is_read=key.is_read and not state.continuation,
                max_pages=key.fetch_pages,
            )

        if state.continuation or key.is_read or not key.fetch:
            return [query(key.name, _bounded(state, today))]
        bounded = today is not None and any(p.lookback in self._lookbacks for p in key.fetch if p.lookback)
        urls: list[str] = []
        for part in key.fetch:
            rendered = render(part.template or key.template, context)
            if rendered is None or (part.undated and not bounded):
                continue  # unbounded, the key's other parts already find what this one would
            params = [f"_count={part.count}"] if part.count else []
            days = self._lookbacks.get(part.lookback) if part.lookback else None
            if days is not None and today is not None:
                params.append(f"date=ge{(today - timedelta(days=days + DATE_MARGIN_DAYS)).isoformat()}")
            if part.undated:
                params.append("date:missing=true")
            urls.append(_with_params(rendered, params, replace=("_count",) if part.count else ()))
        return [query(key.name if len(urls) == 1 else f"{key.name}#{i}", url) for i, url in enumerate(urls)]

    @staticmethod
    def _classify(key: PrefetchKey, rendered: str, sent: dict[str, Any], patient_id: str) -> _KeyState:
        state = _KeyState(key=key, rendered=rendered, resources=[])
        if key.name not in sent:
            state.fetch_url, state.fetch_reason = rendered, "not prefetched"
            return state
        value = sent[key.name]
        if value is None:
            # "no data to populate": a search is empty; a required single resource cannot be absent.
            if key.is_read and key.required:
                state.fetch_url, state.fetch_reason = rendered, "prefetch was null"
            return state
        if is_operation_outcome(value):
            state.fetch_url, state.fetch_reason = rendered, "prefetch held an OperationOutcome"
            return state
        kind = value.get("resourceType")
        if kind == "Bundle":
            page = read_bundle_page(value)
            matches = [r for r in page.resources if not key.is_read or r.get("resourceType") == key.resource_type]
            if page.has_error and not matches:
                state.fetch_url, state.fetch_reason = rendered, "prefetch held an error OperationOutcome"
                return state
            mismatched = False
            if key.is_read:
                matches, mismatched = _the_named(key, rendered, matches)
            elif matches and all(_names_another_patient(r, patient_id) for r in matches):
                # Another patient's search, not this one's (a few strays are left to PatientRecord, which drops
                # and reports them): it says nothing about this patient, so it is read again.
                state.fetch_url, state.fetch_reason = rendered, "the prefetched search holds another patient's data"
                return state
            state.resources = matches
            if key.is_read and not matches:
                reason = _mismatch(key) if mismatched else "prefetch Bundle held no resource"
                state.fetch_url, state.fetch_reason = rendered, reason
            elif page.next_url is not None:
                state.fetch_url, state.fetch_reason = page.next_url, "prefetch was paginated"
                state.continuation = True
            return state
        if key.is_read and kind == key.resource_type:
            state.resources, mismatched = _the_named(key, rendered, [value])
            if mismatched:
                # Another patient's (or encounter's) data must not stand in for this one's: read the right one.
                state.fetch_url, state.fetch_reason = rendered, _mismatch(key)
            return state
        state.fetch_url, state.fetch_reason = rendered, "prefetch held an unexpected resource type"
        return state


def _the_named(key: PrefetchKey, rendered: str, resources: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """The resources that are the one a read names (``Patient/{{context.patientId}}``: that id); True when some
    were another. One without an id cannot be checked and is kept, as record.py keeps it."""
    wanted = rendered.removeprefix(f"{key.resource_type}/")
    if wanted == rendered or "/" in wanted or "?" in wanted:
        return resources, False
    wanted = unquote(wanted)
    kept = [r for r in resources if not isinstance(r.get("id"), str) or r["id"] == wanted]
    return kept, len(kept) < len(resources)


def _mismatch(key: PrefetchKey) -> str:
    token = _TOKEN.search(key.template)
    named = token.group(1) if token else "the context"
    return f"the prefetched {key.resource_type} does not match {named}"  # never the ids: they identify patients


def _names_another_patient(resource: dict[str, Any], patient_id: str) -> bool:
    for name in ("subject", "patient"):  # where R4 resources point at their patient
        ref = resource.get(name)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            match = _PATIENT_REF.search(ref["reference"])
            return match is not None and match.group(1) != patient_id
    return False


def _named_only(state: _KeyState, result: FetchResult) -> FetchResult:
    """A read's result without a resource other than the one it named: a server answering ``Patient/a`` with
    Patient b has not given us Patient a."""
    if not state.key.is_read or state.continuation or not result.ok or result.not_found:
        return result
    kept, mismatched = _the_named(state.key, state.rendered, result.resources)
    if not mismatched:
        return result
    if kept:
        return replace(result, resources=kept)
    reason = f"the {state.key.resource_type} from fhirServer does not match the one asked for"
    return FetchResult(result.key, ok=False, reason=reason, pages=result.pages, elapsed_ms=result.elapsed_ms)


def _bounded(state: _KeyState, today: date | None) -> str:
    url = state.fetch_url or ""
    if state.continuation or state.key.fetch_since_days is None or today is None:
        return url
    since = today - timedelta(days=state.key.fetch_since_days)
    return f"{url}&date=ge{since.isoformat()}"


def _with_params(url: str, params: list[str], *, replace: tuple[str, ...]) -> str:
    """``url`` with the named parameters dropped and ``params`` added (the rest of the query kept as written: its
    code tokens carry FHIR escapes a re-encoding would change)."""
    path, _, query = url.partition("?")
    kept = [p for p in query.split("&") if p and p.split("=", 1)[0] not in replace]
    return f"{path}?{'&'.join([*kept, *params])}" if kept or params else path


def _merged(name: str, results: list[FetchResult]) -> FetchResult:
    """The parts of one key as one result: failed when any part failed (what it held is missing), the resources of
    every part that answered kept."""
    if len(results) == 1:
        return results[0] if results[0].key == name else replace(results[0], key=name)
    failed = [r for r in results if not r.ok]
    partial = [r for r in results if r.ok and r.truncated]
    reasons = [r.reason for r in failed or partial if r.reason]
    return FetchResult(
        name,
        ok=not failed,
        resources=[resource for r in results for resource in r.resources],
        reason="; ".join(dict.fromkeys(reasons)) or None,
        truncated=bool(partial) and not failed,
        pages=sum(r.pages for r in results),
        elapsed_ms=max((r.elapsed_ms for r in results), default=0.0),
    )


def _absolute(fhir_server: str, url: str) -> str:
    if url.startswith(("http://", "https://")):
        return url
    return f"{fhir_server.rstrip('/')}/{url.lstrip('/')}"
