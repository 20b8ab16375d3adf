"""Per-issuer settings (DVT_CDS_TRUSTED_ISSUERS), through the real app with real signed JWTs: a pinned key wins over
any jku and is never fetched; an Oracle-style jku list (jku_list_url) decides which jku URLs are honoured; each issuer
may have its own audience, fhirServer allowlist and EHR profile; and the issuer's short name labels the hook-call log
line and the metrics (``none`` with authentication off), never the token."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask
from pytest_httpserver import HTTPServer

from cds_service.logs import JsonFormatter
from tests.builders import bundle, ddimer, distal_dvt, hook_request, patient
from tests.fastserver import FastStopHTTPServer

BASE = "https://cds.example.org"
ISS = "https://ehr.example.org/fhir"
EPIC_ISS = "https://epic.example.org/interconnect/oauth2"
ORACLE_ISS = "https://authorization.cerner.com/tenants/t1"
PARTNER_ISS = "https://partner.example.net/ehr"
PARTNER_AUDIENCE = "https://gateway.partner.example.net/dvt"
PV_ID = "distal-dvt-patient-view"
PV = f"/cds-services/{PV_ID}"
ACCESS_TOKEN = "eyJhbGciOiJSUzI1NiJ9.FHIR-ACCESS-TOKEN.sig"

PINNED_KEY = ec.generate_private_key(ec.SECP384R1())
JKU_KEY = ec.generate_private_key(ec.SECP384R1())
ATTACKER_KEY = ec.generate_private_key(ec.SECP384R1())


def public_jwk(private: Any, kid: str, alg: str = "ES384") -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(private.public_key()))
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


PINNED_JWKS = {"keys": [public_jwk(PINNED_KEY, "pinned-1")]}


def token(
    *,
    key: Any = PINNED_KEY,
    kid: str = "pinned-1",
    iss: str = ISS,
    aud: str = BASE + PV,
    jku: str | None = None,
) -> str:
    now = int(time.time())
    payload = {"iss": iss, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    headers: dict[str, Any] = {"typ": "JWT", "kid": kid}
    if jku is not None:
        headers["jku"] = jku
    return jwt.encode(payload, key, algorithm="ES384", headers=headers)


def anticoagulate_request() -> dict[str, Any]:
    """A patient-view call answered by one anticoagulate card (options: anticoagulate, serial imaging)."""
    return hook_request("patient-view", [distal_dvt(), ddimer(900, days=2)])


def post(app: Flask, tok: str | None, body: dict[str, Any] | None = None, path: str = PV):
    headers = {"Authorization": f"Bearer {tok}"} if tok is not None else {}
    return app.test_client().post(path, json=body if body is not None else anticoagulate_request(), headers=headers)


def assert_401(response) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def requests_to(server: HTTPServer, path: str) -> int:
    return sum(1 for request, _ in server.log if request.path == path)


@pytest.fixture
def secured(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    def make(issuers: list[dict[str, Any]], **overrides: Any) -> Flask:
        return make_app(auth="jwt", public_base_url=BASE, trusted_issuers=issuers, **overrides)

    return make


# --- a pinned key is used whatever jku the header names ------------------------------------------------------------
def test_pinned_kid_with_a_jku_is_verified_without_any_fetch(secured, fhir_server: HTTPServer) -> None:
    jku = fhir_server.url_for("/not-allowlisted/jwks")
    fhir_server.expect_request("/not-allowlisted/jwks").respond_with_json(PINNED_JWKS)  # would succeed if fetched
    app = secured([{"iss": ISS, "jwks": PINNED_JWKS}])
    assert post(app, token(jku=jku)).status_code == 200
    unreachable = "https://unreachable.invalid/jwks"  # not allowlisted, no such host
    assert post(app, token(jku=unreachable)).status_code == 200
    assert fhir_server.log == []


def test_unpinned_kid_with_a_jku_that_is_not_allowlisted_is_401_without_fetch(secured, fhir_server: HTTPServer) -> None:
    jku = fhir_server.url_for("/attacker/jwks")
    fhir_server.expect_request("/attacker/jwks").respond_with_json({"keys": [public_jwk(ATTACKER_KEY, "attacker")]})
    app = secured([{"iss": ISS, "jwks": PINNED_JWKS}])
    assert_401(post(app, token(key=ATTACKER_KEY, kid="attacker", jku=jku)))
    assert fhir_server.log == []


def test_pinned_kid_signed_by_another_key_is_401_whatever_the_jku_serves(secured, fhir_server: HTTPServer) -> None:
    """An attacker naming the pinned kid and a jku serving their own key under it: the pinned key decides."""
    jku = fhir_server.url_for("/attacker/jwks")
    fhir_server.expect_request("/attacker/jwks").respond_with_json({"keys": [public_jwk(ATTACKER_KEY, "pinned-1")]})
    app = secured([{"iss": ISS, "jwks": PINNED_JWKS, "jku_allowed": [jku]}])
    assert_401(post(app, token(key=ATTACKER_KEY, jku=jku)))
    assert fhir_server.log == []


# --- jku_list_url: the issuer publishes which jku URLs its tokens may name ------------------------------------------
@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (jku URLs in a published list must be https)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[HTTPServer]:
    """An https server on loopback whose self-signed certificate requests trusts for this server's URLs only."""
    cert_path, key_path = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = FastStopHTTPServer(host="127.0.0.1", ssl_context=context, threaded=True)
    server.start()
    prefix = server.url_for("/")
    assert prefix.startswith("https://127.0.0.1:")
    original = requests.Session.merge_environment_settings

    def trusting(self, url, proxies, stream, verify, cert):
        merged = original(self, url, proxies, stream, verify, cert)
        if url.startswith(prefix):
            merged["verify"] = str(cert_path)
        return merged

    monkeypatch.setattr(requests.Session, "merge_environment_settings", trusting)
    yield server
    server.clear()
    if server.is_running():
        server.stop()


