"""Every fixture scenario through the HTTP API, with the service's clock at the manifest's anchor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from cds_service.replay.runner import Runner
from cds_service.replay.scenarios import Scenario, with_fhir_base
from tests.inprocess import LIBRARY, close_app, library_app, scenario_fhir_server, transport


@pytest.fixture(scope="module")
def scenario_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    app = library_app(tmp_path_factory.mktemp("scenarios") / "store.sqlite3")
    yield app
    close_app(app)


@pytest.mark.parametrize("scenario", LIBRARY.scenarios, ids=lambda s: s.id)
def test_scenario_with_prefetch(scenario_app: Flask, scenario: Scenario) -> None:
    post, discovery = transport(scenario_app)
    with scenario_fhir_server(scenario) as fhir_server:
        runner = Runner(LIBRARY, post=post, discovery=discovery, now=LIBRARY.anchor, fhir_server=fhir_server)
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
