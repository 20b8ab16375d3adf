"""The EHR launch over HTTP, step by step (no browser): the redirects, the cookies, and every refusal as a page."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from cds_service.logs import JsonFormatter
from cds_service.smart.launch import s256
from tests.smart.authserver import SmartTestServer
from tests.smart.conftest import Service, start_service, stop_service

PATIENT = "extension-new-calf-vein"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def browser() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def launch(service: Service, smart: SmartTestServer, session: requests.Session, patient: str = PATIENT):
    """Up to the callback: the launch redirect, then the authorization server's redirect back."""
    first = session.get(
        service.launch_url(smart.fhir_base, smart.new_launch(patient)), allow_redirects=False, timeout=10
    )
    assert first.status_code == 302, first.text
    second = session.get(first.headers["Location"], allow_redirects=False, timeout=10)
    assert second.status_code == 302, second.text
    return first, second.headers["Location"]


def open_page(service: Service, smart: SmartTestServer, session: requests.Session, patient: str = PATIENT):
    _, callback = launch(service, smart, session, patient)
    answer = session.get(callback, allow_redirects=False, timeout=10)
    assert answer.status_code == 303, answer.text
    page_url = f"{service.url}/smart/{answer.headers['Location']}"
    return answer, page_url


# --- the happy path -------------------------------------------------------------------------------------------------
def test_ehr_launch_redirects_to_the_discovered_authorize_endpoint_with_pkce(
    service: Service, smart: SmartTestServer
) -> None:
    session = browser()
    first = session.get(service.launch_url(smart.fhir_base, smart.new_launch(PATIENT)), allow_redirects=False)
    assert first.status_code == 302
    target = urlsplit(first.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{smart.root_url}/auth/authorize"
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == "dvt-pathway-test"
    assert query["redirect_uri"] == f"{service.url}/smart/callback"
    assert query["aud"] == smart.fhir_base
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 43
    scopes = query["scope"].split()
    assert "launch" in scopes
    assert {"patient/Patient.rs", "patient/Condition.rs", "patient/Observation.rs", "patient/Binary.rs"} <= set(scopes)
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "Path=/smart" in cookie
    assert "SameSite=Lax" in cookie
    assert ("GET", "/fhir/.well-known/smart-configuration") in smart.requests


def test_the_callback_exchanges_the_code_with_the_verifier_and_opens_the_page(
    service: Service, smart: SmartTestServer
) -> None:
    session = browser()
    first, callback = launch(service, smart, session)
    challenge = parse_qs(urlsplit(first.headers["Location"]).query)["code_challenge"][0]
    answer = session.get(callback, allow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("pathway/")
    exchanged = smart.token_requests[-1]
    assert exchanged["grant_type"] == "authorization_code"
    assert exchanged["client_id"] == "dvt-pathway-test"
    assert exchanged["redirect_uri"] == f"{service.url}/smart/callback"
    assert s256(exchanged["code_verifier"]) == challenge
    raw = answer.raw.headers.getlist("Set-Cookie")
    assert any(c.startswith("dvt-launch-") and "Max-Age=0" in c for c in raw), raw  # the launch is used once
    session_cookie = next(c for c in raw if c.startswith("dvt-pathway-"))
    assert "HttpOnly" in session_cookie
    token = smart.issued_tokens()[-1]
    assert token not in session_cookie  # sealed: the browser cannot read the token

    page = session.get(f"{service.url}/smart/{answer.headers['Location']}")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "peroneal vein" in page.text
    assert 'data-vein="peroneal" data-side="left" data-class="distal-axial" data-state="extension"' in page.text
    assert token not in page.text


def test_pages_carry_the_security_headers(service: Service, smart: SmartTestServer) -> None:
    session = browser()
    _, page_url = open_page(service, smart, session)
    for response in (
        session.get(page_url),
        session.get(f"{service.url}/smart/launch"),
        session.get(f"{service.url}/smart/callback?state=x&code=y"),
    ):
        assert response.headers["Content-Security-Policy"] == CSP
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    css = session.get(f"{service.url}/smart/static/pathway.css")
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")


def test_a_page_reload_reads_the_record_again_with_the_same_session(service: Service, smart: SmartTestServer) -> None:
    session = browser()
    _, page_url = open_page(service, smart, session)
    before = len(smart.requests)
    assert session.get(page_url).status_code == 200
    assert session.get(page_url).status_code == 200
    assert len([r for r in smart.requests[before:] if r[1].startswith("/fhir/Condition")]) == 2


def test_need_patient_banner_shows_who_the_page_is_about(service: Service, smart: SmartTestServer) -> None:
    smart.need_patient_banner = True
    session = browser()
    _, page_url = open_page(service, smart, session)
    page = session.get(page_url)
    assert 'class="patient-name">Pat Test<' in page.text


# --- refusals -------------------------------------------------------------------------------------------------------
def test_an_iss_not_on_the_allowlist_is_refused_without_a_redirect_or_a_request(
    service: Service, smart: SmartTestServer, medplum
) -> None:
    with SmartTestServer(medplum.base_url, client_id="dvt-pathway-test") as stranger:
        response = browser().get(
            service.launch_url(stranger.fhir_base, stranger.new_launch(PATIENT)), allow_redirects=False
        )
        assert response.status_code == 400
        assert "Location" not in response.headers
        assert "not one this service may read from" in response.text
        assert "DVT_CDS_FHIR_SERVER_ALLOWLIST" in response.text
        assert stranger.requests == []  # not even its discovery document was asked for
    other = browser().get(service.launch_url("https://ehr.example.org/fhir", "x"), allow_redirects=False)
    assert other.status_code == 400
    assert "Location" not in other.headers


@pytest.mark.parametrize("query", ["", "?iss=", "?launch=abc", "?iss=http%3A%2F%2F127.0.0.1%2Ffhir"])
def test_a_launch_without_iss_and_launch_is_refused(service: Service, query: str) -> None:
    response = browser().get(f"{service.url}/smart/launch{query}", allow_redirects=False)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "Open the DVT pathway view from the EHR" in response.text


def test_a_bad_state_is_refused_and_no_code_is_exchanged(service: Service, smart: SmartTestServer) -> None:
    session = browser()
    _, callback = launch(service, smart, session)
    before = len(smart.token_requests)
    query = parse_qs(urlsplit(callback).query)
    forged = f"{service.url}/smart/callback?code={query['code'][0]}&state=not-the-state"
    answer = session.get(forged, allow_redirects=False)
    assert answer.status_code == 400
    assert "does not match a launch from this browser" in answer.text
    assert len(smart.token_requests) == before


def test_a_callback_in_another_browser_is_refused(service: Service, smart: SmartTestServer) -> None:
    """The state is bound to the browser that started the launch: a code and state sent to another browser
    (a login CSRF) are refused there."""
    _, callback = launch(service, smart, browser())
    before = len(smart.token_requests)
    answer = browser().get(callback, allow_redirects=False)
    assert answer.status_code == 400
    assert len(smart.token_requests) == before


def test_an_altered_launch_cookie_is_refused(service: Service, smart: SmartTestServer) -> None:
    session = browser()
    _, callback = launch(service, smart, session)
    for cookie in session.cookies:
        cookie.value = cookie.value[:-4] + ("AAAA" if not cookie.value.endswith("AAAA") else "BBBB")
    assert session.get(callback, allow_redirects=False).status_code == 400


def test_a_replayed_callback_is_refused_by_the_authorization_server(service: Service, smart: SmartTestServer) -> None:
    session = browser()
    _, callback = launch(service, smart, session)
    saved = session.cookies.copy()
    assert session.get(callback, allow_redirects=False).status_code == 303
    replay = browser()
    replay.cookies.update(saved)  # the launch cookie as it was before the callback cleared it
    answer = replay.get(callback, allow_redirects=False)
    assert answer.status_code == 502
    assert "invalid_grant" in answer.text
    assert "Location" not in answer.headers


def test_a_token_endpoint_error_is_a_clear_page(service: Service, smart: SmartTestServer) -> None:
    smart.token_error = "invalid_client"
    session = browser()
    _, callback = launch(service, smart, session)
    answer = session.get(callback, allow_redirects=False)
    assert answer.status_code == 502
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "The EHR did not give this app access" in answer.text
    assert "invalid_client" in answer.text
    assert "refused by the test" not in answer.text  # the server's own words are not repeated
    assert "Traceback" not in answer.text


def test_an_authorization_refusal_is_a_clear_page(service: Service, smart: SmartTestServer) -> None:
    session = browser()
    _, callback = launch(service, smart, session)
    state = parse_qs(urlsplit(callback).query)["state"][0]
    answer = session.get(f"{service.url}/smart/callback?error=access_denied&state={state}", allow_redirects=False)
    assert answer.status_code == 403
    assert "did not authorize" in answer.text


def test_fhir_server_down_says_what_could_not_be_read(service: Service, smart: SmartTestServer) -> None:
    session = browser()
    _, page_url = open_page(service, smart, session)
    smart.fhir_down = True
    page = session.get(page_url)
    assert page.status_code == 502
    assert page.headers["Content-Type"].startswith("text/html")
    assert "The patient&#39;s record could not be read" in page.text
    assert "Patient data not available" in page.text
    assert "Condition data not available" in page.text
    assert "Traceback" not in page.text


def test_fhir_server_gone_says_what_could_not_be_read(smart: SmartTestServer, medplum, tmp_path: Path) -> None:
    """The whole EHR endpoint stops answering after the launch: connection refused, not a 500."""
    with SmartTestServer(medplum.base_url, client_id="dvt-pathway-test") as ehr:
        running, thread = start_service(tmp_path, ehr)
        try:
            session = browser()
            _, page_url = open_page(running, ehr, session)
            ehr.stop()
            page = session.get(page_url, timeout=30)
            assert page.status_code == 502
            assert "could not be read" in page.text
        finally:
            stop_service(running, thread)


@pytest.mark.parametrize("tamper", ["unknown page", "altered cookie", "cookie under another page id"])
def test_a_page_without_its_session_is_refused(service: Service, smart: SmartTestServer, tamper: str) -> None:
    session = browser()
    _, page_url = open_page(service, smart, session)
    cookie = next(c for c in session.cookies if c.name.startswith("dvt-pathway-"))
    page_id = cookie.name.removeprefix("dvt-pathway-")
    target = page_url
    if tamper == "unknown page":
        target = page_url.replace(page_id, "A" * 22)
    elif tamper == "altered cookie":
        cookie.value = cookie.value[:-4] + ("AAAA" if not cookie.value.endswith("AAAA") else "BBBB")
    else:
        other = "B" * 22
        session.cookies.set(f"dvt-pathway-{other}", cookie.value, path="/smart")
        target = page_url.replace(page_id, other)
    page = session.get(target)
    assert page.status_code == 401
    assert "session has ended" in page.text


def test_a_browser_keeps_the_last_three_pages_open(service: Service, smart: SmartTestServer) -> None:
    """Each open page holds a cookie sent with every request to /smart: opening a fourth ends the oldest."""
    session = browser()
    pages = [open_page(service, smart, session)[1] for _ in range(4)]
    held = [c for c in session.cookies if c.name.startswith("dvt-pathway-")]
    assert len(held) == 3
    assert session.get(pages[0]).status_code == 401
    assert [session.get(page).status_code for page in pages[1:]] == [200, 200, 200]


@pytest.fixture
def unconfigured(smart: SmartTestServer, tmp_path: Path) -> Iterator[Service]:
    running, thread = start_service(tmp_path, smart, smart_client_id=None)
    yield running
    stop_service(running, thread)


def test_the_view_refuses_to_launch_when_not_configured(unconfigured: Service, smart: SmartTestServer) -> None:
    response = browser().get(unconfigured.launch_url(smart.fhir_base, smart.new_launch(PATIENT)), allow_redirects=False)
    assert response.status_code == 503
    assert "DVT_CDS_SMART_CLIENT_ID" in response.text
    assert "Location" not in response.headers


def test_no_token_code_state_or_patient_reaches_the_log(
    service: Service, smart: SmartTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Everything the service logs (its loggers at DEBUG); werkzeug's and urllib3's request lines are at WARNING
    under `dvt-cds serve` (cds_service/logs.py), and this test's own requests are not the service's."""
    caplog.set_level(logging.DEBUG, logger="cds_service")
    session = browser()
    _, callback = launch(service, smart, session)
    answer = session.get(callback, allow_redirects=False)
    session.get(f"{service.url}/smart/{answer.headers['Location']}")
    secrets_seen = {
        smart.issued_tokens()[-1],
        parse_qs(urlsplit(callback).query)["code"][0],
        parse_qs(urlsplit(callback).query)["state"][0],
        smart.token_requests[-1]["code_verifier"],
        PATIENT,
    }
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records if record.name.startswith("cds_service")]
    events = [line for line in lines if '"event": "smart-' in line]
    assert len(events) >= 3, lines
    for line in lines:
        for secret in secrets_seen:
            assert secret not in line, line


def test_https_cookies_are_secure_samesite_none_and_partitioned(smart: SmartTestServer, tmp_path: Path) -> None:
    running, thread = start_service(tmp_path, smart, public_base_url="https://cds.example.org")
    try:
        response = browser().get(running.launch_url(smart.fhir_base, smart.new_launch(PATIENT)), allow_redirects=False)
        assert response.status_code == 302
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("__Secure-dvt-launch-")
        assert "Secure" in cookie
        assert "SameSite=None" in cookie
        assert "Partitioned" in cookie
        redirect_uri = parse_qs(urlsplit(response.headers["Location"]).query)["redirect_uri"][0]
        assert redirect_uri == "https://cds.example.org/smart/callback"
    finally:
        stop_service(running, thread)


def test_frame_ancestors_let_the_ehr_frame_the_view(smart: SmartTestServer, tmp_path: Path) -> None:
    running, thread = start_service(tmp_path, smart, smart_frame_ancestors="https://ehr.example.org")
    try:
        response = browser().get(f"{running.url}/smart/launch")
        assert response.headers["Content-Security-Policy"].endswith("frame-ancestors https://ehr.example.org")
        assert "X-Frame-Options" not in response.headers
    finally:
        stop_service(running, thread)
