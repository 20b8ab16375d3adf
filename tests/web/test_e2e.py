"""End to end: the real `dvt-cds serve` process on a loopback port, called over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from cds_service.replay.scenarios import days_between, shift_dates
from tests.builders import GASTROCNEMIUS, NOW, RIGHT, condition, ddimer, duplex, hook_request
from tests.processes import upgrade_database

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(base: str, log_path: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.1)
    pytest.fail("service did not start: " + log_path.read_text())


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    port = free_port()
    tmp = tmp_path_factory.mktemp("e2e")
    log_path = tmp / "service.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVT_CDS_")}
    env.update(
        {
            "DVT_CDS_PORT": str(port),
            "DVT_CDS_HOST": "127.0.0.1",
            "DVT_CDS_AUTH": "off",
            "DVT_CDS_DATABASE_URL": f"sqlite:///{tmp / 'e2e.sqlite3'}",
        }
    )
    upgrade_database(env["DVT_CDS_DATABASE_URL"])
    executable = shutil.which("dvt-cds", path=str(Path(sys.executable).parent)) or "dvt-cds"
    with log_path.open("w") as log:
        process = subprocess.Popen([executable, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base, log_path)
            yield base, log_path
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_discovery_over_http(service: tuple[str, Path]) -> None:
    base, _ = service
    response = requests.get(f"{base}/cds-services", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert len(response.json()["services"]) == 4


def test_hook_call_over_http(service: tuple[str, Path]) -> None:
    base, log_path = service
    resources = [condition("I82.461", onset=1), duplex([GASTROCNEMIUS], side=RIGHT, days=1), ddimer(300, days=1)]
    # The real process reads the wall clock: move the record from the builders' fixed date to today.
    resources = shift_dates(resources, days_between(NOW, datetime.now(UTC)))
    body = hook_request("patient-view", resources)
    response = requests.post(f"{base}/cds-services/distal-dvt-patient-view", json=body, timeout=10)
    assert response.status_code == 200
    [card] = response.json()["cards"]
    assert card["source"]["topic"]["code"].startswith("distal-dvt-")
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    call = [entry for entry in lines if entry.get("event") == "hook-call"][-1]
    assert call["hookInstance"] == body["hookInstance"]
    assert call["service"] == "distal-dvt-patient-view"
    assert call["status"] == 200
    assert call["topics"] == [card["source"]["topic"]["code"]]
    assert "pat-1" not in log_path.read_text()  # no patient id in the log
    assert any(entry.get("event") == "auth-off" and entry["level"] == "WARNING" for entry in lines)


def test_errors_over_http(service: tuple[str, Path]) -> None:
    base, _ = service
    bad = requests.post(
        f"{base}/cds-services/distal-dvt-patient-view",
        data="{",
        timeout=5,
        headers={"Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    assert bad.json()["resourceType"] == "OperationOutcome"
    missing = requests.post(f"{base}/cds-services/unknown", json={}, timeout=5)
    assert missing.status_code == 404
