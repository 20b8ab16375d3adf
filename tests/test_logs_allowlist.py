"""The PHI allowlist of cds_service/logs.py, in-process (issue 17): the real logging setup (``configure_logging``,
its ``JsonFormatter`` on the root logger) writing to a buffer, then the lines read back as JSON. A field outside
``ALLOWED_FIELDS`` is dropped; an exception reaches the log only as its type (never its message, however it is
passed); a token never appears — neither the caller's JWT nor the FHIR access token, in the service's own calls."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from cds_service import pipeline
from cds_service.logs import ALLOWED_FIELDS, ServerLogFormatter, configure_logging, log_fields
from tests.builders import condition, hook_request

SECRET = "Patient/pat-secret-4711 Jane Doe DOB 1970-05-01"
JWT = "eyJhbGciOiJFUzM4NCJ9.eyJzdWIiOiJwYXQtc2VjcmV0In0.c2lnbmF0dXJlLXNlY3JldA"
ACCESS_TOKEN = "opaque-fhir-access-token-5f2b9c"


class Captured:
    def __init__(self, buffer: io.StringIO) -> None:
        self._buffer = buffer

    @property
    def text(self) -> str:
        return self._buffer.getvalue()

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    """``configure_logging`` as the service runs it, its stderr a buffer; the root logger restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    configure_logging("DEBUG")
    try:
        yield Captured(buffer)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


log = logging.getLogger("cds_service.test_logs_allowlist")


def test_the_setup_is_the_json_formatter_on_the_root_logger(logs: Captured) -> None:
    log_fields(log, logging.INFO, "hook answered", hookInstance="h-1", status=200, duration_ms=12)
    (line,) = logs.lines
    assert line["msg"] == "hook answered"
    assert line["level"] == "INFO"
    assert (line["hookInstance"], line["status"], line["duration_ms"]) == ("h-1", 200, 12)


def test_a_field_outside_the_allowlist_is_dropped(logs: Captured) -> None:
    outside = {"patient": SECRET, "patientId": SECRET, "note": SECRET, "authorization": f"Bearer {JWT}"}
    assert not set(outside) & ALLOWED_FIELDS
    log_fields(log, logging.WARNING, "fetch failed", hookInstance="h-2", **outside)
    log.info("extra attributes", extra={"patient": SECRET, "fields": {"token": ACCESS_TOKEN, "count": 3}})
    first, second = logs.lines
    assert set(first) == {"ts", "level", "logger", "msg", "hookInstance"}
    assert set(second) == {"ts", "level", "logger", "msg", "count"}
    assert SECRET not in logs.text
    assert ACCESS_TOKEN not in logs.text
    assert JWT not in logs.text


def test_every_allowed_field_is_written(logs: Captured) -> None:
    log_fields(log, logging.INFO, "all", **{name: f"v-{name}" for name in ALLOWED_FIELDS})
    (line,) = logs.lines
    assert {name: line[name] for name in ALLOWED_FIELDS} == {name: f"v-{name}" for name in ALLOWED_FIELDS}


def _raise(message: str = SECRET) -> None:
    raise ValueError(message)


def test_an_exception_reaches_the_log_only_as_its_type(logs: Captured) -> None:
    try:
        _raise()
    except ValueError as error:
        log.exception("with exc_info")  # the usual way
        log.error("as an argument: %s", error)  # the ways that would print its message
        log.error("as a mapping argument: %(e)s", {"e": error})
        log.error(error)
        log_fields(log, logging.ERROR, "as a field", error=error, errors=[error], reason={"why": error})
        log.warning("as an extra attribute", extra={"errors": error})
    try:
        try:
            _raise()
        except ValueError as inner:
            raise RuntimeError(f"wrapped: {inner}") from inner
    except RuntimeError:
        log.exception("chained")
    lines = logs.lines
    assert SECRET not in logs.text
    assert "pat-secret" not in logs.text
    by_msg = {line["msg"]: line for line in lines}
    assert by_msg["with exc_info"]["exception"]["type"] == "ValueError"
    assert any(frame.startswith("test_logs_allowlist.py:") for frame in by_msg["with exc_info"]["exception"]["at"])
    assert "as an argument: ValueError" in by_msg
    assert "as a mapping argument: ValueError" in by_msg
    assert "ValueError" in by_msg
    assert by_msg["as a field"]["error"] == "ValueError"
    assert by_msg["as a field"]["errors"] == ["ValueError"]
    assert by_msg["as a field"]["reason"] == {"why": "ValueError"}
    assert by_msg["as an extra attribute"]["errors"] == "ValueError"
    assert by_msg["chained"]["exception"]["type"] == "RuntimeError"


