"""The second round of reads (cds_service/fhir/followup.py): report text in Binary resources and referenced
Medications, only under fhirServer, with the Accept header a Binary needs, a per-report byte cap, and the call
deadline; everything that cannot be read keeps its reason."""

from __future__ import annotations

import base64
import time
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cds_service.fhir.client import FhirClient
from cds_service.fhir.followup import BINARY_ACCEPT, absolute_url, read_followups
from cds_service.fhir.record import Attachment, PatientRecord
from tests.builders import PATIENT_ID, RX, operation_outcome

TOKEN = "tok-FOLLOWUP-456"
REPORT = b"FINDINGS: Occlusive thrombus in the left peroneal vein.\nIMPRESSION: Acute distal DVT, left."


@pytest.fixture
def client() -> Iterator[FhirClient]:
    fhir = FhirClient(request_timeout_s=1.0, max_pages=3, max_response_bytes=1_000_000, max_entries=100, max_parallel=8)
    yield fhir
    fhir.close()


def binary(data: bytes | str | None = REPORT, content_type: str | None = "text/plain", rid: str = "x") -> dict:
    resource: dict[str, Any] = {"resourceType": "Binary", "id": rid}
    if content_type is not None:
        resource["contentType"] = content_type
    if isinstance(data, bytes):
        resource["data"] = base64.b64encode(data).decode("ascii")
    elif data is not None:
        resource["data"] = data
    return resource


def medication(rid: str, code: str = "1364445", display: str = "apixaban 5 MG Oral Tablet") -> dict:
    return {
        "resourceType": "Medication",
        "id": rid,
        "code": {"coding": [{"system": RX, "code": code, "display": display}]},
    }


def allow(_: str) -> tuple[bool, str]:
    return True, ""


def run(
    client: FhirClient,
    fhir_server: str | None,
    *,
    attachments: tuple[str, ...] = (),
    medications: tuple[str, ...] = (),
    token: str | None = TOKEN,
    deadline_s: float = 2.0,
    allowed: Any = allow,
    attachment_bytes: int = 100_000,
) -> PatientRecord:
    record = PatientRecord(patient_id=PATIENT_ID)
    read_followups(
        client,
        record,
        attachments=list(attachments),
        medications=list(medications),
        fhir_server=fhir_server,
        access_token=token,
        deadline=time.monotonic() + deadline_s,
        server_allowed=allowed,
        attachment_bytes=attachment_bytes,
    )
    return record


