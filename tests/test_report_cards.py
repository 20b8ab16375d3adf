"""What a card says about facts read from report text, about a DVT known only from a report, and about
anticoagulation that could not be checked — through the HTTP API."""

from __future__ import annotations

from datetime import date

from flask.testing import FlaskClient

from cds_service.cards import SUMMARY_MAX, fit
from cds_service.cards.markdown import day as in_words
from hooks import templates
from hooks.templates import search_token, with_local_codes
from tests.builders import (
    TODAY,
    day,
    distal_dvt,
    hook_request,
    medication_request,
    narrative_report,
    provoked_by_surgery,
)


def report(text: str, *, days: int = 1, html: bool = False) -> dict:
    return narrative_report(text, days=days, html=html)


def patient_view(client: FlaskClient, resources: list[dict]) -> list[dict]:
    request = hook_request("patient-view", resources)
    request["prefetch"]["imagingReports"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources if r["resourceType"] == "DiagnosticReport"],
    }
    response = client.post("/cds-services/distal-dvt-patient-view", json=request)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["cards"]


def test_a_dvt_known_only_from_a_report_says_so_and_quotes_the_report(client: FlaskClient) -> None:
    sentence = "Acute occlusive thrombus in the left peroneal veins, 6.2 cm in length."
    [card] = patient_view(client, [report(sentence, html=True), provoked_by_surgery()])
    assert card["source"]["topic"]["code"] == "distal-dvt-anticoagulate"
    study = in_words(date.fromisoformat(day(1)), TODAY)
    origin = f'From the ultrasound report of {study} (not on the problem list), report text: "{sentence}".'
    assert origin in card["detail"]


def test_a_coded_dvt_is_not_said_to_be_off_the_problem_list(client: FlaskClient) -> None:
    [card] = patient_view(client, [distal_dvt(), report("Thrombus in the left peroneal vein, 6 cm long.")])
    assert "(not on the problem list)" not in card["detail"]
    assert 'report text: "Thrombus in the left peroneal vein, 6 cm long."' in card["detail"]


def test_report_text_is_escaped_and_quoted_at_most_160_characters(client: FlaskClient) -> None:
    hostile = (
        "Acute thrombus in the left peroneal vein [click](https://evil.example.org) <img src=x onerror=alert(1)> "
        + "with *emphasis* and a long tail " * 8
    )
    [card] = patient_view(client, [report(hostile), provoked_by_surgery()])
    detail = card["detail"]
    assert "[click](" not in detail  # the markdown link is neutralised
    assert "<img" not in detail.replace("\\<img", "")  # only escaped: shown as text, never markup
    assert "\\[click\\]" in detail
    quoted = detail.split('report text: "', 1)[1].split('"', 1)[0]
    unescaped = quoted.replace("\\", "")
    assert len(unescaped) <= 160
    assert unescaped.endswith("…")


def test_an_order_whose_drug_cannot_be_read_leads_the_summary(client: FlaskClient) -> None:
    order = medication_request("0", "x", per_day=None)
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {
        "identifier": {"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.698288", "value": "4471"}
    }
    [card] = patient_view(client, [distal_dvt(), report("Thrombus in the left peroneal vein, 6 cm long.")])
    assert not card["summary"].startswith("Current anticoagulation could not be checked")
    [card] = patient_view(client, [distal_dvt(), order, report("Thrombus in the left peroneal vein, 6 cm long.")])
    assert card["summary"].startswith("Current anticoagulation could not be checked: ")
    assert len(card["summary"]) < 140
    assert card["detail"].startswith(
        "**Current anticoagulation could not be checked**: the drug of medication 4471 could not be read. Check the "
        "medication list before ordering."
    )


def test_summaries_are_cut_at_a_word_boundary() -> None:
    long = "Isolated calf DVT with positive D-dimer, length > 5 cm or ≥ 2 veins, unprovoked +2: anticoagulate " * 2
    cut = fit(long)
    assert len(cut) <= SUMMARY_MAX
    assert cut.endswith("…")
    assert long.startswith(cut[:-1])
    assert not long[len(cut) - 1].isalnum()  # the cut fell between words
    assert fit("short summary") == "short summary"


def test_local_codes_are_escaped_in_the_queries() -> None:
    assert search_token("urn:oid:1.2.840.114350|1510883") == "urn:oid:1.2.840.114350|1510883"
    assert search_token("https://fhir.cerner.com/t/codeSet/72|DD,1") == "https://fhir.cerner.com/t/codeSet/72|DD%5C%2C1"
    assert search_token("sys|A&B c") == "sys|A%26B%20c"
    key = with_local_codes(templates.DDIMER, ["urn:oid:1.2|99"])
    assert ",urn:oid:1.2|99&_sort=-date" in key.template
    assert with_local_codes(templates.MEDICATIONS, ["urn:oid:1.2|99"]) == templates.MEDICATIONS
