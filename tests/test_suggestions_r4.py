"""Every suggested resource validates as FHIR R4 (issue 17): every fixture scenario through the HTTP API, under each
EHR profile (hl7, epic, oracle), and every action of every suggestion of every card — a create or update carries a
resource that ``fhir.resources.R4B`` validates as its resourceType; a delete names a resourceId instead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from flask import Flask

from cds_service.app import create_app
from cds_service.replay.fhirserver import ScenarioFhirServer
from cds_service.replay.runner import Runner
from cds_service.replay.scenarios import Library
from cds_service.settings import Settings

LIBRARY = Library(Path(__file__).resolve().parents[1] / "fhir_fixtures")
CONCEPT_MAP = LIBRARY.folder / "conceptmaps" / "example-site.json"


@pytest.fixture(scope="module", params=["hl7", "epic", "oracle"])
def every_action(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """(profile, [(where, action), ...]) for every suggestion action of every scenario's calls under the profile."""
    db = tmp_path_factory.mktemp(f"r4-{request.param}") / "store.sqlite3"
    settings = Settings(
        auth="off",
        database_url=f"sqlite:///{db}",
        concept_maps=[str(CONCEPT_MAP)],
        ehr_profile=request.param,
        public_base_url="https://cds.hospital.example",
    )
    app: Flask = create_app(settings, clock=lambda: LIBRARY.anchor)
    client = app.test_client()
    discovery = client.get("/cds-services").get_json()

    def post(service_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        response = client.post(f"/cds-services/{service_id}", json=body)
        return response.status_code, response.get_json()

    actions: list[tuple[str, dict[str, Any]]] = []
    for scenario in LIBRARY.scenarios:
        if LIBRARY.needs_fhir_server(scenario):
            with ScenarioFhirServer(LIBRARY.resources(scenario)) as server:
                outcomes = Runner(
                    LIBRARY, post=post, discovery=discovery, now=LIBRARY.anchor, fhir_server=server.base_url
                ).run(scenario)
        else:
            outcomes = Runner(LIBRARY, post=post, discovery=discovery, now=LIBRARY.anchor).run(scenario)
        for outcome in outcomes:
            for card in outcome.cards:
                for suggestion in card.get("suggestions") or []:
                    for action in suggestion.get("actions") or []:
                        where = f"{scenario.id}/{outcome.call.hook}: {suggestion.get('label')}"
                        actions.append((where, action))
    yield request.param, actions
    app.extensions["dvt_cds"]["fhir_client"].close()


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
