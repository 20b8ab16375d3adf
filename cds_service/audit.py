"""The decision audit: durable before the call answers, written to the store off the request path.

``submit()`` appends the call's audit row to the local outbox (outbox.py: a SQLite file on local disk, ~0.05 ms)
and returns; one background thread per worker process moves batches from the outbox to the store with one
multi-row INSERT per table, deleting them from the outbox only after the store committed. While the store is down
or slow, rows wait in the outbox (retried with capped exponential backoff) instead of being dropped; a worker killed
with rows in it leaves them to the next process that moves. A clinician never waits for the database, and an
outbox that cannot be written (a full disk) costs an error line with a count, never a hook call.
``flush()`` waits until what was in the outbox is in the store (tests, shutdown).
"""

from __future__ import annotations

import atexit
import logging
import random
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from cds_service.outbox import Outbox
from cds_service.store import AuditRow, IssuedCard, Store

log = logging.getLogger(__name__)

_POLL_S = 1.0  # how often an idle writer looks for rows other processes left behind (a killed worker's)
_BUSY_RETRY_S = 0.05  # another process is moving: look again soon, it may have stopped at our rows
_LOG_EVERY_S = 10.0
_LINGER_S = 0.05  # at most one line per this many seconds for a repeating failure


@dataclass(frozen=True)
class Decision:
    hook_instance: str
    service_id: str
    status: int
    decision: str | None
    cards: tuple[IssuedCard, ...]
    data_gaps: tuple[str, ...]
    duration_ms: float


