"""The store failing under a running service: a real PostgreSQL behind a proxy (tests/pgproxy.py) that is cut,
slowed or blackholed while the Flask app answers feedback and hook calls.

What must hold: feedback is 503 + Retry-After within about ``db_timeout_s`` and never 200-and-lost; every hook call
made during an outage has its audit row in the database exactly once after recovery; with JWT on, hook calls keep
answering (the jti replay cache falls back to the process, SECURITY.md) and a replay is still caught after recovery.
Each test prints its figures (``FIGURE ...``; ``pytest -s`` shows them).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.builders import condition, hook_request
from tests.pgproxy import PgProxy
from tests.security.test_jwt import BASE, ISS, JWKS, PV, token
from tests.test_store import PG_ADMIN, postgres_available

TIMEOUT_S = 0.5  # db_timeout_s of these tests
BOUND_S = TIMEOUT_S + 1.0  # an answer later than this is a hang, not a timeout
FB = PV + "/feedback"
ROOT = Path(__file__).resolve().parents[1]


# --- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture
def pg_db() -> Iterator[str]:
    if not postgres_available():
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    import psycopg

    name = f"dvt_cds_fault_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def proxy() -> Iterator[PgProxy]:
    running = PgProxy()
    yield running
    running.close()


@pytest.fixture
def pg_app(make_app: Callable[..., Flask], pg_db: str, proxy: PgProxy, tmp_path: Path) -> Callable[..., Flask]:
    """The app on the PostgreSQL database through the proxy (torn down after the proxy: nothing stays blocked)."""

    def make(**overrides: Any) -> Flask:
        values: dict[str, Any] = {
            "database_url": proxy.url(pg_db),
            "db_timeout_s": TIMEOUT_S,
            "outbox_path": str(tmp_path / "outbox.sqlite3"),
        }
        values.update(overrides)
        return make_app(**values)

    return make


def pg_rows(database: str, query: str) -> list[tuple[Any, ...]]:
    """Read the database directly, not through the proxy."""
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}", connect_timeout=5) as conn:
        return conn.execute(query).fetchall()


def bounded(call: Callable[[], Any], limit_s: float = 5.0) -> tuple[Any, float]:
    """``call()``'s result (None when it raised or did not return within ``limit_s``) and how long it took."""
    box: dict[str, Any] = {}

    def run() -> None:
        box["result"] = call()

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(limit_s)
    return box.get("result"), time.monotonic() - started


def feedback_body(card: str) -> dict[str, Any]:
    return {"feedback": [{"card": card, "outcome": "accepted", "outcomeTimestamp": "2026-03-16T10:00:00Z"}]}


def figure(name: str, value: Any) -> None:
    print(f"\nFIGURE {name}: {value}")


def set_mode(proxy: PgProxy, mode: str) -> None:
    {"cut": proxy.cut, "blackhole": proxy.blackhole, "slow": lambda: proxy.slow(0.3)}[mode]()


# --- C: feedback ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["cut", "blackhole", "slow"])
def test_feedback_is_503_in_time_during_an_outage_and_never_200_and_lost(
    pg_app: Callable[..., Flask], proxy: PgProxy, pg_db: str, mode: str
) -> None:
    client = pg_app().test_client()
    assert client.post(FB, json=feedback_body("before")).status_code == 200
    set_mode(proxy, mode)
    answers: list[tuple[str, int | None, float, str | None]] = []
    for i in range(4):
        card = f"{mode}-{i}"
        response, took = bounded(lambda card=card: client.post(FB, json=feedback_body(card)))
        status = response.status_code if response is not None else None
        answers.append((card, status, took, response.headers.get("Retry-After") if response is not None else None))
    proxy.set_pass()
    after: list[tuple[str, int | None]] = []
    for i in range(3):
        response, _ = bounded(lambda i=i: client.post(FB, json=feedback_body(f"after-{i}")))
        after.append((f"after-{i}", response.status_code if response is not None else None))
    stored = {row[0] for row in pg_rows(pg_db, "SELECT card_uuid FROM feedback")}
    slowest = max(took for _, _, took, _ in answers)
    figure(f"feedback during {mode}", [(status, round(took, 2)) for _, status, took, _ in answers])

    assert all(status is not None for _, status, _, _ in answers), "a feedback call hung"
    assert slowest <= BOUND_S, f"slowest feedback answer {slowest:.2f} s"
    for _card, status, _, retry_after in answers:
        assert status in (200, 503)
        if status == 503:
            assert retry_after is not None
            assert int(retry_after) >= 1
    if mode != "slow":
        assert all(status == 503 for _, status, _, _ in answers)
    answered_200 = {card for card, status, _, _ in answers if status == 200} | {c for c, s in after if s == 200}
    assert answered_200 <= stored, f"answered 200 but not stored: {answered_200 - stored}"
    assert [s for _, s in after] == [200, 200, 200]  # the store is used again as soon as it is back


