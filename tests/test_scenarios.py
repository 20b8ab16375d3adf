"""Every fixture scenario through the HTTP API, with the service's clock at the manifest's anchor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from cds_service.app import create_app
from cds_service.replay.fhirserver import ScenarioFhirServer
from cds_service.replay.runner import Runner
from cds_service.replay.scenarios import Library, Scenario, with_fhir_base
from cds_service.settings import Settings

LIBRARY = Library(Path(__file__).resolve().parents[1] / "fhir_fixtures")
CONCEPT_MAP = LIBRARY.folder / "conceptmaps" / "example-site.json"  # the site map the vendor scenarios assume


@pytest.fixture(scope="module")
def scenario_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    db = tmp_path_factory.mktemp("scenarios") / "store.sqlite3"
    settings = Settings(auth="off", database_url=f"sqlite:///{db}", concept_maps=[str(CONCEPT_MAP)])
    app = create_app(settings, clock=lambda: LIBRARY.anchor)
    yield app
    app.extensions["dvt_cds"]["fhir_client"].close()


def transport(app: Flask):
    client = app.test_client()

    def post(service_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        response = client.post(f"/cds-services/{service_id}", json=body)
        return response.status_code, response.get_json()

    return post, client.get("/cds-services").get_json()


@pytest.mark.parametrize("scenario", LIBRARY.scenarios, ids=lambda s: s.id)
def test_scenario_with_prefetch(scenario_app: Flask, scenario: Scenario) -> None:
    post, discovery = transport(scenario_app)
    needs_server = LIBRARY.needs_fhir_server(scenario)
    resources = LIBRARY.resources(scenario)
    with ScenarioFhirServer(resources) if needs_server else _no_server() as server:
        runner = Runner(
            LIBRARY, post=post, discovery=discovery, now=LIBRARY.anchor, fhir_server=server.base_url if server else None
        )
        outcomes = runner.run(scenario)
    failures = [f"{o.call.hook}: {'; '.join(o.problems)}" for o in outcomes if not o.passed]
    assert not failures, json.dumps([o.body for o in outcomes if not o.passed], indent=1)[:3000]


def without_uuids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [without_uuids(v) for v in value]
    return value


@pytest.mark.parametrize("scenario", LIBRARY.scenarios, ids=lambda s: s.id)
def test_scenario_fetched_from_a_real_fhir_server_gives_the_same_cards(
    scenario_app: Flask, scenario: Scenario, medplum: Any
) -> None:
    """No prefetch at all: the service fetches every key from a real FHIR implementation (Medplum) and must
    answer exactly as it does with full prefetch."""
    post, discovery = transport(scenario_app)
    resources = with_fhir_base(LIBRARY.resources(scenario), medplum.base_url)
    medplum.reset()
    medplum.load({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]})
    fetched = Runner(
        LIBRARY, post=post, discovery=discovery, now=LIBRARY.anchor, fhir_server=medplum.base_url, use_prefetch=False
    ).run(scenario)
    full = Runner(LIBRARY, post=post, discovery=discovery, now=LIBRARY.anchor, fhir_server=medplum.base_url).run(
        scenario
    )
    for by_fetch, by_prefetch in zip(fetched, full, strict=True):
        assert by_fetch.passed, f"{by_fetch.call.hook}: {'; '.join(by_fetch.problems)}"
        assert without_uuids(by_fetch.body) == without_uuids(by_prefetch.body), by_fetch.call.hook


class _no_server:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
