"""The decision audit, written off the request path.

Each call's audit row goes on an in-process queue; one background thread per worker writes batches in a single
transaction. A clinician never waits for the database (measured: with SQLite, per-call inserts from concurrent
workers made the write lock the p99 — bench/results), and a slow or unavailable database costs log lines, not
cards. Rows still queued are written at exit; ``flush()`` waits for the queue to drain (tests, shutdown).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from dataclasses import dataclass

from cds_service.store import IssuedCard, Store

log = logging.getLogger(__name__)


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
    def __init__(self, store: Store, *, max_batch: int = 200, max_queue: int = 50_000):
        self._store = store
        self._queue: queue.Queue[Decision | None] = queue.Queue(maxsize=max_queue)
        self._max_batch = max_batch
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._dropped = 0
        atexit.register(self.close)

    def submit(self, decision: Decision) -> None:
        self._ensure_thread()
        try:
            self._queue.put_nowait(decision)
        except queue.Full:
            self._dropped += 1  # never block a call on the audit; say so in the log
            if self._dropped % 1000 == 1:
                log.error("audit queue full: decisions dropped", extra={"fields": {"count": self._dropped}})

    def flush(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=10)

    def _ensure_thread(self) -> None:
        # Started on first use, in the process that serves (gunicorn forks workers after import).
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            decisions = [d for d in batch if d is not None]
            try:
                if decisions:
                    self._store.record_decisions(decisions)
            except Exception:
                log.exception("audit write failed", extra={"fields": {"count": len(decisions)}})
            finally:
                for _ in batch:
                    self._queue.task_done()
            if None in batch:
                return