class NoFetchClient:
    """Stands in for the FhirClient where nothing may be fetched."""

    def fetch_many(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing should have been fetched")


# --- absolute_url -----------------------------------------------------------------------------------------------
def test_absolute_url() -> None:
    assert absolute_url("https://ehr.example/fhir", "Binary/x") == "https://ehr.example/fhir/Binary/x"
    assert absolute_url("https://ehr.example/fhir/", "Binary/x") == "https://ehr.example/fhir/Binary/x"
    assert absolute_url("https://ehr.example/fhir", "/Binary/x") == "https://ehr.example/fhir/Binary/x"
    assert absolute_url("https://ehr.example/fhir", "https://other.example/Binary/x") == (
        "https://other.example/Binary/x"
    )
    assert absolute_url("https://ehr.example/fhir", "http://ehr.example/fhir/Binary/x") == (
        "http://ehr.example/fhir/Binary/x"
    )


# --- Binary -----------------------------------------------------------------------------------------------------
def test_a_relative_binary_is_read_under_fhir_server(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Binary/x").respond_with_json(binary(content_type="text/plain; charset=utf-8"))
    record = run(client, httpserver.url_for("/fhir"), attachments=("Binary/x",))
    assert record.attachments == {"Binary/x": Attachment("Binary/x", "text/plain; charset=utf-8", REPORT)}
    assert len(httpserver.log) == 1
    request = httpserver.log[0][0]
    assert request.path == "/fhir/Binary/x"
    assert request.headers.get("Accept") == BINARY_ACCEPT == "application/fhir+json"
    assert request.headers.get("Authorization") == f"Bearer {TOKEN}"


def test_no_authorization_header_without_a_token(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Binary/x").respond_with_json(binary())
    record = run(client, httpserver.url_for("/fhir"), attachments=("Binary/x",), token=None)
    assert record.attachments["Binary/x"].data == REPORT
    request = httpserver.log[0][0]
    assert "Authorization" not in request.headers
    assert request.headers.get("Accept") == "application/fhir+json"


def test_several_binaries_and_an_absolute_url_under_fhir_server(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Binary/a").respond_with_json(binary(b"left leg: no thrombus", rid="a"))
    httpserver.expect_request("/fhir/Binary/b").respond_with_json(
        binary(b"<p>right leg</p>", content_type="text/html", rid="b")
    )
    absolute = httpserver.url_for("/fhir/Binary/b")
    record = run(client, httpserver.url_for("/fhir"), attachments=("Binary/a", absolute))
    assert record.attachments["Binary/a"] == Attachment("Binary/a", "text/plain", b"left leg: no thrombus")
    assert record.attachments[absolute] == Attachment(absolute, "text/html", b"<p>right leg</p>")
    assert sorted(entry[0].path for entry in httpserver.log) == ["/fhir/Binary/a", "/fhir/Binary/b"]


def test_a_url_on_another_origin_is_not_requested(client: FhirClient, httpserver: HTTPServer) -> None:
    # The same loopback server under another host name is another origin: a request sent there would be logged.
    httpserver.expect_request("/fhir/Binary/x").respond_with_json(binary())
    base = httpserver.url_for("/fhir")
    elsewhere = f"http://127.0.0.1:{httpserver.port}/fhir/Binary/x"
    assert urlsplit(base).hostname == "localhost"
    record = run(client, base, attachments=(elsewhere,))
    assert record.attachments[elsewhere].data is None
    assert record.attachments[elsewhere].reason == "it is outside the EHR's FHIR server, so it was not read"
    assert httpserver.log == []
    with urllib.request.urlopen(elsewhere, timeout=5) as answer:  # the URL was reachable: the check above could fail
        assert answer.status == 200
    assert len(httpserver.log) == 1


def test_a_url_outside_the_fhir_server_path_is_not_requested(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/documents/Binary/x").respond_with_json(binary())
    httpserver.expect_request("/fhirx/Binary/x").respond_with_json(binary())
    urls = (httpserver.url_for("/documents/Binary/x"), httpserver.url_for("/fhirx/Binary/x"))
    record = run(client, httpserver.url_for("/fhir"), attachments=urls)
    for url in urls:
        assert record.attachments[url].data is None
        assert "outside the EHR's FHIR server" in (record.attachments[url].reason or "")
    assert httpserver.log == []


def test_a_missing_binary_is_not_found(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Binary/gone").respond_with_json(operation_outcome(), status=404)
    record = run(client, httpserver.url_for("/fhir"), attachments=("Binary/gone",))
    assert record.attachments["Binary/gone"] == Attachment("Binary/gone", reason="not found")


@pytest.mark.parametrize(
    ("respond", "reason"),
    [
        ({"status": 500}, "FHIR server error (HTTP 500)"),
        ({"status": 403}, "FHIR server refused access (HTTP 403)"),
        ({"body": operation_outcome()}, "server answered with an OperationOutcome"),
        ({"body": {"resourceType": "DocumentReference", "id": "x"}}, "expected Binary, got DocumentReference"),
    ],
    ids=["500", "403", "outcome", "wrong-type"],
)
def test_a_binary_that_cannot_be_read_keeps_the_reason(
    client: FhirClient, httpserver: HTTPServer, respond: dict, reason: str
) -> None:
    httpserver.expect_request("/fhir/Binary/x").respond_with_json(
        respond.get("body", operation_outcome()), status=respond.get("status", 200)
    )
    record = run(client, httpserver.url_for("/fhir"), attachments=("Binary/x",))
    assert record.attachments["Binary/x"] == Attachment("Binary/x", reason=reason)


def test_a_binary_larger_than_the_cap_is_not_kept(client: FhirClient, httpserver: HTTPServer) -> None:
    big = binary(b"IMPRESSION: " + b"x" * 20_000)
    httpserver.expect_request("/fhir/Binary/big").respond_with_json(big)
    httpserver.expect_request("/fhir/Binary/small").respond_with_json(binary(b"small"))
    base = httpserver.url_for("/fhir")
    record = run(client, base, attachments=("Binary/big", "Binary/small"), attachment_bytes=8_000)
    assert record.attachments["Binary/big"].data is None
    assert record.attachments["Binary/big"].reason == "FHIR server response too large"
    assert record.attachments["Binary/small"].data == b"small"


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        (binary(None), "the Binary holds no data"),
        (binary(None, content_type=None), "the Binary holds no data"),
        ({**binary(), "data": 12345}, "the Binary holds no data"),
        (binary("abc"), "the Binary's data is not valid base64"),
        (binary("aGVsbG8"), "the Binary's data is not valid base64"),
    ],
    ids=["no-data", "no-data-no-type", "data-not-a-string", "bad-padding", "truncated"],
)
def test_a_binary_without_usable_data_keeps_the_reason(
    client: FhirClient, httpserver: HTTPServer, resource: dict, reason: str
) -> None:
    httpserver.expect_request("/fhir/Binary/x").respond_with_json(resource)
    record = run(client, httpserver.url_for("/fhir"), attachments=("Binary/x",))
    attachment = record.attachments["Binary/x"]
    assert attachment.data is None
    assert attachment.reason == reason


def test_line_wrapped_base64_is_decoded(client: FhirClient, httpserver: HTTPServer) -> None:
    encoded = base64.encodebytes(REPORT).decode("ascii")  # MIME style: a newline every 76 characters
    assert "\n" in encoded.strip()
    httpserver.expect_request("/fhir/Binary/x").respond_with_json(binary(encoded))
    record = run(client, httpserver.url_for("/fhir"), attachments=("Binary/x",))
    assert record.attachments["Binary/x"].data == REPORT


def test_text_that_is_not_base64_keeps_a_reason(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Binary/x").respond_with_json(binary("Acute DVT, left"))  # plain text, not base64
    record = run(client, httpserver.url_for("/fhir"), attachments=("Binary/x",))
    assert record.attachments["Binary/x"].data is None
    assert record.attachments["Binary/x"].reason == "the Binary's data is not valid base64"


# --- where reads may not go -------------------------------------------------------------------------------------
def test_no_fhir_server_gives_every_url_a_reason_and_fetches_nothing() -> None:
    record = run(
        NoFetchClient(),  # type: ignore[arg-type]
        None,
        attachments=("Binary/a", "https://ehr.example/fhir/Binary/b"),
        medications=("Medication/m1",),
    )
    assert record.attachments == {
        "Binary/a": Attachment("Binary/a", reason="no fhirServer in the request"),
        "https://ehr.example/fhir/Binary/b": Attachment(
            "https://ehr.example/fhir/Binary/b", reason="no fhirServer in the request"
        ),
    }
    assert record.resources("Medication") == []


def test_a_server_not_allowed_gives_every_url_its_reason_and_fetches_nothing(
    client: FhirClient, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/fhir/Binary/a").respond_with_json(binary())
    httpserver.expect_request("/fhir/Medication/m1").respond_with_json(medication("m1"))
    asked: list[str] = []

    def refuse(url: str) -> tuple[bool, str]:
        asked.append(url)
        return False, "fhirServer is not on the allowlist"

    base = httpserver.url_for("/fhir")
    record = run(client, base, attachments=("Binary/a",), medications=("Medication/m1",), allowed=refuse)
    assert asked == [base]
    assert record.attachments == {"Binary/a": Attachment("Binary/a", reason="fhirServer is not on the allowlist")}
    assert record.resources("Medication") == []
    assert httpserver.log == []


def test_nothing_to_read_fetches_nothing() -> None:
    record = run(NoFetchClient(), "https://ehr.example/fhir")  # type: ignore[arg-type]
    assert record.attachments == {}
    assert record.notes == []


# --- Medication -------------------------------------------------------------------------------------------------
def test_medications_are_read_into_the_record(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Medication/m1").respond_with_json(medication("m1"))
    httpserver.expect_request("/fhir/Medication/m2").respond_with_json(medication("m2", "1114195", "rivaroxaban"))
    record = run(client, httpserver.url_for("/fhir"), medications=("Medication/m1", "Medication/m2"))
    assert sorted(m["id"] for m in record.resources("Medication")) == ["m1", "m2"]
    assert record.notes == []
    assert all(entry[0].headers.get("Authorization") == f"Bearer {TOKEN}" for entry in httpserver.log)


@pytest.mark.parametrize(
    ("status", "body", "note"),
    [
        (404, operation_outcome(), "Medication/m9 could not be read from the FHIR server"),
        (
            500,
            operation_outcome(),
            "Medication/m9 could not be read from the FHIR server (FHIR server error (HTTP 500))",
        ),
        (
            200,
            {"resourceType": "Patient", "id": "m9"},
            "Medication/m9 could not be read from the FHIR server (expected Medication, got Patient)",
        ),
    ],
    ids=["404", "500", "wrong-type"],
)
def test_a_medication_that_cannot_be_read_adds_a_note(
    client: FhirClient, httpserver: HTTPServer, status: int, body: dict, note: str
) -> None:
    httpserver.expect_request("/fhir/Medication/m1").respond_with_json(medication("m1"))
    httpserver.expect_request("/fhir/Medication/m9").respond_with_json(body, status=status)
    record = run(client, httpserver.url_for("/fhir"), medications=("Medication/m1", "Medication/m9"))
    assert [m["id"] for m in record.resources("Medication")] == ["m1"]
    assert record.notes == [note]
    assert "Patient" not in record.by_type


# --- the deadline -----------------------------------------------------------------------------------------------
def test_the_call_deadline_bounds_every_read(client: FhirClient, fhir_server: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.5)
        return Response("{}", content_type="application/fhir+json")

    fhir_server.expect_request("/fhir/Binary/slow").respond_with_handler(slow)
    fhir_server.expect_request("/fhir/Medication/slow").respond_with_handler(slow)
    fhir_server.expect_request("/fhir/Binary/fast").respond_with_json(binary(b"fast"))
    started = time.monotonic()
    record = run(
        client,
        fhir_server.url_for("/fhir"),
        attachments=("Binary/slow", "Binary/fast"),
        medications=("Medication/slow",),
        deadline_s=0.3,
    )
    assert time.monotonic() - started < 1.0  # returned at the deadline, not when the slow server answered
    assert record.attachments["Binary/fast"].data == b"fast"
    slow_binary = record.attachments["Binary/slow"]
    assert slow_binary.data is None
    assert slow_binary.reason in ("deadline exceeded", "FHIR server timed out")
    assert len(record.notes) == 1
    assert record.notes[0].startswith("Medication/slow could not be read from the FHIR server (")
    assert record.resources("Medication") == []


def test_a_deadline_already_past_requests_nothing(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Binary/x").respond_with_json(binary())
    started = time.monotonic()
    record = run(client, httpserver.url_for("/fhir"), attachments=("Binary/x",), deadline_s=-1.0)
    assert time.monotonic() - started < 0.5
    assert record.attachments["Binary/x"] == Attachment("Binary/x", reason="deadline exceeded")
    time.sleep(0.05)  # a pool thread that started late checks the deadline before any request
    assert httpserver.log == []