# --- A: the decision audit --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["cut", "blackhole"])
def test_audit_rows_of_calls_during_an_outage_are_stored_exactly_once(
    pg_app: Callable[..., Flask], proxy: PgProxy, pg_db: str, mode: str
) -> None:
    app = pg_app()
    client = app.test_client()
    body = [condition("E11.9")]
    first = hook_request("patient-view", body)
    assert client.post(PV, json=first).status_code == 200
    set_mode(proxy, mode)
    sent, slowest, statuses = [], 0.0, []
    for _ in range(30):
        request = hook_request("patient-view", body)
        response, took = bounded(lambda request=request: client.post(PV, json=request))
        statuses.append(response.status_code if response is not None else None)
        slowest = max(slowest, took)
        sent.append(request["hookInstance"])
    proxy.set_pass()
    app.extensions["dvt_cds"]["audit"].flush(timeout=8)
    rows = pg_rows(pg_db, "SELECT hook_instance, count(*) FROM decision_audit GROUP BY hook_instance")
    counts = dict(rows)
    lost = sum(1 for h in sent if counts.get(h, 0) == 0)
    figure(f"audit rows lost over a {mode}", f"{lost}/{len(sent)} ({100 * lost / len(sent):.0f} %)")
    figure(f"slowest hook call during {mode}", f"{slowest:.3f} s")

    assert statuses == [200] * len(sent)
    assert slowest <= BOUND_S
    assert lost == 0
    assert all(counts[h] == 1 for h in [*sent, first["hookInstance"]]), "an audit row was inserted twice"


def test_audit_batches_are_multi_row_inserts_that_keep_up_with_a_slow_database(
    pg_app: Callable[..., Flask], proxy: PgProxy, pg_db: str
) -> None:
    from sqlalchemy import event

    from cds_service.audit import Decision
    from cds_service.store import IssuedCard

    app = pg_app()
    audit, store = app.extensions["dvt_cds"]["audit"], app.extensions["dvt_cds"]["store"]
    audit.submit(Decision("warm-up", "svc", 200, None, (), (), 1.0))
    audit.flush(timeout=5)
    inserts: list[str] = []
    event.listen(
        store.engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: inserts.append(statement) if statement.startswith("INSERT") else None,
    )
    proxy.slow(0.01)  # 10 ms before every chunk each way: a round trip costs 20 ms
    started = time.monotonic()
    for i in range(100):
        audit.submit(Decision(f"slow-{i}", "svc", 200, "d", (IssuedCard(f"card-{i}", "t", "info"),), (), 1.0))
    audit.flush(timeout=15)
    took = time.monotonic() - started
    [(stored,)] = pg_rows(pg_db, "SELECT count(*) FROM decision_audit WHERE hook_instance LIKE 'slow-%'")
    figure("100 audit rows through a 10 ms-per-chunk database", f"{took:.2f} s, {len(inserts)} INSERT statements")

    assert stored == 100
    assert len(inserts) <= 10  # one multi-row INSERT per table per batch (200 rows at most), not one per row
    assert took < 2.0