def test_credentials_are_redacted_even_in_a_message(logs: Captured) -> None:
    log.warning("a library quoting a header: Authorization: Bearer %s", ACCESS_TOKEN)
    log.warning("a token quoted: %s", JWT)
    assert ACCESS_TOKEN not in logs.text
    assert JWT not in logs.text
    assert logs.text.count("[redacted]") == 2


def test_server_lines_lose_query_strings_and_exception_messages() -> None:
    record = logging.LogRecord(
        "gunicorn.error", logging.ERROR, __file__, 1, "Error handling request %s: %s", None, None
    )
    record.args = ("/smart/launch?iss=https://ehr&launch=pat-secret-4711", ValueError(SECRET))
    line = json.loads(ServerLogFormatter().format(record))
    assert line["msg"] == "Error handling request /smart/launch?… ValueError"  # the query string took the colon


# --- the service's own calls ------------------------------------------------------------------------------------------
@pytest.fixture
def quiet_app(make_app: Callable[..., Flask], logs: Captured) -> Callable[..., Flask]:
    return make_app


def test_a_rejected_jwt_never_reaches_the_log(quiet_app: Callable[..., Flask], logs: Captured) -> None:
    app = quiet_app(auth="jwt", public_base_url="https://cds.example.org", trusted_issuers=[])
    body = hook_request("patient-view", [condition("E11.9")])
    response = app.test_client().post(
        "/cds-services/distal-dvt-patient-view", json=body, headers={"Authorization": f"Bearer {JWT}"}
    )
    assert response.status_code == 401
    assert logs.lines  # the rejection is logged...
    assert JWT not in logs.text  # ...without the token
    assert "eyJ" not in logs.text


def test_the_fhir_access_token_and_patient_never_reach_the_log(quiet_app: Callable[..., Flask], logs: Captured) -> None:
    app = quiet_app(fhir_server_allowlist=["http://127.0.0.1:9/fhir"], fhir_allow_http=True)
    body = hook_request("patient-view", patientId="pat-secret-4711")
    body["fhirServer"] = "http://127.0.0.1:9/fhir"  # nothing listens: every fetch fails and is logged
    body["fhirAuthorization"] = {
        "access_token": ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "cds-service",
    }
    response = app.test_client().post("/cds-services/distal-dvt-patient-view", json=body)
    assert response.status_code in (200, 412, 503)
    assert logs.lines
    assert ACCESS_TOKEN not in logs.text
    assert "pat-secret-4711" not in logs.text


def test_an_unhandled_error_is_logged_by_type_only(
    quiet_app: Callable[..., Flask], logs: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError(SECRET)

    monkeypatch.setattr(pipeline.CallPipeline, "_parse", staticmethod(broken))
    app = quiet_app()
    response = app.test_client().post(
        "/cds-services/distal-dvt-patient-view", json=hook_request("patient-view", [condition("E11.9")])
    )
    assert response.status_code == 500
    assert SECRET not in response.get_data(as_text=True)
    (line,) = [line for line in logs.lines if "exception" in line]
    assert line["exception"]["type"] == "KeyError"
    assert SECRET not in logs.text
    assert "pat-secret" not in logs.text
