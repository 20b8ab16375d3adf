"""The ``dvt-cds`` command."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cds_service.logs import configure_logging, log_fields
from cds_service.settings import Settings, SettingsFileError

log = logging.getLogger("cds_service.cli")


def _settings(**overrides: object) -> Settings:
    try:
        settings = Settings()
        return (
            settings.model_copy(update={k: v for k, v in overrides.items() if v is not None}) if overrides else settings
        )
    except ValidationError as error:
        for item in error.errors(include_input=False, include_url=False):
            where = ".".join(str(p) for p in item["loc"]) or "settings"
            print(f"dvt-cds: invalid setting DVT_CDS_{where.upper()}: {item['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    except SettingsFileError as error:
        print(f"dvt-cds: invalid setting {error.variable}: {error.problem}", file=sys.stderr)
        raise SystemExit(2) from None


def _check_site_files(settings: Settings) -> None:
    """Site files named by settings, checked before any worker starts (a worker that cannot boot says less)."""
    from cds_service.fhir.conceptmaps import ConceptMapError, SiteConceptMaps
    from cds_service.profiles import CatalogError, OrderCatalog

    try:
        SiteConceptMaps.load(settings.concept_maps)
    except ConceptMapError as error:
        print(f"dvt-cds: invalid setting DVT_CDS_CONCEPT_MAPS: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        OrderCatalog.load(settings.order_catalog)
    except CatalogError as error:
        print(f"dvt-cds: invalid setting DVT_CDS_ORDER_CATALOG: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def create_app_or_exit(settings: Settings) -> Any:
    """The app, or a one-line error and exit code 2 when a site file named by a setting cannot be used or the
    database's schema is behind (it is never changed here: `dvt-cds db upgrade` does that)."""
    from cds_service.app import create_app

    _check_site_files(settings)
    return create_app(settings, store=_store_or_exit(settings))


