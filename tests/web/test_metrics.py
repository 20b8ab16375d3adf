"""Prometheus /metrics: latency by service and status, cards by topic, FHIR fetches by outcome, JWT rejections."""

from __future__ import annotations

from pytest_httpserver import HTTPServer

from tests.builders import bundle, condition, hook_request, operation_outcome, patient


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{wanted}}} in metrics")


def test_metrics_count_what_happens(make_app, fhir_server: HTTPServer) -> None:
    client = make_app().test_client()
    before = client.get("/metrics").get_data(as_text=True)
    fhir_server.expect_request("/fhir/MedicationRequest").respond_with_json(operation_outcome(), status=500)
    body = hook_request("patient-view", prefetch={"patient": patient(), "conditions": bundle(condition("I82.452"))})
    body["fhirServer"] = fhir_server.url_for("/fhir")
    response = client.post("/cds-services/distal-dvt-patient-view", json=body)
    assert response.status_code == 200
    topic = response.get_json()["cards"][0]["source"]["topic"]["code"]
    client.post("/cds-services/nope", json={})
    text = client.get("/metrics").get_data(as_text=True)
    assert "text/plain" in client.get("/metrics").content_type

    def delta(name: str, **labels: str) -> float:
        try:  # the series may not exist yet (the registry is the process's: earlier tests fill it, or not)
            old = sample(before, name, **labels)
        except AssertionError:
            old = 0.0
        return sample(text, name, **labels) - old

    assert delta("dvt_cds_request_duration_seconds_count", service="distal-dvt-patient-view", status="200") == 1
    assert delta("dvt_cds_request_duration_seconds_count", service="unknown", status="404") == 1
    assert delta("dvt_cds_cards_total", topic=topic) == 1
    assert delta("dvt_cds_fhir_fetches_total", outcome="failed") >= 1
    assert "pat-1" not in text


def test_jwt_rejections_by_reason(make_app) -> None:
    client = make_app(auth="jwt", trusted_issuers=[{"iss": "x", "jwks": {"keys": []}}]).test_client()
    client.get("/cds-services")
    client.get("/cds-services", headers={"Authorization": "Bearer nope"})
    text = client.get("/metrics").get_data(as_text=True)
    assert sample(text, "dvt_cds_jwt_rejections_total", reason="missing") >= 1
    assert sample(text, "dvt_cds_jwt_rejections_total", reason="malformed") >= 1