class AuditWriter:
    def __init__(
        self,
        store: Store,
        *,
        outbox: Outbox | None = None,
        max_batch: int = 200,
        retry_base_s: float = 0.05,
        retry_cap_s: float = 5.0,
        start: bool = True,
    ):
        """``start=False``: rows are only put in the outbox until ``flush()`` (tests of what a crash leaves)."""
        self._store = store
        self.outbox = outbox or Outbox(store.outbox_path)
        self._max_batch = max_batch
        self._retry_base_s = retry_base_s
        self._retry_cap_s = retry_cap_s
        self._start = start
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._failed_puts = 0
        self._last_put_log = 0.0
        atexit.register(self.close)
        if start and self._pending():
            # Rows a previous process left (a killed worker, a restarted container on the same outbox) are moved
            # now, not at this process's first call: a pod taken out of rotation may get none.
            self._ensure_thread()

    def submit(self, decision: Decision) -> None:
        """Durable in the outbox on return; never raises (the audit never fails a hook call)."""
        payload = {
            "key": uuid.uuid4().hex,
            "at": time.time(),
            "hook_instance": decision.hook_instance,
            "service_id": decision.service_id,
            "status": decision.status,
            "decision": decision.decision,
            "cards": [[c.card_uuid, c.topic, c.indicator] for c in decision.cards],
            "data_gaps": list(decision.data_gaps),
            "duration_ms": decision.duration_ms,
        }
        try:
            self.outbox.put(payload)
        except (sqlite3.Error, OSError) as error:
            self._put_failed(error)
            return
        if self._start:
            self._ensure_thread()
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait (at most ``timeout``) until every row in the outbox now is in the store."""
        deadline = time.monotonic() + timeout
        try:
            up_to = self.outbox.last_id()
        except (sqlite3.Error, OSError):
            return
        self._ensure_thread()
        while time.monotonic() < deadline:
            self._wake.set()  # also cuts a retry's backoff short: flush means "now"
            try:
                if self.outbox.pending(up_to) == 0:
                    return
            except (sqlite3.Error, OSError):
                return
            time.sleep(0.005)

    def close(self) -> None:
        """Stop the writer after one last attempt; what the store did not take stays in the outbox for the next
        process."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout=max(5.0, 3 * self._store.timeout_s))
        self.outbox.close()

    # --- the background writer -------------------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        # Started on first use, in the process that serves (gunicorn forks workers after import).
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if (self._thread is None or not self._thread.is_alive()) and not self._stop.is_set():
                    self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        failures = 0
        last_log = 0.0
        while True:
            stopping = self._stop.is_set()
            try:
                outcome = self._move_all()
                self.outbox.checkpoint()
            except Exception as error:  # the store, or the outbox itself: keep the rows, try again later
                outcome = "failed"
                failures += 1
                if time.monotonic() - last_log >= _LOG_EVERY_S or failures == 1:
                    last_log = time.monotonic()
                    log.warning(
                        "audit store write failed: rows kept in the outbox, retrying",
                        extra={"fields": {"count": self._pending(), "error": type(error).__name__}},
                    )
            if stopping:
                return
            if outcome == "failed":
                # Jitter: the workers of a host do not all retry at the same instant when the store comes back.
                backoff = min(self._retry_cap_s, self._retry_base_s * 2 ** min(failures, 30))
                delay = backoff * random.uniform(0.5, 1)  # noqa: S311 - jitter, not a secret
            else:
                if failures:
                    log.info("audit store writes resumed", extra={"fields": {"count": failures}})
                failures = 0
                delay = _BUSY_RETRY_S if outcome == "busy" else _POLL_S
            woken = self._wake.wait(delay)
            self._wake.clear()
            if woken and outcome != "failed":
                # Let a batch gather: fewer, larger batches take the GIL from request threads less often.
                self._stop.wait(_LINGER_S)

    def _move_all(self) -> str:
        """Move batches until the outbox is empty: "done", or "busy" when another process is the mover."""
        with self.outbox.mover() as mine:
            if not mine:
                return "busy" if self.outbox.has_rows() else "done"
            while True:
                batch = self.outbox.peek(self._max_batch)
                if not batch:
                    return "done"
                rows: list[tuple[int, AuditRow]] = []
                for row_id, payload in batch:
                    row = _audit_row(payload)
                    if row is None:
                        self.outbox.reject([row_id], "not an audit row")
                    else:
                        rows.append((row_id, row))
                self._write(rows)

    def _write(self, rows: list[tuple[int, AuditRow]]) -> None:
        try:
            self._store.record_decisions([row for _, row in rows])
        except DBAPIError as error:
            if _outage(error):
                raise  # the whole batch waits for the next attempt
            self._write_one_by_one(rows)  # the store refused the content: find the rows it refuses
            return
        self.outbox.delete([row_id for row_id, _ in rows])

    def _write_one_by_one(self, rows: list[tuple[int, AuditRow]]) -> None:
        for row_id, row in rows:
            try:
                self._store.record_decisions([row])
            except DBAPIError as error:
                if _outage(error):
                    raise
                log.error(
                    "audit row refused by the store: set aside", extra={"fields": {"error": type(error).__name__}}
                )
                self.outbox.reject([row_id], type(error).__name__)
                continue
            self.outbox.delete([row_id])

    # -------------------------------------------------------------------------------------------------------------
    def _put_failed(self, error: Exception) -> None:
        self._failed_puts += 1
        now = time.monotonic()
        if self._failed_puts == 1 or now - self._last_put_log >= _LOG_EVERY_S:
            self._last_put_log = now
            log.error(
                "audit outbox write failed: decision not recorded",
                extra={"fields": {"count": self._failed_puts, "error": type(error).__name__}},
            )

    def _pending(self) -> int | None:
        try:
            return self.outbox.pending()
        except (sqlite3.Error, OSError):
            return None


def _outage(error: DBAPIError) -> bool:
    """Unreachable, down, slow, locked, cut mid-way: retry later. Anything else is about the rows themselves."""
    return isinstance(error, OperationalError | InterfaceError) or error.connection_invalidated


def _audit_row(payload: Any) -> AuditRow | None:
    try:
        return AuditRow(
            key=str(payload["key"]),
            created_at=datetime.fromtimestamp(float(payload["at"]), UTC),
            hook_instance=str(payload["hook_instance"]),
            service_id=str(payload["service_id"]),
            status=int(payload["status"]),
            decision=payload["decision"] if payload["decision"] is None else str(payload["decision"]),
            cards=tuple(IssuedCard(str(u), str(t), str(i)) for u, t, i in payload["cards"]),
            data_gaps=tuple(str(g) for g in payload["data_gaps"]),
            duration_ms=float(payload["duration_ms"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
