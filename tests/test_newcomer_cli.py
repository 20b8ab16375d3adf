"""The newcomer's path (issue 17): what a first-time user of the `dvt-cds` command meets, run as real processes —
one store from any folder, a report that never creates an empty store, one clear line instead of a traceback
(unknown scenario, a JWKS as --sign-key, a closed pipe), replay naming the HTTP status it got and why the service
would not use its built-in FHIR server, a progress bar only on a terminal, a table that fits 100 columns, and
`serve` logging "serving" only once the port is bound and one JSON line when it is taken."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

import pytest

from cds_service.replay.report import WIDTH, table
from cds_service.replay.runner import CallOutcome
from cds_service.replay.scenarios import Library, default_folder
from tests.processes import clean_env, dvt_cds, free_port

ROOT = Path(__file__).resolve().parents[1]
DEV_ISSUER = ROOT / "deploy" / "dev-issuer"


@contextmanager
def started(
    command: list[str], env: dict[str, str], log_path: Path, *, ready: str = "/healthz", timeout_s: float = 90
) -> Iterator[subprocess.Popen[bytes]]:
    """A service started as a real process group (make and its children too), ready on DVT_CDS_PORT, then stopped."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{env['DVT_CDS_PORT']}{ready}"
        stop_at = time.monotonic() + timeout_s
        while True:
            assert process.poll() is None, f"{command} stopped:\n{log_path.read_text(errors='replace')}"
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < stop_at, f"{command} not ready:\n{log_path.read_text(errors='replace')}"
            time.sleep(0.1)
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group this test started (never anyone else's), SIGKILL if it does not go."""
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def dev_issuer_trusted() -> str:
    jwks = json.loads((DEV_ISSUER / "jwks.json").read_text())
    return json.dumps([{"iss": "urn:distal-dvt-cds:dev-issuer", "jwks": jwks}])


def cli(
    args: list[str], env: dict[str, str], cwd: Path = ROOT, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dvt_cds(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def bare_env(**settings: str) -> dict[str, str]:
    """No DVT_CDS_ setting but ``settings``, and no database made for it (clean_env makes one)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("DVT_CDS_")}, "DVT_CDS_AUTH": "off", **settings}


def one_clean_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- 2. one store, whatever the folder -------------------------------------------------------------------------
def test_the_default_store_is_the_same_absolute_path_from_any_folder(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVT_CDS_")}
    program = "from cds_service.settings import Settings; print(Settings().database_url)"
    python = str(Path(dvt_cds()).parent / "python")
    seen = {
        subprocess.run([python, "-c", program], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout
        for cwd in (ROOT, tmp_path, Path("/"))
    }
    assert seen == {f"sqlite:///{ROOT / 'var' / 'dvt-cds.sqlite3'}\n"}
    # `make run` uses that default: its run target does not name another store.
    run_target = [line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("run:")]
    assert run_target
    assert not [line for line in run_target if "DVT_CDS_DATABASE_URL" in line]


@pytest.mark.parametrize("command", [["feedback-report"], ["feedback-report", "--json"], ["db", "purge"]])
def test_a_report_never_creates_an_empty_store(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "elsewhere" / "dvt-cds.sqlite3"
    env = bare_env(DVT_CDS_DATABASE_URL=f"sqlite:///{missing}")
    line = one_clean_line(cli(command, env, cwd=tmp_path))
    assert line.startswith(f"dvt-cds: no store at {missing} (DVT_CDS_DATABASE_URL)"), line
    assert not missing.exists()
    assert not missing.parent.exists()


def test_a_relative_store_is_named_by_its_absolute_path(tmp_path: Path) -> None:
    env = bare_env(DVT_CDS_DATABASE_URL="sqlite:///var/dvt-cds.sqlite3")
    line = one_clean_line(cli(["feedback-report"], env, cwd=tmp_path))
    assert f"no store at {tmp_path / 'var' / 'dvt-cds.sqlite3'} " in line
    assert not (tmp_path / "var").exists()


# --- 7. one line, exit 2, no traceback ---------------------------------------------------------------------------
def test_an_unknown_scenario_is_one_line(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    line = one_clean_line(cli(["replay", "no-such-scenario", "--url", "http://127.0.0.1:9"], env))
    assert "no scenario 'no-such-scenario'" in line
    assert "--list" in line


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("jwks.json", "is a JWKS"),
        ("no-such-key.pem", "No such file"),
        ("README.md", "not an unencrypted PEM private key"),
    ],
)
def test_a_key_that_cannot_sign_is_one_line(tmp_path: Path, key: str, words: str) -> None:
    env = clean_env(tmp_path)
    path = DEV_ISSUER / key
    line = one_clean_line(
        cli(["replay", "extension-into-popliteal", "--sign-key", str(path), "--url", "http://127.0.0.1:9"], env)
    )
    assert line.startswith(f"dvt-cds replay: --sign-key {path}"), line
    assert words in line


def test_a_key_that_does_not_fit_the_algorithm_is_one_line(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    args = ["replay", "extension-into-popliteal", "--sign-key", str(DEV_ISSUER / "private-key.pem"), "--alg", "RS384"]
    line = one_clean_line(cli([*args, "--url", "http://127.0.0.1:9"], env))
    assert "cannot sign with --alg RS384" in line


# --- 8. a reader that goes away ----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["feedback-report"], ["replay", "--list"], ["ehr-config"]])
def test_a_closed_pipe_is_quiet(tmp_path: Path, command: list[str]) -> None:
    """`dvt-cds feedback-report | head`: the reader closed before the command wrote (its imports take far longer
    than closing a pipe), so the first write meets a closed pipe — exit 141 as for SIGPIPE, nothing on stderr."""
    env = clean_env(tmp_path)
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [dvt_cds(), *command], cwd=ROOT, env=env, stdout=write_end, stderr=subprocess.PIPE, text=True
    )
    os.close(write_end)
    os.close(read_end)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 141, stderr
    assert stderr == ""


# --- 3, 4. replay against a service with authentication on ------------------------------------------------------
def test_replay_names_the_status_and_the_fhir_server_refusal(tmp_path: Path) -> None:
    builtin_port = free_port()
    env = clean_env(
        tmp_path,
        DVT_CDS_AUTH="jwt",
        DVT_CDS_PORT=str(free_port()),
        DVT_CDS_TRUSTED_ISSUERS=dev_issuer_trusted(),
        DVT_CDS_FHIR_SERVER_ALLOWLIST=f"http://127.0.0.1:{builtin_port}/fhir",
        DVT_CDS_FHIR_ALLOW_HTTP="true",
    )
    url = f"http://127.0.0.1:{env['DVT_CDS_PORT']}"
    key = ["--sign-key", str(DEV_ISSUER / "private-key.pem")]
    with started([dvt_cds(), "serve"], env, tmp_path / "jwt.log"):
        unsigned = one_clean_line(cli(["replay", "extension-into-popliteal", "--url", url], env))
        assert unsigned.startswith(f"dvt-cds replay: {url}/cds-services answered 401 Unauthorized:"), unsigned
        assert "requires a signed JWT" in unsigned
        assert "--sign-key" in unsigned
        assert "DVT_CDS_AUTH=off" in unsigned
        assert "cannot reach" not in unsigned

        wrong_issuer = one_clean_line(
            cli(["replay", "extension-into-popliteal", "--url", url, *key, "--iss", "x"], env)
        )
        assert "401 Unauthorized: the service refused the signed JWT (iss x, kid dev-1)" in wrong_issuer

        wrong_url = one_clean_line(cli(["replay", "extension-into-popliteal", "--url", url + "/cds", *key], env))
        assert f"{url}/cds/cds-services answered 404 Not Found" in wrong_url
        assert "check --url" in wrong_url

        signed = cli(["replay", "extension-into-popliteal", "--expect", "--url", url, *key], env)
        assert signed.returncode == 0, signed.stdout + signed.stderr
        assert "distal-dvt-extension" in signed.stdout

        # The built-in FHIR server on a free port: the service's allowlist names another one.
        refused = cli(["replay", "extension-into-popliteal", "--no-prefetch", "--url", url, *key], env)
        line = one_clean_line(refused)
        assert "would not contact replay's built-in FHIR server http://127.0.0.1:" in line
        assert "(it said: fhirServer not on DVT_CDS_FHIR_SERVER_ALLOWLIST; not contacted)" in line
        assert "--fhir-port" in line
        assert "https" not in line.split("(it said:")[1].split(")")[0]

        # What the message says to do works: the built-in server on the port the allowlist names.
        fixed = ["--no-prefetch", "--fhir-port", str(builtin_port), "--expect"]
        ok = cli(["replay", "extension-into-popliteal", *fixed, "--url", url, *key], env)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "distal-dvt-extension" in ok.stdout


def test_refusal_of_plain_http_names_the_setting(tmp_path: Path) -> None:
    """JWT on and no allowlist (the Production recipe): the service's words blame https, replay says the rest."""
    env = clean_env(
        tmp_path, DVT_CDS_AUTH="jwt", DVT_CDS_PORT=str(free_port()), DVT_CDS_TRUSTED_ISSUERS=dev_issuer_trusted()
    )
    url = f"http://127.0.0.1:{env['DVT_CDS_PORT']}"
    with started([dvt_cds(), "serve"], env, tmp_path / "jwt.log"):
        key = ["--sign-key", str(DEV_ISSUER / "private-key.pem")]
        line = one_clean_line(cli(["replay", "extension-into-popliteal", "--no-prefetch", "--url", url, *key], env))
    assert "DVT_CDS_FHIR_SERVER_ALLOWLIST=http://127.0.0.1:8091/fhir DVT_CDS_FHIR_ALLOW_HTTP=true" in line
    assert "--fhir-port 8091" in line


# --- 9, 10. progress bar and table -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dev_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp_path = tmp_path_factory.mktemp("dev-service")
    env = clean_env(
        tmp_path,
        DVT_CDS_PORT=str(free_port()),
        DVT_CDS_CONCEPT_MAPS=str(ROOT / "fhir_fixtures" / "conceptmaps" / "example-site.json"),
    )
    with started([dvt_cds(), "serve"], env, tmp_path / "serve.log"):
        yield env


def test_replay_all_redirected_has_no_progress_bar_and_fits_100_columns(dev_service: dict[str, str]) -> None:
    result = cli(["replay", "--all"], dev_service)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert result.stderr == ""  # no progress bar into a file
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    library = Library(default_folder())
    calls = sum(len(s.calls) for s in library.scenarios)
    assert f"{calls}/{calls} calls as expected" in result.stdout
    rows = [line for line in lines if line.startswith("pass ")]
    assert len(rows) == calls
    for scenario in library.scenarios:  # every scenario, and every expected topic, is in the table
        assert any(f" {scenario.id} " in row for row in rows), scenario.id
        for call in scenario.calls:
            for card in call.expect.cards:
                assert card.topic in result.stdout


def test_progress_bar_on_a_terminal(dev_service: dict[str, str]) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [dvt_cds(), "replay", "--all"], cwd=ROOT, env=dev_service, stdout=subprocess.DEVNULL, stderr=terminal
    )
    os.close(terminal)
    seen = b""
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], 60)
            assert ready, "no output on the terminal"
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process is done
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(controller)
        process.wait(timeout=60)
    assert process.returncode == 0
    total = len(Library(default_folder()).scenarios)
    assert f"] {total}/{total} ".encode() in seen
    assert b"\r[" in seen


