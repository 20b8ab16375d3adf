"""The ``dvt-cds`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
