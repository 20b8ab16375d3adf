"""The start-up warm-up exercises the real code paths with valid data, so it logs nothing but its own work."""

from __future__ import annotations

import logging

import pytest

from cds_service.warmup import warm_up


def test_warm_up_data_is_valid_r4(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cds_service.fhir.record"):
        warm_up()
    assert not [r for r in caplog.records if r.getMessage() == "invalid resource skipped"]
