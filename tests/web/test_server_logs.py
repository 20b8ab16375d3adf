"""gunicorn's own log lines (booting, signals, workers stopping) are JSON objects like the service's, through the
same whitelisting formatter; a request it quotes loses its query string."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import requests

from cds_service.logs import ServerLogFormatter
from tests.web.test_front import PATIENT_VIEW, production, small_call

NGINX_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[")  # nginx's error_log format (not gunicorn's)


@pytest.mark.e2e
def test_every_line_gunicorn_writes_is_json(tmp_path: Path) -> None:
    with production(tmp_path) as (base, _, log_path):
        assert requests.post(base + PATIENT_VIEW, json=small_call(), timeout=5).status_code == 200
    lines = [line for line in log_path.read_text().splitlines() if line.strip() and not NGINX_LINE.match(line)]
    entries = [json.loads(line) for line in lines]  # a plain-text line fails here
    server = [e for e in entries if e["logger"] == "gunicorn.error"]
    words = " ".join(e["msg"] for e in server)
    assert "Booting worker with pid" in words
    assert "Handling signal: term" in words
    assert {e["level"] for e in server} <= {"INFO", "WARNING", "ERROR", "CRITICAL"}
    assert any(e.get("event") == "hook-call" for e in entries)


def test_a_request_quoted_by_gunicorn_loses_its_query_string() -> None:
    record = logging.LogRecord(
        "gunicorn.error",
        logging.ERROR,
        __file__,
        1,
        "Error handling request %s",
        ("/smart/launch?iss=x&launch=secret",),
        None,
    )
    entry = json.loads(ServerLogFormatter().format(record))
    assert entry["msg"] == "Error handling request /smart/launch?…"
    assert "secret" not in json.dumps(entry)
