"""The SMART client's parts: PKCE, state, the authorize URL, discovery and token errors, the iss policy, and the
sealed cookies. Servers here are real HTTP servers on loopback (pytest-httpserver) answering what a test needs."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

from cds_service.security import fhir_server_policy
from cds_service.settings import Settings, TrustedIssuer
from cds_service.smart.launch import (
    Endpoints,
    LaunchError,
    SmartClient,
    _endpoint,
    default_scopes,
    iss_policy,
    new_state,
    pkce_pair,
    s256,
)
from cds_service.smart.session import SessionBox

UNRESERVED = re.compile(r"^[A-Za-z0-9\-._~]+$")


@pytest.fixture
def client() -> SmartClient:
    oauth = SmartClient(timeout_s=1.0)
    yield oauth
    oauth.close()


def discovery(base: str) -> dict:
    return {
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "code_challenge_methods_supported": ["S256"],
    }


# --- PKCE and state -----------------------------------------------------------------------------------------------
def test_s256_matches_the_rfc_7636_example() -> None:
    assert s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_a_pkce_verifier_is_long_unreserved_and_new_each_time() -> None:
    pairs = [pkce_pair() for _ in range(50)]
    for verifier, challenge in pairs:
        assert 43 <= len(verifier) <= 128
        assert UNRESERVED.match(verifier)
        assert challenge == s256(verifier)
        assert len(challenge) == 43
    assert len({v for v, _ in pairs}) == 50


def test_state_is_unguessable_and_new_each_time() -> None:
    states = {new_state() for _ in range(100)}
    assert len(states) == 100
    assert all(len(s) >= 43 and UNRESERVED.match(s) for s in states)


def test_the_authorize_url_carries_every_parameter_and_keeps_the_endpoints_own_query() -> None:
    for authorize in ("https://ehr.example.org/oauth2/authorize", "https://ehr.example.org/authorize?tenant=a"):
        url = SmartClient.authorize_url(
            Endpoints(authorize, "https://ehr.example.org/token"),
            client_id="app",
            redirect_uri="https://cds.example.org/smart/callback",
            scope="launch patient/Condition.rs",
            launch="L&1",
            state="S",
            challenge="C",
            aud="https://ehr.example.org/fhir",
        )
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert url.startswith(authorize.split("?")[0])
        assert query == {
            **({"tenant": "a"} if "tenant" in authorize else {}),
            "response_type": "code",
            "client_id": "app",
            "redirect_uri": "https://cds.example.org/smart/callback",
            "launch": "L&1",
            "scope": "launch patient/Condition.rs",
            "state": "S",
            "aud": "https://ehr.example.org/fhir",
            "code_challenge": "C",
            "code_challenge_method": "S256",
        }


def test_default_scopes_ask_to_read_what_the_prefetch_reads() -> None:
    scopes = default_scopes(["Patient/{{context.patientId}}", "Condition?patient={{context.patientId}}"]).split()
    assert scopes == [
        "launch",
        "patient/Binary.rs",
        "patient/Condition.rs",
        "patient/Medication.rs",
        "patient/Patient.rs",
    ]


# --- discovery ----------------------------------------------------------------------------------------------------
def test_discovery_reads_the_endpoints(httpserver: HTTPServer, client: SmartClient) -> None:
    iss = httpserver.url_for("/fhir")
    httpserver.expect_request("/fhir/.well-known/smart-configuration").respond_with_json(discovery(iss))
    assert client.discover(iss) == Endpoints(f"{iss}/authorize", f"{iss}/token")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Response("no", 404), "discovery-http-404"),
        (Response("<html>", 200, content_type="text/html"), "discovery-not-json"),
        (Response("[1, 2]", 200, content_type="application/json"), "discovery-shape"),
        (Response("", 302, headers={"Location": "http://elsewhere.example/x"}), "discovery-http-302"),
        (Response("x" * 300_000, 200, content_type="application/json"), "discovery-too-large"),
    ],
)
def test_discovery_failures_are_named(
    httpserver: HTTPServer, client: SmartClient, answer: Response, reason: str
) -> None:
    httpserver.expect_request("/fhir/.well-known/smart-configuration").respond_with_response(answer)
    with pytest.raises(LaunchError) as raised:
        client.discover(httpserver.url_for("/fhir"))
    assert raised.value.reason == reason
    assert raised.value.status == 502


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"token_endpoint": None}, "no-token_endpoint"),
        ({"authorization_endpoint": ""}, "no-authorization_endpoint"),
        ({"code_challenge_methods_supported": ["plain"]}, "no-s256"),
        ({"authorization_endpoint": "javascript:alert(1)"}, "bad-authorization_endpoint"),
        ({"token_endpoint": "http://user:pw@127.0.0.1/token"}, "bad-token_endpoint"),
    ],
)
def test_an_unusable_configuration_is_refused(
    httpserver: HTTPServer, client: SmartClient, change: dict, reason: str
) -> None:
    iss = httpserver.url_for("/fhir")
    httpserver.expect_request("/fhir/.well-known/smart-configuration").respond_with_json({**discovery(iss), **change})
    with pytest.raises(LaunchError) as raised:
        client.discover(iss)
    assert raised.value.reason == reason


def test_an_https_iss_never_gets_http_endpoints() -> None:
    with pytest.raises(LaunchError) as raised:
        _endpoint("http://ehr.example.org/authorize", "https://ehr.example.org/fhir", "authorization_endpoint")
    assert raised.value.reason == "bad-authorization_endpoint"
    assert (
        _endpoint("https://login.example.org/a", "https://ehr.example.org/fhir", "x") == "https://login.example.org/a"
    )


def test_a_discovery_that_does_not_answer_in_time_is_a_504(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response("{}", 200, content_type="application/json")

    httpserver.expect_request("/fhir/.well-known/smart-configuration").respond_with_handler(slow)
    oauth = SmartClient(timeout_s=0.2)
    try:
        with pytest.raises(LaunchError) as raised:
            oauth.discover(httpserver.url_for("/fhir"))
    finally:
        oauth.close()
    assert raised.value.status == 504
    assert raised.value.reason == "discovery-timeout"


def test_an_unreachable_discovery_is_named(client: SmartClient) -> None:
    with pytest.raises(LaunchError) as raised:
        client.discover("http://127.0.0.1:9/fhir")  # the discard port: nothing listens there
    assert raised.value.reason == "discovery-unreachable"


# --- token --------------------------------------------------------------------------------------------------------
def token(httpserver: HTTPServer, client: SmartClient, answer: Response):
    httpserver.expect_request("/token", method="POST").respond_with_response(answer)
    return client.exchange(
        httpserver.url_for("/token"), code="c", client_id="app", redirect_uri="https://cds/cb", verifier="v" * 43
    )


def test_the_token_exchange_posts_the_verifier_and_reads_the_patient(
    httpserver: HTTPServer, client: SmartClient
) -> None:
    seen: dict[str, str] = {}

    def answer(request: Request) -> Response:
        seen.update(request.form)
        body = '{"access_token": "t", "token_type": "bearer", "patient": "p-1", "scope": "launch", "expires_in": 300}'
        return Response(body, 200, content_type="application/json")

    httpserver.expect_request("/token", method="POST").respond_with_handler(answer)
    grant = client.exchange(
        httpserver.url_for("/token"), code="c", client_id="app", redirect_uri="https://cds/cb", verifier="v" * 43
    )
    assert seen == {
        "grant_type": "authorization_code",
        "code": "c",
        "redirect_uri": "https://cds/cb",
        "client_id": "app",
        "code_verifier": "v" * 43,
    }
    assert (grant.access_token, grant.patient, grant.expires_in, grant.need_patient_banner) == ("t", "p-1", 300, True)


@pytest.mark.parametrize(
    ("answer", "reason", "shown"),
    [
        (
            Response('{"error": "invalid_grant"}', 400, content_type="application/json"),
            "token-refused:invalid_grant",
            "invalid_grant",
        ),
        (
            Response('{"error": "<script>"}', 400, content_type="application/json"),
            "token-refused:unknown error",
            "unknown error",
        ),
        (Response("oops", 500), "token-http-500", "HTTP 500"),
        (
            Response('{"token_type": "Bearer", "patient": "p"}', 200, content_type="application/json"),
            "token-missing",
            "no bearer token",
        ),
        (
            Response(
                '{"access_token": "t", "token_type": "mac", "patient": "p"}', 200, content_type="application/json"
            ),
            "token-missing",
            "no bearer token",
        ),
        (
            Response('{"access_token": "t", "token_type": "Bearer"}', 200, content_type="application/json"),
            "no-patient",
            "no patient context",
        ),
        (
            Response(
                '{"access_token": "t", "token_type": "Bearer", "patient": "../x"}', 200, content_type="application/json"
            ),
            "no-patient",
            "no patient context",
        ),
        (Response("not json", 200, content_type="application/json"), "token-not-json", "not JSON"),
    ],
)
def test_token_failures_are_named_in_our_words(
    httpserver: HTTPServer, client: SmartClient, answer: Response, reason: str, shown: str
) -> None:
    with pytest.raises(LaunchError) as raised:
        token(httpserver, client, answer)
    assert raised.value.reason == reason
    assert shown in raised.value.message or shown in raised.value.title
    assert "<script>" not in raised.value.message


# --- the iss policy -----------------------------------------------------------------------------------------------
def test_the_iss_must_be_on_the_allowlist_or_an_issuers_fhir_servers(tmp_path) -> None:
    issuer = TrustedIssuer(
        iss="https://ehr-b.example.org", jwks={"keys": []}, fhir_servers=["https://b.example.org/fhir"]
    )
    settings = Settings(
        auth="jwt",
        database_url=f"sqlite:///{tmp_path / 's.sqlite3'}",
        fhir_server_allowlist=["https://a.example.org/fhir"],
        trusted_issuers=[issuer],
    )
    allowed = iss_policy(settings)
    assert allowed("https://a.example.org/fhir") == (True, "")
    assert allowed("https://a.example.org/fhir/r4")[0]
    assert allowed("https://b.example.org/fhir")[0]
    refused, why = allowed("https://evil.example.org/fhir")
    assert not refused
    assert "DVT_CDS_FHIR_SERVER_ALLOWLIST" in why
    assert not allowed("http://a.example.org/fhir")[0]  # plain http is refused even for a listed host
    assert not allowed("https://a.example.org.evil.example/fhir")[0]
    assert fhir_server_policy(settings)("https://a.example.org/fhir")[0]


def test_nothing_is_allowed_under_jwt_with_empty_lists(tmp_path) -> None:
    settings = Settings(auth="jwt", database_url=f"sqlite:///{tmp_path / 's.sqlite3'}")
    assert not iss_policy(settings)("https://ehr.example.org/fhir")[0]


# --- sealed cookies -----------------------------------------------------------------------------------------------
def test_a_sealed_value_opens_only_under_its_name_with_its_key_before_it_expires() -> None:
    box = SessionBox.from_secret("s" * 40)
    sealed = box.seal("dvt-pathway-a", {"token": "secret-token", "patient": "p"}, ttl_s=60)
    assert "secret-token" not in sealed
    opened = box.open("dvt-pathway-a", sealed)
    assert opened is not None
    assert opened["token"] == "secret-token"
    assert box.open("dvt-pathway-b", sealed) is None  # renamed: the name is authenticated
    assert SessionBox.from_secret("t" * 40).open("dvt-pathway-a", sealed) is None  # another key
    assert SessionBox.from_secret("s" * 40).open("dvt-pathway-a", sealed) is not None  # same secret, same key
    assert box.open("dvt-pathway-a", sealed, now=time.time() + 61) is None  # expired
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    assert box.open("dvt-pathway-a", flipped) is None
    for garbage in ("", "!!!", "AAAA", "x" * 5000, None):
        assert box.open("dvt-pathway-a", garbage) is None


def test_every_seal_is_different() -> None:
    box = SessionBox.ephemeral()
    assert box.seal("n", {"a": 1}, 60) != box.seal("n", {"a": 1}, 60)  # a fresh nonce each time


def test_the_session_key_setting_is_secret_and_long(tmp_path) -> None:
    settings = Settings(auth="off", database_url=f"sqlite:///{tmp_path / 's.sqlite3'}", smart_session_key="k" * 32)
    assert "k" * 32 not in repr(settings)
    with pytest.raises(ValueError, match="smart_session_key"):
        Settings(auth="off", database_url=f"sqlite:///{tmp_path / 's.sqlite3'}", smart_session_key="short")
    empty = Settings(auth="off", database_url=f"sqlite:///{tmp_path / 's.sqlite3'}", smart_session_key="")
    assert empty.smart_session_key is None


@pytest.mark.parametrize("value", ["https://a.example; script-src *", "ehr.example.org", "https://a.example/path"])
def test_frame_ancestors_must_be_origins(tmp_path, value: str) -> None:
    with pytest.raises(ValueError, match="DVT_CDS_SMART_FRAME_ANCESTORS"):
        Settings(auth="off", database_url=f"sqlite:///{tmp_path / 's.sqlite3'}", smart_frame_ancestors=value)
