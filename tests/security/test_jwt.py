"""Client authentication (CDS Hooks 2.0 "Trusting CDS Clients"): every attack is a bare 401; valid ES384 and
RS384 tokens pass; keys are found by kid in the issuer's JWKS (inline, by URL, or an allowlisted jku),
refetched once on rotation with a floor on refetching."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask
from pytest_httpserver import HTTPServer

from cds_service.settings import Settings
from tests.builders import condition, hook_request

BASE = "https://cds.example.org"
ISS = "https://ehr.example.org/fhir"
PV = "/cds-services/distal-dvt-patient-view"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP384R1())
OTHER_EC_KEY = ec.generate_private_key(ec.SECP384R1())


def public_jwk(private: Any, kid: str, alg: str) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(private.public_key()))
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


JWKS = {"keys": [public_jwk(EC_KEY, "ec-1", "ES384"), public_jwk(RSA_KEY, "rsa-1", "RS384")]}


def token(
    *,
    key: Any = EC_KEY,
    alg: str = "ES384",
    kid: str | None = "ec-1",
    aud: Any = BASE + PV,
    iss: str = ISS,
    headers: dict | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"iss": iss, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    header = {"typ": "JWT", **({"kid": kid} if kid else {}), **(headers or {})}
    return jwt.encode(payload, key, algorithm=alg, headers=header)


@pytest.fixture
def secured(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    def make(issuers: list[dict] | None = None, **overrides: Any) -> Flask:
        return make_app(
            auth="jwt",
            public_base_url=BASE,
            trusted_issuers=issuers if issuers is not None else [{"iss": ISS, "jwks": JWKS}],
            **overrides,
        )

    return make


def post(app: Flask, authorization: str | None, path: str = PV):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return app.test_client().post(path, json=hook_request("patient-view", [condition("E11.9")]), headers=headers)


def assert_401(response) -> None:
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    body = response.get_json()
    assert body == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "login", "diagnostics": "Unauthorized"}],
    }


# --- what passes ------------------------------------------------------------------------------------------------
def test_valid_es384_passes(secured) -> None:
    assert post(secured(), f"Bearer {token()}").status_code == 200


def test_valid_rs384_passes(secured) -> None:
    assert post(secured(), f"Bearer {token(key=RSA_KEY, alg='RS384', kid='rsa-1')}").status_code == 200


def test_aud_may_be_an_array_and_sub_tenant_nbf_are_accepted(secured) -> None:
    now = int(time.time())
    tok = token(aud=["https://other.example.org", BASE + PV], sub="epic-client", tenant="t1", nbf=now - 300)
    assert post(secured(), f"Bearer {tok}").status_code == 200


def test_discovery_and_feedback_need_a_token_for_their_own_url(secured) -> None:
    app = secured()
    client = app.test_client()
    assert_401(client.get("/cds-services"))
    ok = client.get("/cds-services", headers={"Authorization": f"Bearer {token(aud=BASE + '/cds-services')}"})
    assert ok.status_code == 200
    feedback = {"feedback": [{"card": "c1", "outcome": "accepted", "outcomeTimestamp": "2026-03-16T10:00:00Z"}]}
    wrong = client.post(PV + "/feedback", json=feedback, headers={"Authorization": f"Bearer {token()}"})
    assert_401(wrong)  # aud is the invoke URL, not the feedback URL
    right = client.post(
        PV + "/feedback", json=feedback, headers={"Authorization": f"Bearer {token(aud=BASE + PV + '/feedback')}"}
    )
    assert right.status_code == 200


def test_iat_slightly_in_the_future_is_within_leeway(secured) -> None:
    assert post(secured(), f"Bearer {token(iat=int(time.time()) + 30)}").status_code == 200


def test_health_needs_no_token(secured) -> None:
    assert secured().test_client().get("/healthz").status_code == 200


# --- the attacks ------------------------------------------------------------------------------------------------------
def test_missing_token(secured) -> None:
    assert_401(post(secured(), None))


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer not.a.jwt", "Basic dXNlcjpwYXNz", "Bearer a.b", "token " + "x" * 10, "Bearer " + "A" * 20000],
)
def test_malformed_token(secured, authorization: str) -> None:
    assert_401(post(secured(), authorization))


def test_unsigned_alg_none(secured) -> None:
    payload = {"iss": ISS, "aud": BASE + PV, "exp": int(time.time()) + 300, "iat": int(time.time()), "jti": "n1"}
    unsigned = jwt.encode(payload, None, algorithm="none", headers={"kid": "ec-1"})
    assert_401(post(secured(), f"Bearer {unsigned}"))


def test_hmac_signed_with_the_public_key(secured) -> None:
    """The classic key-confusion attack: HS256 keyed with the RSA public key PEM."""
    pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    payload = {"iss": ISS, "aud": BASE + PV, "exp": int(time.time()) + 300, "iat": int(time.time()), "jti": "h1"}

    # PyJWT refuses to build this token, so it is assembled by hand.
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (
        b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
        + "."
        + b64(json.dumps(payload).encode())
    )
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{b64(signature)}"
    assert_401(post(secured(), f"Bearer {forged}"))


def test_unknown_issuer(secured) -> None:
    assert_401(post(secured(), f"Bearer {token(iss='https://evil.example.com')}"))


def test_unknown_kid(secured) -> None:
    assert_401(post(secured(), f"Bearer {token(kid='who-knows')}"))
    assert_401(post(secured(), f"Bearer {token(kid=None)}"))


def test_signed_by_another_key_with_a_known_kid(secured) -> None:
    assert_401(post(secured(), f"Bearer {token(key=OTHER_EC_KEY)}"))


def test_jku_not_allowlisted(secured, fhir_server: HTTPServer) -> None:
    fhir_server.expect_request("/jwks").respond_with_json({"keys": [public_jwk(OTHER_EC_KEY, "evil", "ES384")]})
    evil = token(key=OTHER_EC_KEY, kid="evil", headers={"jku": fhir_server.url_for("/jwks")})
    assert_401(post(secured(), f"Bearer {evil}"))
    assert fhir_server.log == []  # the attacker's key set was never fetched


def test_expired(secured) -> None:
    past = int(time.time()) - 1000
    assert_401(post(secured(), f"Bearer {token(exp=past, iat=past - 300)}"))


def test_not_yet_valid(secured) -> None:
    future = int(time.time()) + 600
    assert_401(post(secured(), f"Bearer {token(nbf=future)}"))
    assert_401(post(secured(), f"Bearer {token(iat=future)}"))


@pytest.mark.parametrize(
    "aud",
    [
        BASE + "/cds-services/distal-dvt-order-sign",
        "https://cds.example.org",
        "http://cds.example.org" + PV,
        ["https://a.example.org"],
    ],
)
def test_wrong_audience(secured, aud: Any) -> None:
    assert_401(post(secured(), f"Bearer {token(aud=aud)}"))


@pytest.mark.parametrize("missing", ["exp", "iat", "jti", "aud"])
def test_required_claims(secured, missing: str) -> None:
    assert_401(post(secured(), f"Bearer {token(**{missing: None})}"))


def test_replayed_jti(secured) -> None:
    app = secured()
    tok = token()
    assert post(app, f"Bearer {tok}").status_code == 200
    assert_401(post(app, f"Bearer {tok}"))


def test_replay_is_caught_across_workers(secured, db_url: str) -> None:
    """The jti cache is in the store: a second app on the same database (another worker) sees it."""
    tok = token()
    assert post(secured(), f"Bearer {tok}").status_code == 200
    assert_401(post(secured(), f"Bearer {tok}"))


def test_key_whose_alg_differs_from_the_token(secured) -> None:
    jwks = {"keys": [{**public_jwk(RSA_KEY, "rsa-1", "RS384"), "alg": "RS512"}]}
    app = secured([{"iss": ISS, "jwks": jwks}])
    assert_401(post(app, f"Bearer {token(key=RSA_KEY, alg='RS384', kid='rsa-1')}"))


def test_no_trusted_issuers_rejects_everything(secured) -> None:
    assert_401(post(secured([]), f"Bearer {token()}"))


# --- JWKS by URL and jku: caching, rotation, refetch floor ------------------------------------------------------------
def test_jwks_url_is_fetched_and_cached(secured, fhir_server: HTTPServer) -> None:
    fhir_server.expect_request("/jwks").respond_with_json(JWKS)
    app = secured([{"iss": ISS, "jwks_url": fhir_server.url_for("/jwks")}])
    for _ in range(3):
        assert post(app, f"Bearer {token()}").status_code == 200
    assert len(fhir_server.log) == 1


def test_allowlisted_jku_is_honoured(secured, fhir_server: HTTPServer) -> None:
    jku = fhir_server.url_for("/epic/jwks")
    fhir_server.expect_request("/epic/jwks").respond_with_json({"keys": [public_jwk(RSA_KEY, "b64kid==", "RS384")]})
    app = secured([{"iss": ISS, "jku_allowed": [jku]}])
    tok = token(key=RSA_KEY, alg="RS384", kid="b64kid==", headers={"jku": jku})
    assert post(app, f"Bearer {tok}").status_code == 200
    assert_401(post(app, f"Bearer {token(key=RSA_KEY, alg='RS384', kid='b64kid==')}"))  # this issuer needs its jku


def test_key_rotation_refetches_once_then_waits(secured, fhir_server: HTTPServer) -> None:
    keys = {"keys": [public_jwk(EC_KEY, "old", "ES384")]}
    fhir_server.expect_request("/jwks").respond_with_handler(
        lambda request: __import__("werkzeug").Response(json.dumps(keys), content_type="application/json")
    )
    app = secured([{"iss": ISS, "jwks_url": fhir_server.url_for("/jwks")}], jwks_min_refetch_s=0)
    assert post(app, f"Bearer {token(kid='old')}").status_code == 200
    keys["keys"] = [public_jwk(OTHER_EC_KEY, "new", "ES384")]  # the issuer rotates
    assert post(app, f"Bearer {token(key=OTHER_EC_KEY, kid='new')}").status_code == 200
    assert len(fhir_server.log) == 2

    slow = secured([{"iss": ISS, "jwks_url": fhir_server.url_for("/jwks")}], jwks_min_refetch_s=3600)
    fhir_server.clear_log()
    for kid in ("bogus-1", "bogus-2", "bogus-3"):
        assert_401(post(slow, f"Bearer {token(kid=kid)}"))
    assert len(fhir_server.log) == 1  # a stream of unknown kids costs one fetch per floor period


def test_unreachable_or_garbage_jwks_is_401_not_500(secured, fhir_server: HTTPServer) -> None:
    fhir_server.expect_request("/jwks").respond_with_data("<html>", content_type="text/html")
    assert_401(post(secured([{"iss": ISS, "jwks_url": fhir_server.url_for("/jwks")}]), f"Bearer {token()}"))
    assert_401(post(secured([{"iss": ISS, "jwks_url": "http://127.0.0.1:9/jwks"}]), f"Bearer {token()}"))


def test_plain_http_jwks_is_refused_off_loopback() -> None:
    from cds_service.security import JwksCache

    cache = JwksCache(timeout_s=1, min_refetch_s=0, allow_http_loopback=False)
    assert cache.key("http://127.0.0.1:9/jwks", "k") is None


# --- development mode ------------------------------------------------------------------------------------------------
def test_auth_off_only_on_loopback(db_url: str) -> None:
    for host in ("0.0.0.0", "10.1.2.3", "cds.example.org"):
        with pytest.raises(ValueError, match="loopback"):
            Settings(auth="off", host=host, database_url=db_url)
    for host in ("127.0.0.1", "localhost", "::1"):
        assert Settings(auth="off", host=host, database_url=db_url).auth == "off"


def test_auth_off_warns_on_every_call(make_app, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(auth="off")
    caplog.clear()
    post(app, None)
    assert any("authentication is off" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_default_is_jwt(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DVT_CDS_AUTH", raising=False)
    assert Settings(database_url=db_url).auth == "jwt"
