"""Outbound proxy (DVT_CDS_HTTPS_PROXY): every https request the service makes — FHIR reads, JWKS, SMART discovery —
goes through the site's proxy as a CONNECT tunnel, with its credentials; loopback, DVT_CDS_NO_PROXY hosts and plain
http go direct; nothing is taken from the process environment. The proxy here is a loopback stand-in that records
what it is asked and refuses the tunnel (no name is ever resolved or reached beyond it)."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from cds_service.egress import DIRECT, Egress, bypassed
from cds_service.fhir.client import FhirClient, FhirQuery
from cds_service.security import JwksCache
from cds_service.settings import Settings
from cds_service.smart.launch import LaunchError, SmartClient


class RecordingProxy:
    """Reads each request's head, keeps it, answers 403 and closes."""

    def __init__(self) -> None:
        self.heads: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                head = b""
                try:
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                    self.heads.append(head.decode("latin-1"))
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._server.close()

    def connects(self) -> list[str]:
        """The request line without its HTTP version (http.client tunnels with HTTP/1.0)."""
        return [head.split("\r\n", 1)[0].rsplit(" ", 1)[0] for head in self.heads]


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    running = RecordingProxy()
    yield running
    running.close()


def test_which_requests_go_through_the_proxy() -> None:
    egress = Egress("http://proxy.internal:3128", ("fhir.internal", ".lan.example", "10.20.0.0/16", "192.0.2.7"))
    assert egress.proxy_for("https://ehr.example.org/fhir/Patient/1") == "http://proxy.internal:3128"
    assert egress.proxy_for("https://fhir.internal/r4") is None
    assert egress.proxy_for("https://a.fhir.internal/r4") is None  # a subdomain of a listed host
    assert egress.proxy_for("https://notfhir.internal/r4") == "http://proxy.internal:3128"  # not on a dot boundary
    assert egress.proxy_for("https://x.lan.example/") is None
    assert egress.proxy_for("https://10.20.3.4/fhir") is None
    assert egress.proxy_for("https://192.0.2.7/fhir") is None
    assert egress.proxy_for("https://192.0.2.8/fhir") == "http://proxy.internal:3128"
    assert egress.proxy_for("https://127.0.0.1:8443/fhir") is None  # loopback is never proxied
    assert egress.proxy_for("https://localhost/fhir") is None
    assert egress.proxy_for("http://hapi:8080/fhir") is None  # plain http (closed test networks) goes direct
    assert DIRECT.proxy_for("https://ehr.example.org/") is None
    assert bypassed("anything.example", ["*"])


def test_settings_make_the_egress_and_keep_the_proxy_secret() -> None:
    settings = Settings(
        auth="off", https_proxy="http://cds:pw@proxy.internal:3128", no_proxy="fhir.internal, 10.0.0.0/8"
    )
    assert "pw" not in repr(settings)
    expected = Egress("http://cds:pw@proxy.internal:3128", ("fhir.internal", "10.0.0.0/8"))
    assert Egress.from_settings(settings) == expected
    with pytest.raises(ValueError, match="proxy URL"):
        Settings(auth="off", https_proxy="proxy.internal:3128")


def test_fhir_reads_go_through_the_proxy_with_its_credentials(proxy: RecordingProxy) -> None:
    client = FhirClient(
        request_timeout_s=1.0,
        max_pages=1,
        max_response_bytes=10_000,
        max_entries=10,
        max_parallel=2,
        egress=Egress(proxy.url("cds:p%40ss"), ()),
    )
    try:
        base = "https://ehr.example.test/fhir"
        query = FhirQuery(key="patient", url=f"{base}/Patient/p1", resource_type="Patient", is_read=True)
        result = client.fetch(query, base_url=base, token="tok", deadline=time.monotonic() + 2)
    finally:
        client.close()
    assert not result.ok
    assert proxy.connects() == ["CONNECT ehr.example.test:443"]
    expected = base64.b64encode(b"cds:p@ss").decode()
    assert f"proxy-authorization: basic {expected}\r\n" in proxy.heads[0].lower().replace(expected.lower(), expected)
    assert "tok" not in proxy.heads[0]  # the token travels inside the tunnel only


def test_a_loopback_fhir_server_is_reached_direct_with_a_proxy_set(proxy: RecordingProxy, fhir_server) -> None:
    fhir_server.expect_request("/fhir/Patient/p1").respond_with_json({"resourceType": "Patient", "id": "p1"})
    client = FhirClient(
        request_timeout_s=1.0,
        max_pages=1,
        max_response_bytes=10_000,
        max_entries=10,
        max_parallel=2,
        egress=Egress(proxy.url(), ()),
    )
    try:
        url = fhir_server.url_for("/fhir/Patient/p1")
        query = FhirQuery(key="patient", url=url, resource_type="Patient", is_read=True)
        result = client.fetch(query, base_url=fhir_server.url_for("/fhir"), token=None, deadline=time.monotonic() + 2)
    finally:
        client.close()
    assert result.ok
    assert proxy.heads == []


def test_jwks_and_smart_discovery_go_through_the_proxy(proxy: RecordingProxy) -> None:
    egress = Egress(proxy.url("cds:pw"), ())
    cache = JwksCache(timeout_s=1, min_refetch_s=0, allow_http_loopback=False, egress=egress)
    assert cache.key("https://issuer.example.test/jwks.json", "k1") is None
    smart = SmartClient(timeout_s=1.0, egress=egress)
    try:
        with pytest.raises(LaunchError):
            smart.discover("https://ehr.example.test/fhir")
    finally:
        smart.close()
    assert proxy.connects() == [
        "CONNECT issuer.example.test:443",
        "CONNECT ehr.example.test:443",
    ]
    assert all("proxy-authorization: basic" in head.lower() for head in proxy.heads)


def test_the_process_environment_is_not_a_proxy_source(proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    monkeypatch.setenv("https_proxy", proxy.url())
    cache = JwksCache(timeout_s=0.5, min_refetch_s=0, allow_http_loopback=False)
    assert cache.key("https://127.0.0.1:9/jwks.json", "k1") is None  # refused direct, never via the proxy
    assert proxy.heads == []
