"""The store on SQLite always and on a real PostgreSQL server when one is reachable (a database the tests create
and drop): feedback idempotence, decision audit, issued cards, the jti replay cache, the feedback report."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cds_service.protocol import FeedbackItem
from cds_service.store import AuditRow, IssuedCard, Store

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def decision(hook_instance: str, *, cards: tuple[IssuedCard, ...] = (), data_gaps: tuple[str, ...] = ()) -> AuditRow:
    """One decision audit row, as the outbox hands it to the store."""
    return AuditRow(uuid.uuid4().hex, datetime.now(UTC), hook_instance, "svc", 200, "d", cards, data_gaps, 1.0)


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=2):
            return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        db = Store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
        yield db
        db.close()
        return
    if not postgres_available():
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    import psycopg

    name = f"dvt_cds_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    db = Store(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", outbox_path=str(tmp_path / "outbox.sqlite3"))
    try:
        yield db
    finally:
        db.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def item(card: str, outcome: str = "accepted", **kwargs) -> FeedbackItem:
    return FeedbackItem.model_validate(
        {"card": card, "outcome": outcome, "outcomeTimestamp": "2026-03-16T10:00:00Z", **kwargs}
    )


def test_schema_is_created_on_start(store: Store) -> None:
    assert store.feedback_rows() == []
    assert store.decisions() == []


def test_feedback_is_idempotent(store: Store) -> None:
    first = store.record_feedback("svc", [item("c1"), item("c2", "overridden")])
    again = store.record_feedback("svc", [item("c1"), item("c2", "overridden"), item("c3")])
    assert (first.stored, first.duplicates) == (2, 0)
    assert (again.stored, again.duplicates) == (1, 2)
    assert len(store.feedback_rows()) == 3
    other_service = store.record_feedback("svc-2", [item("c1")])
    assert other_service.stored == 1  # the same card id under another service is another card


def test_override_reason_without_free_text(store: Store) -> None:
    store.record_feedback(
        "svc",
        [
            item(
                "c9",
                "overridden",
                overrideReason={
                    "reason": {"system": "urn:x", "code": "1", "display": "Not relevant"},
                    "userComment": "Mrs Smith said no",
                },
            )
        ],
    )
    [row] = store.feedback_rows()
    assert (row["override_code"], row["override_display"], row["override_has_comment"]) == ("1", "Not relevant", True)
    assert "Smith" not in repr(row)


def test_decisions_and_feedback_report(store: Store) -> None:
    cards = (IssuedCard("u1", "distal-dvt-serial-imaging", "warning"), IssuedCard("u2", "proximal-dvt", "critical"))
    store.record_decisions(
        [
            decision("h1", cards=cards, data_gaps=("x",)),
            decision("h2", cards=(IssuedCard("u3", "distal-dvt-serial-imaging", "warning"),)),
        ]
    )
    store.record_feedback("svc", [item("u1"), item("u3", "overridden"), item("u2", "overridden")])
    [row] = store.decisions("h1")
    assert row["topics"] == ["distal-dvt-serial-imaging", "proximal-dvt"]
    assert row["data_gaps"] == ["x"]
    report = {r["topic"]: r for r in store.feedback_by_topic()}
    assert report["distal-dvt-serial-imaging"] == {
        "topic": "distal-dvt-serial-imaging",
        "issued": 2,
        "accepted": 1,
        "overridden": 1,
    }
    assert report["proximal-dvt"]["overridden"] == 1


def test_jti_replay_cache(store: Store) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=5)
    assert store.remember_jti("iss", "j1", soon)
    assert not store.remember_jti("iss", "j1", soon)
    assert store.remember_jti("other-iss", "j1", soon)  # jti is unique per issuer
    past = datetime.now(UTC) - timedelta(minutes=5)
    assert store.remember_jti("iss", "old", past)
    assert store.remember_jti("iss", "j2", soon)  # expired entries are purged along the way
    assert store.remember_jti("iss", "old", soon)  # an expired jti is forgotten


def test_background_audit_writer_batches_and_flushes(store: Store) -> None:
    from cds_service.audit import AuditWriter, Decision

    writer = AuditWriter(store, max_batch=7)
    for i in range(50):
        writer.submit(
            Decision(f"h{i}", "svc", 200, "d", (IssuedCard(f"card-{i}", "proximal-dvt", "critical"),), (), 1.0)
        )
    writer.flush()
    assert len(store.decisions()) == 50
    assert store.feedback_by_topic() == [{"topic": "proximal-dvt", "issued": 50, "accepted": 0, "overridden": 0}]
    writer.close()


def test_audit_failures_never_reach_the_caller(tmp_path: Path) -> None:
    from cds_service.audit import AuditWriter, Decision

    database = tmp_path / "gone.sqlite3"
    broken = Store(f"sqlite:///{database}")
    broken.engine.dispose()
    database.unlink()
    database.mkdir()  # the database file is now a directory: every write fails
    writer = AuditWriter(broken)
    writer.submit(Decision("h", "svc", 200, None, (), (), 1.0))  # a failure here would fail the hook call
    writer.flush(timeout=0.3)
    assert writer.outbox.pending() == 1  # kept for when the store is back, not dropped
    with pytest.raises(Exception, match="unable to open database file"):
        broken.decisions()  # the store really is down: the writer above swallowed real failures
    writer.close()

    database.rmdir()
    back = Store(f"sqlite:///{database}", outbox_path=broken.outbox_path)
    later = AuditWriter(back)  # the next process moves what the first one could not
    later.flush(timeout=10)
    assert [(d["hook_instance"], d["status"]) for d in back.decisions()] == [("h", 200)]
    assert later.outbox.pending() == 0
    later.close()
    back.close()


def test_a_row_sent_twice_is_stored_once(store: Store) -> None:
    from cds_service.store import AuditRow

    row = AuditRow("k1", datetime.now(UTC), "h1", "svc", 200, "d", (IssuedCard("u1", "t", "info"),), (), 1.0)
    store.record_decisions([row])
    store.record_decisions([row, row])
    assert [d["audit_key"] for d in store.decisions()] == ["k1"]
    assert store.feedback_by_topic() == [{"topic": "t", "issued": 1, "accepted": 0, "overridden": 0}]


def test_a_statement_past_the_timeout_fails_in_time(store: Store) -> None:
    """The server's statement timeout (PostgreSQL) or the watchdog's interrupt (SQLite) ends it, not the caller."""
    import time

    from sqlalchemy import text

    slow = Store(store.engine.url.render_as_string(hide_password=False), timeout_s=0.3, outbox_path=store.outbox_path)
    query = (
        "SELECT pg_sleep(5)"
        if slow.engine.dialect.name == "postgresql"
        else "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    )
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017, PT011 - the driver's own error type
        slow._run(lambda conn: conn.execute(text(query)).all())
    assert time.monotonic() - started < 2.0
    assert slow.ping()  # and the store answers again at once
    slow.close()


def test_the_outbox_lives_next_to_a_sqlite_database_or_per_database_under_var() -> None:
    from cds_service.store import default_outbox_path

    assert default_outbox_path("sqlite:///var/dvt-cds.sqlite3") == "var/dvt-cds-outbox.sqlite3"
    one = default_outbox_path("postgresql+psycopg://u:secret@db:5432/one")
    assert one.startswith("var/dvt-cds-outbox-")
    assert "secret" not in one
    assert one != default_outbox_path("postgresql+psycopg://u:secret@db:5432/two")
    assert one == default_outbox_path("postgresql+psycopg://u:other-password@db:5432/one")


def test_schema_creation_survives_concurrent_starts(tmp_path: Path) -> None:
    """Workers starting together on one database: whoever loses the create race looks again instead of crashing."""
    from concurrent.futures import ThreadPoolExecutor

    url = f"sqlite:///{tmp_path / 'race.sqlite3'}"

    def start(_: int) -> bool:
        Store(url).close()
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(start, range(16)))


def test_ping_answers_true_when_the_store_is_up_and_false_when_it_is_gone(store: Store, tmp_path: Path) -> None:
    assert store.ping() is True
    broken = Store(f"sqlite:///{tmp_path / 'gone.sqlite3'}")
    broken.engine.dispose()
    (tmp_path / "gone.sqlite3").unlink()
    (tmp_path / "gone.sqlite3").mkdir()  # the database file is now a directory: nothing can be read
    assert broken.ping() is False  # never raises
    broken.close()


def test_rows_left_in_the_outbox_are_moved_without_waiting_for_a_call(store: Store) -> None:
    """A container restarted on the same outbox (Kubernetes keeps an emptyDir across restarts) moves what the
    killed one left before its first call: a pod out of rotation may get none."""
    import time

    from cds_service.audit import AuditWriter, Decision

    killed = AuditWriter(store, start=False)  # puts rows, never moves them: what a SIGKILL leaves
    killed.submit(Decision("left-behind", "svc", 200, None, (), (), 1.0))
    killed.outbox.close()
    restarted = AuditWriter(store)
    deadline = time.monotonic() + 10
    while not store.decisions("left-behind") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [d["hook_instance"] for d in store.decisions("left-behind")] == ["left-behind"]
    restarted.close()