JKU_JWKS = {"keys": [public_jwk(JKU_KEY, "oracle-1")]}


@pytest.mark.parametrize(
    "shape",
    [lambda urls: urls, lambda urls: {"jkus": urls}, lambda urls: {"jku": urls}],
    ids=["array", "jkus-object", "jku-object"],
)
def test_jku_list_url_names_the_jku_a_token_may_use(
    secured, fhir_server: HTTPServer, tls_server: HTTPServer, shape: Callable[[list[str]], Any]
) -> None:
    listed = tls_server.url_for("/oracle/jwks")
    unlisted = tls_server.url_for("/elsewhere/jwks")
    tls_server.expect_request("/oracle/jwks").respond_with_json(JKU_JWKS)
    tls_server.expect_request("/elsewhere/jwks").respond_with_json(JKU_JWKS)  # would verify, if it were asked
    fhir_server.expect_request("/jkus").respond_with_json(shape([listed, "https://other.example.org/jwks"]))
    app = secured([{"iss": ORACLE_ISS, "jku_list_url": fhir_server.url_for("/jkus")}])

    for _ in range(2):
        assert post(app, token(key=JKU_KEY, kid="oracle-1", iss=ORACLE_ISS, jku=listed)).status_code == 200
    assert_401(post(app, token(key=JKU_KEY, kid="oracle-1", iss=ORACLE_ISS, jku=unlisted)))
    assert requests_to(fhir_server, "/jkus") == 1  # fetched once, then cached
    assert requests_to(tls_server, "/oracle/jwks") == 1
    assert requests_to(tls_server, "/elsewhere/jwks") == 0


def test_jku_list_url_issuer_needs_a_jku_header(secured, fhir_server: HTTPServer, tls_server: HTTPServer) -> None:
    listed = tls_server.url_for("/oracle/jwks")
    tls_server.expect_request("/oracle/jwks").respond_with_json(JKU_JWKS)
    fhir_server.expect_request("/jkus").respond_with_json([listed])
    app = secured([{"iss": ORACLE_ISS, "jku_list_url": fhir_server.url_for("/jkus")}])
    assert_401(post(app, token(key=JKU_KEY, kid="oracle-1", iss=ORACLE_ISS)))
    assert tls_server.log == []


