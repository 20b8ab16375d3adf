"""The scenario library itself: valid R4, resolvable references, unique ids, README in step with the manifest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from cds_service.clinical.topics import Topic
from cds_service.fhir.record import model_class
from cds_service.replay.readme import render
from cds_service.replay.scenarios import Library, patient_id
from cds_service.replay.search import search

FOLDER = Path(__file__).resolve().parents[1] / "fhir_fixtures"
LIBRARY = Library(FOLDER)


def all_files() -> list[str]:
    files = {s.bundle for s in LIBRARY.scenarios}
    files |= {c.draft_orders for s in LIBRARY.scenarios for c in s.calls if c.draft_orders}
    return sorted(files)


def test_every_file_is_named_by_the_manifest() -> None:
    on_disk = {str(p.relative_to(FOLDER)) for p in (FOLDER / "scenarios").glob("*.json")}
    assert on_disk == set(all_files())


@pytest.mark.parametrize("path", all_files())
def test_every_resource_validates_as_r4(path: str) -> None:
    bundle = LIBRARY.read(path)
    model_class("Bundle").model_validate(bundle)
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        model_class(resource["resourceType"]).model_validate(resource)


@pytest.mark.parametrize("scenario", LIBRARY.scenarios, ids=lambda s: s.id)
def test_references_resolve_inside_the_bundle(scenario) -> None:
    resources = LIBRARY.resources(scenario)
    known = {f"{r['resourceType']}/{r['id']}" for r in resources}
    for call in scenario.calls:
        drafts = LIBRARY.drafts(call)
        if drafts:
            known |= {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in drafts["entry"]}
            for selection in call.selections or []:
                assert selection in known, selection
    assert patient_id(resources) == scenario.id  # one Patient per scenario, named after it

    def walk(value, where):
        if isinstance(value, dict):
            ref = value.get("reference")
            if isinstance(ref, str) and not ref.startswith("#"):
                assert ref in known, f"{where}: {ref} does not resolve"
            for key, child in value.items():
                walk(child, f"{where}.{key}")
        elif isinstance(value, list):
            for child in value:
                walk(child, where)

    for resource in resources:
        walk(resource, f"{resource['resourceType']}/{resource['id']}")


def test_resource_ids_are_unique_across_the_library() -> None:
    counts = Counter((r["resourceType"], r["id"]) for s in LIBRARY.scenarios for r in LIBRARY.resources(s))
    assert [key for key, n in counts.items() if n > 1] == []


def test_the_library_covers_the_hooks_and_is_large_enough() -> None:
    assert len(LIBRARY.scenarios) >= 30
    hooks = {c.hook for s in LIBRARY.scenarios for c in s.calls}
    assert hooks == {"patient-view", "order-select", "order-sign", "encounter-discharge"}
    topics = {card.topic for s in LIBRARY.scenarios for c in s.calls for card in c.expect.cards}
    # Every card topic is exercised by a scenario but one: a draft order too malformed to read cannot be a
    # fixture's EHR request (the order checks' own tests send it: tests/profiles/test_dialects.py).
    assert topics == {topic.value for topic in Topic} - {Topic.DRAFT_ORDER_NOT_CHECKED.value}


def test_every_template_query_of_every_scenario_is_answerable() -> None:
    """The replay's search emulator understands every query the templates make."""
    from cds_service.fhir.prefetch import render as render_template
    from hooks import SERVICES

    for scenario in LIBRARY.scenarios:
        resources = LIBRARY.resources(scenario)
        context = {"patientId": scenario.id, "encounterId": "x", "userId": "Practitioner/p"}
        for service in SERVICES:
            for key in service.prefetch:
                search(render_template(key.template, context), resources)


def test_readme_is_generated_from_the_manifest() -> None:
    assert (FOLDER / "README.md").read_text(encoding="utf-8") == render(LIBRARY), (
        "regenerate: python -m cds_service.replay.readme > fhir_fixtures/README.md"
    )
