"""The store's schema under Alembic (revisions in cds_service/migrations/versions/): bring a database to the newest
revision, or tell how far it is from it.

``dvt-cds db upgrade`` (the Kubernetes Job, ``make run``, docker compose's ``migrate`` service) is what changes a
production schema; ``serve`` only checks and refuses a database that is behind (store.py, ``schema="require"``).
Throwaway databases (the test suite) are brought up by the same ``upgrade``.

A database the service created before migrations existed has its tables and no ``alembic_version``: it is recorded
at the baseline (its shape then) and upgraded from there, never created again over itself.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, inspect, text

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"
BASELINE_TABLES = frozenset({"feedback", "issued_card", "decision_audit", "seen_jti"})
# One upgrade at a time per PostgreSQL database (two Jobs, a Job and a developer): a transaction-scoped advisory
# lock; the loser waits, then finds the schema at head. The key is arbitrary but fixed ("dvtc").
_PG_LOCK_KEY = 0x64767463
# SQLite has no such lock: threads of one process (tests) take turns here, and hold it until their transaction has
# committed (store.py takes it around the transaction): a second upgrade must not see tables without their version.
UPGRADES = threading.RLock()


class SchemaError(Exception):
    """The database's schema is not one this version can serve from; the message says what to do."""


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # None: no schema (or one from before migrations)
    head: str
    known: bool  # current is a revision of this version (else a newer version migrated the database)

    @property
    def behind(self) -> bool:
        return self.known and self.current != self.head

    def describe(self) -> str:
        if self.current is None:
            return "has no schema yet (or one from before migrations)"
        if not self.known:
            return f"is at revision {self.current}, unknown to this version (a newer one migrated it)"
        return f"is at revision {self.current}" + (" (the newest)" if not self.behind else f", {self.head} needed")


@dataclass(frozen=True)
class Upgrade:
    before: str | None
    after: str
    adopted: bool  # tables from before migrations, recorded at the baseline


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS))


def head() -> str:
    found = _script().get_current_head()
    if found is None:
        raise RuntimeError("the migrations folder has no head revision")
    return found


def revisions_after(current: str | None) -> list[tuple[str, str]]:
    """(revision, what it does in a few words) from ``current`` (exclusive) up to head, oldest first."""
    found = []
    for script in _script().iterate_revisions(head(), current or "base"):
        if script.revision != current:
            words = (script.doc or "").strip().splitlines()[0]
            found.append((script.revision, words.split(":")[0].split(" (")[0]))
    return list(reversed(found))


def state(conn: Connection) -> SchemaState:
    current = MigrationContext.configure(conn).get_current_revision()
    return SchemaState(current=current, head=head(), known=_has_revision(current))


def _has_revision(revision: str | None) -> bool:
    if revision is None:
        return True
    try:
        return _script().get_revision(revision) is not None
    except CommandError:  # alembic's word for an id it does not know
        return False


def require_current(conn: Connection) -> SchemaState:
    """The state, or SchemaError when the database lacks a revision of this version. A database migrated by a newer
    version is accepted: revisions are additive, so the previous version keeps running during a rolling update."""
    found = state(conn)
    if found.current is None or found.behind:
        raise SchemaError(f"the database {found.describe()}: run `dvt-cds db upgrade` first")
    return found


def upgrade(conn: Connection) -> Upgrade:
    """Bring the database to head inside the caller's transaction."""
    with UPGRADES:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        before = MigrationContext.configure(conn).get_current_revision()
        if before is not None and not _has_revision(before):
            return Upgrade(before, before, adopted=False)  # a newer version's schema: nothing of ours to apply
        adopted = before is None and _adopt_tables_from_before_migrations(conn)
        script = _script()
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with EnvironmentContext(
            config, script, fn=lambda revision, _context: script._upgrade_revs("head", revision), destination_rev="head"
        ) as environment:
            environment.configure(connection=conn, transaction_per_migration=False)
            with environment.begin_transaction():
                environment.run_migrations()
        return Upgrade(before, head(), adopted=adopted)


def _adopt_tables_from_before_migrations(conn: Connection) -> bool:
    tables = set(inspect(conn).get_table_names()) & BASELINE_TABLES
    if not tables:
        return False  # an empty database: the baseline creates everything
    if tables != BASELINE_TABLES:
        missing = ", ".join(sorted(BASELINE_TABLES - tables))
        raise SchemaError(f"the database has some of the service's tables but not {missing}, and no migration history")
    MigrationContext.configure(conn).stamp(_script(), BASELINE)
    return True