def test_jku_list_entries_that_are_not_https_are_ignored(secured, fhir_server: HTTPServer) -> None:
    plain = fhir_server.url_for("/plain/jwks")
    fhir_server.expect_request("/plain/jwks").respond_with_json(JKU_JWKS)
    fhir_server.expect_request("/jkus").respond_with_json([plain])
    app = secured([{"iss": ORACLE_ISS, "jku_list_url": fhir_server.url_for("/jkus")}])
    assert_401(post(app, token(key=JKU_KEY, kid="oracle-1", iss=ORACLE_ISS, jku=plain)))
    assert requests_to(fhir_server, "/jkus") == 1
    assert requests_to(fhir_server, "/plain/jwks") == 0


@pytest.mark.parametrize(
    "respond",
    [
        lambda r: r.respond_with_data("<html>oops</html>", content_type="text/html"),
        lambda r: r.respond_with_json({"error": "down"}, status=503),
        lambda r: r.respond_with_json({"keys": []}),
    ],
    ids=["not-json", "503", "no-list"],
)
def test_an_unusable_jku_list_is_401_not_500(
    secured, fhir_server: HTTPServer, tls_server: HTTPServer, respond: Callable[[Any], None]
) -> None:
    listed = tls_server.url_for("/oracle/jwks")
    tls_server.expect_request("/oracle/jwks").respond_with_json(JKU_JWKS)
    respond(fhir_server.expect_request("/jkus"))
    app = secured([{"iss": ORACLE_ISS, "jku_list_url": fhir_server.url_for("/jkus")}])
    assert_401(post(app, token(key=JKU_KEY, kid="oracle-1", iss=ORACLE_ISS, jku=listed)))
    assert tls_server.log == []


# --- per-issuer audience ---------------------------------------------------------------------------------------------
def test_issuer_audience_replaces_the_public_base_url_for_that_issuer_only(secured) -> None:
    app = secured(
        [
            {"iss": PARTNER_ISS, "jwks": PINNED_JWKS, "audience": PARTNER_AUDIENCE},
            {"iss": ISS, "jwks": PINNED_JWKS},
        ]
    )
    assert post(app, token(iss=PARTNER_ISS, aud=PARTNER_AUDIENCE + PV)).status_code == 200
    assert_401(post(app, token(iss=PARTNER_ISS, aud=BASE + PV)))
    assert post(app, token(iss=ISS, aud=BASE + PV)).status_code == 200
    assert_401(post(app, token(iss=ISS, aud=PARTNER_AUDIENCE + PV)))


def test_issuer_audience_with_a_trailing_slash_and_other_endpoints(secured) -> None:
    app = secured([{"iss": PARTNER_ISS, "jwks": PINNED_JWKS, "audience": PARTNER_AUDIENCE + "/"}])
    assert post(app, token(iss=PARTNER_ISS, aud=PARTNER_AUDIENCE + PV)).status_code == 200
    client = app.test_client()
    discovery = token(iss=PARTNER_ISS, aud=PARTNER_AUDIENCE + "/cds-services")
    assert client.get("/cds-services", headers={"Authorization": f"Bearer {discovery}"}).status_code == 200
    wrong = token(iss=PARTNER_ISS, aud=BASE + "/cds-services")
    assert_401(client.get("/cds-services", headers={"Authorization": f"Bearer {wrong}"}))


# --- per-issuer fhirServer allowlist -------------------------------------------------------------------------------
def no_prefetch_call(fhir_server_url: str) -> dict[str, Any]:
    body = hook_request("patient-view")  # no prefetch: everything, Patient included, must come from fhirServer
    assert "prefetch" not in body
    body["fhirServer"] = fhir_server_url
    body["fhirAuthorization"] = {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 300}
    return body


def serve_a_record(server: HTTPServer) -> None:
    server.expect_request("/fhir/Patient/pat-1").respond_with_json(patient())
    server.expect_request(re.compile(r"^/fhir/.*")).respond_with_json(bundle())


