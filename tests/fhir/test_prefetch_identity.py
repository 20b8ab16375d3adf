"""Prefetch that names someone else: a ``patient`` prefetch whose id is not ``context.patientId``, or a search
whose every result is another patient's, is not this patient's data. It is read again from fhirServer when we
may, else the call ends 412 for data the service needs (never a silent empty answer, never the ids echoed)."""

from __future__ import annotations

import json
from collections.abc import Callable

from flask import Flask
from pytest_httpserver import HTTPServer

from tests.builders import PATIENT_ID, bundle, condition, distal_dvt, hook_request, patient, prefetch_for

PV = "/cds-services/distal-dvt-patient-view"
OTHER = "pat-OTHER-77"


def call(app: Flask, prefetch: dict, fhir_server: str | None = None):
    body = hook_request("patient-view", prefetch=prefetch)
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
    return app.test_client().post(PV, json=body)


def paths(server: HTTPServer) -> list[str]:
    return [request.path for request, _ in server.log]


def diagnostics(response) -> str:
    return " ".join(issue["diagnostics"] for issue in response.get_json()["issue"])


def test_a_patient_prefetch_for_another_patient_is_412_without_fhir_server(make_app: Callable[..., Flask]) -> None:
    response = call(make_app(), prefetch_for([distal_dvt()], patient_resource=patient(OTHER)))
    assert response.status_code == 412, response.get_json()
    assert "patient: the prefetched Patient does not match context.patientId" in diagnostics(response)
    text = response.get_data(as_text=True)
    assert OTHER not in text
    assert PATIENT_ID not in text


def test_a_patient_prefetch_for_another_patient_is_read_from_fhir_server(
    make_app: Callable[..., Flask], fhir_server: HTTPServer
) -> None:
    fhir_server.expect_request(f"/fhir/Patient/{PATIENT_ID}").respond_with_json(patient())
    prefetch = prefetch_for([distal_dvt()], patient_resource=patient(OTHER))
    response = call(make_app(), prefetch, fhir_server.url_for("/fhir"))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["cards"]  # the DVT is seen for the right patient, not "no cards"
    assert paths(fhir_server).count(f"/fhir/Patient/{PATIENT_ID}") == 1


def test_a_fhir_server_answering_with_another_patient_is_412(
    make_app: Callable[..., Flask], fhir_server: HTTPServer
) -> None:
    fhir_server.expect_request(f"/fhir/Patient/{PATIENT_ID}").respond_with_json(patient(OTHER))
    prefetch = prefetch_for([distal_dvt()], patient_resource=patient(OTHER))
    response = call(make_app(), prefetch, fhir_server.url_for("/fhir"))
    assert response.status_code == 412, response.get_json()
    assert "Patient from fhirServer does not match the one asked for" in diagnostics(response)
    assert OTHER not in response.get_data(as_text=True)


def test_a_search_prefetch_holding_only_another_patients_data_is_read_again(
    make_app: Callable[..., Flask], fhir_server: HTTPServer
) -> None:
    fhir_server.expect_request("/fhir/Condition").respond_with_json(bundle(distal_dvt()))
    prefetch = prefetch_for([])
    prefetch["conditions"] = bundle(condition("E11.9", patient_id=OTHER), condition("I10", patient_id=OTHER))
    response = call(make_app(), prefetch, fhir_server.url_for("/fhir"))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["cards"]
    [searched] = [request for request, _ in fhir_server.log if request.path == "/fhir/Condition"]
    assert searched.args["patient"] == PATIENT_ID


def test_a_search_prefetch_holding_only_another_patients_data_is_412_without_fhir_server(
    make_app: Callable[..., Flask],
) -> None:
    prefetch = prefetch_for([])
    prefetch["conditions"] = bundle(distal_dvt(patient_id=OTHER))
    response = call(make_app(), prefetch)
    assert response.status_code == 412, response.get_json()
    assert "conditions: the prefetched search holds another patient's data" in diagnostics(response)
    assert OTHER not in json.dumps(response.get_json())


def test_a_few_strays_in_a_search_prefetch_are_dropped_and_said(make_app: Callable[..., Flask]) -> None:
    prefetch = prefetch_for([distal_dvt()])
    prefetch["conditions"]["entry"].append({"resource": condition("I82.452", patient_id=OTHER)})
    response = call(make_app(), prefetch)
    assert response.status_code == 200, response.get_json()
    [card] = response.get_json()["cards"]
    assert "1 resource(s) belonging to another patient were ignored" in card["detail"]
