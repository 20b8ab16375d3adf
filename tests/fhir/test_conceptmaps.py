"""Site ConceptMaps (DVT_CDS_CONCEPT_MAPS): loading and every way a file can be unusable, which equivalences are
applied, where in a resource a local coding is mapped, and the whole path through the app (discovery's prefetch
templates ask for the local code; a call reads a D-dimer coded only locally)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from cds_service.app import create_app
from cds_service.fhir.conceptmaps import ConceptMapError, SiteConceptMaps
from cds_service.fhir.record import PatientRecord
from cds_service.settings import Settings
from cds_service.store import Store
from tests.builders import (
    LOINC,
    NOW,
    PATIENT_ID,
    bundle,
    coding,
    concept,
    ddimer,
    distal_dvt,
    encounter,
    hook_request,
    observation,
    prefetch_for,
    provoked_by_surgery,
    subject,
)

SITE_LAB = "http://site.example.org/lab-component"
SITE_CLASS = "http://site.example.org/encounter-class"
SITE_CATEGORY = "http://site.example.org/report-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
DDIMER_FEU = "48065-7"


def concept_map(*groups: dict[str, Any], status: str = "active", map_id: str | None = "site-map") -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "ConceptMap", "status": status, "group": list(groups)}
    if map_id is not None:
        resource["id"] = map_id
    return resource


def group(source: str, target: str, *elements: dict[str, Any]) -> dict[str, Any]:
    return {"source": source, "target": target, "element": list(elements)}


def element(code: str, *targets: tuple[str, str]) -> dict[str, Any]:
    """A source code and its (target code, equivalence) pairs."""
    return {"code": code, "target": [{"code": c, "equivalence": e} for c, e in targets]}


def lab_map(*elements: dict[str, Any]) -> dict[str, Any]:
    return concept_map(group(SITE_LAB, LOINC, *elements))


def write(path: Path, resource: Any) -> str:
    path.write_text(json.dumps(resource), encoding="utf-8")
    return str(path)


def loaded(resource: dict[str, Any]) -> SiteConceptMaps:
    maps = SiteConceptMaps()
    maps.add(resource, name="site-map.json")
    return maps


def codes_of(value: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in value["coding"]]


# --- loading ----------------------------------------------------------------------------------------------------
def test_a_valid_file_loads(tmp_path: Path) -> None:
    path = write(tmp_path / "labs.json", lab_map(element("DD1", (DDIMER_FEU, "equivalent"))))
    maps = SiteConceptMaps.load([path])
    assert maps
    assert maps.names == ["site-map"]
    assert [(t.system, t.code) for t in maps.targets[(SITE_LAB, "DD1")]] == [(LOINC, DDIMER_FEU)]


def test_no_files_map_nothing() -> None:
    maps = SiteConceptMaps.load([])
    assert not maps
    resource = observation("DD1", system=SITE_LAB)
    assert maps.apply(resource) == 0
    assert codes_of(resource["code"]) == [(SITE_LAB, "DD1")]


def test_several_files_are_merged(tmp_path: Path) -> None:
    first = write(tmp_path / "a.json", lab_map(element("DD1", (DDIMER_FEU, "equivalent"))))
    second = write(
        tmp_path / "b.json",
        concept_map(group(SITE_CLASS, ACT_CODE, element("INPT", ("IMP", "equal"))), map_id=None),
    )
    maps = SiteConceptMaps.load([first, second])
    assert set(maps.targets) == {(SITE_LAB, "DD1"), (SITE_CLASS, "INPT")}
    assert maps.names == ["site-map", second]  # a map without an id is named by its file


def _mutated(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    resource = lab_map(element("DD1", (DDIMER_FEU, "equivalent")))
    change(resource)
    return resource


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda r: r.__setitem__("resourceType", "ValueSet"), "resourceType must be ConceptMap"),
        (lambda r: r.__setitem__("group", {"source": SITE_LAB}), "not a valid FHIR R4 ConceptMap"),
        (lambda r: r.pop("status"), "not a valid FHIR R4 ConceptMap"),
        (lambda r: r.__setitem__("status", "final"), "status must be draft, active, retired or unknown"),
        (lambda r: r.pop("group"), "has no group"),
        (lambda r: r.__setitem__("group", []), "has no group"),
        (lambda r: r["group"][0].pop("source"), "needs a source and a target code system"),
        (lambda r: r["group"][0].pop("target"), "needs a source and a target code system"),
        (lambda r: r["group"][0]["element"][0].pop("code"), "has no code"),
        (lambda r: r["group"][0]["element"][0]["target"][0].pop("equivalence"), "equivalence"),
    ],
    ids=[
        "not-a-conceptmap",
        "group-not-a-list",
        "no-status",
        "bad-status",
        "no-group",
        "empty-group",
        "group-without-source",
        "group-without-target",
        "element-without-code",
        "target-without-equivalence",
    ],
)
def test_an_invalid_map_names_the_file_and_the_problem(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], problem: str
) -> None:
    good = write(tmp_path / "good.json", lab_map(element("DD1", (DDIMER_FEU, "equivalent"))))
    bad = write(tmp_path / "bad-map.json", _mutated(change))
    with pytest.raises(ConceptMapError) as raised:
        SiteConceptMaps.load([good, bad])
    message = str(raised.value)
    assert message.startswith(f"{bad}:")
    assert problem in message


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "resourceType must be ConceptMap"),
        ('"ConceptMap"', "resourceType must be ConceptMap"),
    ],
    ids=["broken", "empty", "a-list", "a-string"],
)
def test_a_file_that_is_not_a_conceptmap_object(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "site.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConceptMapError) as raised:
        SiteConceptMaps.load([str(path)])
    assert str(raised.value).startswith(f"{path}:")
    assert problem in str(raised.value)


def test_an_unreadable_path_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "map.json"
    with pytest.raises(ConceptMapError) as raised:
        SiteConceptMaps.load([str(missing)])
    assert str(raised.value).startswith(f"{missing}:")
    assert "cannot be read" in str(raised.value)
    with pytest.raises(ConceptMapError) as raised:
        SiteConceptMaps.load([str(tmp_path)])  # a directory
    assert str(raised.value).startswith(f"{tmp_path}:")
    assert "cannot be read" in str(raised.value)


def test_a_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('{"resourceType": "ConceptMap", "title": "D-Dimère"}'.encode("latin-1"))
    with pytest.raises(ConceptMapError) as raised:
        SiteConceptMaps.load([str(path)])
    assert str(raised.value).startswith(f"{path}:")


# --- which mappings are applied ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("equivalence", "applied"),
    [
        ("equivalent", True),
        ("equal", True),
        ("wider", True),
        ("narrower", False),
        ("inexact", False),
        ("unmatched", False),
        ("disjoint", False),
        ("relatedto", False),
        ("subsumes", False),
        ("specializes", False),
    ],
)
def test_only_equal_equivalent_and_wider_are_applied(equivalence: str, applied: bool) -> None:
    maps = loaded(lab_map(element("DD1", (DDIMER_FEU, equivalence))))
    resource = observation("DD1", system=SITE_LAB)
    assert maps.apply(resource) == (1 if applied else 0)
    expected = [(SITE_LAB, "DD1"), (LOINC, DDIMER_FEU)] if applied else [(SITE_LAB, "DD1")]
    assert codes_of(resource["code"]) == expected


def test_a_target_without_a_code_is_skipped() -> None:
    resource = lab_map({"code": "DD1", "target": [{"equivalence": "equivalent"}]})
    maps = loaded(resource)
    assert not maps
    assert maps.names == ["site-map"]


# --- where codings are mapped -----------------------------------------------------------------------------------
def test_the_mapped_coding_is_added_beside_the_local_one() -> None:
    maps = loaded(
        concept_map(
            group(
                SITE_LAB,
                LOINC,
                {
                    "code": "DD1",
                    "target": [{"code": DDIMER_FEU, "display": "D-dimer FEU", "equivalence": "equivalent"}],
                },
            )
        )
    )
    resource = observation("DD1", system=SITE_LAB, value=900, unit="ng/mL")
    resource["code"]["coding"][0]["display"] = "D-DIMER (SITE)"
    resource["code"]["text"] = "D-dimer"
    assert maps.apply(resource) == 1
    assert resource["code"] == {
        "coding": [
            {"system": SITE_LAB, "code": "DD1", "display": "D-DIMER (SITE)"},
            {"system": LOINC, "code": DDIMER_FEU, "display": "D-dimer FEU", "userSelected": False},
        ],
        "text": "D-dimer",
    }
    assert resource["valueQuantity"] == {"value": 900, "unit": "ng/mL"}  # nothing else touched


def test_unmapped_codings_and_other_systems_are_left_alone() -> None:
    maps = loaded(lab_map(element("DD1", (DDIMER_FEU, "equivalent"))))
    other_code = observation("DD2", system=SITE_LAB)
    other_system = observation("DD1", system="http://another.example.org/lab")
    assert maps.apply(other_code) == 0
    assert maps.apply(other_system) == 0
    assert codes_of(other_code["code"]) == [(SITE_LAB, "DD2")]
    assert codes_of(other_system["code"]) == [("http://another.example.org/lab", "DD1")]


def test_a_standard_coding_already_present_is_not_added_again() -> None:
    maps = loaded(lab_map(element("DD1", (DDIMER_FEU, "equivalent"))))
    resource = observation("DD1", system=SITE_LAB)
    resource["code"]["coding"].append(coding(LOINC, DDIMER_FEU))
    assert maps.apply(resource) == 0
    assert codes_of(resource["code"]) == [(SITE_LAB, "DD1"), (LOINC, DDIMER_FEU)]


def test_one_local_code_with_several_targets_adds_each() -> None:
    maps = loaded(lab_map(element("DD1", (DDIMER_FEU, "equivalent"), ("48066-5", "wider"), ("3255-7", "narrower"))))
    resource = observation("DD1", system=SITE_LAB)
    assert maps.apply(resource) == 2
    assert codes_of(resource["code"]) == [(SITE_LAB, "DD1"), (LOINC, DDIMER_FEU), (LOINC, "48066-5")]


def test_nested_codings_are_mapped() -> None:
    maps = loaded(
        concept_map(
            group(SITE_LAB, LOINC, element("DD1", (DDIMER_FEU, "equivalent")), element("US-L", ("39420-5", "equal"))),
            group(SITE_CATEGORY, V2_0074, element("VASC", ("VUS", "equivalent"))),
        )
    )
    obs = observation("DD1", system=SITE_LAB)
    obs["component"] = [
        {"code": concept(SITE_LAB, "US-L"), "valueString": "x"},
        {"code": concept(SITE_LAB, "OTHER"), "valueString": "y"},
    ]
    assert maps.apply(obs) == 2
    assert codes_of(obs["code"]) == [(SITE_LAB, "DD1"), (LOINC, DDIMER_FEU)]
    assert codes_of(obs["component"][0]["code"]) == [(SITE_LAB, "US-L"), (LOINC, "39420-5")]
    assert codes_of(obs["component"][1]["code"]) == [(SITE_LAB, "OTHER")]

    report = {
        "resourceType": "DiagnosticReport",
        "id": "dr-1",
        "status": "final",
        "subject": subject(),
        "category": [concept(SITE_CATEGORY, "VASC"), concept(SITE_CATEGORY, "CHEM")],
        "code": concept(SITE_LAB, "US-L"),
    }
    assert maps.apply(report) == 2
    assert codes_of(report["category"][0]) == [(SITE_CATEGORY, "VASC"), (V2_0074, "VUS")]
    assert codes_of(report["category"][1]) == [(SITE_CATEGORY, "CHEM")]
    assert codes_of(report["code"]) == [(SITE_LAB, "US-L"), (LOINC, "39420-5")]


def test_encounter_class_is_replaced_by_the_mapped_coding() -> None:
    maps = loaded(concept_map(group(SITE_CLASS, ACT_CODE, element("INPT", ("IMP", "equivalent")))))
    mapped = encounter()
    mapped["class"] = coding(SITE_CLASS, "INPT", "Inpatient")
    unmapped = encounter()
    unmapped["class"] = coding(SITE_CLASS, "CLINIC")
    assert maps.apply(mapped) == 1
    assert mapped["class"] == {"system": ACT_CODE, "code": "IMP", "userSelected": False}
    assert maps.apply(unmapped) == 0
    assert unmapped["class"] == {"system": SITE_CLASS, "code": "CLINIC"}


def test_applying_twice_adds_nothing_new() -> None:
    maps = loaded(
        concept_map(
            group(SITE_LAB, LOINC, element("DD1", (DDIMER_FEU, "equivalent"))),
            group(SITE_CLASS, ACT_CODE, element("INPT", ("IMP", "equivalent"))),
        )
    )
    obs = observation("DD1", system=SITE_LAB)
    obs["component"] = [{"code": concept(SITE_LAB, "DD1"), "valueString": "x"}]
    enc = encounter()
    enc["class"] = coding(SITE_CLASS, "INPT")
    assert maps.apply(obs) == 2
    assert maps.apply(enc) == 1
    once = copy.deepcopy((obs, enc))
    assert maps.apply(obs) == 0
    assert maps.apply(enc) == 0
    assert (obs, enc) == once


# --- the record -------------------------------------------------------------------------------------------------
def test_apply_record_maps_the_record_and_the_extra_resources_and_says_so() -> None:
    maps = loaded(lab_map(element("DD1", (DDIMER_FEU, "equivalent"))))
    record = PatientRecord(patient_id=PATIENT_ID)
    first, second = observation("DD1", system=SITE_LAB), observation("DD1", system=SITE_LAB)
    untouched = observation("XYZ", system=SITE_LAB)
    record.add([first, second, untouched])
    draft = {
        "resourceType": "ServiceRequest",
        "id": "draft-1",
        "status": "draft",
        "intent": "proposal",
        "code": concept(SITE_LAB, "DD1"),
        "subject": subject(),
    }
    maps.apply_record(record, [draft])
    assert codes_of(first["code"])[-1] == (LOINC, DDIMER_FEU)
    assert codes_of(second["code"])[-1] == (LOINC, DDIMER_FEU)
    assert codes_of(draft["code"]) == [(SITE_LAB, "DD1"), (LOINC, DDIMER_FEU)]
    assert codes_of(untouched["code"]) == [(SITE_LAB, "XYZ")]
    assert record.notes == ["3 local code(s) read through the site ConceptMap (site-map)"]

    maps.apply_record(record, [draft])  # the second pass of a call (after the follow-up reads)
    assert record.notes == ["3 local code(s) read through the site ConceptMap (site-map)"]


def test_apply_record_without_mapped_codes_adds_no_note() -> None:
    maps = loaded(lab_map(element("DD1", (DDIMER_FEU, "equivalent"))))
    record = PatientRecord(patient_id=PATIENT_ID)
    record.add([ddimer(900)])
    maps.apply_record(record)
    assert record.notes == []
    empty = SiteConceptMaps()
    local = observation("DD1", system=SITE_LAB)
    record.add([local])
    empty.apply_record(record)
    assert record.notes == []
    assert codes_of(local["code"]) == [(SITE_LAB, "DD1")]


def test_local_codes_lists_what_maps_onto_the_wanted_targets() -> None:
    maps = loaded(
        concept_map(
            group(
                SITE_LAB,
                LOINC,
                element("DD2", (DDIMER_FEU, "wider")),
                element("DD1", (DDIMER_FEU, "equivalent")),
                element("DD-NARROW", (DDIMER_FEU, "narrower")),
                element("HGB", ("718-7", "equivalent")),
            ),
            group(SITE_CLASS, ACT_CODE, element("INPT", ("IMP", "equivalent"))),
        )
    )
    assert maps.local_codes({(LOINC, DDIMER_FEU)}) == [f"{SITE_LAB}|DD1", f"{SITE_LAB}|DD2"]
    assert maps.local_codes([(LOINC, DDIMER_FEU), (ACT_CODE, "IMP")]) == [
        f"{SITE_CLASS}|INPT",
        f"{SITE_LAB}|DD1",
        f"{SITE_LAB}|DD2",
    ]
    assert maps.local_codes({("http://snomed.info/sct", DDIMER_FEU)}) == []  # same code, other system
    assert maps.local_codes([]) == []


# --- through the app --------------------------------------------------------------------------------------------
@pytest.fixture
def make_site_app(make_app: Callable[..., Flask]) -> Callable[[list[str]], Flask]:
    return lambda concept_maps: make_app(concept_maps=concept_maps)


def test_discovery_asks_for_the_mapped_local_ddimer_code(
    make_site_app: Callable[[list[str]], Flask], tmp_path: Path
) -> None:
    path = write(tmp_path / "labs.json", lab_map(element("DD1", (DDIMER_FEU, "equivalent"))))
    token = f"{SITE_LAB}|DD1"
    services = make_site_app([path]).test_client().get("/cds-services").get_json()["services"]
    assert len(services) == 4
    for service in services:
        template = service["prefetch"]["ddimer"]
        assert token in template.split("&code=")[1].split("&")[0].split(","), service["id"]
        assert f"{LOINC}|{DDIMER_FEU}" in template
    plain = make_site_app([]).test_client().get("/cds-services").get_json()["services"]
    assert all(token not in s["prefetch"]["ddimer"] for s in plain)


def test_a_ddimer_coded_only_locally_is_read_through_the_map(
    make_site_app: Callable[[list[str]], Flask], tmp_path: Path
) -> None:
    path = write(tmp_path / "labs.json", lab_map(element("DD1", (DDIMER_FEU, "equivalent"))))

    def topics(app: Flask) -> list[tuple[str, str]]:
        # Distal DVT provoked by surgery: serial imaging, unless a positive D-dimer says anticoagulate (the table of
        # tests/hooks/test_hook_table.py). The only D-dimer carries the site's own code.
        prefetch = prefetch_for([distal_dvt(), provoked_by_surgery()])
        prefetch["ddimer"] = bundle(ddimer(900, days=2, code="DD1", system=SITE_LAB))
        response = app.test_client().post(
            "/cds-services/distal-dvt-patient-view", json=hook_request("patient-view", prefetch=prefetch)
        )
        assert response.status_code == 200, response.get_json()
        return [(c["source"]["topic"]["code"], c["indicator"]) for c in response.get_json()["cards"]]

    assert topics(make_site_app([])) == [("distal-dvt-serial-imaging", "warning")]
    assert topics(make_site_app([path])) == [("distal-dvt-anticoagulate", "warning")]


def test_the_app_does_not_start_with_a_bad_map(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.json", {"resourceType": "ConceptMap", "status": "active"})
    settings = Settings(
        auth="off", host="127.0.0.1", database_url=f"sqlite:///{tmp_path / 's.sqlite3'}", concept_maps=[path]
    )
    store = Store(settings.database_url)
    try:
        with pytest.raises(ConceptMapError, match=r"bad\.json: the ConceptMap has no group"):
            create_app(settings, clock=lambda: NOW, store=store)
    finally:
        store.close()
