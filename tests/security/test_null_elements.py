"""An explicit JSON null where FHIR has a repeating element (``"coding": null``) is absence, never a crash: every
hook answers 200 for a record in which each repeating element the rules read is null (issue: the fuzzer's 500 from
an Observation component whose code had ``"coding": null``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.builders import (
    GASTROCNEMIUS,
    LEFT,
    apixaban,
    ddimer,
    distal_dvt,
    draft_orders,
    duplex,
    encounter,
    hook_request,
    service_request,
)

NULLABLE = (
    "coding",
    "component",
    "dosageInstruction",
    "doseAndRate",
    "referenceRange",
    "interpretation",
    "presentedForm",
    "result",
    "type",
    "note",
    "reasonCode",
    "contained",
    "category",
    "bodySite",
)


def paths(value: Any, key: str, where: tuple = ()) -> list[tuple]:
    """Every place ``key`` occurs in ``value``, as a path of dict keys and list indexes."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                found.append((*where, k))
            found += paths(v, key, (*where, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += paths(v, key, (*where, i))
    return found


def nulled_at(value: Any, path: tuple) -> Any:
    """A copy of ``value`` with the element at ``path`` set to null, the rest intact."""
    copied = copy.deepcopy(value)
    target = copied
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = None
    return copied


def record() -> list[dict]:
    report = {
        "resourceType": "DiagnosticReport",
        "id": "dr-null",
        "status": "final",
        "subject": {"reference": "Patient/pat-1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "39432-0"}], "text": "US venous duplex left"},
        "effectiveDateTime": "2026-03-15",
        "result": [{"reference": "Observation/x"}],
        "presentedForm": [{"contentType": "text/plain", "data": "VGhyb21idXMgaW4gdGhlIGxlZnQgcGVyb25lYWwgdmVpbi4="}],
    }
    order = apixaban(per_day=2)
    order["note"] = [{"text": "note"}]
    order["contained"] = [{"resourceType": "Medication", "id": "m"}]
    return [
        distal_dvt(body_sites=[GASTROCNEMIUS, LEFT]),
        duplex([GASTROCNEMIUS], side=LEFT, length=(3, "cm")),
        ddimer(900, days=2, interpretation="H", ref_high=500),
        report,
        order,
        encounter("IMP", resource_id="enc-1"),
        ordered_duplex(),
    ]


def ordered_duplex() -> dict:
    order = service_request("39420-5", due_in=5)
    order["reasonCode"] = [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I82.452"}]}]
    return order


@pytest.mark.parametrize("key", NULLABLE)
@pytest.mark.parametrize("hook", ["patient-view", "order-sign", "encounter-discharge"])
def test_a_null_repeating_element_is_absence(client: FlaskClient, hook: str, key: str) -> None:
    """One null at a time, so the rest of the resource still selects it and the null is really read."""
    resources = record()
    drafts = draft_orders(apixaban(per_day=2), ordered_duplex())
    places = [("record", p) for p in paths(resources, key)] + [("drafts", p) for p in paths(drafts, key)]
    assert places, key
    for where, path in places:
        nulled_resources = nulled_at(resources, path) if where == "record" else resources
        context: dict[str, Any] = {}
        if hook == "order-sign":
            context["draftOrders"] = nulled_at(drafts, path) if where == "drafts" else drafts
        if hook == "encounter-discharge":
            context["encounterId"] = "enc-1"
        body = hook_request(hook, nulled_resources, **context)
        response = client.post(f"/cds-services/distal-dvt-{hook}", json=body)
        assert response.status_code == 200, (where, path, response.get_data(as_text=True)[:300])


def every_key(value: Any, where: tuple = ()) -> list[tuple]:
    """The path of every object member in ``value``, leaves and containers alike."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            found.append((*where, k))
            found += every_key(v, (*where, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += every_key(v, (*where, i))
    return found


@pytest.mark.parametrize("hook", ["patient-view", "order-sign"])
def test_null_in_any_element_is_absence_never_a_500(client: FlaskClient, hook: str) -> None:
    """The class of bug, not the one line: every member of every resource (record and draft orders) nulled in turn,
    scalars included (``"text": null`` in a note), answers 200 or an OperationOutcome 4xx — never a 5xx."""
    resources = record()
    drafts = draft_orders(apixaban(per_day=2), ordered_duplex())
    places = [("record", p) for p in every_key(resources)]
    if hook == "order-sign":
        places += [("drafts", p) for p in every_key(drafts)]
    failures = []
    for where, path in places:
        context: dict[str, Any] = {}
        if hook == "order-sign":
            context["draftOrders"] = nulled_at(drafts, path) if where == "drafts" else drafts
        body = hook_request(hook, nulled_at(resources, path) if where == "record" else resources, **context)
        response = client.post(f"/cds-services/distal-dvt-{hook}", json=body)
        if response.status_code >= 500:
            failures.append((where, path, response.status_code))
    assert len(places) > 150
    assert failures == []
