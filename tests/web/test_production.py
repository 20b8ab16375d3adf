"""`dvt-cds serve --production`: gunicorn with several workers, metrics aggregated across them, graceful stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.builders import condition, hook_request
from tests.processes import upgrade_database
from tests.web.test_e2e import free_port, wait_until_healthy

pytestmark = pytest.mark.e2e


def test_gunicorn_workers_metrics_and_graceful_shutdown(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVT_CDS_")}
    env.update(
        {
            "DVT_CDS_PORT": str(port),
            "DVT_CDS_AUTH": "off",
            "DVT_CDS_WORKERS": "2",
            "DVT_CDS_THREADS": "2",
            "DVT_CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
            "DVT_CDS_METRICS_DIR": str(tmp_path / "metrics"),
        }
    )
    (tmp_path / "metrics").mkdir()
    upgrade_database(env["DVT_CDS_DATABASE_URL"])
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dvt-cds"), "serve", "--production"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, tmp_path / "gunicorn.log", seconds=30)

        def call(_: int) -> int:  # a new connection each time, from several threads: the workers share the load
            body = hook_request("patient-view", [condition("I82.452", onset=2)])
            return requests.post(f"{base}/cds-services/distal-dvt-patient-view", json=body, timeout=10).status_code

        with ThreadPoolExecutor(max_workers=4) as pool:
            assert list(pool.map(call, range(20))) == [200] * 20
        text = requests.get(f"{base}/metrics", timeout=5).text
        count = next(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("dvt_cds_request_duration_seconds_count") and 'service="distal-dvt-patient-view"' in line
        )
        assert count == 20  # every worker's requests, whichever worker answered /metrics
        assert list((tmp_path / "metrics").glob("histogram_*.db"))  # per-worker value files, aggregated on scrape
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        log.close()
