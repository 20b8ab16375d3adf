"""Persistence: card feedback, the decision audit, issued cards and the JWT ``jti`` replay cache.

SQLAlchemy Core, one code path for SQLite (the default, nothing to install) and PostgreSQL
(``DVT_CDS_DATABASE_URL=postgresql+psycopg://...``) when several instances share state. The schema is Alembic's
(schema.py, migrations/): a store opened with ``schema="require"`` (every production entry point) only checks that
the database is at the newest revision and refuses it otherwise; ``"upgrade"`` (throwaway and test databases)
brings it there through the same revisions ``dvt-cds db upgrade`` runs. Nothing stored identifies a patient: no
patient id, no resource content, no clinician free text (feedback ``userComment`` is reduced to "a comment was
given"), no tokens.

Every operation is bounded by ``timeout_s`` (DVT_CDS_DB_TIMEOUT_S) so a dead, slow or hung database costs a
fast error, never a hung request: connect and statement timeouts, TCP keepalives and ``tcp_user_timeout`` on
PostgreSQL, the busy timeout on SQLite, a pool checkout timeout, and a watchdog that aborts an operation past its
deadline (a server that accepts bytes and never answers defeats every server-side and TCP-level timeout). Calls
made on a request's behalf (feedback, the jti check, ping) also stop *waiting* at the deadline, whichever phase
hangs.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from cds_service import schema as migrations
from cds_service.protocol import FeedbackItem

if TYPE_CHECKING:
    from cds_service.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
# Reports read whole tables: they get longer than a request's bound (they run from the CLI, not for a caller).
REPORT_TIMEOUT_S = 300.0
# A pooled connection idle for longer is pinged (under the watchdog) before use: the server may have gone since.
_PING_AFTER_IDLE_S = 1.0
# Schema changes may rewrite or index big tables: `dvt-cds db upgrade` is not bound like a request.
MIGRATION_TIMEOUT_S = 3600.0
# Purge deletes this many rows per statement: short transactions, no long lock on a busy table.
PURGE_BATCH = 5000
SchemaPolicy = Literal["upgrade", "require", "as-is"]

metadata = MetaData()

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", String(128), nullable=False),
    Column("card_uuid", String(256), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("outcome_timestamp", DateTime(timezone=True), nullable=False),
    Column("accepted_suggestions", JSON, nullable=False),
    Column("override_system", String(512)),
    Column("override_code", String(256)),
    Column("override_display", String(512)),
    Column("override_has_comment", Boolean, nullable=False, default=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    # The same card and outcome posted twice (EHR retries, batched re-sends) is one event.
    UniqueConstraint("service_id", "card_uuid", "outcome", name="uq_feedback_card_outcome"),
)

issued_card = Table(
    "issued_card",
    metadata,
    Column("card_uuid", String(64), primary_key=True),
    Column("service_id", String(128), nullable=False),
    Column("hook_instance", String(256), nullable=False),
    Column("topic", String(128), nullable=False),
    Column("indicator", String(16), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False, index=True),
)

decision_audit = Table(
    "decision_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hook_instance", String(256), nullable=False, index=True),
    Column("service_id", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("status", Integer, nullable=False),
    Column("decision", String(64)),
    Column("topics", JSON, nullable=False),
    Column("data_gaps", JSON, nullable=False),
    Column("duration_ms", Float, nullable=False),
    # The outbox's idempotency key: a row re-sent after a crash (committed, not yet deleted from the outbox) is a
    # no-op. NULL for rows written before the outbox existed (NULLs never collide in a unique index).
    Column("audit_key", String(64)),
    Index("uq_decision_audit_key", "audit_key", unique=True),
)

seen_jti = Table(
    "seen_jti",
    metadata,
    Column("iss", String(512), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)


@dataclass(frozen=True)
class IssuedCard:
    card_uuid: str
    topic: str
    indicator: str


@dataclass(frozen=True)
class FeedbackResult:
    stored: int
    duplicates: int


@dataclass(frozen=True)
class AuditRow:
    """One decision audit row as the outbox carries it; ``key`` makes a row sent twice land once."""

    key: str
    created_at: datetime
    hook_instance: str
    service_id: str
    status: int
    decision: str | None
    cards: tuple[IssuedCard, ...]
    data_gaps: tuple[str, ...]
    duration_ms: float


class StoreTimeout(Exception):
    """The store did not answer within ``timeout_s``."""


@dataclass(frozen=True)
class PurgeResult:
    decision_audit: int
    issued_card: int
    feedback: int
    seen_jti: int


class Store:
    def __init__(
        self,
        database_url: str,
        *,
        timeout_s: float = 2.0,
        pool_size: int = 5,
        max_overflow: int = 5,
        outbox_path: str | None = None,
        schema: SchemaPolicy = "upgrade",
    ):
        """``schema``: "upgrade" brings the database to the newest revision (throwaway and test databases);
        "require" refuses one that is behind (SchemaError) and never changes it (production); "as-is" neither
        looks nor changes (``dvt-cds db upgrade`` itself)."""
        self.timeout_s = timeout_s
        self.schema_policy = schema
        # Where this store's decision audit waits to be written (audit.py): the AuditWriter is given the store only.
        self.outbox_path = outbox_path or default_outbox_path(database_url)
        self.engine = _engine(database_url, timeout_s=timeout_s, pool_size=pool_size, max_overflow=max_overflow)
        self._workers = pool_size + max_overflow
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = 0
        self._executor_lock = threading.Lock()
        self._schema_ready = schema == "as-is"
        self._schema_lock = threading.Lock()
        self._schema_logged = 0.0
        try:
            self._prepare_schema(at_start=True)
        except (OperationalError, SATimeoutError) as error:
            if self.engine.dialect.name == "sqlite":
                raise  # a local file that cannot be opened is a configuration error, not an outage
            # A worker (re)started during an outage still serves hook calls (the audit waits in the outbox, the jti
            # check falls back): the schema is looked at by the first operation that reaches the store. A wrong URL
            # or credentials look the same to the driver: the reason is logged, and ping() (readiness) stays false.
            log.error(
                "store unreachable at start: schema to be checked when it answers",
                extra={"fields": {"error": type(error).__name__, "reason": _connect_failure(error)}},
            )

    @classmethod
    def from_settings(cls, settings: Settings, *, schema: SchemaPolicy = "upgrade") -> Store:
        return cls(
            settings.database_url,
            timeout_s=settings.db_timeout_s,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            outbox_path=settings.outbox_path,
            schema=schema,
        )

    def _prepare_schema(self, attempts: int = 5, *, at_start: bool = False) -> None:
        """Check ("require") or upgrade ("upgrade") the schema, once it succeeds. Upgrades racing on one SQLite file
        from several processes (PostgreSQL takes a lock): the loser's DDL fails fast, then it looks again."""
        started = time.monotonic()
        with self._schema_lock:
            for attempt in range(attempts):
                if self._schema_ready:
                    return
                try:
                    if self.schema_policy == "require":
                        found = self._execute(migrations.require_current)
                        if not found.known:
                            log.warning(
                                "database schema newer than this version (a newer one migrated it): serving",
                                extra={"fields": {"key": found.current}},
                            )
                    else:
                        with migrations.UPGRADES:  # until committed (schema.py says why)
                            self._execute(migrations.upgrade, timeout_s=max(self.timeout_s, 10.0))
                    self._schema_ready = True
                except migrations.SchemaError as error:
                    if not at_start:  # at start the caller refuses in its own words; later, operations fail
                        self._log_schema_refused(error)
                    raise
                except DBAPIError:
                    # A lost race fails fast; a store that is down or hung is not worth looking at again now.
                    if attempt == attempts - 1 or time.monotonic() - started > self.timeout_s:
                        raise
                    time.sleep(0.05 * (attempt + 1))

    def _log_schema_refused(self, error: migrations.SchemaError) -> None:
        now = time.monotonic()
        if now - self._schema_logged >= 10.0:  # every operation looks again: one line per 10 s is enough
            self._schema_logged = now
            # The message is ours (revision ids, table names), never the URL or the driver's words.
            log.error(f"database schema not usable: {error}", extra={"fields": {"event": "schema-refused"}})

    def upgrade_schema(self) -> migrations.Upgrade:
        """``dvt-cds db upgrade``: the database at the newest revision."""
        with migrations.UPGRADES:
            result = self._execute(migrations.upgrade, timeout_s=MIGRATION_TIMEOUT_S)
        self._schema_ready = True
        return result

    def schema_state(self) -> migrations.SchemaState:
        return self._execute(migrations.state)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self.engine.dispose()

    def ping(self) -> bool:
        """Readiness: the store answers ``SELECT 1`` within ``timeout_s``. Never raises."""
        try:
            self._bounded(lambda conn: conn.execute(text("SELECT 1")).scalar_one())
            return True
        except Exception:
            return False

    # --- feedback ------------------------------------------------------------------------------------------------
    def record_feedback(self, service_id: str, items: Sequence[FeedbackItem]) -> FeedbackResult:
        """Store feedback, answering only once the transaction committed (StoreTimeout past ``timeout_s``)."""
        now = datetime.now(UTC)
        rows = [_feedback_row(service_id, item, now) for item in items]

        def write(conn: Connection) -> FeedbackResult:
            stored = sum(1 for row in rows if self._insert_ignoring_duplicate(conn, feedback, row))
            return FeedbackResult(stored=stored, duplicates=len(rows) - stored)

        return self._bounded(write)

    def feedback_rows(self) -> list[dict[str, Any]]:
        return self._report(lambda conn: conn.execute(select(feedback).order_by(feedback.c.id)))

    # --- decisions -----------------------------------------------------------------------------------------------
    def record_decisions(self, decisions: Iterable[Any]) -> None:
        """Many audit rows in one transaction, one multi-row INSERT per table (the outbox writer's batches).

        Each row's ``key`` (AuditRow; generated for anything without one) and each card's uuid are unique, and a
        conflict is ignored: a batch sent again after a crash between this commit and the outbox delete lands once.
        """
        now = datetime.now(UTC)
        audits: list[dict[str, Any]] = []
        cards: dict[str, dict[str, Any]] = {}
        for d in decisions:
            created_at = getattr(d, "created_at", None) or now
            audits.append(
                {
                    "audit_key": getattr(d, "key", None) or uuid.uuid4().hex,
                    "hook_instance": d.hook_instance,
                    "service_id": d.service_id,
                    "created_at": created_at,
                    "status": d.status,
                    "decision": d.decision,
                    "topics": [c.topic for c in d.cards],
                    "data_gaps": list(d.data_gaps),
                    "duration_ms": d.duration_ms,
                }
            )
            for card in d.cards:
                cards.setdefault(
                    card.card_uuid,
                    {
                        "card_uuid": card.card_uuid,
                        "service_id": d.service_id,
                        "hook_instance": d.hook_instance,
                        "topic": card.topic,
                        "indicator": card.indicator,
                        "issued_at": created_at,
                    },
                )
        if not audits:
            return

        def write(conn: Connection) -> None:
            self._insert_many_ignoring_duplicates(conn, decision_audit, audits)
            if cards:
                self._insert_many_ignoring_duplicates(conn, issued_card, list(cards.values()))

        self._run(write)

    def decisions(self, hook_instance: str | None = None) -> list[dict[str, Any]]:
        query = select(decision_audit).order_by(decision_audit.c.id)
        if hook_instance is not None:
            query = query.where(decision_audit.c.hook_instance == hook_instance)
        return self._report(lambda conn: conn.execute(query))

    def feedback_by_topic(self) -> list[dict[str, Any]]:
        """Cards issued and their feedback outcomes, per card topic."""
        issued = (
            select(issued_card.c.topic, func.count().label("issued"))
            .group_by(issued_card.c.topic)
            .order_by(issued_card.c.topic)
        )
        outcomes = (
            select(issued_card.c.topic, feedback.c.outcome, func.count().label("n"))
            .join(feedback, feedback.c.card_uuid == issued_card.c.card_uuid)
            .group_by(issued_card.c.topic, feedback.c.outcome)
        )

        def read(conn: Connection) -> list[dict[str, Any]]:
            report = {
                row.topic: {"topic": row.topic, "issued": row.issued, "accepted": 0, "overridden": 0}
                for row in conn.execute(issued)
            }
            for row in conn.execute(outcomes):
                report.setdefault(row.topic, {"topic": row.topic, "issued": 0, "accepted": 0, "overridden": 0})
                report[row.topic][row.outcome] = row.n
            return list(report.values())

        return self._run(read, timeout_s=REPORT_TIMEOUT_S)

    def override_reasons_by_topic(self) -> dict[str, list[dict[str, Any]]]:
        """Why cards were overridden, per card topic: each reason (system, code, display) and how often."""
        query = (
            select(
                issued_card.c.topic,
                feedback.c.override_system,
                feedback.c.override_code,
                func.max(feedback.c.override_display).label("display"),
                func.count().label("n"),
            )
            .join(feedback, feedback.c.card_uuid == issued_card.c.card_uuid)
            .where(feedback.c.outcome == "overridden")
            .group_by(issued_card.c.topic, feedback.c.override_system, feedback.c.override_code)
            .order_by(issued_card.c.topic, func.count().desc())
        )
        found: dict[str, list[dict[str, Any]]] = {}
        for row in self._report(lambda conn: conn.execute(query)):
            found.setdefault(row["topic"], []).append(
                {
                    "system": row["override_system"],
                    "code": row["override_code"],
                    "display": row["display"],
                    "count": row["n"],
                }
            )
        return found

    # --- retention ----------------------------------------------------------------------------------------------
    def purge(self, older_than: timedelta, *, now: datetime | None = None) -> PurgeResult:
        """``dvt-cds db purge``: the decision audit, issued cards and feedback older than ``older_than`` and every
        expired JWT id, in batches of PURGE_BATCH rows (short transactions beside a serving database)."""
        now = now or datetime.now(UTC)
        cutoff = now - older_than
        return PurgeResult(
            decision_audit=self._purge(decision_audit, decision_audit.c.id, decision_audit.c.created_at < cutoff),
            issued_card=self._purge(issued_card, issued_card.c.card_uuid, issued_card.c.issued_at < cutoff),
            feedback=self._purge(feedback, feedback.c.id, feedback.c.received_at < cutoff),
            seen_jti=self._purge(seen_jti, seen_jti.c.jti, seen_jti.c.expires_at < now, also=seen_jti.c.iss),
        )

    def _purge(self, table: Table, key: Column[Any], condition: Any, *, also: Column[Any] | None = None) -> int:
        keys = [key] if also is None else [also, key]
        removed = 0
        while True:
            batch = select(*keys).where(condition).limit(PURGE_BATCH)

            def delete_batch(conn: Connection, batch: Any = batch) -> int:
                found = [tuple(row) for row in conn.execute(batch)]
                if not found:
                    return 0
                if also is None:
                    conn.execute(delete(table).where(key.in_([k for (k,) in found])))
                else:
                    conn.execute(delete(table).where(tuple_(also, key).in_(found)))
                return len(found)

            done = self._run(delete_batch, timeout_s=REPORT_TIMEOUT_S)
            removed += done
            if done < PURGE_BATCH:
                return removed

    # --- JWT replay cache ----------------------------------------------------------------------------------------
    def remember_jti(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """Record a token id until it expires; False when it was already seen (a replay). StoreTimeout past
        ``timeout_s``: the caller (security.ReplayCache) decides what an unreachable store means."""

        def write(conn: Connection) -> bool:
            conn.execute(delete(seen_jti).where(seen_jti.c.expires_at < datetime.now(UTC)))
            return self._insert_ignoring_duplicate(conn, seen_jti, {"iss": iss, "jti": jti, "expires_at": expires_at})

        return self._bounded(write)

    def remember_jtis(self, entries: Sequence[tuple[str, str, datetime]]) -> None:
        """Token ids remembered elsewhere while the store was down (iss, jti, expires_at), written in one go."""
        rows = [{"iss": iss, "jti": jti, "expires_at": expires_at} for iss, jti, expires_at in entries]
        if rows:
            self._bounded(lambda conn: self._insert_many_ignoring_duplicates(conn, seen_jti, rows))

    # --- bounded execution ---------------------------------------------------------------------------------------
    def _bounded(self, work: Callable[[Connection], T]) -> T:
        """``work`` in a transaction on a store thread; the caller stops waiting after ``timeout_s`` (StoreTimeout)
        whichever phase hangs — pool checkout, a connect (libpq will not wait less than 2 s), a statement. The
        watchdog ends the abandoned operation at the same deadline, so the thread and the connection come back."""
        deadline = time.monotonic() + self.timeout_s
        future: Future[T] = self._pool().submit(self._run, work, deadline=deadline)
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            future.cancel()  # still queued behind hung operations: never started, never written
            raise StoreTimeout(f"no answer from the store within {self.timeout_s:g} s") from None

    def _pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None or self._executor_pid != os.getpid():  # a forked worker has no threads
                self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="store")
                self._executor_pid = os.getpid()
            return self._executor

    def _run(self, work: Callable[[Connection], T], *, timeout_s: float | None = None, deadline: float = 0.0) -> T:
        if not self._schema_ready:
            self._prepare_schema()
        return self._execute(work, timeout_s=timeout_s, deadline=deadline)

    def _execute(self, work: Callable[[Connection], T], *, timeout_s: float | None = None, deadline: float = 0.0) -> T:
        """``work`` in one transaction, aborted by the watchdog at ``deadline`` (default: ``timeout_s`` from now)."""
        deadline = deadline or time.monotonic() + (timeout_s or self.timeout_s)
        for attempt in range(2):
            with self.engine.connect() as conn, _WATCHDOG.armed(conn, deadline):
                if attempt == 0 and not _alive(conn):
                    continue  # the server went away while this connection sat in the pool: take a fresh one
                with conn.begin():
                    if timeout_s and timeout_s > self.timeout_s and self.engine.dialect.name == "postgresql":
                        conn.execute(text(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}"))
                    return work(conn)
        raise StoreTimeout("no live connection to the store")  # unreachable: a fresh connection is never pinged

    def _report(self, query: Callable[[Connection], Any]) -> list[dict[str, Any]]:
        return self._run(lambda conn: [dict(r._mapping) for r in query(conn)], timeout_s=REPORT_TIMEOUT_S)

    # -------------------------------------------------------------------------------------------------------------
    def _insert_ignoring_duplicate(self, conn: Any, table: Table, row: dict[str, Any]) -> bool:
        dialect = self.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
            key = next(iter(table.primary_key.columns))
            # RETURNING tells, on both databases, whether the row went in or was a duplicate.
            stmt = insert(table).values(**row).on_conflict_do_nothing().returning(key)
            return conn.execute(stmt).first() is not None
        try:  # other databases are not supported targets, but stay correct
            with conn.begin_nested():
                conn.execute(table.insert().values(**row))
            return True
        except IntegrityError:
            return False

    def _insert_many_ignoring_duplicates(self, conn: Any, table: Table, rows: list[dict[str, Any]]) -> None:
        """One ``INSERT … VALUES (…), (…) ON CONFLICT DO NOTHING``: a round trip per table, not per row."""
        dialect = self.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
            conn.execute(insert(table).values(rows).on_conflict_do_nothing())
            return
        for row in rows:
            self._insert_ignoring_duplicate(conn, table, row)


def _feedback_row(service_id: str, item: FeedbackItem, now: datetime) -> dict[str, Any]:
    reason = item.overrideReason
    return {
        "service_id": service_id,
        "card_uuid": item.card,
        "outcome": item.outcome,
        "outcome_timestamp": item.outcomeTimestamp,
        "accepted_suggestions": [s.id for s in item.acceptedSuggestions or []],
        "override_system": reason.reason.system if reason and reason.reason else None,
        "override_code": reason.reason.code if reason and reason.reason else None,
        "override_display": reason.reason.display if reason and reason.reason else None,
        "override_has_comment": bool(reason and reason.userComment),
        "received_at": now,
    }


def _connect_failure(error: Exception) -> str:
    """The driver's own words about a failed connection (host, port, role, database; never a password or SQL)."""
    return str(getattr(error, "orig", None) or type(error).__name__).strip().splitlines()[0][:300]


def default_outbox_path(database_url: str) -> str:
    """Next to a SQLite database (``var/dvt-cds.sqlite3`` → ``var/dvt-cds-outbox.sqlite3``); else under ``var/``,
    named after the database so two services on one host never share an outbox by accident."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        return str(path.with_name(f"{path.stem}-outbox.sqlite3"))
    identity = f"{url.get_backend_name()}://{url.username}@{url.host}:{url.port}/{url.database}"
    return f"var/dvt-cds-outbox-{hashlib.sha256(identity.encode()).hexdigest()[:8]}.sqlite3"


# ----------------------------------------------------------------------------------------------------------------
# Engines and the watchdog
# ----------------------------------------------------------------------------------------------------------------
def _engine(database_url: str, *, timeout_s: float, pool_size: int, max_overflow: int) -> Engine:
    url = make_url(database_url)
    # Parameters never appear in an error message (they hold hook instances and token ids).
    common: dict[str, Any] = {"json_serializer": json.dumps, "hide_parameters": True}
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            common.update(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=timeout_s)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": timeout_s}, **common)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets gunicorn workers read while one writes; NORMAL sync is safe with WAL.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    else:
        engine = create_engine(
            url,
            connect_args=_postgres_connect_args(url.query.get("options"), timeout_s)
            if url.get_backend_name() == "postgresql"
            else {},
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=timeout_s,
            **common,
        )

    @event.listens_for(engine, "checkin")
    def _idle_since(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    return engine


def _postgres_connect_args(url_options: Any, timeout_s: float) -> dict[str, Any]:
    ms = max(1, int(timeout_s * 1000))
    # The server ends a statement or a lock wait past the bound; the site's own options in the URL come last and win.
    options = f"-c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={ms * 10}"
    if url_options:
        options += " " + (url_options if isinstance(url_options, str) else " ".join(url_options))
    return {
        "connect_timeout": max(2, math.ceil(timeout_s)),  # libpq's floor is 2 s: _bounded stops waiting earlier
        "options": options,
        # A peer that vanished (a dropped network, a dead host) is noticed by TCP itself: unacknowledged data fails
        # the socket after tcp_user_timeout, an idle connection is probed by keepalives.
        "tcp_user_timeout": ms,
        "keepalives": 1,
        "keepalives_idle": max(1, math.ceil(timeout_s)),
        "keepalives_interval": 1,
        "keepalives_count": 3,
    }


def _alive(conn: Connection) -> bool:
    """Ping a connection that sat idle in the pool (under the watchdog, unlike SQLAlchemy's pool_pre_ping)."""
    idle_since = conn.connection.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < _PING_AFTER_IDLE_S:
        return True
    try:
        conn.exec_driver_sql("SELECT 1")
        conn.rollback()
        return True
    except DBAPIError as error:
        if error.connection_invalidated:
            return False
        raise


class _Watchdog:
    """One thread per process that aborts database operations still running at their deadline: it shuts the
    PostgreSQL socket down (the driver's wait returns, the connection is discarded) or interrupts SQLite."""

    def __init__(self) -> None:
        self._ids = itertools.count()
        self._start_afresh()
        # A forked worker gets no thread and possibly a lock held by a parent thread: it starts from nothing.
        os.register_at_fork(after_in_child=self._start_afresh)

    def _start_afresh(self) -> None:
        self._armed: dict[int, tuple[float, Connection]] = {}
        self._aborted: set[int] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def armed(self, conn: Connection, deadline: float) -> Iterator[None]:
        key = next(self._ids)
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="store-watchdog", daemon=True)
                self._thread.start()
            self._armed[key] = (deadline, conn)
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._armed.pop(key, None)
                aborted = key in self._aborted
                self._aborted.discard(key)
            if aborted:
                conn.invalidate()  # its socket is gone: never back into the pool

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for key, (deadline, conn) in list(self._armed.items()):
                    if deadline <= now:
                        # Under the lock: the operation cannot finish and hand its connection to another meanwhile.
                        del self._armed[key]
                        self._aborted.add(key)
                        _abort(conn)
                wake = min((deadline for deadline, _ in self._armed.values()), default=now + 60)
                self._cond.wait(max(0.001, wake - now))


def _abort(conn: Connection) -> None:
    try:
        dbapi = conn.connection.dbapi_connection
        if dbapi is None:
            return
        if hasattr(dbapi, "interrupt"):  # sqlite3
            dbapi.interrupt()
            return
        pgconn = getattr(dbapi, "pgconn", None)  # psycopg 3
        if pgconn is not None:
            with socket.socket(fileno=os.dup(pgconn.socket)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
    except Exception:
        log.warning("store watchdog could not abort an operation", exc_info=True)


_WATCHDOG = _Watchdog()
