"""Batch and separate GETs are two ways to the same record: every fixture scenario fetched with no prefetch from
the real FHIR server (Medplum, which declares batch and pages as Medplum does) gives the same cards either way, and
the batch path really was a batch (one POST per call's first round, never a fallback)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from cds_service.replay.scenarios import Scenario
from tests.inprocess import LIBRARY, close_app, fetched_cards, library_app, load_into


def _app(tmp_path_factory: pytest.TempPathFactory, batch: str) -> Flask:
    db = tmp_path_factory.mktemp("batch") / "store.sqlite3"
    return library_app(db, fhir_batch=batch)


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory, medplum: Any) -> Iterator[dict[str, Any]]:
    batched, alone = _app(tmp_path_factory, "auto"), _app(tmp_path_factory, "off")
    client = batched.extensions["dvt_cds"]["fhir_client"]
    assert client.capabilities.refresh(medplum.base_url) is True  # known before the first call: every call batches
    counts = {"batches": 0, "refused": 0}
    first_pages, refuse = client._first_pages, client.capabilities.refuse

    def counting_first_pages(*args: Any, **kwargs: Any) -> Any:
        counts["batches"] += 1
        return first_pages(*args, **kwargs)

    def counting_refuse(base_url: str) -> None:
        counts["refused"] += 1
        refuse(base_url)

    client._first_pages = counting_first_pages
    client.capabilities.refuse = counting_refuse
    yield {"batch": batched, "gets": alone, "counts": counts}
    for app in (batched, alone):
        close_app(app)


@pytest.mark.parametrize("scenario", LIBRARY.scenarios, ids=lambda s: s.id)
def test_every_scenario_gives_the_same_cards_by_batch_and_by_gets(
    apps: dict[str, Any], scenario: Scenario, medplum: Any
) -> None:
    load_into(medplum, scenario)
    before = apps["counts"]["batches"]
    batched = fetched_cards(apps["batch"], scenario, medplum.base_url, prefetch=False)
    alone = fetched_cards(apps["gets"], scenario, medplum.base_url, prefetch=False)
    assert batched == alone, json.dumps([batched, alone], indent=1)[:3000]
    assert apps["counts"]["batches"] >= before + len(scenario.calls)
    assert apps["counts"]["refused"] == 0
