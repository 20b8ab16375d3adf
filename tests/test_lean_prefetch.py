"""DVT_CDS_PREFETCH=lean: patient-view and encounter-discharge ask the EHR only for the Patient, the DVT-coded
Conditions and the venous duplex studies, and read the rest from fhirServer only when a DVT is in view.

Both data paths give the same cards for every fixture scenario: lean with the EHR prefetching the lean templates
(as each scenario shapes them), and lean with nothing prefetched, against full prefetch, on the real FHIR server
(Medplum). A chart without a DVT costs the EHR the screen only: nothing beyond the prefetch, or one batch."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from cds_service.clinical.config import RuleConfig
from cds_service.clinical.screen import dvt_in_view
from cds_service.fhir.record import PatientRecord
from cds_service.replay.scenarios import Scenario
from hooks import templates
from tests import builders as b
from tests.inprocess import LIBRARY, close_app, fetched_cards, library_app, load_into

SCREEN = ["patient", "dvtConditions", "ultrasound", "ultrasoundReports", "imagingReports"]


def _app(tmp_path_factory: pytest.TempPathFactory, prefetch: str, **values: Any) -> Flask:
    db = tmp_path_factory.mktemp("lean") / "store.sqlite3"
    app = library_app(db, prefetch=prefetch, **values)
    client = app.extensions["dvt_cds"]["fhir_client"]
    fetch_many, sent = client.fetch_many, []

    def recording(queries: Any, **kwargs: Any) -> Any:
        queries = list(queries)
        sent.append([q.key for q in queries])
        return fetch_many(queries, **kwargs)

    client.fetch_many = recording
    app.config["ROUNDS"] = sent  # the keys of each round of queries this app sent
    return app


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Flask]]:
    made = {
        "full": _app(tmp_path_factory, "full"),
        "lean": _app(tmp_path_factory, "lean"),
        "lean-batch": _app(tmp_path_factory, "lean", fhir_batch="auto"),
    }
    yield made
    for app in made.values():
        close_app(app)


def test_discovery_under_lean_asks_for_the_screen_only(apps: dict[str, Flask]) -> None:
    services = {s["id"]: s for s in apps["lean"].test_client().get("/cds-services").get_json()["services"]}
    assert list(services["distal-dvt-patient-view"]["prefetch"]) == SCREEN
    assert list(services["distal-dvt-encounter-discharge"]["prefetch"]) == SCREEN
    full = {s["id"]: s for s in apps["full"].test_client().get("/cds-services").get_json()["services"]}
    for order_hook in ("distal-dvt-order-select", "distal-dvt-order-sign"):
        assert services[order_hook]["prefetch"] == full[order_hook]["prefetch"]  # order checks read everything
    dvt = services["distal-dvt-patient-view"]["prefetch"]["dvtConditions"]
    assert "I82.462," in dvt  # the DVT codes, in any system (OIDs, MIMIC's), dotted or not
    assert "I82462," in dvt


@pytest.mark.parametrize("scenario", LIBRARY.scenarios, ids=lambda s: s.id)
def test_every_scenario_gives_the_same_cards_lean_and_full(
    apps: dict[str, Flask], scenario: Scenario, medplum: Any
) -> None:
    load_into(medplum, scenario)
    full = fetched_cards(apps["full"], scenario, medplum.base_url, prefetch=True)
    lean = fetched_cards(apps["lean"], scenario, medplum.base_url, prefetch=True)
    lean_fetched = fetched_cards(apps["lean"], scenario, medplum.base_url, prefetch=False)
    assert lean == full, json.dumps([lean, full], indent=1)[:3000]
    assert lean_fetched == full, json.dumps([lean_fetched, full], indent=1)[:3000]


# --- what a chart open costs -------------------------------------------------------------------------------------
NO_DVT = [b.condition("I10", display="Essential hypertension", onset=400), b.encounter(start=30, end=28)]
WITH_DVT = [b.muscular_dvt(), b.ddimer(900, interpretation="H", days=2)]


def _chart_open(app: Flask, medplum: Any, resources: list[dict[str, Any]], *, prefetch: dict | None) -> Any:
    medplum.reset()
    medplum.load(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in [b.patient(), *resources]]}
    )
    app.config["ROUNDS"].clear()
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": b.PATIENT_ID},
        "fhirServer": medplum.base_url,
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    response = app.test_client().post("/cds-services/distal-dvt-patient-view", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _lean_prefetch(resources: list[dict[str, Any]]) -> dict[str, Any]:
    full = b.prefetch_for(resources)
    entries = full["conditions"].get("entry", [])
    dvt = [e for e in entries if e["resource"]["code"]["coding"][0]["code"].startswith("I82")]
    return {
        "patient": full["patient"],
        "dvtConditions": {**full["conditions"], "entry": dvt, "total": len(dvt)},
        "ultrasound": full["ultrasound"],
        "ultrasoundReports": full["ultrasoundReports"],
        "imagingReports": b.bundle(),
    }


def test_a_chart_without_a_dvt_asks_nothing_beyond_the_lean_prefetch(apps: dict[str, Flask], medplum: Any) -> None:
    answer = _chart_open(apps["lean"], medplum, NO_DVT, prefetch=_lean_prefetch(NO_DVT))
    assert answer == {"cards": []}
    assert apps["lean"].config["ROUNDS"] == []


def test_a_chart_without_a_dvt_and_nothing_prefetched_costs_one_batch(apps: dict[str, Flask], medplum: Any) -> None:
    app = apps["lean-batch"]
    assert app.extensions["dvt_cds"]["fhir_client"].capabilities.refresh(medplum.base_url) is True
    assert _chart_open(app, medplum, NO_DVT, prefetch=None) == {"cards": []}
    assert app.config["ROUNDS"] == [SCREEN]  # one round: one batch POST of the five screen queries


def test_a_dvt_in_view_reads_the_rest_from_fhir_server(apps: dict[str, Flask], medplum: Any) -> None:
    answer = _chart_open(apps["lean"], medplum, WITH_DVT, prefetch=_lean_prefetch(WITH_DVT))
    rest = ["conditions", "ddimer", "labs", "medications", "encounters", "procedures", "imagingOrders"]
    assert [sorted({k.split("#")[0] for k in round_}) for round_ in apps["lean"].config["ROUNDS"]] == [sorted(rest)]
    full = _chart_open(apps["full"], medplum, WITH_DVT, prefetch=b.prefetch_for(WITH_DVT))
    assert [c["summary"] for c in answer["cards"]] == [c["summary"] for c in full["cards"]]
    assert answer["cards"]


def test_without_fhir_server_the_rest_is_named_as_not_read(apps: dict[str, Flask]) -> None:
    body = b.hook_request("patient-view", prefetch=_lean_prefetch(WITH_DVT))
    response = apps["lean"].test_client().post("/cds-services/distal-dvt-patient-view", json=body)
    assert response.status_code == 200  # the screen had what a call cannot do without
    detail = " ".join(c.get("detail", "") for c in response.get_json()["cards"])
    assert "no fhirServer" in detail or "not available" in detail or "could not" in detail.lower()


# --- the decision itself -----------------------------------------------------------------------------------------
def _record(*resources: dict[str, Any]) -> PatientRecord:
    record = PatientRecord(patient_id=b.PATIENT_ID)
    record.add([b.patient(), *resources])
    return record.finish()


@pytest.mark.parametrize(
    ("resources", "in_view"),
    [
        ([], False),
        ([b.condition("I82.5Z2", display="Chronic DVT", onset=800)], False),  # an old, chronic one: no card
        ([b.muscular_dvt()], True),
        ([b.muscular_dvt(onset=400)], False),  # long ago: an earlier episode, not this one
        ([b.muscular_dvt(onset=None)], True),  # undated: treated as current
        ([b.muscular_dvt(verification="unconfirmed")], True),  # suspected
        ([b.muscular_dvt(verification="refuted")], False),
        ([b.duplex(days=3)], True),  # a recent study, whatever it shows
        ([b.duplex(days=300)], False),
    ],
)
def test_a_dvt_is_in_view(resources: list[dict[str, Any]], in_view: bool) -> None:
    assert dvt_in_view(_record(*resources), today=b.TODAY, config=RuleConfig()) is in_view


def test_an_unreadable_dvt_condition_is_in_view() -> None:
    broken = b.muscular_dvt()
    broken["onsetDateTime"] = "not a date"  # fails R4 validation: the card says it could not be read
    assert dvt_in_view(_record(broken), today=b.TODAY, config=RuleConfig())


def test_the_screen_leaves_the_record_as_it_was() -> None:
    broken = b.muscular_dvt()
    broken["onsetDateTime"] = "not a date"
    record = _record(broken)
    dvt_in_view(record, today=b.TODAY, config=RuleConfig())
    assert record.notes == []
    assert record._typed == {}


def test_the_screen_keys_are_the_lean_templates() -> None:
    assert [k.name for k in templates.SCREEN] == SCREEN
