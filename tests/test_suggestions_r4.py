"""Every suggested resource validates as FHIR R4 (issue 17): every fixture scenario through the HTTP API, under each
EHR profile (hl7, epic, oracle), and every action of every suggestion of every card — a create or update carries a
resource that ``fhir.resources.R4B`` validates as its resourceType; a delete names a resourceId instead."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from tests.inprocess import library_outcomes


@pytest.fixture(scope="module", params=["hl7", "epic", "oracle"])
def every_action(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """(profile, [(where, action), ...]) for every suggestion action of every scenario's calls under the profile."""
    store = tmp_path_factory.mktemp(f"r4-{request.param}") / "store.sqlite3"
    actions: list[tuple[str, dict[str, Any]]] = []
    for scenario, outcome in library_outcomes(request.param, store):
        for card in outcome.cards:
            for suggestion in card.get("suggestions") or []:
                for action in suggestion.get("actions") or []:
                    actions.append((f"{scenario.id}/{outcome.call.hook}: {suggestion.get('label')}", action))
    return request.param, actions


def test_the_scenarios_suggest_orders(every_action: tuple[str, list[tuple[str, dict[str, Any]]]]) -> None:
    profile, actions = every_action
    kinds = {a.get("resource", {}).get("resourceType") for _, a in actions if a.get("type") == "create"}
    assert {"MedicationRequest", "ServiceRequest"} <= kinds, (profile, kinds)


def test_every_suggested_resource_validates_as_r4(every_action: tuple[str, list[tuple[str, dict[str, Any]]]]) -> None:
    profile, actions = every_action
    problems: list[str] = []
    for where, action in actions:
        kind = action.get("type")
        resource = action.get("resource")
        if kind in ("create", "update") or resource is not None:
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                problems.append(f"{where}: a {kind} without a resource")
                continue
            try:
                get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            except Exception as error:  # pydantic's ValidationError, or an unknown resourceType
                problems.append(f"{where}: {resource['resourceType']} invalid: {error}")
        elif kind == "delete":
            reference = action.get("resourceId")
            if not (isinstance(reference, str) and "/" in reference) and not (
                isinstance(reference, list) and reference and all(isinstance(r, str) for r in reference)
            ):
                problems.append(f"{where}: a delete without a resourceId")
        else:
            problems.append(f"{where}: an action of unknown type {kind!r}")
    assert not problems, (profile, problems[:10])
