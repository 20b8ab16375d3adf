"""A durable local queue of JSON payloads (the decision audit waiting for the store), shared by the processes of
one host.

A SQLite file in WAL mode with ``synchronous=NORMAL``: a put is one small autocommit INSERT appended to the WAL with
no fsync (tens of microseconds), and survives the process being killed (the OS holds the written pages; a power
loss may cost the last moments, never the file's consistency). Rows are read in id order and deleted by whoever
moved them, only after the store committed.

One mover at a time per outbox: ``mover()`` takes an exclusive ``flock`` on ``<path>.lock``. The kernel releases it
when its holder dies, however it dies, so a killed worker's rows are moved by the next process to look — no lease to
expire, no pid to check. The lock saves duplicated work; exactly-once in the store comes from the payloads'
idempotency keys (store.py), which also cover the window no lock can: committed, killed before the delete.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

_SCHEMA = (
    # AUTOINCREMENT: ids are never reused, so "everything up to id N is gone" means what it says (flush).
    "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT NOT NULL)",
    # Rows the store refused for good (not an outage): kept for a person to look at, out of the way of the rest.
    "CREATE TABLE IF NOT EXISTS rejected (id INTEGER PRIMARY KEY, payload TEXT NOT NULL, error TEXT NOT NULL)",
)


class Outbox:
    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 1.0, max_bytes: int | None = None):
        """``max_bytes`` caps the file (SQLite then fails a put as with a full disk); None: the disk is the cap."""
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._max_bytes = max_bytes
        # Two connections per process: puts (request threads) never wait behind the mover's reads and deletes in
        # this process, and never run a WAL checkpoint inline (the mover's connection does, off the request path).
        self._put = _Connection(self._open_for_put)
        self._move = _Connection(self._open)
        # Writes of this process take turns here, a mutex, instead of meeting at SQLite's write lock, whose busy
        # handler sleeps in steps of milliseconds (measured: p99 of a put 3–5 ms with the mover deleting alongside).
        self._writing = threading.Lock()

    # --- putting ---------------------------------------------------------------------------------------------
    def put(self, payload: dict[str, Any]) -> int:
        """Append durably; the row's id. Raises sqlite3.Error or OSError when the file cannot be written."""
        text = json.dumps(payload, separators=(",", ":"))
        with self._writing, self._put.lock:
            cursor = self._put.get().execute("INSERT INTO outbox (payload) VALUES (?)", (text,))
            return int(cursor.lastrowid or 0)

    # --- moving ----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def mover(self) -> Iterator[bool]:
        """True inside when this process is the one mover of the outbox now; False when another one is."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True  # closing the descriptor below releases the lock
        finally:
            os.close(fd)

    def peek(self, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """The oldest ``limit`` rows, left in place; a row that is not valid JSON is set aside, not returned."""
        with self._move.lock:
            rows = self._move.get().execute("SELECT id, payload FROM outbox ORDER BY id LIMIT ?", (limit,)).fetchall()
        found: list[tuple[int, dict[str, Any]]] = []
        for row_id, text in rows:
            try:
                found.append((row_id, json.loads(text)))
            except ValueError:
                self.reject([row_id], "not JSON")
        return found

    def delete(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._writing, self._move.lock:
            self._move.get().execute(
                f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(ids))})",  # noqa: S608 - placeholders only
                tuple(ids),
            )

    def reject(self, ids: Sequence[int], error: str) -> None:
        """Move rows the store will never take to ``rejected`` (one transaction)."""
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        with self._writing, self._move.lock:
            conn = self._move.get()
            with conn:  # a transaction: copied and deleted together
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    f"INSERT OR REPLACE INTO rejected (id, payload, error) "  # noqa: S608 - placeholders only
                    f"SELECT id, payload, ? FROM outbox WHERE id IN ({marks})",
                    (error, *ids),
                )
                conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", tuple(ids))  # noqa: S608

    # --- looking -----------------------------------------------------------------------------------------------
    def pending(self, up_to: int | None = None) -> int:
        """Rows waiting (with an id up to ``up_to`` when given)."""
        query = "SELECT count(*) FROM outbox"
        args: tuple[int, ...] = ()
        if up_to is not None:
            query, args = "SELECT count(*) FROM outbox WHERE id <= ?", (up_to,)
        with self._move.lock:
            return int(self._move.get().execute(query, args).fetchone()[0])

    def has_rows(self) -> bool:
        with self._move.lock:
            return self._move.get().execute("SELECT 1 FROM outbox LIMIT 1").fetchone() is not None

    def last_id(self) -> int:
        with self._move.lock:
            return int(self._move.get().execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0])

    def checkpoint(self) -> None:
        """Fold the WAL back into the file (puts leave that to the mover), without waiting for readers."""
        with self._move.lock:
            self._move.get().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        self._put.close()
        self._move.close()

    # -------------------------------------------------------------------------------------------------------------
    def _open_for_put(self) -> sqlite3.Connection:
        conn = self._open()
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        return conn

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: every statement commits on its own unless a transaction is opened explicitly.
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                conn.execute(statement)
            if self._max_bytes is not None:
                page_size = conn.execute("PRAGMA page_size").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count = {max(1, self._max_bytes // page_size)}")
        except BaseException:
            conn.close()
            raise
        return conn


class _Connection:
    """A SQLite connection opened in the process that uses it (gunicorn forks after import), with its lock."""

    def __init__(self, opener: Callable[[], sqlite3.Connection]):
        self._opener = opener
        self.lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def get(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._opener()
            self._pid = os.getpid()
        return self._conn

    def close(self) -> None:
        with self.lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
