"""CORS for browser-based CDS clients (sandbox): preflight without auth, Authorization allowed explicitly."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "path", ["/cds-services", "/cds-services/distal-dvt-patient-view", "/cds-services/distal-dvt-patient-view/feedback"]
)
def test_preflight_is_answered_without_auth(make_app, path: str) -> None:
    client = make_app(auth="jwt").test_client()  # no trusted issuers: every real call would be 401
    response = client.options(
        path,
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert response.status_code == 200
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://sandbox.cds-hooks.org")
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_actual_responses_carry_cors_headers(client) -> None:
    response = client.get("/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://sandbox.cds-hooks.org")


def test_origins_can_be_restricted(make_app) -> None:
    client = make_app(cors_origins=["https://ehr.example.org"]).test_client()
    ok = client.get("/cds-services", headers={"Origin": "https://ehr.example.org"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"
    other = client.get("/cds-services", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in other.headers


def _private_network_preflight(client):
    return client.options(
        "/cds-services/distal-dvt-patient-view",
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
            "Access-Control-Request-Private-Network": "true",
        },
    )


def test_private_network_access_is_granted_to_a_named_origin(make_app) -> None:
    client = make_app(auth="jwt", cors_origins=["https://sandbox.cds-hooks.org"]).test_client()
    response = _private_network_preflight(client)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Private-Network"] == "true"


def test_private_network_access_is_not_granted_to_any_origin(make_app) -> None:
    response = _private_network_preflight(make_app(auth="jwt").test_client())  # DVT_CDS_CORS_ORIGINS=*
    assert response.headers.get("Access-Control-Allow-Private-Network", "false") == "false"
