"""The site's order catalog (DVT_CDS_ORDER_CATALOG) and ``dvt-cds ehr-config``: a catalog is checked when loaded (a bad
one names its file), a mapped order carries the site's coding first, Epic gets one order-set suggestion where the
site mapped the serial-imaging order set, and ehr-config prints what an EHR analyst enters, per profile."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cds_service.cli import main
from cds_service.clinical import regimens
from cds_service.clinical.regimens import ORDER_KEYS
from cds_service.clinical.topics import Topic
from cds_service.profiles import CatalogError, OrderCatalog
from cds_service.profiles.epic import RXNORM, RXNORM_OID, camel
from cds_service.protocol import OVERRIDE_REASON_SYSTEM, OVERRIDE_REASONS
from tests.builders import LOINC, ddimer, distal_dvt, hook_request, provoked_by_surgery
from tests.processes import assert_one_line_naming, clean_env, free_port, run

PV = "/cds-services/distal-dvt-patient-view"
SERVICE_IDS = {
    "distal-dvt-patient-view",
    "distal-dvt-order-select",
    "distal-dvt-order-sign",
    "distal-dvt-encounter-discharge",
}
APIXABAN_KEY = "anticoagulation.apixaban.3-months"
BILATERAL_SET_KEY = "orderset.serial-imaging.bilateral"
APIXABAN_SITE = {
    "system": "urn:com.epic.cdshooks.action.code.system.preference-list-item",
    "code": "123456",
    "display": "apixaban 10 mg BID x7d, then 5 mg BID",
}
ORDER_SET_SITE = {"system": "urn:com.epic.cdshooks.action.code.system.orderset-item", "code": "7890"}
LEFT_DUPLEX_SITE = {"system": "urn:site:procedure", "code": "US-DUPLEX-L"}
# NOW is 2026-03-16: the scans are proposed at day 7 and day 14.
FIRST_SCAN, SECOND_SCAN = "2026-03-23", "2026-03-30"


def write_catalog(folder: Path, orders: Any, name: str = "catalog.json") -> Path:
    path = folder / name
    path.write_text(json.dumps({"orders": orders}), encoding="utf-8")
    return path


# --- loading ---------------------------------------------------------------------------------------------------------
def test_a_valid_catalog_loads(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, {APIXABAN_KEY: [APIXABAN_SITE], BILATERAL_SET_KEY: [ORDER_SET_SITE]})
    catalog = OrderCatalog.load(str(path))
    assert catalog.has(APIXABAN_KEY)
    assert catalog.has(BILATERAL_SET_KEY)
    assert not catalog.has("anticoagulation.enoxaparin.renal")
    assert not catalog.has(None)
    assert catalog.codings(APIXABAN_KEY) == [APIXABAN_SITE]
    assert catalog.codings(BILATERAL_SET_KEY) == [ORDER_SET_SITE]  # no display: none invented
    assert catalog.codings("anticoagulation.enoxaparin.renal") == []
    catalog.codings(APIXABAN_KEY)[0]["code"] = "changed"
    assert catalog.codings(APIXABAN_KEY) == [APIXABAN_SITE]  # callers get copies


def test_no_catalog_is_an_empty_catalog() -> None:
    for path in (None, ""):
        catalog = OrderCatalog.load(path)
        assert catalog.orders == {}
        assert not catalog.has(APIXABAN_KEY)


def _missing(folder: Path) -> tuple[Path, str]:
    return folder / "no-such-catalog.json", "cannot be read"


def _a_directory(folder: Path) -> tuple[Path, str]:
    path = folder / "catalog.d"
    path.mkdir()
    return path, "cannot be read"


def _not_json(folder: Path) -> tuple[Path, str]:
    path = folder / "broken.json"
    path.write_text('{"orders": {', encoding="utf-8")
    return path, "not JSON"


def _not_utf8(folder: Path) -> tuple[Path, str]:
    path = folder / "latin1.json"
    text = '{"orders": {"anticoagulation.apixaban.3-months": [{"system": "s", "code": "é"}]}}'
    path.write_bytes(text.encode("latin-1"))
    return path, "not JSON"


def _orders_not_an_object(folder: Path) -> tuple[Path, str]:
    return write_catalog(folder, [APIXABAN_SITE], "list.json"), "not a valid order catalog (orders:"


def _coding_without_code(folder: Path) -> tuple[Path, str]:
    return write_catalog(folder, {APIXABAN_KEY: [{"system": APIXABAN_SITE["system"]}]}, "no-code.json"), "code"


def _empty_code(folder: Path) -> tuple[Path, str]:
    return write_catalog(folder, {APIXABAN_KEY: [{"system": "s", "code": ""}]}, "empty-code.json"), "code"


def _top_level_not_an_object(folder: Path) -> tuple[Path, str]:
    path = folder / "array.json"
    path.write_text(json.dumps([{APIXABAN_KEY: [APIXABAN_SITE]}]), encoding="utf-8")
    return path, 'not a valid order catalog (a JSON object {"orders": {...}} is expected)'


def _key_mapped_to_nothing(folder: Path) -> tuple[Path, str]:
    # would count as mapped and send Epic an order set without a code
    return write_catalog(folder, {BILATERAL_SET_KEY: []}, "empty-list.json"), f"orders.{BILATERAL_SET_KEY}"


def _top_level_typo(folder: Path) -> tuple[Path, str]:
    path = folder / "typo-top.json"
    path.write_text(json.dumps({"order": {APIXABAN_KEY: [APIXABAN_SITE]}}), encoding="utf-8")
    return path, "not a valid order catalog (order:"


def _unknown_key(folder: Path) -> tuple[Path, str]:
    typo = "anticoagulation.apixaban.3-month"
    return write_catalog(folder, {typo: [APIXABAN_SITE]}, "typo.json"), f"unknown order key(s) {typo}"


BAD_CATALOGS = [
    _missing,
    _a_directory,
    _not_json,
    _not_utf8,
    _orders_not_an_object,
    _coding_without_code,
    _empty_code,
    _top_level_not_an_object,
    _key_mapped_to_nothing,
    _top_level_typo,
    _unknown_key,
]


@pytest.mark.parametrize("bad", BAD_CATALOGS, ids=lambda f: f.__name__.strip("_"))
def test_an_invalid_catalog_is_an_error_naming_the_file(
    tmp_path: Path, bad: Callable[[Path], tuple[Path, str]]
) -> None:
    path, problem = bad(tmp_path)
    with pytest.raises(CatalogError) as caught:
        OrderCatalog.load(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert problem in message, message
    assert "\n" not in message


def test_the_app_does_not_start_on_an_invalid_catalog(make_app, tmp_path: Path) -> None:
    path, _ = _unknown_key(tmp_path)
    with pytest.raises(CatalogError, match=re.escape(str(path))):
        make_app(order_catalog=str(path))


# --- the site's codes on the cards -----------------------------------------------------------------------------------
def patient_view(app, resources: list[dict[str, Any]], topic: str) -> dict[str, Any]:
    response = app.test_client().post(PV, json=hook_request("patient-view", resources))
    assert response.status_code == 200, response.get_json()
    cards = [c for c in response.get_json()["cards"] if c["source"]["topic"]["code"] in (topic, camel(topic))]
    assert len(cards) == 1, response.get_json()
    return cards[0]


def actions_of(card: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        action
        for suggestion in card["suggestions"]
        for action in suggestion["actions"]
        if (action.get("resource") or {}).get("resourceType") == resource_type
    ]


def suggestions_of(card: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    def orders(action: dict[str, Any]) -> bool:
        return (action.get("resource") or {}).get("resourceType") == resource_type

    return [s for s in card["suggestions"] if any(orders(a) for a in s["actions"])]


ANTICOAGULATE = "distal-dvt-anticoagulate"
SERIAL_IMAGING = "distal-dvt-serial-imaging"


def test_a_mapped_order_carries_the_site_coding_first(make_app, tmp_path: Path) -> None:
    path = write_catalog(tmp_path, {APIXABAN_KEY: [APIXABAN_SITE]})
    card = patient_view(make_app(order_catalog=str(path)), [distal_dvt(), ddimer(900, days=2)], ANTICOAGULATE)
    [order] = actions_of(card, "MedicationRequest")
    coding = order["resource"]["medicationCodeableConcept"]["coding"]
    assert coding[0] == APIXABAN_SITE
    assert [(c["system"], c["code"]) for c in coding[1:]] == [(RXNORM, "1364445")]
    # The left-leg scans were not mapped: LOINC only.
    scans = actions_of(card, "ServiceRequest")
    assert len(scans) == 2
    assert all([c["system"] for c in scan["resource"]["code"]["coding"]] == [LOINC] for scan in scans)


def test_an_unmapped_order_keeps_rxnorm_only(make_app, tmp_path: Path) -> None:
    path = write_catalog(tmp_path, {"anticoagulation.enoxaparin.pregnancy": [{"system": "urn:site:rx", "code": "E1"}]})
    card = patient_view(make_app(order_catalog=str(path)), [distal_dvt(), ddimer(900, days=2)], ANTICOAGULATE)
    [order] = actions_of(card, "MedicationRequest")
    coding = order["resource"]["medicationCodeableConcept"]["coding"]
    assert [(c["system"], c["code"]) for c in coding] == [(RXNORM, "1364445")]


def test_a_mapped_scan_carries_the_site_procedure_code_first(make_app, tmp_path: Path) -> None:
    path = write_catalog(tmp_path, {"imaging.venous-duplex.left": [LEFT_DUPLEX_SITE]})
    card = patient_view(make_app(order_catalog=str(path)), [distal_dvt(), provoked_by_surgery()], SERIAL_IMAGING)
    scans = actions_of(card, "ServiceRequest")
    assert len(scans) == 2
    for scan in scans:
        coding = scan["resource"]["code"]["coding"]
        assert coding[0] == LEFT_DUPLEX_SITE
        assert [c["system"] for c in coding[1:]] == [LOINC]


def test_epic_puts_the_site_coding_before_rxnorm_by_oid(make_app, tmp_path: Path) -> None:
    path = write_catalog(tmp_path, {APIXABAN_KEY: [APIXABAN_SITE]})
    app = make_app(order_catalog=str(path), ehr_profile="epic")
    card = patient_view(app, [distal_dvt(), ddimer(900, days=2)], ANTICOAGULATE)
    [order] = actions_of(card, "MedicationRequest")
    coding = order["resource"]["medicationCodeableConcept"]["coding"]
    assert coding[0] == APIXABAN_SITE
    assert [(c["system"], c["code"]) for c in coding[1:]] == [(RXNORM_OID, "1364445")]


BILATERAL = [distal_dvt(code="I82.453", display="Acute embolism and thrombosis of bilateral peroneal veins")]


def test_epic_serial_imaging_becomes_the_sites_order_set(make_app, tmp_path: Path) -> None:
    path = write_catalog(tmp_path, {BILATERAL_SET_KEY: [ORDER_SET_SITE]})
    app = make_app(order_catalog=str(path), ehr_profile="epic")
    card = patient_view(app, [*BILATERAL, provoked_by_surgery()], SERIAL_IMAGING)
    [suggestion] = suggestions_of(card, "ServiceRequest")
    [action] = suggestion["actions"]
    assert action["type"] == "create"
    assert action["resource"]["code"]["coding"] == [ORDER_SET_SITE]
    assert FIRST_SCAN in action["description"]
    assert SECOND_SCAN in action["description"]
    assert "occurrenceDateTime" not in action["resource"]  # one order set, not one dated scan
    assert len(actions_of(card, "MedicationRequest")) == 1  # the anticoagulation option is still offered


@pytest.mark.parametrize(
    "orders",
    [{}, {"orderset.serial-imaging.left": [ORDER_SET_SITE]}],
    ids=["no-catalog-entry", "other-side-order-set"],
)
def test_epic_without_the_order_set_gets_one_suggestion_per_scan(
    make_app, tmp_path: Path, orders: dict[str, Any]
) -> None:
    path = write_catalog(tmp_path, orders)
    app = make_app(order_catalog=str(path), ehr_profile="epic")
    card = patient_view(app, [*BILATERAL, provoked_by_surgery()], SERIAL_IMAGING)
    scans = suggestions_of(card, "ServiceRequest")
    assert len(scans) == 2
    assert all(len(s["actions"]) == 1 for s in scans)
    descriptions = [s["actions"][0]["description"] for s in scans]
    assert FIRST_SCAN in descriptions[0]
    assert SECOND_SCAN in descriptions[1]
    assert all(s["actions"][0]["resource"]["code"]["coding"] != [ORDER_SET_SITE] for s in scans)


def test_the_order_set_is_an_epic_shape_only(make_app, tmp_path: Path) -> None:
    path = write_catalog(tmp_path, {BILATERAL_SET_KEY: [ORDER_SET_SITE]})
    card = patient_view(make_app(order_catalog=str(path)), [*BILATERAL, provoked_by_surgery()], SERIAL_IMAGING)
    [suggestion] = suggestions_of(card, "ServiceRequest")
    assert [a["resource"]["occurrenceDateTime"][:10] for a in suggestion["actions"]] == [FIRST_SCAN, SECOND_SCAN]


# --- dvt-cds ehr-config ----------------------------------------------------------------------------------------------
@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DVT_CDS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DVT_CDS_AUTH", "off")
    monkeypatch.setenv("DVT_CDS_HOST", "127.0.0.1")
    monkeypatch.setenv("DVT_CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")


MAPPED = {APIXABAN_KEY: [APIXABAN_SITE], BILATERAL_SET_KEY: [ORDER_SET_SITE]}


def ehr_config(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["ehr-config", *args, "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return json.loads(captured.out)


def test_ehr_config_epic_json(
    cli_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DVT_CDS_ORDER_CATALOG", str(write_catalog(tmp_path, MAPPED)))
    config = ehr_config(capsys, "--profile", "epic")
    assert config["profile"] == "epic"

    services = {s["id"]: s for s in config["services"]}
    assert set(services) == SERVICE_IDS
    assert len(config["services"]) == 4
    patient_view_called = services["distal-dvt-patient-view"]["how_called"]
    assert "com.epic.cdshooks.request.bpa-trigger-action" in patient_view_called
    assert {"27", "18", "23"} <= set(re.findall(r"\b\d+\b", patient_view_called))
    for service in config["services"]:
        assert service["endpoint"].endswith(f"/cds-services/{service['id']}")
        assert service["prefetch"]
        assert service["fhir_scopes"]

    codes = [t["code"] for t in config["topics"]]
    assert codes == [camel(t.value) for t in Topic]
    assert [t["standard_code"] for t in config["topics"]] == [t.value for t in Topic]
    assert all(re.fullmatch(r"[A-Za-z0-9]{1,100}", code) for code in codes)
    assert "DraftOrderNotChecked" in codes
    assert "DistalDvtAnticoagulate" in codes

    assert config["override_reason_system"] == OVERRIDE_REASON_SYSTEM
    assert [r["code"] for r in config["override_reasons"]] == list(OVERRIDE_REASONS)
    assert len(config["override_reasons"]) == 6

    assert [o["key"] for o in config["order_keys"]] == list(ORDER_KEYS)
    assert {o["key"]: o["mapped"] for o in config["order_keys"]} == {key: key in MAPPED for key in ORDER_KEYS}


def test_ehr_config_without_a_catalog_maps_nothing(cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    config = ehr_config(capsys, "--profile", "hl7")
    assert not any(o["mapped"] for o in config["order_keys"])
    assert [t["code"] for t in config["topics"]] == [t.value for t in Topic]  # hl7: the project's own codes


def test_ehr_config_epic_text_prints_the_same_sections(
    cli_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DVT_CDS_ORDER_CATALOG", str(write_catalog(tmp_path, MAPPED)))
    assert main(["ehr-config", "--profile", "epic"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    text = captured.out
    assert text.startswith("EHR profile: epic")
    for service_id in SERVICE_IDS:
        assert f"\nService {service_id}\n" in text
    assert "bpa-trigger-action: 27" in text
    for section in ("Card topic codes (", "Override reasons (", "Order keys for the site's order catalog"):
        assert section in text
    lines = text.splitlines()
    for topic in Topic:
        assert any(line.split()[:1] == [camel(topic.value)] for line in lines), topic
    for code in OVERRIDE_REASONS:
        assert any(line.split()[:1] == [code] for line in lines), code
    for key in ORDER_KEYS:
        [line] = [line for line in lines if line.split()[:1] == [key]]
        assert line.split()[1] == ("mapped" if key in MAPPED else "unmapped"), line


def test_ehr_config_oracle_says_order_select_is_not_offered(cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    config = ehr_config(capsys, "--profile", "oracle")
    services = {s["id"]: s for s in config["services"]}
    assert "not offered" in services["distal-dvt-order-select"]["how_called"]
    assert "not offered" in services["distal-dvt-order-sign"]["how_called"]
    assert "not offered" not in services["distal-dvt-patient-view"]["how_called"]
    assert main(["ehr-config", "--profile", "oracle"]) == 0
    text = capsys.readouterr().out
    section = text.split("\nService distal-dvt-order-select\n", 1)[1].split("\nService ", 1)[0]
    assert "called:   not offered by Oracle Health" in section


def test_ehr_config_defaults_to_the_configured_profile(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DVT_CDS_EHR_PROFILE", "epic")
    config = ehr_config(capsys)
    assert config["profile"] == "epic"
    assert "DraftOrderNotChecked" in [t["code"] for t in config["topics"]]


@pytest.mark.parametrize(
    "bad", [_missing, _not_json, _coding_without_code, _unknown_key], ids=lambda f: f.__name__.strip("_")
)
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_ehr_config_with_a_bad_catalog_exits_2_naming_the_file(
    cli_env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    bad: Callable[[Path], tuple[Path, str]],
    as_json: bool,
) -> None:
    path, problem = bad(tmp_path)
    monkeypatch.setenv("DVT_CDS_ORDER_CATALOG", str(path))
    assert main(["ehr-config", "--profile", "epic", *(["--json"] if as_json else [])]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"dvt-cds: {path}: ")
    assert problem in lines[0]


# --- dvt-cds serve with a bad catalog (a real process) ------------------------------------------------------------
PREFIX = "dvt-cds: invalid setting DVT_CDS_ORDER_CATALOG:"


@pytest.mark.parametrize(
    ("bad", "args"),
    [
        (_missing, ["serve"]),
        (_not_json, ["serve"]),
        (_unknown_key, ["serve"]),
        (_unknown_key, ["serve", "--production"]),
    ],
    ids=["missing", "not-json", "unknown-key", "production-unknown-key"],
)
def test_serve_stops_on_a_bad_catalog(tmp_path: Path, bad: Callable[[Path], tuple[Path, str]], args: list[str]) -> None:
    path, problem = bad(tmp_path)
    env = clean_env(tmp_path, DVT_CDS_PORT=str(free_port()), DVT_CDS_WORKERS="1", DVT_CDS_ORDER_CATALOG=str(path))
    assert_one_line_naming(run(args, env), PREFIX, path, problem)


def test_every_order_a_card_can_propose_has_a_catalog_key() -> None:
    """A regimen key missing from ORDER_KEYS is an order no site can map (the catalog refuses unknown keys)."""
    source = Path(regimens.__file__).read_text(encoding="utf-8")
    literal = set(re.findall(r'key="([^"]+)"', source))
    assert literal, "no regimen keys found"
    agents = set(re.findall(r'agent="([a-z]+)"', source))
    longer = {f"anticoagulation.{agent}.at-least-3-months" for agent in agents if agent in ("apixaban", "enoxaparin")}
    assert literal | longer <= set(ORDER_KEYS)
