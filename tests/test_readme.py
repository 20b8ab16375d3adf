"""The README is a contract: every setting documented with its default, the commands it shows exist."""

from __future__ import annotations

import re
from pathlib import Path

from cds_service.cli import build_parser
from cds_service.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_settings_table() -> None:
    documented = set(re.findall(r"^\| `(DVT_CDS_[A-Z_]+)` \|", README, flags=re.M))
    assert documented == {f"DVT_CDS_{name.upper()}" for name in Settings.model_fields}


def test_documented_defaults_match_the_code() -> None:
    defaults = Settings.model_fields
    for name, field in defaults.items():
        row = re.search(rf"^\| `DVT_CDS_{name.upper()}` \| ([^|]+) \|", README, flags=re.M)
        assert row, name
        if isinstance(field.default, int) and not isinstance(field.default, bool):
            assert str(field.default) in row.group(1).replace(",", ""), (name, row.group(1))
        elif isinstance(field.default, float):
            assert f"{field.default:g}" in row.group(1), (name, row.group(1))


def test_the_dvt_cds_commands_shown_exist() -> None:
    parser = build_parser()
    for line in re.findall(r"dvt-cds ([a-z-]+(?: [^\n`#]*)?)", README):
        words = line.split()
        command = words[0]
        assert command in {"serve", "replay", "load-fixtures", "feedback-report", "ehr-config", "db"}, line
        args = [w for w in words[1:] if w.startswith("--")]
        if command == "replay":
            parser.parse_args(
                [
                    "replay",
                    *[
                        a
                        for a in args
                        if "=" not in a and a not in ("--sign-key", "--iss", "--kid", "--fhir-server", "--url")
                    ],
                ]
            )
