"""`dvt-cds serve` and `dvt-cds serve --production` check the site files named by settings (DVT_CDS_CONCEPT_MAPS)
before anything starts: a bad file is one line on stderr naming it and exit code 2, never a traceback; a good one
starts the service."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import assert_one_line_naming, clean_env, dvt_cds, free_port, run

PREFIX = "dvt-cds: invalid setting DVT_CDS_CONCEPT_MAPS:"
GOOD_MAP = {
    "resourceType": "ConceptMap",
    "id": "site-labs",
    "status": "active",
    "group": [
        {
            "source": "http://site.example.org/lab-component",
            "target": "http://loinc.org",
            "element": [{"code": "DD1", "target": [{"code": "48065-7", "equivalence": "equivalent"}]}],
        }
    ],
}


def _missing(tmp_path: Path) -> tuple[Path, str]:
    return tmp_path / "no-such-map.json", "cannot be read"


def _not_json(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "broken-map.json"
    path.write_text('{"resourceType": "ConceptMap",', encoding="utf-8")
    return path, "not JSON"


def _no_group(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "empty-map.json"
    path.write_text(json.dumps({"resourceType": "ConceptMap", "status": "active"}), encoding="utf-8")
    return path, "has no group"


def _not_r4(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "invalid-map.json"
    path.write_text(json.dumps({**GOOD_MAP, "group": {"source": "x"}}), encoding="utf-8")
    return path, "not a valid FHIR R4 ConceptMap"


def _not_utf8(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "latin1-map.json"
    path.write_bytes('{"resourceType": "ConceptMap", "title": "Dimère"}'.encode("latin-1"))
    return path, "UTF-8"


BAD_FILES = [_missing, _not_json, _no_group, _not_r4, _not_utf8]
BAD_IDS = ["missing", "not-json", "no-group", "not-r4", "not-utf8"]


@pytest.mark.parametrize("bad", BAD_FILES, ids=BAD_IDS)
def test_serve_stops_on_a_bad_concept_map(tmp_path: Path, bad: Callable[[Path], tuple[Path, str]]) -> None:
    path, problem = bad(tmp_path)
    good = tmp_path / "good-map.json"
    good.write_text(json.dumps(GOOD_MAP), encoding="utf-8")
    env = clean_env(tmp_path, DVT_CDS_CONCEPT_MAPS=f"{good},{path}", DVT_CDS_PORT=str(free_port()))
    assert_one_line_naming(run(["serve"], env), PREFIX, path, problem)


@pytest.mark.parametrize("bad", [_missing, _no_group], ids=["missing", "no-group"])
def test_serve_production_stops_on_a_bad_concept_map_before_gunicorn(
    tmp_path: Path, bad: Callable[[Path], tuple[Path, str]]
) -> None:
    path, problem = bad(tmp_path)
    env = clean_env(tmp_path, DVT_CDS_CONCEPT_MAPS=str(path), DVT_CDS_PORT=str(free_port()), DVT_CDS_WORKERS="1")
    result = run(["serve", "--production"], env)
    assert_one_line_naming(result, PREFIX, path, problem)
    assert "gunicorn" not in result.stderr.lower()  # no master was started (it would log "Starting gunicorn")


def test_serve_starts_with_a_good_concept_map(tmp_path: Path) -> None:
    good = tmp_path / "good-map.json"
    good.write_text(json.dumps(GOOD_MAP), encoding="utf-8")
    port = free_port()
    env = clean_env(tmp_path, DVT_CDS_CONCEPT_MAPS=str(good))
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [dvt_cds(), "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        discovery = None
        stop_at = time.monotonic() + 30
        while time.monotonic() < stop_at:
            assert process.poll() is None, log_path.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/cds-services", timeout=2) as answer:
                    assert answer.status == 200
                    discovery = json.loads(answer.read())
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        assert discovery is not None, log_path.read_text()
        templates = [service["prefetch"]["ddimer"] for service in discovery["services"]]
        assert templates
        assert all("http://site.example.org/lab-component|DD1" in t for t in templates)  # the map was loaded
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    assert "invalid setting" not in log_path.read_text()
