"""Acting as the CDS client: build each hook request of a scenario, send it, compare with the manifest.

The transport is a function ``post(service_id, body) -> (status, json)`` so the same runner drives a live
service over HTTP (``dvt-cds replay``) and the Flask test client (the test suite).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import requests

from cds_service.fhir.prefetch import render
from cds_service.profiles import canonical_topic
from cds_service.replay.scenarios import (
    Call,
    ExpectedCard,
    Library,
    Scenario,
    days_between,
    patient_id,
    shift_dates,
    with_fhir_base,
)
from cds_service.replay.search import search, searchset

Post = Callable[[str, dict[str, Any]], tuple[int, Any]]
_INFO_OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [
        {"severity": "information", "code": "informational", "diagnostics": "Resource request returns no results."}
    ],
}
_ERROR_OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "exception", "diagnostics": "The EHR could not run this prefetch query."}],
}


@dataclass
class CallOutcome:
    scenario: Scenario
    call: Call
    status: int
    body: Any
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def cards(self) -> list[dict[str, Any]]:
        return self.body.get("cards", []) if isinstance(self.body, dict) else []

    @property
    def topics(self) -> list[str]:
        return [c.get("source", {}).get("topic", {}).get("code", "?") for c in self.cards]


ORDER_SET_SYSTEM = "urn:com.epic.cdshooks.action.code.system.orderset-item"


def recommended_option(card: dict[str, Any]) -> str | None:
    """What the card's recommended suggestion(s) order. Read across suggestions: an Epic-shaped card carries one
    action per suggestion, so serial imaging is two recommended scans (or one recommended order set)."""
    recommended = [s for s in card.get("suggestions", []) if s.get("isRecommended")]
    if not recommended:
        return None
    creates = [a.get("resource", {}) for s in recommended for a in s.get("actions", []) if a.get("type") == "create"]
    kinds = {r.get("resourceType") for r in creates}
    if "MedicationRequest" in kinds:
        return "anticoagulation"
    if kinds == {"ServiceRequest"} and (len(creates) >= 2 or any(_is_order_set(r) for r in creates)):
        return "serial-imaging"
    return "other"


def _is_order_set(resource: dict[str, Any]) -> bool:
    codings = (resource.get("code") or {}).get("coding") or []
    return any(c.get("system") == ORDER_SET_SYSTEM for c in codings)


def _topic(card: dict[str, Any]) -> str:
    return canonical_topic(card.get("source", {}).get("topic", {}).get("code", "?"))


def compare(expected_status: int, expected: list[ExpectedCard], status: int, body: Any) -> list[str]:
    problems = []
    if status != expected_status:
        problems.append(f"status {status}, expected {expected_status}")
        return problems
    if status != 200:
        return problems
    cards = body.get("cards", []) if isinstance(body, dict) else []
    got = sorted(_topic(c) for c in cards)
    want = sorted(e.topic for e in expected)
    if got != want:
        problems.append(f"topics {got or 'none'}, expected {want or 'none'}")
        return problems
    by_topic = {_topic(c): c for c in cards}
    for e in expected:
        card = by_topic[e.topic]
        if e.indicator and card.get("indicator") != e.indicator:
            problems.append(f"{e.topic}: indicator {card.get('indicator')}, expected {e.indicator}")
        if e.recommended and recommended_option(card) != e.recommended:
            problems.append(f"{e.topic}: recommended {recommended_option(card)}, expected {e.recommended}")
        if e.summary_contains and e.summary_contains not in card.get("summary", ""):
            problems.append(f"{e.topic}: summary lacks {e.summary_contains!r}")
        for text in e.detail_contains:
            if text not in card.get("detail", ""):
                problems.append(f"{e.topic}: detail lacks {text!r}")
    return problems


class Runner:
    def __init__(
        self,
        library: Library,
        *,
        post: Post,
        discovery: dict[str, Any],
        now: datetime,
        fhir_server: str | None = None,
        use_prefetch: bool = True,
    ):
        self.library = library
        self.post = post
        self.templates = {s["id"]: s.get("prefetch", {}) for s in discovery.get("services", [])}
        self.shift = days_between(library.anchor, now)
        self.fhir_server = fhir_server
        self.use_prefetch = use_prefetch

    def resources(self, scenario: Scenario) -> list[dict[str, Any]]:
        return with_fhir_base(shift_dates(self.library.resources(scenario), self.shift), self.fhir_server)

    def request(self, scenario: Scenario, call: Call) -> dict[str, Any]:
        resources = self.resources(scenario)
        context: dict[str, Any] = {"userId": "Practitioner/replay", "patientId": patient_id(resources)}
        if call.encounter_id:
            context["encounterId"] = call.encounter_id
        drafts = self.library.drafts(call)
        if drafts is not None:
            context["draftOrders"] = shift_dates(drafts, self.shift)
        if call.selections is not None:
            context["selections"] = call.selections
        body: dict[str, Any] = {"hook": call.hook, "hookInstance": str(uuid.uuid4()), "context": context}
        if self.fhir_server:
            body["fhirServer"] = self.fhir_server
        if self.use_prefetch:
            body["prefetch"] = self._prefetch(call, context, resources)
        return body

    def _prefetch(self, call: Call, context: dict[str, Any], resources: list[dict[str, Any]]) -> dict[str, Any]:
        prefetch: dict[str, Any] = {}
        for key, template in self.templates.get(call.service_id, {}).items():
            query = render(template, context)
            if query is None:
                continue
            shape = call.prefetch_shape.get(key, "present")
            if shape == "absent":
                continue
            kind, found = search(query, resources)
            primary = query.split("?")[0].split("/")[0]
            if shape == "no-include" and kind == "search":
                found = [r for r in found or [] if isinstance(r, dict) and r.get("resourceType") == primary]
            if shape == "null":
                prefetch[key] = None
            elif shape == "operation-outcome":
                prefetch[key] = _ERROR_OUTCOME
            elif kind == "read":
                prefetch[key] = found
            elif shape == "outcome-entry":
                bundle = searchset(found, primary_type=primary)  # type: ignore[arg-type]
                bundle.setdefault("entry", []).append({"resource": _INFO_OUTCOME, "search": {"mode": "outcome"}})
                prefetch[key] = bundle
            elif shape == "paginated":
                prefetch[key] = self._first_page(query)
            else:
                prefetch[key] = searchset(found, primary_type=primary)  # type: ignore[arg-type]
        return prefetch

    def _first_page(self, query: str) -> dict[str, Any]:
        """The first page of a real paged search from the FHIR server (its next link is the server's)."""
        if not self.fhir_server:
            raise RuntimeError("a 'paginated' prefetch shape needs a FHIR server to page from")
        path, _, params = query.partition("?")
        params = "&".join(p for p in params.split("&") if p and not p.startswith("_count="))
        url = f"{self.fhir_server}/{path}?{params}&{urlencode({'_count': 1})}"
        response = requests.get(url, headers={"Accept": "application/fhir+json"}, timeout=10)
        response.raise_for_status()
        return response.json()

    def run_call(self, scenario: Scenario, call: Call) -> CallOutcome:
        status, body = self.post(call.service_id, self.request(scenario, call))
        outcome = CallOutcome(scenario, call, status, body)
        outcome.problems = compare(call.expect.status, call.expect.cards, status, body)
        return outcome

    def run(self, scenario: Scenario) -> list[CallOutcome]:
        return [self.run_call(scenario, call) for call in scenario.calls]


def http_transport(
    base_url: str,
    *,
    timeout: float = 30.0,
    authorization: Callable[[str], str] | None = None,
) -> tuple[Post, dict]:
    """A poster for a live service, and its discovery document. ``authorization(url)`` gives the Authorization
    header for a URL (a fresh signed JWT per call when the service checks them)."""
    session = requests.Session()

    def headers(url: str) -> dict[str, str]:
        return {"Authorization": authorization(url)} if authorization else {}

    discovery_url = f"{base_url}/cds-services"
    discovery = session.get(discovery_url, timeout=timeout, headers=headers(discovery_url))
    discovery.raise_for_status()

    def post(service_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        url = f"{base_url}/cds-services/{service_id}"
        response = session.post(url, json=body, timeout=timeout, headers=headers(url))
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {"error": response.text[:200]}

    return post, discovery.json()