def test_rows_of_a_killed_worker_are_moved_by_the_next_and_two_workers_never_insert_twice(
    pg_db: str, proxy: PgProxy, tmp_path: Path
) -> None:
    """Three processes share one outbox: one is killed with rows still in it (its store is cut), two more move
    everything at once; every row is in the database exactly once."""
    outbox = tmp_path / "shared-outbox.sqlite3"
    direct = f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_db}"
    script = """
import sys, time
from cds_service.audit import AuditWriter, Decision
from cds_service.store import IssuedCard, Store
url, outbox, prefix, count, wait = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
writer = AuditWriter(Store(url, timeout_s=0.5, outbox_path=outbox))
for i in range(count):
    writer.submit(Decision(f"{prefix}-{i}", "svc", 200, "d", (IssuedCard(f"{prefix}-card-{i}", "t", "info"),), (), 1.0))
print("submitted", flush=True)
if wait == "hang":
    time.sleep(60)
writer.flush(timeout=20)
writer.close()
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proxy.cut()
    doomed = subprocess.Popen(
        [sys.executable, "-c", script, proxy.url(pg_db), str(outbox), "killed", "50", "hang"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert doomed.stdout is not None
    assert doomed.stdout.readline().strip() == "submitted"
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=5)
    workers = [
        subprocess.Popen([sys.executable, "-c", script, direct, str(outbox), name, "200", "flush"], env=env)
        for name in ("worker-a", "worker-b")
    ]
    assert [w.wait(timeout=30) for w in workers] == [0, 0]
    rows = dict(pg_rows(pg_db, "SELECT hook_instance, count(*) FROM decision_audit GROUP BY hook_instance"))
    cards = pg_rows(pg_db, "SELECT count(*) FROM issued_card")[0][0]
    figure(
        "rows after a kill and two concurrent workers", f"{len(rows)} distinct of 450, max copies {max(rows.values())}"
    )

    assert len(rows) == 450
    assert set(rows.values()) == {1}
    assert cards == 450


def test_a_batch_committed_but_not_yet_deleted_from_the_outbox_is_not_inserted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window no claim or lock can close: the store committed, the process died before the outbox delete."""
    from cds_service.audit import AuditWriter, Decision
    from cds_service.outbox import Outbox
    from cds_service.store import IssuedCard, Store

    store = Store(f"sqlite:///{tmp_path / 'store.sqlite3'}", outbox_path=str(tmp_path / "outbox.sqlite3"))
    dying = AuditWriter(store, start=False)
    for i in range(20):
        dying.submit(Decision(f"h{i}", "svc", 200, "d", (IssuedCard(f"c{i}", "t", "info"),), (), 1.0))
    with monkeypatch.context() as crash:

        def never_deleted(self: Outbox, ids: Any) -> None:
            raise OSError("killed before the delete")

        crash.setattr(Outbox, "delete", never_deleted)
        dying.flush(timeout=0.5)  # commits, fails to delete, commits the same rows again, …
        dying.close()
    assert dying.outbox.pending() == 20
    AuditWriter(store).flush(timeout=5)  # the next process moves the same rows once more
    assert sorted(d["hook_instance"] for d in store.decisions()) == sorted(f"h{i}" for i in range(20))
    assert len(store.feedback_by_topic()) == 1
    assert store.feedback_by_topic()[0]["issued"] == 20
    assert Outbox(tmp_path / "outbox.sqlite3").pending() == 0
    store.close()


# --- the outbox itself ------------------------------------------------------------------------------------------
def test_submit_costs_well_under_a_millisecond(tmp_path: Path) -> None:
    from cds_service.audit import AuditWriter, Decision
    from cds_service.store import IssuedCard, Store

    store = Store(f"sqlite:///{tmp_path / 'store.sqlite3'}", outbox_path=str(tmp_path / "outbox.sqlite3"))
    writer = AuditWriter(store)
    cards = (IssuedCard(str(uuid.uuid4()), "distal-dvt-serial-imaging", "warning"),)
    costs = []
    for i in range(2000):
        decision = Decision(str(uuid.uuid4()), "distal-dvt-patient-view", 200, f"d{i % 5}", cards, ("x",), 12.5)
        started = time.perf_counter()
        writer.submit(decision)
        costs.append((time.perf_counter() - started) * 1000)
    writer.flush(timeout=10)
    costs.sort()
    median, p99 = statistics.median(costs), costs[int(len(costs) * 0.99)]
    figure("per-submit cost (outbox write)", f"median {median:.3f} ms, p99 {p99:.3f} ms")
    assert len(store.decisions()) == 2000
    assert median < 0.3  # measured ~0.03 ms: the target, with room for a loaded test machine
    writer.close()
    store.close()


def test_an_outbox_that_cannot_be_written_costs_a_log_line_not_the_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from cds_service.audit import AuditWriter, Decision
    from cds_service.outbox import Outbox
    from cds_service.store import Store

    store = Store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    full = Outbox(tmp_path / "outbox.sqlite3", max_bytes=64 * 1024)  # the disk fills up: SQLITE_FULL
    writer = AuditWriter(store, outbox=full, start=False)
    for i in range(400):
        writer.submit(Decision(f"h{i}-" + "x" * 200, "svc", 200, None, (), ("y" * 200,), 1.0))  # never raises
    failures = [r for r in caplog.records if r.getMessage() == "audit outbox write failed: decision not recorded"]
    assert failures
    assert failures[0].levelname == "ERROR"
    assert failures[-1].__dict__["fields"]["count"] >= 1
    store.close()


