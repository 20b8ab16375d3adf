"""The per-package coverage gate of `make test` (tests/coverage_gate.py) on made-up `coverage json` reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests import coverage_gate

GATED = ("cds_service/clinical", "cds_service/cards", "cds_service/fhir", "hooks")


def summary(statements: int, covered: int, branches: int = 0, covered_branches: int = 0) -> dict[str, int]:
    return {
        "num_statements": statements,
        "covered_lines": covered,
        "num_branches": branches,
        "covered_branches": covered_branches,
    }


def report(files: dict[str, dict[str, int]]) -> dict[str, Any]:
    totals = {key: sum(s[key] for s in files.values()) for key in next(iter(files.values()))}
    return {"files": {path: {"summary": s} for path, s in files.items()}, "totals": totals}


def healthy() -> dict[str, dict[str, int]]:
    files = {f"{package}/a.py": summary(100, 95, 20, 19) for package in GATED}
    files["cds_service/app.py"] = summary(100, 95, 20, 19)
    return files


def run(tmp_path: Path, files: dict[str, dict[str, int]], *args: str) -> int:
    path = tmp_path / "coverage.json"
    path.write_text(json.dumps(report(files)))
    return coverage_gate.main([str(path), *args])


def test_every_package_at_the_minimum_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, healthy()) == 0
    out = capsys.readouterr()
    assert "cds_service/clinical *" in out.out
    assert "TOTAL" in out.out
    assert out.err == ""


def test_a_clinical_sub_package_under_the_minimum_fails_by_name_though_the_total_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = healthy()
    files["cds_service/clinical/reports/nlp.py"] = summary(10, 5, 4, 2)  # 50 %, a small share of the total
    assert run(tmp_path, files) == 1
    err = capsys.readouterr().err
    assert "cds_service/clinical/reports is at 50.0 %" in err
    assert "TOTAL" not in err
    assert "cds_service/clinical " not in err  # the parent package is gated on its own modules only


def test_branches_count_as_coverage_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = healthy()
    files["hooks/a.py"] = summary(100, 100, 100, 78)  # lines all run, branches not: (100 + 78) / 200 = 89 %
    assert run(tmp_path, files) == 1
    assert "hooks is at 89.0 %" in capsys.readouterr().err


def test_an_ungated_package_is_shown_but_only_the_total_holds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = healthy()
    files["cds_service/front/supervisor.py"] = summary(10, 0)
    assert run(tmp_path, files) == 0
    assert "cds_service/front" in capsys.readouterr().out
    files["cds_service/front/supervisor.py"] = summary(400, 0)
    assert run(tmp_path, files) == 1
    assert "TOTAL is at" in capsys.readouterr().err


def test_a_gated_package_without_data_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = healthy()
    del files["cds_service/fhir/a.py"]
    assert run(tmp_path, files) == 1
    assert "no data for the gated package cds_service/fhir" in capsys.readouterr().err


def test_the_minimum_is_an_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, healthy(), "--min", "96") == 1
    assert "under the minimum of 96 %" in capsys.readouterr().err
