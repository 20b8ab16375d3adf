"""Discovery: four services, each with id, hook, title, description and spec-conformant prefetch templates."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

# CDS Hooks 2.0 "Prefetch tokens": only root-level context fields and the user* tokens.
ALLOWED_TOKENS = {
    "context.patientId",
    "context.encounterId",
    "context.userId",
    "userPractitionerId",
    "userPractitionerRoleId",
    "userPatientId",
    "userRelatedPersonId",
}
# "Prefetch query restrictions": instance read, type search with reference/token/date params, _count, _sort.
SEARCH_PARAMS = {"patient", "subject", "code", "status", "category", "_count", "_sort", "date", "clinical-status"}
# The one parameter beyond the 2.0 list: US Core requires servers that reference Medications to support it.
INCLUDES = {"medications": "_include=MedicationRequest:medication"}


@pytest.mark.parametrize("path", ["/cds-services", "/cds-services/"])
def test_discovery_lists_the_four_services(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    services = response.get_json()["services"]
    assert [(s["id"], s["hook"]) for s in services] == [
        ("distal-dvt-patient-view", "patient-view"),
        ("distal-dvt-order-select", "order-select"),
        ("distal-dvt-order-sign", "order-sign"),
        ("distal-dvt-encounter-discharge", "encounter-discharge"),
    ]
    for service in services:
        assert service["title"]
        assert service["description"]
        assert {"patient", "conditions", "ddimer", "ultrasound", "medications"} <= set(service["prefetch"])
        assert None not in service.values()


def test_prefetch_templates_use_only_allowed_tokens_and_queries(client: FlaskClient) -> None:
    for service in client.get("/cds-services").get_json()["services"]:
        for key, template in service["prefetch"].items():
            for token in re.findall(r"\{\{\s*([^}]+?)\s*\}\}", template):
                assert token in ALLOWED_TOKENS, (key, token)
            path, _, query = template.partition("?")
            assert re.fullmatch(r"[A-Z][A-Za-z]+(/\{\{context\.[a-zA-Z]+\}\})?", path), template
            if query:
                assert "/" not in path, "a read takes no parameters"
                for part in query.split("&"):
                    name = part.split("=", 1)[0].split(":", 1)[0]
                    assert name in SEARCH_PARAMS or INCLUDES.get(key) == part, (key, name)
            else:
                assert "/" in path, "a type-level search without parameters would fetch every patient"
            assert "Practitioner/{{context.userId}}" not in template  # docs#410: userId already carries its type


def test_encounter_templates_fit_each_hook(client: FlaskClient) -> None:
    services = {s["hook"]: s for s in client.get("/cds-services").get_json()["services"]}
    assert services["encounter-discharge"]["prefetch"]["encounter"] == "Encounter/{{context.encounterId}}"
    assert "encounters" in services["patient-view"]["prefetch"]
