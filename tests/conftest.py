"""Shared fixtures: an isolated store per test, the app with a fixed clock, and a threaded FHIR test server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings as hypothesis_settings
from pytest_httpserver import HTTPServer

from cds_service.app import create_app
from cds_service.settings import Settings
from cds_service.store import Store
from tests.builders import NOW
from tests.fastserver import FastStopHTTPServer
from tests.inprocess import close_app

# `make test` is the same run every time (a flaky test is a bug): generated inputs come from a fixed seed and no
# example database is read or written. `make fuzz` explores (random, with its database under .hypothesis/, which is
# git-ignored): a failure it finds becomes a named test.
hypothesis_settings.register_profile("suite", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("fuzz", derandomize=False)
hypothesis_settings.load_profile("suite")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite3'}"


@pytest.fixture
def make_settings(db_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        # Batch off unless a test asks for it: its background CapabilityStatement read is one request more, at a
        # moment of its own, in the logs of the fake servers (tests/fhir/test_batch.py and the scenarios test it).
        values: dict[str, Any] = {"auth": "off", "database_url": db_url, "host": "127.0.0.1", "fhir_batch": "off"}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def make_app(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        app = create_app(make_settings(**overrides), clock=lambda: NOW)
        app.testing = False  # exercise the real error handlers
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def store(app: Flask) -> Store:
    return app.extensions["dvt_cds"]["store"]


def _threaded_server() -> Iterator[HTTPServer]:
    server = FastStopHTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def fhir_server() -> Iterator[HTTPServer]:
    """A threaded fake FHIR server on loopback (fault injection: delays, errors, garbage)."""
    yield from _threaded_server()


@pytest.fixture
def other_server() -> Iterator[HTTPServer]:
    """A second host: anything it receives would be a token sent to the wrong place."""
    yield from _threaded_server()


@pytest.fixture(scope="session")
def medplum() -> Iterator[Any]:
    """A real FHIR server (Medplum's FHIR router, in memory) for the fetch path; `make test` installs it. It pages as
    Medplum's server does: 20 results a page without `_count`, at most 1000 with it."""
    from tests.medplum_server import MEDPLUM_MAX_COUNT, MEDPLUM_PAGE_SIZE, MedplumServer

    server = MedplumServer(page_size=MEDPLUM_PAGE_SIZE, max_count=MEDPLUM_MAX_COUNT)
    server.start()
    yield server
    server.stop()
