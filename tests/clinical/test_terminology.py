"""Value-set membership over raw CodeableConcepts: systems, normalisation, regex rules, text fallback."""

from __future__ import annotations

import pytest

from cds_service.clinical import terminology as tx
from tests.builders import ICD, SCT


def cc(*codings: tuple[str, str], text: str | None = None) -> dict:
    concept: dict = {"coding": [{"system": s, "code": c} for s, c in codings]}
    if text:
        concept["text"] = text
    return concept


@pytest.mark.parametrize("code", ["I82.461", "I82461", "i82.461", " I82.461 "])
def test_icd10_codes_are_normalised(code: str) -> None:
    assert tx.valueset("condition-dvt-distal-muscular").match(cc((ICD, code))).code == "I82.461"


@pytest.mark.parametrize("system", [ICD, "urn:oid:2.16.840.1.113883.6.90", "http://hl7.org/fhir/sid/icd-10-us"])
def test_code_system_aliases(system: str) -> None:
    assert tx.valueset("condition-dvt-distal-axial").match(cc((system, "I82.441")))


def test_wrong_system_does_not_match() -> None:
    assert tx.valueset("condition-dvt-distal-axial").match(cc((SCT, "I82.441"))) is None


@pytest.mark.parametrize(
    ("code", "member"),
    [("C50.911", True), ("C96.9", True), ("C00.0", True), ("C44.91", False), ("C97", False), ("D05.10", False)],
)
def test_cancer_rule_is_c00_to_c96_except_c44(code: str, member: bool) -> None:
    assert (tx.valueset("condition-active-cancer").match(cc((ICD, code))) is not None) is member


@pytest.mark.parametrize(
    ("code", "member"),
    [("S82.201A", True), ("S70.01XA", True), ("S99.929A", True), ("S69.90XA", False), ("T79.A0XA", False)],
)
def test_leg_trauma_is_s70_to_s99(code: str, member: bool) -> None:
    assert (tx.valueset("condition-leg-trauma").match(cc((ICD, code))) is not None) is member


def test_designations_name_the_vein() -> None:
    match = tx.valueset("condition-dvt-distal-axial").match(cc((ICD, "I82.452")))
    assert match.designations == {"vein": "peroneal vein"}


def test_text_is_used_only_when_no_coding_matches() -> None:
    vs = tx.valueset("condition-dvt-unspecified-site")
    found = vs.match({"text": "Acute DVT left calf"})
    assert found is not None
    assert found.by_text
    assert vs.match(cc((SCT, "128053003"), text="whatever")).how == "code"


@pytest.mark.parametrize(
    "text",
    [
        "History of DVT",
        "DVT prophylaxis",
        "Family history of deep vein thrombosis",
        "Superficial vein thrombosis",
        "Rule out DVT",
        "Negative for DVT",
    ],
)
def test_text_exclusions(text: str) -> None:
    assert tx.valueset("condition-dvt-unspecified-site").match({"text": text}) is None


def test_text_matches_whole_words_only() -> None:
    assert tx.valueset("condition-dvt-unspecified-site").match({"text": "Advtising"}) is None
    assert tx.valueset("condition-active-cancer").match({"text": "Malignant neoplasm of breast"}) is not None
    assert tx.valueset("condition-active-cancer").match({"text": "History of malignant neoplasm of breast"}) is None


def test_codes_of_returns_enumerated_codes() -> None:
    assert tx.codes_of("observation-ddimer-feu", tx.LOINC) == ["48065-7", "48067-3", "71427-9"]


def test_garbage_concepts_do_not_crash() -> None:
    vs = tx.valueset("condition-dvt-distal-axial")
    for garbage in (None, "I82.441", 5, [], {"coding": "x"}, {"coding": [None, 5, {"code": 7}]}, {"text": 5}):
        assert vs.match(garbage) is None
