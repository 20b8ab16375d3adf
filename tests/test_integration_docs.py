"""The integration guides (docs/integration/, SECURITY.md) are configuration an analyst copies: every setting they
export parses, the keys and the catalog they show load, the commands exist, the topic codes are the service's."""

from __future__ import annotations

import json
import os
import re
import shlex
from itertools import pairwise
from pathlib import Path

import jwt
import pytest

from cds_service.cli import build_parser
from cds_service.clinical.topics import Topic
from cds_service.profiles import OrderCatalog, canonical_topic
from cds_service.replay.scenarios import Library
from cds_service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
GUIDES = sorted((ROOT / "docs" / "integration").glob("*.md"))
ALL_DOCS = [*GUIDES, ROOT / "SECURITY.md"]
_EXPORT = re.compile(r"^export (DVT_CDS_[A-Z_]+)=('(?:[^']|\n)*?'|\S+)", re.M)


def exports(path: Path) -> list[tuple[str, str]]:
    found = []
    for name, raw in _EXPORT.findall(path.read_text(encoding="utf-8")):
        found.append((name, shlex.split(raw)[0] if raw.startswith("'") else raw))
    return found


def test_the_three_guides_exist() -> None:
    assert {p.name for p in GUIDES} >= {"epic.md", "oracle-health.md", "sandbox.md"}


@pytest.mark.parametrize("path", ALL_DOCS, ids=lambda p: p.name)
def test_every_exported_setting_is_valid(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = exports(path)
    for name, value in settings:
        if name in ("DVT_CDS_ORDER_CATALOG", "DVT_CDS_CONCEPT_MAPS"):
            continue  # a site's own file path
        monkeypatch.setenv(name, value)
    for key in [k for k in os.environ if k.startswith("DVT_CDS_")]:
        if key not in dict(settings):
            monkeypatch.delenv(key)
    parsed = Settings()
    assert parsed.auth in ("jwt", "off")
    for name, _ in settings:
        assert name.removeprefix("DVT_CDS_").lower() in Settings.model_fields, name


def test_the_sandbox_key_shown_is_a_usable_p384_key(monkeypatch: pytest.MonkeyPatch) -> None:
    values = dict(exports(ROOT / "docs" / "integration" / "sandbox.md"))
    [issuer] = json.loads(values["DVT_CDS_TRUSTED_ISSUERS"])
    [key] = issuer["jwks"]["keys"]
    assert key["kid"] == "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
    public = jwt.PyJWK(key).key
    assert public.curve.name == "secp384r1"


def test_the_catalog_example_loads(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "integration" / "epic.md").read_text(encoding="utf-8")
    [example] = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    path = tmp_path / "catalog.json"
    path.write_text(example, encoding="utf-8")
    catalog = OrderCatalog.load(str(path))
    assert catalog.has("anticoagulation.apixaban.3-months")
    assert catalog.has("orderset.serial-imaging.left")


_OPTIONS_WITH_VALUES = ("--profile", "--fhir-server", "--url", "--fixtures")


@pytest.mark.parametrize("path", GUIDES, ids=lambda p: p.name)
def test_the_commands_shown_exist(path: Path) -> None:
    parser = build_parser()
    commands = "ehr-config|replay|load-fixtures|feedback-report|serve"
    lines = re.findall(rf"dvt-cds ((?:{commands})[^\n`|#(]*)", path.read_text(encoding="utf-8"))
    assert lines or path.name == "oracle-health.md"
    for line in lines:
        words = line.split()
        kept = [words[0]]
        for before, word in pairwise(words):
            if word.startswith("--") or before in _OPTIONS_WITH_VALUES:
                kept.append(word)
        parser.parse_args(kept)


@pytest.mark.parametrize("path", GUIDES, ids=lambda p: p.name)
def test_topic_codes_named_are_the_services(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    standard = {t.value for t in Topic}
    services = {"distal-dvt-patient-view", "distal-dvt-order-select", "distal-dvt-order-sign"}
    services.add("distal-dvt-encounter-discharge")
    scenarios = {s.id for s in Library(ROOT / "fhir_fixtures").scenarios}
    pattern = r"`((?:distal-dvt|proximal|dvt|pregnancy|anticoagula|limited|draft)[a-z-]*)`"
    named = set(re.findall(pattern, text)) - services - scenarios
    assert named <= standard, named - standard
    camel = set(re.findall(r"`(DistalDvt[A-Za-z]+|ProximalDvt|DvtLocationUnknown)`", text))
    assert all(canonical_topic(code) in standard for code in camel), camel
