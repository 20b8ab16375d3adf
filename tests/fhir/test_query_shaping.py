"""The service's own queries shaped to the rules (FetchPart): date bounds from the windows the rules read, plus a
margin; the undated remainder where a rule reads undated resources; `_count` sized so one page holds the usual
result; the EHR's own next links and the advertised templates left as they are."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cds_service.clinical import lookback
from cds_service.clinical.config import RuleConfig
from cds_service.clinical.facts import LAB_SETS, OBSERVATION_READS
from cds_service.clinical.thresholds import (
    ACUTE_WINDOW_DAYS,
    DDIMER_WINDOW_DAYS,
    LAB_WINDOW_DAYS,
    PROVOKING_WINDOW_DAYS,
    RECENT_HOSPITALIZATION_DAYS,
)
from cds_service.fhir.client import FhirClient
from cds_service.fhir.prefetch import DATE_MARGIN_DAYS, PrefetchResolver
from cds_service.fhir.record import PatientRecord
from hooks import templates
from tests.builders import PATIENT_ID, bundle, condition, ddimer

TODAY = date(2026, 3, 16)
CONTEXT = {"patientId": PATIENT_ID, "userId": "Practitioner/1"}


@pytest.fixture
def client() -> Iterator[FhirClient]:
    fhir = FhirClient(
        request_timeout_s=1.0, max_pages=5, max_response_bytes=1_000_000, max_entries=1000, max_parallel=8
    )
    yield fhir
    fhir.close()


def resolve(
    client: FhirClient,
    server: HTTPServer,
    keys: tuple[Any, ...],
    *,
    config: RuleConfig | None = None,
    today: date | None = TODAY,
    prefetch: dict[str, Any] | None = None,
) -> PatientRecord:
    resolver = PrefetchResolver(client, lambda url: (True, ""), lookbacks=templates.lookbacks(config or RuleConfig()))
    return resolver.resolve(
        keys,
        context=CONTEXT,
        patient_id=PATIENT_ID,
        prefetch=prefetch,
        fhir_server=server.url_for("/fhir"),
        access_token=None,
        deadline=time.monotonic() + 5,
        today=today,
    )


def queries(server: HTTPServer) -> list[dict[str, list[str]]]:
    return sorted(
        ({k: entry[0].args.getlist(k) for k in entry[0].args} for entry in server.log), key=lambda q: sorted(q.items())
    )


def by_part(server: HTTPServer, path: str, *, undated: dict | None, dated: dict) -> None:
    """Answer the undated part with ``undated`` (None: a 500) and the bounded one with ``dated``."""

    def answer(request: Request) -> Response:
        body = undated if "date:missing" in request.args else dated
        if body is None:
            return Response("no", status=500)
        return Response(json.dumps(body), content_type="application/fhir+json")

    server.expect_request(path).respond_with_handler(answer)


def floor(days: int) -> str:
    return f"ge{(TODAY - timedelta(days=days + DATE_MARGIN_DAYS)).isoformat()}"


# --- the windows come from the rules ----------------------------------------------------------------------------
def test_every_observation_value_set_a_rule_reads_has_its_window() -> None:
    assert set(lookback.OBSERVATION_WINDOWS) == set(OBSERVATION_READS)


def test_the_windows_are_the_rules_windows_and_follow_the_settings() -> None:
    default = templates.lookbacks(RuleConfig())
    assert default == {
        "encounters": PROVOKING_WINDOW_DAYS.int_value + ACUTE_WINDOW_DAYS.int_value,  # 120 > 90 hospitalization
        "procedures": PROVOKING_WINDOW_DAYS.int_value + ACUTE_WINDOW_DAYS.int_value,
        "ddimer": ACUTE_WINDOW_DAYS.int_value + DDIMER_WINDOW_DAYS.int_value,
        "labs": LAB_WINDOW_DAYS.int_value,
    }
    wider = templates.lookbacks(RuleConfig(acute_window_days=60, recent_hospitalization_days=365))
    assert wider["ddimer"] == 60 + DDIMER_WINDOW_DAYS.int_value
    assert wider["encounters"] == 365 > RECENT_HOSPITALIZATION_DAYS.int_value


def test_the_labs_parts_ask_every_lab_code_once_windowed_or_whole_history() -> None:
    windowed, undated, history = templates.LABS.fetch
    assert windowed.valuesets == undated.valuesets == lookback.windowed(LAB_SETS)
    assert history.valuesets == ("observation-pregnancy-status", "preference-avoid-anticoagulation")
    assert set(windowed.valuesets) | set(history.valuesets) == set(LAB_SETS)
    assert history.lookback is None
    assert not history.undated


# --- the queries sent --------------------------------------------------------------------------------------------
def test_encounters_get_the_window_bound_and_the_undated_remainder(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Encounter").respond_with_json(bundle())
    resolve(client, httpserver, (templates.ENCOUNTERS,))
    window = templates.lookbacks(RuleConfig())["encounters"]
    base = {"patient": [PATIENT_ID], "_sort": ["-date"], "_count": ["100"]}
    assert queries(httpserver) == sorted(
        [{**base, "date": [floor(window)]}, {**base, "date:missing": ["true"]}], key=lambda q: sorted(q.items())
    )


def test_procedures_get_the_window_bound_only(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Procedure").respond_with_json(bundle())
    resolve(client, httpserver, (templates.PROCEDURES,))
    assert [q["date"] for q in queries(httpserver)] == [[floor(120)]]


def test_the_ddimer_bound_moves_with_the_acute_window_setting(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Observation").respond_with_json(bundle())
    resolve(client, httpserver, (templates.DDIMER,), config=RuleConfig(acute_window_days=60))
    dates = sorted(q.get("date", q.get("date:missing")) for q in queries(httpserver))
    assert dates == sorted([[floor(60 + DDIMER_WINDOW_DAYS.int_value)], ["true"]])


def test_labs_are_asked_in_three_parts(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Observation").respond_with_json(bundle())
    resolve(client, httpserver, (templates.LABS,))
    sent = queries(httpserver)
    assert len(sent) == 3
    bounded = [q for q in sent if "date" in q]
    undated = [q for q in sent if "date:missing" in q]
    whole = [q for q in sent if "date" not in q and "date:missing" not in q]
    assert [q["date"] for q in bounded] == [[floor(LAB_WINDOW_DAYS.int_value)]]
    assert bounded[0]["code"] == undated[0]["code"] != whole[0]["code"]
    assert "http://loinc.org|82810-3" in whole[0]["code"][0]  # pregnancy status: the newest decides, however old
    assert "http://loinc.org|82810-3" not in bounded[0]["code"][0]
    assert all(q["_count"] == ["200"] for q in sent)


def test_conditions_have_no_bound_and_one_large_page(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Condition").respond_with_json(bundle())
    resolve(client, httpserver, (templates.CONDITIONS,))
    assert queries(httpserver) == [{"patient": [PATIENT_ID], "_count": [str(templates.PAGE_ALL)]}]


def test_without_today_no_bound_and_no_undated_part(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Encounter").respond_with_json(bundle())
    resolve(client, httpserver, (templates.ENCOUNTERS,), today=None)
    assert queries(httpserver) == [{"patient": [PATIENT_ID], "_sort": ["-date"], "_count": ["100"]}]


def test_a_window_the_resolver_does_not_know_is_no_bound(client: FhirClient, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/fhir/Encounter").respond_with_json(bundle())
    PrefetchResolver(client, lambda url: (True, "")).resolve(
        (templates.ENCOUNTERS,),
        context=CONTEXT,
        patient_id=PATIENT_ID,
        prefetch=None,
        fhir_server=httpserver.url_for("/fhir"),
        access_token=None,
        deadline=time.monotonic() + 5,
        today=TODAY,
    )
    assert [sorted(q) for q in queries(httpserver)] == [["_count", "_sort", "patient"]]


def test_the_parts_of_a_key_make_one_result(client: FhirClient, httpserver: HTTPServer) -> None:
    dated, undated = ddimer(900, resource_id="dated"), ddimer(900, resource_id="issued-only")
    del undated["effectiveDateTime"]
    undated["issued"] = "2026-03-14T08:00:00Z"
    by_part(httpserver, "/fhir/Observation", undated=bundle(undated), dated=bundle(dated))
    record = resolve(client, httpserver, (templates.DDIMER,))
    assert sorted(r["id"] for r in record.resources("Observation")) == ["dated", "issued-only"]
    assert record.sources == {"ddimer": "fhir"}
    assert record.gaps == []


def test_a_failed_part_fails_its_key(client: FhirClient, httpserver: HTTPServer) -> None:
    by_part(httpserver, "/fhir/Encounter", undated=None, dated=bundle())
    record = resolve(client, httpserver, (templates.ENCOUNTERS,))
    assert record.sources == {"encounters": "none"}
    assert [(g.key, g.partial) for g in record.gaps] == [("encounters", False)]


def test_a_prefetched_key_and_its_next_link_are_not_reshaped(client: FhirClient, httpserver: HTTPServer) -> None:
    base = httpserver.url_for("/fhir")
    httpserver.expect_request("/fhir/Condition", query_string={"page": "2"}).respond_with_json(bundle(condition()))
    first = bundle(condition(), next_url=f"{base}/Condition?page=2")
    resolve(client, httpserver, (templates.CONDITIONS,), prefetch={"conditions": first})
    assert queries(httpserver) == [{"page": ["2"]}]


def test_the_advertised_templates_carry_no_service_bounds() -> None:
    for key in templates.PATIENT_DATA:
        assert "date=" not in key.template
        assert ":missing" not in key.template
