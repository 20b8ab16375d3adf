"""Retention: `dvt-cds db purge --older-than DAYS` deletes the decision audit, issued cards and feedback older than
DAYS (DVT_CDS_RETENTION_DAYS by default) and every expired JWT id, on SQLite and PostgreSQL, and keeps the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from cds_service import store as store_module
from cds_service.protocol import FeedbackItem
from cds_service.store import AuditRow, IssuedCard, Store, decision_audit, feedback, issued_card, seen_jti
from tests.processes import clean_env, run
from tests.test_store import store  # noqa: F401 - the SQLite and PostgreSQL store fixture

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def fill(db: Store, *, days_ago: int, prefix: str, count: int = 3) -> None:
    at = NOW - timedelta(days=days_ago)
    rows = [
        AuditRow(
            f"{prefix}{i}", at, f"{prefix}h{i}", "svc", 200, "d", (IssuedCard(f"{prefix}c{i}", "t", "info"),), (), 1
        )
        for i in range(count)
    ]
    db.record_decisions(rows)
    items = [
        FeedbackItem.model_validate(
            {"card": f"{prefix}c{i}", "outcome": "accepted", "outcomeTimestamp": at.isoformat()}
        )
        for i in range(count)
    ]
    db.record_feedback("svc", items)
    db._run(
        lambda conn: conn.execute(
            update(feedback).where(feedback.c.card_uuid.like(f"{prefix}%")).values(received_at=at)
        )
    )


def counts(db: Store) -> dict[str, int]:
    tables = (decision_audit, issued_card, feedback, seen_jti)
    return {
        t.name: db._run(lambda conn, t=t: conn.execute(select(func.count()).select_from(t)).scalar_one())
        for t in tables
    }


def test_purge_deletes_what_is_older_and_expired_ids_only(store: Store, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setattr(store_module, "PURGE_BATCH", 2)  # several batches per table
    fill(store, days_ago=400, prefix="old")
    fill(store, days_ago=10, prefix="new")
    # remember_jtis writes without the cleanup remember_jti does along the way: the purge is what removes "gone".
    store.remember_jtis([("iss", "gone", NOW - timedelta(minutes=1)), ("iss", "live", NOW + timedelta(minutes=5))])
    result = store.purge(timedelta(days=365), now=NOW)
    assert (result.decision_audit, result.issued_card, result.feedback, result.seen_jti) == (3, 3, 3, 1)
    assert counts(store) == {"decision_audit": 3, "issued_card": 3, "feedback": 3, "seen_jti": 1}
    assert {d["hook_instance"] for d in store.decisions()} == {"newh0", "newh1", "newh2"}
    assert store.purge(timedelta(days=365), now=NOW).decision_audit == 0


def test_the_command_uses_the_retention_setting(tmp_path: Path) -> None:
    env = clean_env(tmp_path, DVT_CDS_RETENTION_DAYS="30")
    db = Store(env["DVT_CDS_DATABASE_URL"], schema="require", outbox_path=str(tmp_path / "o.sqlite3"))
    old = datetime.now(UTC) - timedelta(days=31)
    db.record_decisions([AuditRow("k", old, "h", "svc", 200, None, (IssuedCard("c", "t", "info"),), (), 1.0)])
    db.close()
    result = run(["db", "purge"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "older than 30 days: decision_audit 1, issued_card 1, feedback 0; expired JWT ids (seen_jti) 0"
    )
    assert run(["db", "purge", "--older-than", "0"], env).returncode == 2
