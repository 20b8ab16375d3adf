"""The ``dvt-cds`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from cds_service.logs import configure_logging, log_fields
from cds_service.settings import Settings

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


def serve(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.host or args.port:
        settings = Settings.model_validate(
            {**settings.model_dump(), **{k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}}
        )
    configure_logging(settings.log_level)
    from werkzeug.serving import run_simple

    from cds_service.app import create_app

    app = create_app(settings)
    log_fields(
        log,
        logging.INFO,
        "serving (development server; use gunicorn in production)",
        event="start",
        host=settings.host,
        port=settings.port,
    )
    run_simple(settings.host, settings.port, app, threaded=True, use_reloader=False)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dvt-cds", description="Distal DVT CDS Hooks service and tester tools")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the service (settings from DVT_CDS_* environment variables)")
    run.add_argument("--host", help="overrides DVT_CDS_HOST")
    run.add_argument("--port", type=int, help="overrides DVT_CDS_PORT")
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

    load = commands.add_parser(
        "load-fixtures", help="load every fixture scenario into a FHIR server (dates moved to today)"
    )
    load.add_argument("--fhir-server", required=True, help="FHIR base URL, e.g. http://localhost:8090/fhir")
    load.add_argument("--fixtures", type=Path, help="fixtures folder (default: fhir_fixtures/ of this checkout)")
    load.set_defaults(func=replay_command.load_fixtures)
    return parser


def _default_url() -> str:
    """The local service: DVT_CDS_HOST/DVT_CDS_PORT when set and valid, else the make-run default."""
    try:
        settings = Settings()
    except ValidationError:
        return "http://127.0.0.1:8080"
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104 - comparing, not binding
    return f"http://{host}:{settings.port}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
