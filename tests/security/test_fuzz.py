"""Property-based fuzzing: generated and mutated hook requests to every service never produce a 5xx or a
malformed body. The default runs ≥ 2,000 requests; `make fuzz` runs 25 times more (FUZZ_EXAMPLES_PER_SERVICE)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.app import create_app
from cds_service.settings import Settings
from hooks import SERVICES
from tests.builders import (
    GASTROCNEMIUS,
    LEFT,
    NOW,
    apixaban,
    condition,
    ddimer,
    draft_orders,
    duplex,
    encounter,
    hook_request,
    service_request,
)
from tests.inprocess import close_app

# 4 × 520 = 2,080 mutated hook requests per run by default; `make fuzz` raises it 25-fold.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES_PER_SERVICE", "520"))

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
FHIRISH = st.sampled_from(
    [
        "Condition",
        "Observation",
        "Patient",
        "Bundle",
        "MedicationRequest",
        "OperationOutcome",
        "ServiceRequest",
        "Encounter",
        "DiagnosticReport",
        "",
        "Nonsense",
    ]
)


def base_request(service_id: str) -> dict[str, Any]:
    hook = service_id.removeprefix("distal-dvt-")
    resources = [
        condition("I82.462", onset=2),
        ddimer(900, days=2),
        duplex([GASTROCNEMIUS], side=LEFT),
        encounter("IMP", status="in-progress", end=None, resource_id="enc-f"),
    ]
    context: dict[str, Any] = {"encounterId": "enc-f"}
    if hook in ("order-select", "order-sign"):
        drafts = [apixaban(status="draft", days=30, resource_id="d1"), service_request("46301-8", status="draft")]
        context["draftOrders"] = draft_orders(*drafts)
        if hook == "order-select":
            context["selections"] = ["MedicationRequest/d1"]
    return hook_request(hook, resources, **context)


def paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from paths(child, (*prefix, i))


def mutate(body: dict, path: tuple, replacement: Any, delete: bool) -> Any:
    if not path:
        return replacement
    copy = json.loads(json.dumps(body))
    node = copy
    for step in path[:-1]:
        node = node[step]
    if delete and isinstance(node, dict):
        node.pop(path[-1], None)
    elif isinstance(node, (dict, list)):
        node[path[-1]] = replacement
    return copy


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, Any]:
    service = draw(st.sampled_from([s.id for s in SERVICES]))
    base = base_request(service)
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return service, draw(JSON)  # anything at all
    if choice == 1:
        base["prefetch"][draw(st.sampled_from(sorted(base["prefetch"])))] = {
            "resourceType": draw(FHIRISH),
            "entry": draw(JSON),
        }
        return service, base
    body: Any = base
    for _ in range(draw(st.integers(1, 3))):
        if not isinstance(body, dict):
            break
        path = draw(st.sampled_from(list(paths(body))))  # paths of the body as it is now
        body = mutate(body, path, draw(JSON | FHIRISH), draw(st.booleans()))
    return service, body


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    db = tmp_path_factory.mktemp("fuzz") / "store.sqlite3"
    app = create_app(Settings(auth="off", database_url=f"sqlite:///{db}", call_deadline_s=0.5), clock=lambda: NOW)
    yield app
    close_app(app)


def check(response) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    body = response.get_json()
    assert isinstance(body, dict)
    if response.status_code == 200:
        assert isinstance(body.get("cards"), list)
        for card in body["cards"]:
            assert len(card["summary"]) < 140
            assert card["indicator"] in ("info", "warning", "critical")
    else:
        assert body["resourceType"] == "OperationOutcome"


@settings(
    max_examples=4 * EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(requests())
def test_mutated_requests_never_5xx(fuzz_app: Flask, generated: tuple[str, Any]) -> None:
    service, body = generated
    response = fuzz_app.test_client().post(
        f"/cds-services/{service}", data=json.dumps(body), content_type="application/json"
    )
    check(response)


@settings(max_examples=EXAMPLES // 4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_raw_bytes_never_5xx(fuzz_app: Flask, raw: bytes) -> None:
    for path in ("/cds-services/distal-dvt-patient-view", "/cds-services/distal-dvt-order-sign/feedback"):
        check(fuzz_app.test_client().post(path, data=raw, content_type="application/json"))


@settings(max_examples=EXAMPLES // 4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(JSON)
def test_random_feedback_never_5xx(fuzz_app: Flask, body: Any) -> None:
    check(fuzz_app.test_client().post("/cds-services/distal-dvt-patient-view/feedback", json=body))
