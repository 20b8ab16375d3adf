"""Admission control and readiness: a call that waited too long for a thread is shed with 503 + Retry-After
before any work; the call deadline counts from arrival; /readyz tells a load balancer when not to send calls."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cds_service.admission import arrival
from tests.builders import condition, hook_request, patient

PATIENT_VIEW = "/cds-services/distal-dvt-patient-view"
NOW_WALL = 1_800_000_000.0


def stamp(queued_s: float, reading_s: float = 0.0) -> dict[str, str]:
    return {"X-Request-Start": f"t={time.time() - queued_s:.3f}", "X-Request-Read-Time": f"{reading_s:.3f}"}


@pytest.mark.parametrize(
    ("header", "queued"),
    [
        (f"t={NOW_WALL - 0.25:.3f}", 0.25),  # nginx: seconds with milliseconds
        (f"t={int((NOW_WALL - 0.25) * 1000)}", 0.25),  # milliseconds
        (f"t={int((NOW_WALL - 0.25) * 1_000_000)}", 0.25),  # microseconds (other proxies)
        (f"{NOW_WALL - 2:.3f}", 2.0),  # without the t=
    ],
)
def test_a_front_stamp_in_any_unit_gives_the_time_queued(header: str, queued: float) -> None:
    came = arrival({"X-Request-Start": header}, now_wall=NOW_WALL, now_monotonic=100.0)
    assert came.queued_s == pytest.approx(queued, abs=0.002)
    assert came.started == pytest.approx(100.0 - queued, abs=0.002)


def test_reading_time_moves_arrival_earlier_but_is_not_queueing() -> None:
    headers = {"X-Request-Start": f"t={NOW_WALL - 0.5}", "X-Request-Read-Time": "0.300"}
    came = arrival(headers, now_wall=NOW_WALL, now_monotonic=50.0)
    assert came.queued_s == pytest.approx(0.5)
    assert came.started == pytest.approx(50.0 - 0.8)


@pytest.mark.parametrize(
    "header",
    [None, "", "t=", "t=abc", "t=nan", "t=-5", f"t={NOW_WALL + 10}", f"t={NOW_WALL - 120}", "t=1e400"],
)
def test_a_missing_future_ancient_or_garbled_stamp_counts_from_now(header: str | None) -> None:
    headers = {} if header is None else {"X-Request-Start": header, "X-Request-Read-Time": "garbage"}
    came = arrival(headers, now_wall=NOW_WALL, now_monotonic=7.0)
    assert (came.started, came.queued_s) == (7.0, 0.0)


def test_a_call_queued_past_the_limit_is_shed_at_once_without_work(make_app: Callable[..., Flask]) -> None:
    app = make_app(max_queue_wait_s=0.5)
    client = app.test_client()
    body = hook_request("patient-view", [condition("I82.452", onset=2)])
    shed = client.post(PATIENT_VIEW, json=body, headers=stamp(0.8))
    assert shed.status_code == 503
    assert shed.headers["Retry-After"] == "1"
    assert shed.json["issue"][0]["code"] == "transient"
    fresh = client.post(PATIENT_VIEW, json=body, headers=stamp(0.3))
    assert fresh.status_code == 200
    app.extensions["dvt_cds"]["audit"].flush()
    store = app.extensions["dvt_cds"]["store"]
    assert [row["status"] for row in store.decisions()] == [200]  # the shed call was never computed
    assert client.get("/healthz", headers=stamp(5)).status_code == 200  # probes are never shed
    assert client.get("/cds-services", headers=stamp(5)).status_code == 200


def test_a_late_arrival_leaves_less_time_for_the_fhir_server(
    make_app: Callable[..., Flask], fhir_server: HTTPServer
) -> None:
    """The deadline counts from arrival: a call that spent most of its budget queued does not then wait on the FHIR
    server for another full deadline."""

    def slow(_: Request) -> Response:
        time.sleep(1.0)
        return Response("{}", content_type="application/fhir+json")

    fhir_server.expect_request("/fhir/Condition").respond_with_handler(slow)
    app = make_app(max_queue_wait_s=5, call_deadline_s=1.0)
    body = hook_request("patient-view", prefetch={"patient": patient()})  # the Conditions must be fetched
    body["fhirServer"] = fhir_server.url_for("/fhir")
    started = time.monotonic()
    response = app.test_client().post(PATIENT_VIEW, json=body, headers=stamp(0.95))
    assert time.monotonic() - started < 0.6
    assert response.status_code == 412  # the Patient could not be read in the time left


def test_readyz_is_503_while_draining(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    drain = tmp_path / "draining"
    client = make_app(drain_file=str(drain)).test_client()
    assert client.get("/readyz").json == {"status": "ready"}
    drain.touch()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json == {"status": "not ready", "reason": "draining"}
    assert client.get("/healthz").status_code == 200  # liveness is another question


def test_an_unknown_dvt_cds_variable_is_named_at_start(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DVT_CDS_CALL_DEADLINE", "5")  # the setting is DVT_CDS_CALL_DEADLINE_S
    with caplog.at_level(logging.WARNING, logger="cds_service"):
        make_app()
    warnings = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "unknown-settings"]
    assert len(warnings) == 1
    assert warnings[0].fields["variables"] == ["DVT_CDS_CALL_DEADLINE"]
