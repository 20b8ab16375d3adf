"""Schema migrations (Alembic, cds_service/migrations/): an empty SQLite and an empty PostgreSQL database upgraded by
`dvt-cds db upgrade` match the models exactly; a database the service created before migrations is recognised and
upgraded in place, its rows kept; `serve` never changes a schema and refuses one that is behind, in one line."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, Table, UniqueConstraint, create_engine, inspect, text

from cds_service import schema
from cds_service.store import Store, metadata
from tests.processes import clean_env, run
from tests.test_store import PG_ADMIN, decision, postgres_available


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    if not postgres_available():
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    import psycopg

    name = f"dvt_cds_migrate_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()


def revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def db_upgrade(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = clean_env(tmp_path, DVT_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'unused.sqlite3'}")
    env["DVT_CDS_DATABASE_URL"] = url
    return run(["db", "upgrade"], env)


def test_an_empty_database_upgraded_matches_the_models(empty_db: str, tmp_path: Path) -> None:
    result = db_upgrade(empty_db, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("database ")
    assert lines[1:] == [
        "applied 0001  Baseline",
        "applied 0002  The decision audit's idempotency key",
        "at revision 0002 (the newest)",
    ]
    assert revision(empty_db) == schema.head() == "0002"
    assert differences(empty_db) == []
    again = db_upgrade(empty_db, tmp_path)
    assert again.returncode == 0
    assert again.stdout.splitlines()[1:] == ["at revision 0002 (the newest): nothing to do"]


def old_metadata(with_audit_key: bool) -> MetaData:
    """The tables as Store.create_all made them before migrations: before the outbox (no audit_key), or after it
    (the column and unique index added by hand at start)."""
    old = MetaData()
    for table in metadata.sorted_tables:
        columns = [
            Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, index=c.index)
            for c in table.columns
            if with_audit_key or c.name != "audit_key"
        ]
        extra = [UniqueConstraint("service_id", "card_uuid", "outcome", name="uq_feedback_card_outcome")]
        Table(table.name, old, *columns, *(extra if table.name == "feedback" else []))
    if with_audit_key:
        from sqlalchemy import Index

        Index("uq_decision_audit_key", old.tables["decision_audit"].c.audit_key, unique=True)
    return old


@pytest.mark.parametrize("with_audit_key", [False, True], ids=["before-the-outbox", "with-the-outbox"])
def test_a_database_from_before_migrations_is_upgraded_in_place(
    empty_db: str, tmp_path: Path, with_audit_key: bool
) -> None:
    engine = create_engine(empty_db)
    old = old_metadata(with_audit_key)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO decision_audit (hook_instance, service_id, created_at, status, topics, data_gaps, "
                "duration_ms) VALUES ('h0', 'svc', '2026-01-01T00:00:00+00:00', 200, '[]', '[]', 1.0)"
            )
        )
    engine.dispose()
    refused = run(["serve"], {**clean_env(tmp_path), "DVT_CDS_DATABASE_URL": empty_db})
    assert refused.returncode == 2
    result = db_upgrade(empty_db, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == "tables from before migrations recorded at revision 0001 (the baseline)"
    assert result.stdout.splitlines()[-1] == "at revision 0002 (the newest)"
    assert differences(empty_db) == []
    store = Store(empty_db, schema="require", outbox_path=str(tmp_path / "outbox.sqlite3"))
    store.record_decisions([decision("h1")])
    assert [(d["hook_instance"], d["audit_key"] is None) for d in store.decisions()] == [("h0", True), ("h1", False)]
    store.close()


def test_downgrade_to_nothing_and_up_again_with_the_authors_alembic(
    empty_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `alembic` command authors use (alembic.ini, env.py) runs the same revisions, both ways."""
    monkeypatch.setenv("DVT_CDS_DATABASE_URL", empty_db)
    config = Config(str(schema.MIGRATIONS / "alembic.ini"))
    command.upgrade(config, "head")
    assert differences(empty_db) == []
    command.downgrade(config, "base")
    engine = create_engine(empty_db)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    command.upgrade(config, "head")
    assert differences(empty_db) == []


def test_partial_tables_without_history_are_refused_not_guessed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'partial.sqlite3'}"
    engine = create_engine(url)
    Table("feedback", MetaData(), Column("id", metadata.tables["feedback"].c.id.type, primary_key=True)).create(engine)
    engine.dispose()
    result = db_upgrade(url, tmp_path)
    assert result.returncode == 2
    assert "has some of the service's tables but not decision_audit, issued_card, seen_jti" in result.stderr


# --- serve never changes a schema -------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["serve"], ["serve", "--production"], ["feedback-report"], ["db", "purge"]])
def test_serve_refuses_an_empty_database_in_one_line_and_creates_nothing(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "fresh.sqlite3"
    path.touch()  # an empty database (a missing one is refused before: tests/test_newcomer_cli.py)
    env = {**clean_env(tmp_path), "DVT_CDS_DATABASE_URL": f"sqlite:///{path}"}
    result = run(args, env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "dvt-cds: the database has no schema yet (or one from before migrations): run `dvt-cds db upgrade` first"
    ]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_serve_refuses_a_database_one_revision_behind(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'behind.sqlite3'}"
    config = Config(str(schema.MIGRATIONS / "alembic.ini"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DVT_CDS_DATABASE_URL", url)
        command.upgrade(config, "0001")
    result = run(["serve", "--production"], {**clean_env(tmp_path), "DVT_CDS_DATABASE_URL": url})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "dvt-cds: the database is at revision 0001, 0002 needed: run `dvt-cds db upgrade` first"
    )


def test_gunicorn_started_directly_refuses_too(tmp_path: Path) -> None:
    """DVT_CDS_FRONT=none's documented command, without serve's own check: the master refuses before any worker."""
    env = {**clean_env(tmp_path), "DVT_CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}"}
    env["DVT_CDS_PORT"] = "1"  # never bound: the check comes first
    gunicorn = [sys.executable, "-m", "gunicorn", "--config", "python:cds_service.gunicorn_conf"]
    result = subprocess.run(
        [*gunicorn, "cds_service.wsgi:application"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "run `dvt-cds db upgrade` first" in result.stderr


def test_a_database_migrated_by_a_newer_version_is_served(tmp_path: Path) -> None:
    """Revisions are additive: during a rolling update the previous version keeps serving the upgraded schema."""
    url = f"sqlite:///{tmp_path / 'newer.sqlite3'}"
    Store(url, outbox_path=str(tmp_path / "o.sqlite3")).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    store = Store(url, schema="require", outbox_path=str(tmp_path / "o.sqlite3"))
    assert store.ping()
    store.close()
