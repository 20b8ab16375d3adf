"""The date bounds of the service's own queries change no card: every fixture scenario, fetched with no prefetch
from a real FHIR server (Medplum, paging as Medplum does), gives the same cards with the bounds as without them;
and records built to sit on the bounds' edges (an Observation dated only by ``issued``, an undated open stay, a stay
begun before the window, an undated Condition, a pregnancy status years old) give the same cards as full prefetch,
each edge changing the cards it is added to (so it was found, not merely absent on both sides)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from cds_service.replay.scenarios import Library, Scenario
from tests.inprocess import LIBRARY, close_app, fetched_cards, library_app, load_into

_SCT = "http://snomed.info/sct"
_LOINC = "http://loinc.org"


def _app(tmp_path_factory: pytest.TempPathFactory, *, bounded: bool) -> Flask:
    db = tmp_path_factory.mktemp("bounds") / "store.sqlite3"
    with pytest.MonkeyPatch.context() as patch:
        if not bounded:
            patch.setattr("cds_service.pipeline.lookbacks", lambda config: {})  # no window known: no bound
        app = library_app(db)
    client = app.extensions["dvt_cds"]["fhir_client"]
    fetch_many, sent = client.fetch_many, []

    def recording(queries: Any, **kwargs: Any) -> Any:
        queries = list(queries)
        sent.extend(q.url for q in queries)
        return fetch_many(queries, **kwargs)

    client.fetch_many = recording
    app.config["SENT_URLS"] = sent  # what this app asked the FHIR server, to check the bounds were there
    return app


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Flask]]:
    made = {"bounded": _app(tmp_path_factory, bounded=True), "unbounded": _app(tmp_path_factory, bounded=False)}
    yield made
    for app in made.values():
        close_app(app)


class _WithExtra(Library):
    """The library with resources added to every scenario's bundle."""

    def __init__(self, base: Library, extra: list[dict[str, Any]]):
        self.__dict__.update(base.__dict__)
        self.extra = extra

    def resources(self, scenario: Scenario) -> list[dict[str, Any]]:
        return super().resources(scenario) + self.extra


@pytest.mark.parametrize("scenario", LIBRARY.scenarios, ids=lambda s: s.id)
def test_every_scenario_gives_the_same_cards_with_and_without_the_bounds(
    apps: dict[str, Flask], scenario: Scenario, medplum: Any
) -> None:
    load_into(medplum, scenario)
    bounded = fetched_cards(apps["bounded"], scenario, medplum.base_url, prefetch=False)
    unbounded = fetched_cards(apps["unbounded"], scenario, medplum.base_url, prefetch=False)
    assert bounded == unbounded, json.dumps([bounded, unbounded], indent=1)[:3000]
    assert any(_windowed(url) for url in apps["bounded"].config["SENT_URLS"])
    assert not any(_windowed(url) for url in apps["unbounded"].config["SENT_URLS"])


def _windowed(url: str) -> bool:
    """A query bounded by a rule's window (the imaging reports' two years are a bound of their own, kept in both)."""
    return "date:missing=true" in url or ("&date=ge" in url and ("/Encounter?" in url or "/Procedure?" in url))


# --- records on the edges of the bounds --------------------------------------------------------------------------
BASE = LIBRARY.scenario("distal-muscular-no-risk-factors")  # serial imaging: nothing favours anticoagulation
PATIENT = {"reference": f"Patient/{next(r['id'] for r in LIBRARY.resources(BASE) if r['resourceType'] == 'Patient')}"}
ANCHOR = LIBRARY.anchor


def _day(days_before: int) -> str:
    from datetime import timedelta

    return (ANCHOR - timedelta(days=days_before)).date().isoformat()


EDGES: dict[str, dict[str, Any]] = {
    # A D-dimer dated only by `issued`: a server's `date` is effective[x], so only the undated part finds it.
    "ddimer-dated-only-by-issued": {
        "resourceType": "Observation",
        "id": "edge-ddimer",
        "status": "final",
        "subject": PATIENT,
        "code": {"coding": [{"system": _LOINC, "code": "48065-7"}]},
        "issued": f"{_day(1)}T08:00:00Z",
        "valueQuantity": {"value": 900, "unit": "ng/mL"},
        "interpretation": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H"}]}
        ],
    },
    # An open inpatient stay with no period at all: a current admission only the undated part finds.
    "undated-open-inpatient-stay": {
        "resourceType": "Encounter",
        "id": "edge-stay",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": PATIENT,
    },
    # A stay begun long before the window that ended inside it: `date=ge` matches a Period that overlaps.
    "stay-begun-before-the-window": {
        "resourceType": "Encounter",
        "id": "edge-long-stay",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": PATIENT,
        "period": {"start": f"{_day(400)}T08:00:00Z", "end": f"{_day(40)}T08:00:00Z"},
    },
    # Conditions are never bounded: an undated active cancer counts.
    "undated-condition": {
        "resourceType": "Condition",
        "id": "edge-cancer",
        "subject": PATIENT,
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C50.911"}]},
    },
    # The newest pregnancy status decides however old it is: the labs' whole-history part finds it.
    "pregnancy-status-years-old": {
        "resourceType": "Observation",
        "id": "edge-pregnant",
        "status": "final",
        "subject": PATIENT,
        "code": {"coding": [{"system": _LOINC, "code": "82810-3"}]},
        "effectiveDateTime": f"{_day(3 * 365)}T08:00:00Z",
        "valueCodeableConcept": {"coding": [{"system": _SCT, "code": "77386006"}]},
    },
}


@pytest.mark.parametrize("edge", sorted(EDGES))
def test_a_record_on_the_edge_of_a_bound_gives_the_cards_of_full_prefetch(
    apps: dict[str, Flask], edge: str, medplum: Any
) -> None:
    library = _WithExtra(LIBRARY, [EDGES[edge]])
    load_into(medplum, BASE, library)
    bounded = fetched_cards(apps["bounded"], BASE, medplum.base_url, prefetch=False, library=library)
    unbounded = fetched_cards(apps["unbounded"], BASE, medplum.base_url, prefetch=False, library=library)
    prefetched = fetched_cards(apps["bounded"], BASE, medplum.base_url, prefetch=True, library=library)
    assert bounded == unbounded == prefetched
    load_into(medplum, BASE)
    assert bounded != fetched_cards(apps["bounded"], BASE, medplum.base_url, prefetch=False), "the edge mattered"