def test_issuer_fhir_servers_are_contacted_for_that_issuer_only(
    secured, fhir_server: HTTPServer, other_server: HTTPServer
) -> None:
    serve_a_record(fhir_server)
    app = secured(
        [
            {"iss": EPIC_ISS, "jwks": PINNED_JWKS, "fhir_servers": [fhir_server.url_for("/fhir")]},
            {"iss": ISS, "jwks": PINNED_JWKS},
        ],
        fhir_allow_http=True,  # plain http on loopback, for the allowlisted prefixes only
    )
    own = post(app, token(iss=EPIC_ISS), no_prefetch_call(fhir_server.url_for("/fhir")))
    assert own.status_code == 200, own.get_json()
    assert requests_to(fhir_server, "/fhir/Patient/pat-1") == 1
    assert all(request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}" for request, _ in fhir_server.log)

    fhir_server.clear_log()
    other = post(app, token(iss=ISS), no_prefetch_call(fhir_server.url_for("/fhir")))
    assert other.status_code == 412  # Patient could not be obtained
    diagnostics = [issue["diagnostics"] for issue in other.get_json()["issue"]]
    assert any(d.startswith("patient:") and "not contacted" in d for d in diagnostics), diagnostics
    assert fhir_server.log == []


def test_an_https_fhir_server_not_listed_anywhere_is_refused_with_the_reason(secured) -> None:
    app = secured([{"iss": ISS, "jwks": PINNED_JWKS}])
    response = post(app, token(iss=ISS), no_prefetch_call("https://ehr.example.org/fhir"))
    assert response.status_code == 412
    diagnostics = " ".join(issue["diagnostics"] for issue in response.get_json()["issue"])
    assert "DVT_CDS_FHIR_SERVER_ALLOWLIST is empty" in diagnostics
    assert ACCESS_TOKEN not in response.get_data(as_text=True)


def test_issuer_fhir_servers_replace_the_global_allowlist(
    secured, fhir_server: HTTPServer, other_server: HTTPServer
) -> None:
    serve_a_record(other_server)
    app = secured(
        [
            {"iss": EPIC_ISS, "jwks": PINNED_JWKS, "fhir_servers": [fhir_server.url_for("/fhir")]},
            {"iss": ISS, "jwks": PINNED_JWKS},
        ],
        fhir_server_allowlist=[other_server.url_for("/fhir")],
        fhir_allow_http=True,
    )
    # The issuer with its own list may not send us (and its token) to a server only the global allowlist names...
    refused = post(app, token(iss=EPIC_ISS), no_prefetch_call(other_server.url_for("/fhir")))
    assert refused.status_code == 412
    assert other_server.log == []
    reasons = " ".join(issue["diagnostics"] for issue in refused.get_json()["issue"])
    assert "fhir_servers; not contacted" in reasons  # the list that refused it, not the global allowlist
    assert "DVT_CDS_FHIR_SERVER_ALLOWLIST" not in reasons
    # ...while an issuer without its own list still gets the global allowlist.
    assert post(app, token(iss=ISS), no_prefetch_call(other_server.url_for("/fhir"))).status_code == 200
    assert requests_to(other_server, "/fhir/Patient/pat-1") == 1


# --- per-issuer EHR profile ------------------------------------------------------------------------------------------
def card_shape(response) -> tuple[str, str | None, int]:
    assert response.status_code == 200, response.get_json()
    [card] = response.get_json()["cards"]
    return card["source"]["topic"]["code"], card.get("selectionBehavior"), len(card["suggestions"])


def test_issuer_ehr_profile_shapes_the_cards(secured) -> None:
    app = secured([{"iss": EPIC_ISS, "jwks": PINNED_JWKS, "ehr_profile": "epic"}, {"iss": ISS, "jwks": PINNED_JWKS}])
    body = anticoagulate_request()
    epic_topic, epic_selection, epic_suggestions = card_shape(post(app, token(iss=EPIC_ISS), body))
    hl7_topic, hl7_selection, hl7_suggestions = card_shape(post(app, token(iss=ISS), body))
    assert (epic_topic, epic_selection) == ("DistalDvtAnticoagulate", "any")
    assert (hl7_topic, hl7_selection) == ("distal-dvt-anticoagulate", "at-most-one")
    assert epic_suggestions > hl7_suggestions  # Epic: one action per suggestion (the two scans split)


