"""Which EHR's calls are refused: a 401 for a token that names a trusted issuer (a wrong aud, an expired or replayed
token) is counted and logged under that issuer's short name; anything else under "unknown" — an untrusted iss is
never a label (anyone can mint one: it would be an attacker's way to grow the metrics without bound)."""

from __future__ import annotations

import logging
import time

import pytest

from tests.security.test_jwt import BASE, ISS, JWKS, PV, assert_401, post, secured, token  # noqa: F401
from tests.web.test_metrics import sample


def rejections(app, **labels: str) -> float:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    try:
        return sample(text, "dvt_cds_jwt_rejections_total", **labels)
    except AssertionError:
        return 0.0


def test_rejections_are_counted_by_the_trusted_issuers_name(secured, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    app = secured([{"iss": ISS, "jwks": JWKS, "name": "epic-test"}])
    before = {
        labels: rejections(app, reason=labels[0], issuer=labels[1])
        for labels in (
            ("audience", "epic-test"),
            ("expired", "epic-test"),
            ("issuer", "unknown"),
            ("missing", "unknown"),
        )
    }
    with caplog.at_level(logging.WARNING, logger="cds_service"):
        assert_401(post(app, f"Bearer {token(aud=BASE + '/cds-services/other')}"))  # the EHR's aud is wrong
        assert_401(post(app, f"Bearer {token(exp=int(time.time()) - 3600)}"))  # expired
        assert_401(post(app, f"Bearer {token(iss='https://attacker.example/' + 'x' * 40)}"))
        assert_401(post(app, None))
    assert rejections(app, reason="audience", issuer="epic-test") == before[("audience", "epic-test")] + 1
    assert rejections(app, reason="expired", issuer="epic-test") == before[("expired", "epic-test")] + 1
    assert rejections(app, reason="issuer", issuer="unknown") == before[("issuer", "unknown")] + 1
    assert rejections(app, reason="missing", issuer="unknown") == before[("missing", "unknown")] + 1
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert "attacker" not in text
    rejected = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "auth-rejected"]
    assert [r.fields["issuer"] for r in rejected] == ["epic-test", "epic-test", None, None]
