"""docker-compose.yml and the Dockerfile (no Docker engine here: the files are parsed and checked)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_dockerfile_is_slim_non_root_with_healthcheck() -> None:
    text = dockerfile()
    assert text.startswith("# ")
    assert "HEALTHCHECK" in text
    assert "/healthz" in text
    cmd = next(line for line in text.splitlines() if line.startswith("CMD"))
    assert json.loads(cmd.removeprefix("CMD ")) == ["dvt-cds", "serve", "--production"]
    for copied in ("cds_service", "hooks", "fhir_fixtures", "pyproject.toml", "requirements.lock"):
        assert f"COPY {copied}" in text or f" {copied} " in text
    assert "'.[postgres]'" in text  # the PostgreSQL driver the compose store needs
    assert "apt-get install -y --no-install-recommends nginx" in text  # the front serve --production starts


def test_the_image_runs_as_a_numeric_user_and_keeps_metrics_off_the_public_port() -> None:
    text = dockerfile()
    [user] = [line for line in text.splitlines() if line.startswith("USER ")]
    uid, gid = user.removeprefix("USER ").split(":")
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) >= 10000
    assert f"--uid {uid}" in text
    assert f"--gid {gid}" in text
    assert "DVT_CDS_METRICS_PORT=9464" in text
    assert "EXPOSE 8080 9464" in text


def test_the_base_image_is_pinned_to_the_python_the_lock_was_resolved_for() -> None:
    [base] = [line.split()[1] for line in dockerfile().splitlines() if line.startswith("FROM ")]
    tag = base.split("@")[0]
    match = re.fullmatch(r"python:(3\.\d+\.\d+)-slim-(bookworm|trixie)", tag)
    assert match, base  # a full version (and Debian release), never a moving 3.11-slim
    header = (ROOT / "requirements.lock").read_text().splitlines()[1]
    assert f"CPython {match.group(1)} on linux/x86_64" in header


def test_packages_are_installed_from_the_lock_by_hash_before_the_source_is_copied() -> None:
    text = dockerfile()
    install = text.index("pip install --no-deps --require-hashes -r requirements.lock")
    assert install < text.index("COPY cds_service")
    assert "pip install --no-deps --no-build-isolation" in text  # the project itself: no resolver, no download
    assert "pip check" in text


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        requirement, digest = line.split(" --hash=sha256:")
        assert re.fullmatch(r"[0-9a-f]{64}", digest), line
        name, version = requirement.split("==")
        pins[canonicalize_name(name)] = version
    return pins


def test_the_lock_pins_every_dependency_the_project_declares() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = [*project["project"]["dependencies"], *project["project"]["optional-dependencies"]["postgres"]]
    declared += project["build-system"]["requires"]
    pins = locked()
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (text, pins[name])
        for extra in requirement.extras:  # e.g. PyJWT[crypto] needs cryptography
            assert extra != "crypto" or "cryptography" in pins


def test_dockerignore_keeps_everything_but_what_the_image_copies_out() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"  # nothing by default: .git, .venv, var/ (databases, outboxes), tests, deploy keys
    allowed = {line.removeprefix("!").rstrip("/") for line in lines if line.startswith("!")}
    copied = set(re.findall(r"^COPY (\S+)", dockerfile(), flags=re.M)) | {"pyproject.toml", "README.md"}
    assert copied <= allowed, copied - allowed
    assert not any("deploy" in name or name == "var" for name in allowed)