# --- D: JWT replay cache during an outage -----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["cut", "blackhole"])
def test_hook_calls_with_jwt_keep_answering_during_an_outage_and_a_replay_is_still_caught(
    pg_app: Callable[..., Flask], proxy: PgProxy, pg_db: str, mode: str
) -> None:
    settings = {"auth": "jwt", "public_base_url": BASE, "trusted_issuers": [{"iss": ISS, "jwks": JWKS}]}
    app = pg_app(**settings)
    client = app.test_client()
    body = hook_request("patient-view", [condition("E11.9")])

    def call(tok: str) -> Any:
        return client.post(PV, json=body, headers={"Authorization": f"Bearer {tok}"})

    assert call(token()).status_code == 200
    set_mode(proxy, mode)
    during = [token() for _ in range(12)]
    results = [bounded(lambda t=t: call(t)) for t in during]
    statuses = [r.status_code if r is not None else None for r, _ in results]
    slowest = max(took for _, took in results)
    replay_during, _ = bounded(lambda: call(during[3]))
    proxy.set_pass()
    # Back: the jtis remembered in the process reach the store (a fresh call, then at most a short wait).
    recovered, _ = bounded(lambda: call(token()))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        seen = pg_rows(pg_db, "SELECT count(*) FROM seen_jti")[0][0]
        if seen >= 2 + len(during):
            break
        time.sleep(0.05)
    other_worker = pg_app(**settings).test_client()  # another process sharing the database
    replay_after = other_worker.post(PV, json=body, headers={"Authorization": f"Bearer {during[5]}"})
    figure(f"hook calls with JWT during {mode}", f"statuses {sorted(set(map(str, statuses)))}, slowest {slowest:.2f} s")

    assert statuses == [200] * len(during)
    assert slowest <= BOUND_S
    assert replay_during is not None
    assert replay_during.status_code == 401
    assert recovered is not None
    assert recovered.status_code == 200
    assert replay_after.status_code == 401  # remembered in the process during the outage, written to the store after


def test_the_outage_replay_cache_rejects_replays_and_fails_closed_when_full() -> None:
    from cds_service.errors import ServiceUnavailable
    from cds_service.security import ReplayCache

    class DownStore:
        calls = 0

        def remember_jti(self, iss: str, jti: str, expires_at: datetime) -> bool:
            self.calls += 1
            raise OSError("store unreachable")

    store = DownStore()
    cache = ReplayCache(store, capacity=3, retry_s=60)  # type: ignore[arg-type]
    soon = datetime.now(UTC) + timedelta(minutes=5)
    assert cache.remember("iss", "a", soon) is True
    assert cache.remember("iss", "a", soon) is False  # a replay seen in the process is still a replay
    assert cache.remember("iss", "b", soon) is True
    assert cache.remember("iss", "c", datetime.now(UTC) - timedelta(seconds=1)) is True  # already expired
    assert cache.remember("iss", "d", soon) is True  # the expired entry made room
    with pytest.raises(ServiceUnavailable) as full:
        cache.remember("iss", "e", soon)
    assert full.value.retry_after_s >= 1
    assert store.calls == 1  # while the store is known to be down, calls do not wait for it


# --- readiness ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["cut", "blackhole"])
def test_readyz_is_503_while_the_store_is_unreachable_and_healthz_stays_live(
    pg_app: Callable[..., Flask], proxy: PgProxy, mode: str
) -> None:
    """Before: /healthz said ok while every call needing the store failed, and there was no readiness signal."""
    client = pg_app().test_client()
    assert client.get("/readyz").status_code == 200
    set_mode(proxy, mode)
    response, took = bounded(lambda: client.get("/readyz"))
    assert response is not None
    assert response.status_code == 503
    assert response.json == {"status": "not ready", "reason": "store unreachable"}
    assert response.headers["Retry-After"] == "5"
    assert took < TIMEOUT_S + 1.0
    assert client.get("/healthz").status_code == 200
    figure(f"readyz during {mode}", f"503 in {took:.2f} s")
    proxy.set_pass()
    deadline = time.monotonic() + 10
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "still not ready after the store came back"
        time.sleep(0.1)
