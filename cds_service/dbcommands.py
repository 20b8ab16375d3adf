"""``dvt-cds db upgrade`` and ``dvt-cds db purge``: the store's schema and its retention, for operators (the
Kubernetes Job and CronJob, docker compose's migrate service, ``make run``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from cds_service import schema
from cds_service.settings import Settings
from cds_service.store import SchemaPolicy, Store, StoreTimeout


def add_arguments(commands: Any, run: Callable[[argparse.Namespace], int]) -> None:
    """``dvt-cds db ...``; ``run`` (the CLI's, which reads the settings) dispatches on ``db_command``."""
    db = commands.add_parser("db", help="the store's schema (Alembic migrations) and retention")
    db.set_defaults(func=run)
    actions = db.add_subparsers(dest="db_command", required=True)
    actions.add_parser("upgrade", help="bring the database to the newest schema revision")
    purge = actions.add_parser(
        "purge", help="delete decision audit, issued cards and feedback older than DAYS, and expired JWT ids"
    )
    purge.add_argument("--older-than", type=int, metavar="DAYS", help="default: DVT_CDS_RETENTION_DAYS")


def run_upgrade(settings: Settings) -> int:
    store = _open(settings, "as-is")
    try:
        print(f"database {store.engine.url.render_as_string(hide_password=True)}")
        before = store.schema_state()
        result = store.upgrade_schema()
    except (DBAPIError, SATimeoutError, StoreTimeout, schema.SchemaError) as error:
        return _failed("cannot upgrade the database schema", error)
    finally:
        store.close()
    if result.adopted:
        print(f"tables from before migrations recorded at revision {schema.BASELINE} (the baseline)")
    if not before.known:
        print(f"at revision {result.after}, newer than this version ({schema.head()}): nothing to do")
        return 0
    applied = schema.revisions_after(schema.BASELINE if result.adopted else before.current)
    for revision, words in applied:
        print(f"applied {revision}  {words}")
    print(f"at revision {result.after} (the newest)" + ("" if applied else ": nothing to do"))
    return 0


def require_existing_store(settings: Settings, why: str) -> None:
    """A command that reads the store (a report, a purge) never creates one: opening a SQLite file that is not there
    would make an empty store and answer about it. One line naming the path, exit code 2."""
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    path = Path(url.database).resolve()
    if not path.exists():
        print(
            f"dvt-cds: no store at {path} (DVT_CDS_DATABASE_URL): {why}; `make run` or `dvt-cds db upgrade` "
            "creates it, or set DVT_CDS_DATABASE_URL to the service's store",
            file=sys.stderr,
        )
        raise SystemExit(2)


def run_purge(settings: Settings, older_than_days: int | None) -> int:
    days = older_than_days if older_than_days is not None else settings.retention_days
    if days < 1:
        print("dvt-cds: --older-than must be at least 1 day", file=sys.stderr)
        return 2
    require_existing_store(settings, "nothing to purge")
    store = _open(settings, "require")
    try:
        removed = store.purge(timedelta(days=days))
    except (DBAPIError, SATimeoutError, StoreTimeout, schema.SchemaError) as error:
        return _failed("cannot purge", error)
    finally:
        store.close()
    print(
        f"older than {days} days: decision_audit {removed.decision_audit}, issued_card {removed.issued_card}, "
        f"feedback {removed.feedback}; expired JWT ids (seen_jti) {removed.seen_jti}"
    )
    return 0


def _open(settings: Settings, policy: SchemaPolicy) -> Store:
    try:
        return Store.from_settings(settings, schema=policy)
    except schema.SchemaError as error:
        print(f"dvt-cds: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except (DBAPIError, SATimeoutError) as error:
        raise SystemExit(_failed("cannot open the database", error)) from None


def _failed(what: str, error: Exception) -> int:
    if isinstance(error, schema.SchemaError):
        print(f"dvt-cds: {error}", file=sys.stderr)
        return 2
    reason = str(getattr(error, "orig", None) or type(error).__name__).strip().splitlines()[0][:300]
    print(f"dvt-cds: {what}: {reason}", file=sys.stderr)
    return 1