def test_issuer_ehr_profile_overrides_the_global_profile_both_ways(secured) -> None:
    app = secured(
        [{"iss": EPIC_ISS, "jwks": PINNED_JWKS}, {"iss": ISS, "jwks": PINNED_JWKS, "ehr_profile": "hl7"}],
        ehr_profile="epic",
    )
    body = anticoagulate_request()
    assert card_shape(post(app, token(iss=EPIC_ISS), body))[:2] == ("DistalDvtAnticoagulate", "any")
    assert card_shape(post(app, token(iss=ISS), body))[:2] == ("distal-dvt-anticoagulate", "at-most-one")


# --- the issuer in logs and metrics ----------------------------------------------------------------------------------
def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample, 0 when the series does not exist yet (the registry is shared by every test)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def hook_call_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(r))
        for r in caplog.records
        if r.name == "cds_service.calls" and r.getMessage() == "hook call"
    ]


def test_issuer_name_labels_the_log_line_and_the_metrics(secured, caplog: pytest.LogCaptureFixture) -> None:
    name = f"epic-{uuid.uuid4().hex[:10]}"
    app = secured([{"iss": EPIC_ISS, "jwks": PINNED_JWKS, "ehr_profile": "epic", "name": name}])
    caplog.set_level(logging.INFO)
    response = post(app, token(iss=EPIC_ISS))
    assert response.status_code == 200
    [line] = hook_call_lines(caplog)
    assert (line["issuer"], line["profile"], line["service"]) == (name, "epic", PV_ID)

    text = app.test_client().get("/metrics").get_data(as_text=True)
    duration = "dvt_cds_request_duration_seconds_count"
    assert metric(text, duration, service=PV_ID, status="200", issuer=name) == 1
    assert metric(text, "dvt_cds_cards_total", topic="distal-dvt-anticoagulate", issuer=name) == 1


def test_issuer_without_a_name_is_labelled_by_its_host(secured, caplog: pytest.LogCaptureFixture) -> None:
    app = secured([{"iss": PARTNER_ISS, "jwks": PINNED_JWKS}])
    client = app.test_client()
    before = client.get("/metrics").get_data(as_text=True)
    caplog.set_level(logging.INFO)
    assert post(app, token(iss=PARTNER_ISS)).status_code == 200
    [line] = hook_call_lines(caplog)
    assert (line["issuer"], line["profile"]) == ("partner.example.net", "hl7")
    after = client.get("/metrics").get_data(as_text=True)
    labels = {"service": PV_ID, "status": "200", "issuer": "partner.example.net"}
    duration = "dvt_cds_request_duration_seconds_count"
    assert metric(after, duration, **labels) - metric(before, duration, **labels) == 1


def test_auth_off_is_issuer_none(make_app, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(ehr_profile="oracle")
    client = app.test_client()
    before = client.get("/metrics").get_data(as_text=True)
    caplog.set_level(logging.INFO)
    assert post(app, None).status_code == 200
    [line] = hook_call_lines(caplog)
    assert (line["issuer"], line["profile"]) == ("none", "oracle")
    after = client.get("/metrics").get_data(as_text=True)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("dvt_cds_request_duration_seconds_count", service=PV_ID, status="200", issuer="none") == 1
    assert delta("dvt_cds_cards_total", topic="distal-dvt-anticoagulate", issuer="none") == 1


def test_the_jwt_is_never_logged(secured, fhir_server: HTTPServer, caplog: pytest.LogCaptureFixture) -> None:
    app = secured([{"iss": EPIC_ISS, "jwks": PINNED_JWKS, "name": "epic"}])
    caplog.set_level(logging.DEBUG)
    accepted = token(iss=EPIC_ISS, jku=fhir_server.url_for("/jwks"))
    assert post(app, accepted).status_code == 200
    assert_401(post(app, accepted))  # replayed: rejected, the reason logged
    rejected = token(iss=EPIC_ISS, key=ATTACKER_KEY)
    assert_401(post(app, rejected))
    assert hook_call_lines(caplog)
    assert any(r.getMessage() == "request rejected" for r in caplog.records)
    formatter = JsonFormatter()
    for tok in (accepted, rejected):
        signature = tok.rsplit(".", 1)[1]
        for record in caplog.records:
            written = formatter.format(record) + record.getMessage() + str(record.__dict__)
            assert tok not in written
            assert signature not in written
    metrics_text = app.test_client().get("/metrics").get_data(as_text=True)
    assert accepted not in metrics_text
