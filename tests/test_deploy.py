"""docker-compose.yml and the Dockerfile (no Docker engine here: the files are parsed and checked)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from cds_service.cli import build_parser
from cds_service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services() -> None:
    services = compose()["services"]
    assert set(services) == {"cds", "postgres", "hapi", "fixtures-loader", "migrate"}
    assert services["cds"]["build"] == "."
    assert "8080:8080" in services["cds"]["ports"]
    assert services["hapi"]["image"].startswith("hapiproject/hapi")
    assert services["hapi"]["environment"]["hapi.fhir.fhir_version"] == "R4"
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["cds"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_migrates_the_database_before_the_service_starts() -> None:
    """The service refuses a schema that is behind; the one-shot migrate service brings it up first."""
    services = compose()["services"]
    migrate = services["migrate"]
    args = build_parser().parse_args(migrate["command"][1:])
    assert migrate["command"][0] == "dvt-cds"
    assert (args.func.__name__, args.db_command) == ("db", "upgrade")
    assert migrate["environment"]["DVT_CDS_DATABASE_URL"] == services["cds"]["environment"]["DVT_CDS_DATABASE_URL"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["cds"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_environment_is_valid_settings() -> None:
    env = compose()["services"]["cds"]["environment"]
    fields = {f"DVT_CDS_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    values = {k.removeprefix("DVT_CDS_").lower(): v for k, v in env.items()}
    settings = Settings(**{**values, "host": "0.0.0.0"})
    assert settings.auth == "jwt"
    assert settings.database_url.startswith("postgresql+psycopg://")
    [issuer] = settings.trusted_issuers
    assert issuer.jwks == json.loads((ROOT / "deploy/dev-issuer/jwks.json").read_text())


def test_loader_command_is_a_real_cli_invocation() -> None:
    command = compose()["services"]["fixtures-loader"]["command"]
    assert command[0] == "dvt-cds"
    args = build_parser().parse_args(command[1:])
    assert args.func.__name__ == "load_fixtures"
    assert args.fhir_server == "http://hapi:8080/fhir"


def test_dockerfile_is_slim_non_root_with_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("# ")
    assert "FROM python:3.11-slim" in text
    assert "USER cds" in text
    assert "HEALTHCHECK" in text
    assert "/healthz" in text
    cmd = next(line for line in text.splitlines() if line.startswith("CMD"))
    assert json.loads(cmd.removeprefix("CMD ")) == ["dvt-cds", "serve", "--production"]
    for copied in ("cds_service", "hooks", "fhir_fixtures", "pyproject.toml"):
        assert f"COPY {copied}" in text or f" {copied} " in text
    assert "pip install '.[postgres]'" in text  # the PostgreSQL driver the compose store needs
    assert "apt-get install -y --no-install-recommends nginx" in text  # the front serve --production starts
