"""Every fixture scenario through the HTTP API, with the service's clock at the manifest's anchor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from cds_service.replay.scenarios import Scenario
from tests.inprocess import (
    LIBRARY,
    close_app,
    library_app,
    library_runner,
    load_into,
    scenario_fhir_server,
    transport,
    without_uuids,
)


@pytest.fixture(scope="module")
def scenario_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    app = library_app(tmp_path_factory.mktemp("scenarios") / "store.sqlite3")
    yield app
    close_app(app)


@pytest.mark.parametrize("scenario", LIBRARY.scenarios, ids=lambda s: s.id)
def test_scenario_with_prefetch(scenario_app: Flask, scenario: Scenario) -> None:
    post, discovery = transport(scenario_app)
    with scenario_fhir_server(scenario) as fhir_server:
        outcomes = library_runner(post, discovery, fhir_server).run(scenario)
    failures = [f"{o.call.hook}: {'; '.join(o.problems)}" for o in outcomes if not o.passed]
    assert not failures, json.dumps([o.body for o in outcomes if not o.passed], indent=1)[:3000]


@pytest.mark.parametrize("scenario", LIBRARY.scenarios, ids=lambda s: s.id)
def test_scenario_fetched_from_a_real_fhir_server_gives_the_same_cards(
    scenario_app: Flask, scenario: Scenario, medplum: Any
) -> None:
    """No prefetch at all: the service fetches every key from a real FHIR implementation (Medplum) and must
    answer exactly as it does with full prefetch."""
    post, discovery = transport(scenario_app)
    load_into(medplum, scenario)
    fetched = library_runner(post, discovery, medplum.base_url, use_prefetch=False).run(scenario)
    full = library_runner(post, discovery, medplum.base_url).run(scenario)
    for by_fetch, by_prefetch in zip(fetched, full, strict=True):
        assert by_fetch.passed, f"{by_fetch.call.hook}: {'; '.join(by_fetch.problems)}"
        assert without_uuids(by_fetch.body) == without_uuids(by_prefetch.body), by_fetch.call.hook
