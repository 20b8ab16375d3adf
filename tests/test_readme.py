"""The README is a contract: every setting documented with its default, the commands it shows exist."""

from __future__ import annotations

import os
import re
import subprocess
from contextlib import ExitStack
from pathlib import Path

from cds_service.cli import build_parser
from cds_service.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_settings_table() -> None:
    documented = set(re.findall(r"^\| `(DVT_CDS_[A-Z_]+)` \|", README, flags=re.M))
    assert documented == {f"DVT_CDS_{name.upper()}" for name in Settings.model_fields}


def test_documented_defaults_match_the_code() -> None:
    defaults = Settings.model_fields
    for name, field in defaults.items():
        row = re.search(rf"^\| `DVT_CDS_{name.upper()}` \| ([^|]+) \|", README, flags=re.M)
        assert row, name
        if isinstance(field.default, int) and not isinstance(field.default, bool):
            assert str(field.default) in row.group(1).replace(",", ""), (name, row.group(1))
        elif isinstance(field.default, float):
            assert f"{field.default:g}" in row.group(1), (name, row.group(1))


def test_the_dvt_cds_commands_shown_exist() -> None:
    parser = build_parser()
    for line in re.findall(r"dvt-cds ([a-z-]+(?: [^\n`#]*)?)", README):
        words = line.split()
        command = words[0]
        assert command in {"serve", "replay", "load-fixtures", "feedback-report", "ehr-config", "db"}, line
        args = [w for w in words[1:] if w.startswith("--")]
        if command == "replay":
            parser.parse_args(
                [
                    "replay",
                    *[
                        a
                        for a in args
                        if "=" not in a and a not in ("--sign-key", "--iss", "--kid", "--fhir-server", "--url")
                    ],
                ]
            )


# --- Every shell block of the README, run as printed ---------------------------------------------------------------
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```", re.M | re.S)
ROOT = Path(__file__).resolve().parents[1]
TRUST_DEV_ISSUER = (
    'DVT_CDS_TRUSTED_ISSUERS="[{\\"iss\\": \\"urn:distal-dvt-cds:dev-issuer\\", \\"jwks\\": '
    '$(cat deploy/dev-issuer/jwks.json)}]" .venv/bin/dvt-cds serve --production'
)
# Every command of every shell block, in the README's order, and what this test does with it: "run" (exit 0, and
# the text named must be in its output), "serve" (started as printed, the commands after it run against it until
# the next "serve"; a "/path" readiness check), or "skip" with the reason. A block added to the README and not here
# fails the test.
PLAN: list[tuple[str, str, str]] = [
    ("make run", "serve", "/healthz"),
    ("make test", "skip", "the whole suite, of which this test is part: it would run itself"),
    ("curl -s http://127.0.0.1:8080/cds-services", "run", '"id":"distal-dvt-patient-view"'),
    (
        "curl -s -X POST http://127.0.0.1:8080/cds-services/distal-dvt-patient-view "
        "-H 'Content-Type: application/json' -d @examples/patient-view-request.json",
        "run",
        '"code":"distal-dvt-shared-decision"',
    ),
    (".venv/bin/dvt-cds feedback-report", "run", ""),
    (".venv/bin/dvt-cds replay --list", "run", "extension-into-popliteal"),
    (".venv/bin/dvt-cds replay extension-into-popliteal", "run", "distal-dvt-extension"),
    (".venv/bin/dvt-cds replay extension-into-popliteal --json", "run", '"scenario": "extension-into-popliteal"'),
    (".venv/bin/dvt-cds replay --all", "run", "calls as expected"),
    (".venv/bin/dvt-cds replay --all --no-prefetch", "run", "calls as expected"),
    (".venv/bin/dvt-cds db upgrade", "run", "(the newest)"),
    (".venv/bin/dvt-cds serve --production", "serve", "/readyz"),
    (TRUST_DEV_ISSUER, "serve", "/readyz"),
    (
        ".venv/bin/dvt-cds replay extension-into-popliteal --sign-key deploy/dev-issuer/private-key.pem",
        "run",
        "distal-dvt-extension",
    ),
    (".venv/bin/dvt-cds ehr-config --profile epic", "run", "DistalDvtAnticoagulate"),
]
NOT_SHELL = {"cds_service/   the service"}  # the Layout block: a file tree, not commands


def readme_commands() -> list[str]:
    """Each command of each ```sh block: continuation lines joined, a trailing comment dropped, spaces collapsed."""
    commands = []
    for language, body in FENCE.findall(README):
        if language not in ("sh", "bash", "shell", "console"):
            assert language == "", body[:80]
            assert any(body.startswith(start) for start in NOT_SHELL), body[:80]
            continue
        for line in body.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#\s.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(" ".join(command.split()))
    return commands


def test_the_plan_covers_every_command_block() -> None:
    assert readme_commands() == [command for command, _, _ in PLAN]


def test_every_command_block_runs_as_printed(tmp_path: Path) -> None:
    """The README followed literally from this folder (only the port is another, free one), against the service
    started as the README starts it: `make run`, then `dvt-cds serve --production` as printed."""
    from tests.processes import free_port
    from tests.test_newcomer_cli import started

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVT_CDS_")}
    env.update(DVT_CDS_PORT=str(port), DVT_CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'readme.sqlite3'}")
    env["PATH"] = "/usr/bin:/bin:/usr/sbin:/sbin"  # nothing of this virtualenv: `.venv/bin/` must be printed
    commands = dict(zip(readme_commands(), PLAN, strict=True))
    with ExitStack() as servers:
        for n, (printed, (_, action, expect)) in enumerate(commands.items()):
            command = printed.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
            if action == "skip":
                continue
            if action == "serve":
                servers.close()
                servers.enter_context(started(["bash", "-c", command], env, tmp_path / f"serve-{n}.log", ready=expect))
                if "--production" in command and "TRUSTED" not in command:
                    # What the README says of it: the curl of "Try it" is answered 401.
                    curl = subprocess.run(
                        ["bash", "-c", f"curl -s http://127.0.0.1:{port}/cds-services"], env=env, capture_output=True
                    )
                    assert b'"diagnostics":"Unauthorized"' in curl.stdout, curl.stdout
                continue
            result = subprocess.run(
                ["bash", "-o", "pipefail", "-c", command],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert result.returncode == 0, (printed, result.stdout[-2000:], result.stderr[-2000:])
            assert expect in result.stdout, (printed, result.stdout[-2000:])
            assert "Traceback" not in result.stderr, (printed, result.stderr)
