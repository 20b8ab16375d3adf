"""The pathway view's test stack, all real and on loopback: Medplum (the FHIR server, loaded with fixture
scenarios), the SMART test server in front of it (tests/smart/authserver.py), and the service in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from cds_service.app import create_app
from cds_service.replay.scenarios import Library, with_fhir_base
from cds_service.settings import Settings
from tests.fastserver import POLL_S
from tests.smart.authserver import SmartTestServer

LIBRARY = Library(Path(__file__).resolve().parents[2] / "fhir_fixtures")
CONCEPT_MAP = LIBRARY.folder / "conceptmaps" / "example-site.json"
CLIENT_ID = "dvt-pathway-test"
SESSION_KEY = "test-only session key: 32 characters or more, never used outside tests"
# The patients the pathway tests open (fixture scenario ids; the Patient id is the scenario id).
PATIENTS = (
    "distal-muscular-no-risk-factors",  # gastrocnemius DVT, serial imaging recommended
    "extension-new-calf-vein",  # gastrocnemius DVT that extended into the peroneal vein on the day-7 scan
    "distal-on-treatment-apixaban",  # peroneal DVT on apixaban
    "shared-decision-high-bleeding",  # factors on both sides, high bleeding risk
    "surveillance-repeat-ordered",  # repeat duplex ordered
)


def load_patients(medplum: Any, patients: tuple[str, ...] = PATIENTS) -> None:
    medplum.reset()
    for scenario_id in patients:
        resources = with_fhir_base(LIBRARY.resources(LIBRARY.scenario(scenario_id)), medplum.base_url)
        medplum.load({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]})


@dataclass
class Service:
    url: str
    app: Flask
    server: BaseWSGIServer

    def launch_url(self, iss: str, launch: str) -> str:
        from urllib.parse import urlencode

        return f"{self.url}/smart/launch?{urlencode({'iss': iss, 'launch': launch})}"


def start_service(tmp: Path, smart: SmartTestServer | None, **overrides: Any) -> tuple[Service, threading.Thread]:
    """The service on a free loopback port; its public base URL is known only once the port is bound, so the
    server starts with a stand-in that hands each request to the app built next."""
    holder: dict[str, Flask] = {}
    server = make_server("127.0.0.1", 0, lambda env, start: holder["app"](env, start), threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    values: dict[str, Any] = {
        "auth": "off",
        "host": "127.0.0.1",
        "database_url": f"sqlite:///{tmp / 'store.sqlite3'}",
        "public_base_url": url,
        "concept_maps": [str(CONCEPT_MAP)],
        "smart_client_id": CLIENT_ID,
        "smart_session_key": SESSION_KEY,
        "fhir_server_allowlist": [smart.fhir_base] if smart is not None else [],
    }
    values.update(overrides)
    app = create_app(Settings(**values), clock=lambda: LIBRARY.anchor)
    holder["app"] = app
    if smart is not None:
        smart.redirect_uris.add(f"{url}/smart/callback")
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_S}, name="pathway-service", daemon=True
    )
    thread.start()
    return Service(url, app, server), thread


def stop_service(service: Service, thread: threading.Thread) -> None:
    service.server.shutdown()
    service.server.server_close()
    thread.join(timeout=5)
    for name in ("audit", "fhir_client", "store"):
        service.app.extensions["dvt_cds"][name].close()


@pytest.fixture(scope="module")
def smart(medplum: Any) -> Iterator[SmartTestServer]:
    load_patients(medplum)
    with SmartTestServer(medplum.base_url, client_id=CLIENT_ID) as server:
        yield server


@pytest.fixture(scope="module")
def service(smart: SmartTestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    running, thread = start_service(tmp_path_factory.mktemp("pathway"), smart)
    yield running
    stop_service(running, thread)


@pytest.fixture(autouse=True)
def _healthy_ehr(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with the EHR answering; a fault a test switches on does not outlive it."""
    yield
    if "smart" in request.fixturenames:
        server: SmartTestServer = request.getfixturevalue("smart")
        server.token_error = None
        server.fhir_down = False
        server.need_patient_banner = False