def test_a_difference_fits_100_columns_and_keeps_every_topic() -> None:
    library = Library(default_folder())
    scenario = max(library.scenarios, key=lambda s: len(s.id))
    long_topics = [
        "distal-dvt-bilateral-surveillance",
        "limited-compression-ultrasound",
        "distal-dvt-shared-decision",
        "distal-dvt-surveillance-gap",
        "a-topic-far-longer-than-any-column-of-the-table-could-hold",
    ]
    body = {"cards": [{"source": {"topic": {"code": t}}} for t in long_topics]}
    outcomes = [CallOutcome(scenario, call, 200, body, problems=["differs"]) for call in scenario.calls] + [
        CallOutcome(scenario, scenario.calls[0], 200, body)
    ]
    out = StringIO()
    table(outcomes, out)
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= WIDTH, text
    joined = re.sub(r"\s+", "", text)
    for topic in long_topics:
        assert topic in text or topic in joined
    assert "expected:" in text
    assert "got:" in text
    assert "FAIL" in text


# --- 11. serving only once bound; a taken port is one JSON line --------------------------------------------------
def test_serving_is_logged_once_the_port_is_bound(tmp_path: Path) -> None:
    env = clean_env(tmp_path, DVT_CDS_PORT=str(free_port()))
    process = subprocess.Popen(
        [dvt_cds(), "serve"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            record = json.loads(line)  # every line in the service's log format
            if record.get("event") == "start":
                # At once: the socket must already accept connections.
                socket.create_connection(("127.0.0.1", int(env["DVT_CDS_PORT"])), timeout=1).close()
                break
        else:
            pytest.fail("no 'serving' line")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_make_run_on_a_taken_port_is_one_clear_json_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = clean_env(tmp_path, DVT_CDS_PORT=str(port))
        result = subprocess.run(
            ["make", "--no-print-directory", "run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "Address already in use" not in result.stderr
    # make's own "make: ***" (or "make[2]: ***" when nested) lines are not the service's
    service_lines = [line for line in result.stderr.splitlines() if not re.match(r"make(\[\d+\])?: ", line)]
    records = [json.loads(line) for line in service_lines]  # nothing in plain text from the service
    failed = [r for r in records if r.get("event") == "listen-failed"]
    assert len(failed) == 1, result.stderr
    assert f"127.0.0.1:{port}" in failed[0]["msg"]
    assert "DVT_CDS_PORT" in failed[0]["msg"]
    assert failed[0]["level"] == "ERROR"
    assert not [r for r in records if r.get("event") == "start"]  # never "serving"
