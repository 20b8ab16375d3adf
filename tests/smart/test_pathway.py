"""The pathway view's model and page for every fixture scenario, from the clinical core's own reading of the record
(no HTTP): every page renders, names its sources in words, and places every thrombosed vein."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from flask import Flask

from cds_service.app import create_app
from cds_service.clinical.assessment import Assessment, assess
from cds_service.clinical.config import RuleConfig
from cds_service.clinical.facts import build_facts
from cds_service.clinical.model import ClinicalFacts
from cds_service.fhir.conceptmaps import SiteConceptMaps
from cds_service.fhir.record import PatientRecord
from cds_service.replay.scenarios import Scenario, patient_id
from cds_service.settings import Settings
from cds_service.smart.pathway import Pathway, build_pathway, surveillance
from cds_service.smart.views import render_pathway
from tests.smart.conftest import CONCEPT_MAP, LIBRARY

TODAY = LIBRARY.anchor.date()
MAPS = SiteConceptMaps.load([str(CONCEPT_MAP)])
RAW_REFERENCE = re.compile(
    r"\b(Condition|Observation|DiagnosticReport|MedicationRequest|Medication|Encounter|Procedure|ServiceRequest|"
    r"Patient|Binary)/[A-Za-z0-9\-.]+"
)


def evaluate(scenario_id: str, today: date = TODAY) -> tuple[PatientRecord, ClinicalFacts, Assessment]:
    resources = LIBRARY.resources(LIBRARY.scenario(scenario_id))
    record = PatientRecord(patient_id=patient_id(resources))
    record.add(resources)
    record.finish()
    MAPS.apply_record(record)
    facts = build_facts(record, today=today, config=RuleConfig())
    return record, facts, assess(facts, today=today, config=RuleConfig())


def model(scenario_id: str) -> Pathway:
    record, facts, assessment = evaluate(scenario_id)
    return build_pathway(record, facts, assessment, today=TODAY, banner=True)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    db = tmp_path_factory.mktemp("render") / "store.sqlite3"
    app = create_app(Settings(auth="off", database_url=f"sqlite:///{db}", smart_client_id="c"))
    yield app
    for name in ("audit", "fhir_client", "store"):
        app.extensions["dvt_cds"][name].close()


@pytest.mark.parametrize("scenario", LIBRARY.scenarios, ids=lambda s: s.id)
def test_every_scenario_renders_with_sources_in_words(app: Flask, scenario: Scenario) -> None:
    record, facts, assessment = evaluate(scenario.id)
    page = build_pathway(record, facts, assessment, today=TODAY, banner=True)
    with app.test_request_context("/smart/pathway/" + "a" * 22):
        html = render_pathway(page, static="../static/")
    assert "<svg" in html
    assert RAW_REFERENCE.search(html) is None, RAW_REFERENCE.search(html)
    placed = {(m.side, m.name) for m in page.diagram.marks} | {("?", words) for words in page.diagram.unplaced}
    for thrombosis in (t for t in facts.thromboses if t.acute):
        for vein in thrombosis.veins:
            assert any(name == vein.name or vein.name in name or not vein.specific for _, name in placed), vein


def test_gastrocnemius_dvt_is_drawn_on_the_right_leg_with_the_scans_to_order() -> None:
    page = model("distal-muscular-no-risk-factors")
    assert [(m.side, m.drawn, m.state) for m in page.diagram.marks] == [("right", "gastrocnemius", "thrombus")]
    assert page.recommendation == "Distal DVT: serial duplex imaging recommended"
    assert [(s.day, s.status) for s in page.schedule.scans] == [(7, "proposed"), (14, "proposed")]
    assert page.schedule.scans[0].target == TODAY + timedelta(days=7)
    assert [f.label for f in page.for_serial_imaging] == ["confined to the muscular calf veins"]
    assert page.for_anticoagulation == []


def test_extension_within_the_calf_is_the_new_vein() -> None:
    page = model("extension-new-calf-vein")
    marks = {(m.side, m.drawn): m for m in page.diagram.marks}
    assert marks[("left", "gastrocnemius")].state == "thrombus"
    assert marks[("left", "peroneal")].state == "extension"
    assert marks[("left", "peroneal")].first_seen == date(2026, 3, 13)
    assert page.diagram.extension == "thrombus now also in the peroneal vein"
    assert [(s.day, s.status) for s in page.schedule.scans] == [(7, "done"), (14, "superseded")]
    flagged = [e for e in page.timeline if "extension" in e.flags]
    assert [e.when for e in flagged] == [date(2026, 3, 13)]


def test_extension_into_the_popliteal_vein_is_proximal() -> None:
    page = model("extension-into-popliteal")
    extended = [m for m in page.diagram.marks if m.state == "extension"]
    assert [(m.drawn, m.vein_class.value) for m in extended] == [("popliteal", "proximal")]


def test_a_longer_thrombus_is_drawn_as_grown() -> None:
    page = model("extension-longer-thrombus")
    assert [m.drawn for m in page.diagram.marks if m.grew] == ["posterior-tibial"]
    assert all(m.state == "thrombus" for m in page.diagram.marks)
    assert "longer" in (page.diagram.extension or "")


def test_the_other_leg_never_imaged_is_said() -> None:
    page = model("bilateral-surveillance-right-only")
    legs = {leg.side: leg for leg in page.diagram.legs}
    assert legs["right"].imaged
    assert not legs["left"].imaged
    assert "Left leg: no thrombus recorded (never imaged)." in page.diagram.description


def test_a_repeat_scan_done_fills_day_7() -> None:
    page = model("surveillance-repeat-performed")
    assert page.schedule.scans[0].status == "done"
    assert any("day 7 scan" in e.flags for e in page.timeline)


def test_an_ordered_scan_becomes_overdue_when_its_date_passes() -> None:
    _, facts, assessment = evaluate("surveillance-repeat-ordered")
    now = surveillance(facts, assessment, TODAY)
    ordered = [s for s in now.scans if s.status == "ordered"]
    assert ordered
    order = next(p for p in facts.planned_imaging if not p.done)
    assert order.due is not None
    later = surveillance(facts, assessment, order.due + timedelta(days=1))
    assert "overdue" in [s.status for s in later.scans]
    assert any(s.words.startswith("overdue: ordered for") for s in later.scans)


def test_anticoagulated_has_no_schedule_and_shows_the_order() -> None:
    page = model("distal-on-treatment-apixaban")
    assert page.schedule.scans == []
    assert page.regimen is None
    orders = [e for e in page.timeline if e.kind == "anticoagulant"]
    assert [e.title for e in orders] == ["Apixaban ordered"]
    assert "10 mg a day, treatment dose" in orders[0].details


def test_sources_are_clinical_words_with_a_date() -> None:
    page = model("distal-axial-positive-ddimer")
    ddimer = next(f for f in page.for_anticoagulation if f.label == "positive D-dimer")
    assert ddimer.sources[0].what.startswith("D-dimer ")
    assert ddimer.sources[0].when is not None
    assert ddimer.guideline == "CHEST"


def test_seed_only_factors_say_so() -> None:
    page = model("recent-hospitalization-seed")
    seed = [f for f in page.for_anticoagulation if "not in CHEST" in f.guideline]
    assert seed


def test_bleeding_risk_lists_its_factors_and_what_was_not_assessed_once() -> None:
    page = model("shared-decision-high-bleeding")
    assert page.bleeding is not None
    assert page.bleeding.category == "high"
    assert len(page.bleeding.factors) >= 2
    everything = page.not_assessed + page.bleeding.not_assessed
    assert len(everything) == len(set(everything))
    assert not any(item.startswith("bleeding factor not assessed") for item in page.not_assessed)


def test_undocumented_veins_are_listed_not_drawn() -> None:
    page = model("location-unknown-icd")
    assert page.diagram.marks == [] or all(m.is_region for m in page.diagram.marks)
    assert page.diagram.unplaced == ["leg not recorded: veins not documented"]
