"""/metrics on its own port (DVT_CDS_METRICS_PORT) under `serve --production`: the public port answers 404 for it,
however it is spelled, and the metrics port answers nothing else — behind the nginx front and with gunicorn facing
clients itself (DVT_CDS_FRONT=none). The metrics directory starts empty: a previous run's values are not summed in."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.processes import free_port
from tests.web.test_front import PATIENT_VIEW, production, small_call

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("front", ["nginx", "none"])
def test_metrics_only_on_the_metrics_port(tmp_path: Path, front: str) -> None:
    metrics_port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_99999.db").write_bytes(b"stale values of a dead worker")
    (metrics_dir / "keep.txt").write_text("not prometheus_client's: left alone")
    settings = {
        "DVT_CDS_FRONT": front,
        "DVT_CDS_METRICS_PORT": str(metrics_port),
        "DVT_CDS_METRICS_DIR": str(metrics_dir),
    }
    with production(tmp_path, **settings) as (base, _, _):
        assert not (metrics_dir / "counter_99999.db").exists()
        assert (metrics_dir / "keep.txt").exists()
        assert requests.post(base + PATIENT_VIEW, json=small_call(), timeout=5).status_code == 200
        for spelling in ("/metrics", "/%6Detrics", "//metrics", "/metrics?x=1"):
            hidden = requests.get(base + spelling, timeout=5)
            assert hidden.status_code == 404, spelling
            assert hidden.json()["resourceType"] == "OperationOutcome"
        scrape = f"http://127.0.0.1:{metrics_port}"
        metrics = requests.get(f"{scrape}/metrics", timeout=5)
        assert metrics.status_code == 200
        assert 'dvt_cds_request_duration_seconds_count{issuer="none",service="distal-dvt-patient-view"' in metrics.text
        for other in ("/healthz", "/readyz", "/cds-services", PATIENT_VIEW):
            assert requests.get(scrape + other, timeout=5).status_code == 404, other
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
