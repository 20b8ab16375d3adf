"""Each EHR profile's constraints hold on every card of every fixture scenario, and the clinical answer is the same
whatever the profile (docs/integration/). Card lengths and wording limits: tests/test_card_limits.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from cds_service.cards import PATHWAY_LABEL, PATHWAY_TOPICS
from cds_service.clinical.topics import Topic
from cds_service.profiles.epic import RXNORM, RXNORM_OID, EpicProfile
from cds_service.profiles.oracle import CRITICAL_ALLOWED
from cds_service.protocol import OVERRIDE_REASON_SYSTEM, OVERRIDE_REASONS
from cds_service.replay.runner import compare
from cds_service.replay.scenarios import Scenario
from tests.inprocess import LIBRARY, close_app, library_app, library_runner, scenario_fhir_server, transport

TOPICS = {t.value for t in Topic}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@pytest.fixture(scope="module", params=["hl7", "epic", "oracle"])
def profiled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Flask]]:
    app = library_app(tmp_path_factory.mktemp(f"profile-{request.param}") / "store.sqlite3", ehr_profile=request.param)
    yield request.param, app
    close_app(app)


def _bodies(app: Flask, scenario: Scenario) -> list[tuple[Any, dict[str, Any]]]:
    post, discovery = transport(app)
    with scenario_fhir_server(scenario) as fhir_server:
        runner = library_runner(post, discovery, fhir_server)
        return [(call, post(call.service_id, runner.request(scenario, call))[1]) for call in scenario.calls]


def _check_every_card(profile: str, card: dict[str, Any]) -> None:
    topic = card["source"]["topic"]["code"]
    standard = EpicProfile().topic_from_code(topic) if profile == "epic" else topic
    assert standard in TOPICS, topic
    assert len(card["summary"]) < 140
    assert not any(line.lstrip().startswith("|") for line in (card.get("detail") or "").splitlines())
    links = card.get("links") or []
    if standard in PATHWAY_TOPICS:  # the pathway view, as a SMART app launch, in every profile
        [link] = links
        assert (link["label"], link["type"]) == (PATHWAY_LABEL, "smart")
        assert link["url"].startswith("http")
        assert link["url"].endswith("/smart/launch")
        assert "appContext" not in link  # Oracle Health does not support it; none is needed
    else:
        assert not links
    reasons = card.get("overrideReasons") or []
    assert {(r["system"], r["code"]) for r in reasons} == {(OVERRIDE_REASON_SYSTEM, c) for c in OVERRIDE_REASONS}
    assert all(r["display"] for r in reasons)
    suggestions = card.get("suggestions") or []
    if profile == "hl7":
        if suggestions:
            assert card["selectionBehavior"] == "at-most-one"
            assert sum(1 for s in suggestions if s.get("isRecommended")) <= 1
    elif profile == "epic":
        assert re.fullmatch(r"[A-Za-z0-9]{1,100}", topic), topic
        if suggestions:
            assert card["selectionBehavior"] == "any"
        for suggestion in suggestions:
            [action] = suggestion["actions"]  # exactly one action per suggestion
            resource = action.get("resource") or {}
            if resource.get("resourceType") == "MedicationRequest":
                systems = {c["system"] for c in resource["medicationCodeableConcept"]["coding"]}
                assert RXNORM not in systems
                assert RXNORM_OID in systems
                assert "mg" in action["description"]  # the dose, in words (Epic drops the details)
                assert re.search(r"month|days", action["description"])  # and the duration
            elif resource.get("resourceType") == "ServiceRequest":
                assert _DATE.search(action["description"])  # the scan date, in words
    else:  # oracle
        assert not any(line.lstrip().startswith("|") for line in (card.get("detail") or "").splitlines())
        if card["indicator"] == "critical":
            assert standard in CRITICAL_ALLOWED


@pytest.mark.parametrize("scenario", LIBRARY.scenarios, ids=lambda s: s.id)
def test_every_card_of_every_scenario_meets_the_profile(profiled: tuple[str, Flask], scenario: Scenario) -> None:
    profile, app = profiled
    for call, body in _bodies(app, scenario):
        if call.expect.status != 200:
            continue
        cards = body["cards"]
        for card in cards:
            _check_every_card(profile, card)
        # the same clinical answer: topics, indicators, recommended option and the manifest's words
        assert compare(call.expect.status, call.expect.cards, 200, body) == [], (profile, call.hook)
