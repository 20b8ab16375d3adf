"""The service in-process for tests: an app over the fixture library, a Flask test client as replay's transport,
replay's FHIR server for scenarios that need one, closing what an app opened, and the whole library called under
one EHR profile (the scenario-wide checks of card limits and of R4 suggestions read the same calls)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask

from cds_service.app import create_app
from cds_service.replay.fhirserver import ScenarioFhirServer
from cds_service.replay.runner import CallOutcome, Post, Runner
from cds_service.replay.scenarios import Library, Scenario, with_fhir_base
from cds_service.settings import Settings

LIBRARY = Library(Path(__file__).resolve().parents[1] / "fhir_fixtures")
CONCEPT_MAP = LIBRARY.folder / "conceptmaps" / "example-site.json"  # the site map the vendor scenarios assume
BASE_URL = "https://cds.hospital.example"


def library_app(store: Path, **overrides: Any) -> Flask:
    """The service as the scenarios expect it: authentication off, the site ConceptMap loaded, the clock at the
    library's anchor, its store at ``store``; ``overrides`` are further settings (an EHR profile, a public URL)."""
    settings = Settings(auth="off", database_url=f"sqlite:///{store}", concept_maps=[str(CONCEPT_MAP)], **overrides)
    return create_app(settings, clock=lambda: LIBRARY.anchor)


def close_app(app: Flask) -> None:
    """Release the app's audit writer, FHIR client pool and store (threads and files a test must not leak)."""
    parts = app.extensions["dvt_cds"]
    parts["audit"].close()
    parts["fhir_client"].close()
    parts["store"].close()


def transport(app: Flask) -> tuple[Post, dict[str, Any]]:
    """Replay's ``post`` through the app's test client, and the app's discovery document."""
    client = app.test_client()

    def post(service_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        response = client.post(f"/cds-services/{service_id}", json=body)
        return response.status_code, response.get_json()

    return post, client.get("/cds-services").get_json()


def library_runner(
    post: Post,
    discovery: dict[str, Any],
    fhir_server: str | None = None,
    *,
    use_prefetch: bool = True,
    library: Library = LIBRARY,
) -> Runner:
    """Replay's runner over ``library`` with the clock at its anchor (the scenarios' dates unshifted)."""
    return Runner(
        library, post=post, discovery=discovery, now=library.anchor, fhir_server=fhir_server, use_prefetch=use_prefetch
    )


def without_uuids(value: Any) -> Any:
    """A response with every card and suggestion uuid taken out (they are new on each call)."""
    if isinstance(value, dict):
        return {k: without_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [without_uuids(v) for v in value]
    return value


def load_into(medplum: Any, scenario: Scenario, library: Library = LIBRARY) -> None:
    """The scenario's resources, alone, on the test Medplum server (references rebased onto it)."""
    medplum.reset()
    resources = with_fhir_base(library.resources(scenario), medplum.base_url)
    medplum.load({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]})


def fetched_cards(
    app: Flask, scenario: Scenario, fhir_server: str, *, prefetch: bool, library: Library = LIBRARY
) -> list[Any]:
    """Each call's status and uuid-free body, the service reading ``fhir_server`` (with or without prefetch)."""
    post, discovery = transport(app)
    runner = library_runner(post, discovery, fhir_server, use_prefetch=prefetch, library=library)
    return [(o.status, without_uuids(o.body)) for o in runner.run(scenario)]


@contextmanager
def scenario_fhir_server(scenario: Scenario) -> Iterator[str | None]:
    """The base URL of replay's loopback FHIR server holding the scenario when the scenario needs one (its EHR
    sends an OperationOutcome, drops a key or paginates), else None."""
    if not LIBRARY.needs_fhir_server(scenario):
        yield None
        return
    with ScenarioFhirServer(LIBRARY.resources(scenario)) as server:
        yield server.base_url


def library_outcomes(profile: str, store: Path) -> list[tuple[Scenario, CallOutcome]]:
    """Every call of every scenario, made in-process under ``profile``."""
    app = library_app(store, ehr_profile=profile, public_base_url=BASE_URL)
    post, discovery = transport(app)
    found: list[tuple[Scenario, CallOutcome]] = []
    try:
        for scenario in LIBRARY.scenarios:
            with scenario_fhir_server(scenario) as fhir_server:
                found += [(scenario, outcome) for outcome in library_runner(post, discovery, fhir_server).run(scenario)]
    finally:
        close_app(app)
    return found
