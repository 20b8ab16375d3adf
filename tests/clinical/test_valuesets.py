"""Every code list is a FHIR ValueSet that names its source; unverified codes are not encoded."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from fhir.resources.R4B.valueset import ValueSet

from cds_service.clinical import terminology as tx

IDS = tx.valueset_ids()


def raw(vs_id: str) -> dict:
    path = resources.files("cds_service.clinical") / "valuesets" / f"{vs_id}.json"
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("vs_id", IDS)
def test_each_valueset_is_valid_r4_and_names_its_source(vs_id: str) -> None:
    resource = raw(vs_id)
    ValueSet.model_validate(resource)
    assert resource["id"] == vs_id
    assert resource["url"] == f"urn:distal-dvt-cds:valueset:{vs_id}"
    assert len(resource["description"]) > 30
    assert any(
        word in resource["description"]
        for word in ("VSAC", "RULES.md", "RESEARCH", "Project", "code-verification", "CPIC", "FHIR", "DICOM")
    )
    tx.valueset(vs_id)  # compiles


# Codes docs/clinical/code-verification.md marks unverified [U]: never encoded (docs/clinical/RULES.md R-CODE-2).
UNVERIFIED = [
    (tx.RXNORM, "1116632"),  # ticagrelor ingredient [U]/[V2]: the VSAC ticagrelor products are used instead
    (tx.LOINC, "39052-2"),  # conflicting duplex code [U]
    (tx.LOINC, "39053-0"),
    (tx.LOINC, "30240-6"),  # D-dimer, deprecated/ambiguous [U]
]


@pytest.mark.parametrize(("system", "code"), UNVERIFIED)
def test_unverified_codes_are_not_encoded(system: str, code: str) -> None:
    for vs_id in IDS:
        assert not tx.valueset(vs_id).contains(system, code), (vs_id, code)


def test_distal_codes_are_not_taken_from_the_proximal_only_tjc_set() -> None:
    """RESEARCH.md §3.1 pitfall: the TJC VTE set excludes distal codes; ours must include every I82.44-I82.4Z."""
    for code in ("I82.441", "I82.452", "I82.463", "I82.4Z9"):
        assert any(
            tx.valueset(v).contains(tx.ICD10CM, code)
            for v in ("condition-dvt-distal-axial", "condition-dvt-distal-muscular", "condition-dvt-distal-unspecified")
        )


def test_antiplatelets_are_not_anticoagulants() -> None:
    """VSAC 1206.19 mixes in antiplatelets and a naproxen product (RESEARCH.md §3.5 pitfall)."""
    for agent in (
        "apixaban",
        "rivaroxaban",
        "dabigatran",
        "edoxaban",
        "warfarin",
        "enoxaparin",
        "dalteparin",
        "fondaparinux",
        "heparin",
    ):
        vs = tx.valueset(f"anticoagulant-{agent}")
        for code in ("32968", "309362", "105899", "1191", "613391"):
            assert not vs.contains(tx.RXNORM, code)
