"""The dvt-cds command: feedback-report, replay against a live service, settings errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cds_service.cli import main
from cds_service.protocol import FeedbackItem
from cds_service.store import IssuedCard, Store
from tests.processes import upgrade_database
from tests.test_store import decision


@pytest.fixture
def env_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    monkeypatch.setenv("DVT_CDS_DATABASE_URL", url)
    upgrade_database(url)  # as an operator's database is, after `dvt-cds db upgrade`
    return url


def test_feedback_report(env_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(env_db)
    issued = [
        IssuedCard("a", "distal-dvt-serial-imaging", "warning"),
        IssuedCard("b", "distal-dvt-serial-imaging", "warning"),
        IssuedCard("c", "distal-dvt-serial-imaging", "warning"),
        IssuedCard("d", "proximal-dvt", "critical"),
    ]
    store.record_decisions([decision("h", cards=tuple(issued))])
    feedback = [
        FeedbackItem.model_validate({"card": c, "outcome": o, "outcomeTimestamp": "2026-03-16T10:00:00Z"})
        for c, o in (("a", "accepted"), ("d", "accepted"))
    ]
    # The override reason as Epic sends it: its extension form, the site having mapped Epic's reason onto ours.
    epic = {
        "card": "b",
        "outcome": "overridden",
        "outcomeTimestamp": "2026-03-16T10:00:00Z",
        "overrideReasons": {
            "extension": {
                "com.epic.cdshooks.feedback.overrideReason.reasonCategory": "patient-declined",
                "com.epic.cdshooks.feedback.overrideReason.reasonDisplay": "Patient declined",
            }
        },
    }
    feedback.append(FeedbackItem.model_validate(epic))
    store.record_feedback("s", feedback)
    store.close()
    assert main(["feedback-report", "--json"]) == 0
    rows = {r["topic"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["distal-dvt-serial-imaging"] == {
        "topic": "distal-dvt-serial-imaging",
        "issued": 3,
        "accepted": 1,
        "overridden": 1,
        "acceptance_rate": 0.5,
        "override_rate": 0.5,
        "feedback_rate": 0.667,
        "override_reasons": [
            {
                "system": "urn:distal-dvt-cds:override-reason",
                "code": "patient-declined",
                "display": "Patient declined",
                "count": 1,
            }
        ],
    }
    assert rows["proximal-dvt"]["acceptance_rate"] == 1.0
    assert main(["feedback-report"]) == 0
    table = capsys.readouterr().out
    assert "distal-dvt-serial-imaging" in table
    assert "50.0" in table
    assert "Override reasons by card topic" in table
    assert "Patient declined" in table


def test_feedback_report_empty(env_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["feedback-report"]) == 0
    assert "No cards issued yet." in capsys.readouterr().out


def test_invalid_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DVT_CDS_RULE_PROFILE", "guesswork")
    with pytest.raises(SystemExit) as raised:
        main(["feedback-report"])
    assert raised.value.code == 2
    assert "DVT_CDS_RULE_PROFILE" in capsys.readouterr().err


def test_replay_needs_a_service(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--all", "--url", "http://127.0.0.1:9"]) == 2
    assert "cannot reach" in capsys.readouterr().err
