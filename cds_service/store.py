"""Persistence: card feedback, the decision audit, issued cards and the JWT ``jti`` replay cache.

SQLAlchemy Core, one code path for SQLite (the default, nothing to install) and PostgreSQL
(``DVT_CDS_DATABASE_URL=postgresql+psycopg://...``) when several instances share state. The schema is
created on start. Nothing stored identifies a patient: no patient id, no resource content, no clinician
free text (feedback ``userComment`` is reduced to "a comment was given"), no tokens.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
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
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

from cds_service.protocol import FeedbackItem

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


class StoreTimeout(Exception):
    """The store did not answer within ``db_timeout_s``."""


class Store:
    def __init__(self, database_url: str, *, timeout_s: float = 2.0):
        self.timeout_s = timeout_s
        self.engine = _engine(database_url)
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._create_schema()

    def _create_schema(self, attempts: int = 5) -> None:
        """Create missing tables. Several processes may start at once (gunicorn workers, instances on one
        PostgreSQL): create_all checks then creates, so a concurrent creator can win the race — then look again."""
        for attempt in range(attempts):
            try:
                metadata.create_all(self.engine)
                return
            except DBAPIError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()

    def ping(self) -> bool:
        """Readiness: the store answers ``SELECT 1`` within ``timeout_s``. Never raises."""

        def select_one() -> None:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:
            self._bounded(select_one)
            return True
        except Exception:
            return False

    def _bounded(self, work: Callable[[], Any]) -> Any:
        """Run ``work`` on a store thread and give up waiting after ``timeout_s``: a request never waits longer
        for the database, whatever phase (pool checkout, connect, query) hangs."""
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="store")
        future: Future[Any] = self._executor.submit(work)
        try:
            return future.result(timeout=self.timeout_s)
        except TimeoutError:
            future.cancel()
            raise StoreTimeout(f"no answer from the store within {self.timeout_s:g} s") from None

    # --- feedback ------------------------------------------------------------------------------------------------
    def record_feedback(self, service_id: str, items: Sequence[FeedbackItem]) -> FeedbackResult:
        stored = duplicates = 0
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for item in items:
                reason = item.overrideReason
                row = {
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
                if self._insert_ignoring_duplicate(conn, feedback, row):
                    stored += 1
                else:
                    duplicates += 1
        return FeedbackResult(stored=stored, duplicates=duplicates)

    def feedback_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(feedback).order_by(feedback.c.id))]

    # --- decisions -----------------------------------------------------------------------------------------------
    def record_decision(
        self,
        *,
        hook_instance: str,
        service_id: str,
        status: int,
        decision: str | None,
        cards: Iterable[IssuedCard],
        data_gaps: list[str],
        duration_ms: float,
    ) -> None:
        now = datetime.now(UTC)
        cards = list(cards)
        with self.engine.begin() as conn:
            conn.execute(
                decision_audit.insert().values(
                    hook_instance=hook_instance,
                    service_id=service_id,
                    created_at=now,
                    status=status,
                    decision=decision,
                    topics=[c.topic for c in cards],
                    data_gaps=data_gaps,
                    duration_ms=duration_ms,
                )
            )
            for card in cards:
                self._insert_ignoring_duplicate(
                    conn,
                    issued_card,
                    {
                        "card_uuid": card.card_uuid,
                        "service_id": service_id,
                        "hook_instance": hook_instance,
                        "topic": card.topic,
                        "indicator": card.indicator,
                        "issued_at": now,
                    },
                )

    def record_decisions(self, decisions: Iterable[Any]) -> None:
        """Many audit rows in one transaction (the background audit writer's batches)."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for d in decisions:
                conn.execute(
                    decision_audit.insert().values(
                        hook_instance=d.hook_instance,
                        service_id=d.service_id,
                        created_at=now,
                        status=d.status,
                        decision=d.decision,
                        topics=[c.topic for c in d.cards],
                        data_gaps=list(d.data_gaps),
                        duration_ms=d.duration_ms,
                    )
                )
                for card in d.cards:
                    self._insert_ignoring_duplicate(
                        conn,
                        issued_card,
                        {
                            "card_uuid": card.card_uuid,
                            "service_id": d.service_id,
                            "hook_instance": d.hook_instance,
                            "topic": card.topic,
                            "indicator": card.indicator,
                            "issued_at": now,
                        },
                    )

    def decisions(self, hook_instance: str | None = None) -> list[dict[str, Any]]:
        query = select(decision_audit).order_by(decision_audit.c.id)
        if hook_instance is not None:
            query = query.where(decision_audit.c.hook_instance == hook_instance)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

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
        with self.engine.connect() as conn:
            report = {
                row.topic: {"topic": row.topic, "issued": row.issued, "accepted": 0, "overridden": 0}
                for row in conn.execute(issued)
            }
            for row in conn.execute(outcomes):
                report.setdefault(row.topic, {"topic": row.topic, "issued": 0, "accepted": 0, "overridden": 0})
                report[row.topic][row.outcome] = row.n
        return list(report.values())

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
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                found.setdefault(row.topic, []).append(
                    {"system": row.override_system, "code": row.override_code, "display": row.display, "count": row.n}
                )
        return found

    # --- JWT replay cache ----------------------------------------------------------------------------------------
    def remember_jti(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """Record a token id until it expires; False when it was already seen (a replay)."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(delete(seen_jti).where(seen_jti.c.expires_at < now))
            return self._insert_ignoring_duplicate(conn, seen_jti, {"iss": iss, "jti": jti, "expires_at": expires_at})

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


def _engine(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            json_serializer=json.dumps,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets gunicorn workers read while one writes; NORMAL sync is safe with WAL.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, json_serializer=json.dumps)
