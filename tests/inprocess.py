"""The service in-process for tests: closing what an app opened, and the whole fixture library called against it
(the scenario-wide checks of card limits and of R4 suggestions read the same calls)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from cds_service.app import create_app
from cds_service.replay.fhirserver import ScenarioFhirServer
from cds_service.replay.runner import CallOutcome, Runner
from cds_service.replay.scenarios import Library, Scenario
from cds_service.settings import Settings

LIBRARY = Library(Path(__file__).resolve().parents[1] / "fhir_fixtures")
CONCEPT_MAP = LIBRARY.folder / "conceptmaps" / "example-site.json"
BASE_URL = "https://cds.hospital.example"


def close_app(app: Flask) -> None:
    """Release the app's audit writer, FHIR client pool and store (threads and files a test must not leak)."""
    parts = app.extensions["dvt_cds"]
    parts["audit"].close()
    parts["fhir_client"].close()
    parts["store"].close()


def library_outcomes(profile: str, store: Path) -> list[tuple[Scenario, CallOutcome]]:
    """Every call of every scenario, made in-process under ``profile`` (the site ConceptMap loaded, the clock at the
    library's anchor); a scenario that needs a FHIR server gets replay's own on loopback."""
    settings = Settings(
        auth="off",
        database_url=f"sqlite:///{store}",
        concept_maps=[str(CONCEPT_MAP)],
        ehr_profile=profile,
        public_base_url=BASE_URL,
    )
    app = create_app(settings, clock=lambda: LIBRARY.anchor)
    client = app.test_client()
    discovery = client.get("/cds-services").get_json()

    def post(service_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        response = client.post(f"/cds-services/{service_id}", json=body)
        return response.status_code, response.get_json()

    found: list[tuple[Scenario, CallOutcome]] = []
    try:
        for scenario in LIBRARY.scenarios:
            if LIBRARY.needs_fhir_server(scenario):
                with ScenarioFhirServer(LIBRARY.resources(scenario)) as server:
                    runner = Runner(
                        LIBRARY, post=post, discovery=discovery, now=LIBRARY.anchor, fhir_server=server.base_url
                    )
                    outcomes = runner.run(scenario)
            else:
                outcomes = Runner(LIBRARY, post=post, discovery=discovery, now=LIBRARY.anchor).run(scenario)
            found += [(scenario, outcome) for outcome in outcomes]
    finally:
        close_app(app)
    return found