def _store_or_exit(settings: Settings) -> Any:
    """The store on a database at the newest schema revision, else one line and exit code 2. A database that cannot
    be reached is not refused: the workers check when it answers (readiness stays 503 until then)."""
    from cds_service.schema import SchemaError
    from cds_service.store import Store

    try:
        return Store.from_settings(settings, schema="require")
    except SchemaError as error:
        print(f"dvt-cds: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def serve(args: argparse.Namespace) -> int:
    if args.production:
        return _serve_production(args)
    settings = _settings()
    if args.host or args.port:
        settings = Settings.model_validate(
            {**settings.model_dump(), **{k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}}
        )
    configure_logging(settings.log_level)
    from werkzeug.serving import get_sockaddr, make_server, select_address_family

    app = create_app_or_exit(settings)
    # Bound here, not by werkzeug (which prints plain text and exits when the port is taken): "serving" is logged
    # only once the socket listens, and a taken port is one log line in the service's format.
    family = select_address_family(settings.host, settings.port)
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(get_sockaddr(settings.host, settings.port, family))
        listener.listen(128)
    except OSError as error:
        listener.close()
        taken = error.errno == errno.EADDRINUSE
        log_fields(
            log,
            logging.ERROR,
            f"cannot listen on {settings.host}:{settings.port}: "
            + (
                "the port is already in use (another dvt-cds or another program); choose another port with "
                "DVT_CDS_PORT (e.g. DVT_CDS_PORT=9000 make run)"
                if taken
                else f"{error.strerror or error}; check DVT_CDS_HOST and DVT_CDS_PORT"
            ),
            event="listen-failed",
            host=settings.host,
            port=settings.port,
        )
        return 1
    server = make_server(settings.host, settings.port, app, threaded=True, fd=listener.fileno())
    listener.close()  # the server holds its own duplicate of the bound socket
    log_fields(
        log,
        logging.INFO,
        "serving (development server; use gunicorn in production)",
        event="start",
        host=settings.host,
        port=server.server_address[1],
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def ehr_config(args: argparse.Namespace) -> int:
    from cds_service.ehrconfig import run
    from cds_service.fhir.conceptmaps import ConceptMapError
    from cds_service.profiles import CatalogError

    settings = _settings()
    try:
        return run(args.profile or settings.ehr_profile, settings, as_json=args.json)
    except (ConceptMapError, CatalogError) as error:
        print(f"dvt-cds: {error}", file=sys.stderr)
        return 2


def feedback_report(args: argparse.Namespace) -> int:
    """Acceptance and override rates by card topic, from the store."""

    settings = _settings()
    from cds_service.dbcommands import require_existing_store

    require_existing_store(settings, "nothing to report")
    store = _store_or_exit(settings)
    try:
        rows = store.feedback_by_topic()
        reasons = store.override_reasons_by_topic()
    finally:
        store.close()
    for row in rows:
        answered = row["accepted"] + row["overridden"]
        row["acceptance_rate"] = round(row["accepted"] / answered, 3) if answered else None
        row["override_rate"] = round(row["overridden"] / answered, 3) if answered else None
        row["feedback_rate"] = round(answered / row["issued"], 3) if row["issued"] else None
    for row in rows:
        row["override_reasons"] = reasons.get(row["topic"], [])
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No cards issued yet.")
        return 0
    header = f"{'card topic':36} {'issued':>7} {'accepted':>9} {'overridden':>11} {'accept %':>9} {'override %':>11}"
    print(header)
    print("-" * len(header))

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.1f}"

    for row in rows:
        print(
            f"{row['topic']:36} {row['issued']:>7} {row['accepted']:>9} {row['overridden']:>11} "
            f"{pct(row['acceptance_rate']):>9} {pct(row['override_rate']):>11}"
        )
    print(
        "\nRates are of the cards that received feedback; cards with no feedback were neither accepted nor "
        "overridden (ignored cards send none)."
    )
    if any(row["override_reasons"] for row in rows):
        print("\nOverride reasons by card topic:")
        for row in rows:
            for reason in row["override_reasons"]:
                words = reason["display"] or reason["code"] or "no reason given"
                print(f"  {row['topic']:36} {reason['count']:>5}  {words}")
    return 0


def _serve_production(args: argparse.Namespace) -> int:
    """gunicorn behind the nginx front (cds_service/front/), each in a clean process: the metrics directory is
    set before gunicorn imports anything."""
    from cds_service.front.supervisor import serve_production

    env = dict(os.environ)
    if args.host:
        env["DVT_CDS_HOST"] = args.host
    if args.port:
        env["DVT_CDS_PORT"] = str(args.port)
    settings = _settings(host=args.host, port=args.port)
    _check_site_files(settings)
    configure_logging(settings.log_level)
    _store_or_exit(settings).close()
    if not settings.metrics_dir:
        env["DVT_CDS_METRICS_DIR"] = tempfile.mkdtemp(prefix="dvt-cds-metrics-")
    return serve_production(settings, env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dvt-cds", description="Distal DVT CDS Hooks service and tester tools")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the service (settings from DVT_CDS_* environment variables)")
    run.add_argument("--host", help="overrides DVT_CDS_HOST")
    run.add_argument("--port", type=int, help="overrides DVT_CDS_PORT")
    run.add_argument(
        "--production",
        action="store_true",
        help="serve with gunicorn (DVT_CDS_WORKERS workers × DVT_CDS_THREADS threads, graceful shutdown)",
    )
    run.set_defaults(func=serve)

    from cds_service.replay import command as replay_command

    settings_url = _default_url()
    replay = commands.add_parser(
        "replay",
        help="act as the CDS client: replay fixture scenarios against a running service",
        description="Reads fhir_fixtures/ scenarios, renders the service's prefetch templates against each fixture, "
        "posts the hook requests and prints the cards (or compares them with the manifest).",
    )
    replay_command.add_arguments(replay, settings_url)
    replay.set_defaults(func=replay_command.replay)

    report = commands.add_parser("feedback-report", help="acceptance and override rates by card topic")
    report.add_argument("--json", action="store_true", help="print JSON")
    report.set_defaults(func=feedback_report)

    config = commands.add_parser(
        "ehr-config",
        help="what an EHR analyst enters: services, hooks and triggers, prefetch, scopes, topic codes, reasons",
    )
    config.add_argument("--profile", choices=["hl7", "epic", "oracle"], help="default: DVT_CDS_EHR_PROFILE")
    config.add_argument("--json", action="store_true", help="print JSON")
    config.set_defaults(func=ehr_config)

    load = commands.add_parser(
        "load-fixtures", help="load every fixture scenario into a FHIR server (dates moved to today)"
    )
    load.add_argument("--fhir-server", required=True, help="FHIR base URL, e.g. http://localhost:8090/fhir")
    load.add_argument("--fixtures", type=Path, help="fixtures folder (default: fhir_fixtures/ of this checkout)")
    load.add_argument("--wait", type=float, default=0, help="seconds to wait for the server to come up")
    load.set_defaults(func=replay_command.load_fixtures)

    from cds_service import dbcommands

    dbcommands.add_arguments(commands, db)
    return parser


def db(args: argparse.Namespace) -> int:
    from cds_service import dbcommands

    settings = _settings()
    configure_logging(settings.log_level)
    if args.db_command == "upgrade":
        return dbcommands.run_upgrade(settings)
    return dbcommands.run_purge(settings, args.older_than)


def _default_url() -> str:
    """The local service: DVT_CDS_HOST/DVT_CDS_PORT when set and valid, else the make-run default."""
    try:
        settings = Settings()
    except (ValidationError, SettingsFileError):
        return "http://127.0.0.1:8080"
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104 - comparing, not binding
    return f"http://{host}:{settings.port}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a reader that went away (`| head`) is noticed here, not at exit
    except BrokenPipeError:
        # The reader stopped reading: not an error worth a traceback. Python would still flush stdout at exit and
        # fail again, so stdout now points at /dev/null; 141 is what a shell reports for a command ended by SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + signal.SIGPIPE
    return code


if __name__ == "__main__":
    raise SystemExit(main())
