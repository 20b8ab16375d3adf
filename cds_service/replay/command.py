"""``dvt-cds replay`` and ``dvt-cds load-fixtures``: the testers' side of the scenario library."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import requests

from cds_service.replay.fhirserver import ScenarioFhirServer
from cds_service.replay.report import Progress, as_json, describe_cards, table
from cds_service.replay.runner import CallOutcome, Post, Runner, http_transport
from cds_service.replay.scenarios import (
    Library,
    Scenario,
    days_between,
    default_folder,
    shift_dates,
    with_fhir_base,
)
from cds_service.replay.signing import Signer, SigningKeyError


def add_arguments(parser: argparse.ArgumentParser, default_url: str) -> None:
    parser.add_argument("scenarios", nargs="*", help="scenario ids (see --list)")
    parser.add_argument("--all", action="store_true", help="replay every scenario and print a pass/fail table")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--url", default=default_url, help=f"the service's base URL (default {default_url})")
    parser.add_argument("--fixtures", type=Path, help="fixtures folder (default: fhir_fixtures/ of this checkout)")
    parser.add_argument("--json", action="store_true", help="print the responses as JSON")
    parser.add_argument("--expect", action="store_true", help="compare with the manifest; exit 1 on a difference")
    parser.add_argument("--no-prefetch", action="store_true", help="send no prefetch: the service must fetch")
    parser.add_argument(
        "--fhir-server",
        help="FHIR base URL the service should fetch from (default: a built-in "
        "server on loopback serving the scenario, when one is needed)",
    )
    parser.add_argument(
        "--fhir-port",
        type=int,
        default=0,
        help="port of the built-in FHIR server (default: any free port); a service with authentication on "
        "contacts it only when http://127.0.0.1:PORT/fhir is on its DVT_CDS_FHIR_SERVER_ALLOWLIST",
    )
    parser.add_argument("--bearer", help="a fixed Authorization header value (a pre-made token)")
    parser.add_argument("--sign-key", type=Path, help="PEM private key: sign a fresh JWT per call, like an EHR")
    parser.add_argument("--iss", default="urn:distal-dvt-cds:dev-issuer", help="iss of signed calls")
    parser.add_argument("--kid", default="dev-1", help="kid of signed calls")
    parser.add_argument("--alg", default="ES384", help="algorithm of signed calls (ES384, RS384, ...)")
    parser.add_argument("--public-url", help="the URL the service believes it has (the JWT aud), if not --url")


def replay(args: argparse.Namespace) -> int:
    library = Library(args.fixtures or default_folder())
    if args.list:
        for scenario in library.scenarios:
            print(f"{scenario.id:48} {', '.join(c.hook for c in scenario.calls):40} {scenario.title}")
        return 0
    if not args.all and not args.scenarios:
        print("dvt-cds replay: name scenarios, or use --all (--list shows them)", file=sys.stderr)
        return 2
    unknown = [s for s in args.scenarios if s not in {known.id for known in library.scenarios}]
    if unknown and not args.all:
        print(
            f"dvt-cds replay: no scenario {', '.join(map(repr, unknown))} in {library.folder / 'manifest.json'} "
            "(dvt-cds replay --list shows them)",
            file=sys.stderr,
        )
        return 2
    chosen = library.scenarios if args.all else [library.scenario(s) for s in args.scenarios]
    authorization = None
    if args.sign_key:
        try:
            signer = Signer(args.sign_key, iss=args.iss, kid=args.kid, alg=args.alg)
        except SigningKeyError as error:
            print(f"dvt-cds replay: {error}", file=sys.stderr)
            return 2
        public = (args.public_url or args.url).rstrip("/")
        authorization = lambda url: signer.header(public + url[len(args.url.rstrip("/")) :])  # noqa: E731
    elif args.bearer:
        authorization = lambda url: args.bearer  # noqa: E731
    try:
        post, discovery = http_transport(args.url.rstrip("/"), authorization=authorization)
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else 0
        print(f"dvt-cds replay: {args.url.rstrip('/')}/cds-services answered {_meaning(status, args)}", file=sys.stderr)
        return 2
    except requests.RequestException as error:
        print(
            f"dvt-cds replay: cannot reach {args.url} ({type(error).__name__}); is the service running (make run)?",
            file=sys.stderr,
        )
        return 2
    now = datetime.now(UTC)
    outcomes: list[CallOutcome] = []
    progress = Progress(len(chosen))
    refused: list[tuple[str, str]] = []
    for scenario in chosen:
        builtin, done = _replay_one(library, scenario, args, post, discovery, now)
        outcomes.extend(done)
        if builtin and not refused:
            refused = [(builtin, why) for o in done if (why := _refusal(o.body))][:1]
        progress.step(scenario.id)
    if args.json:
        json.dump([as_json(o) for o in outcomes], sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.all:
        for outcome in outcomes:
            if not outcome.passed:
                describe_cards(outcome, sys.stdout)
        sys.stdout.write("\n")
        table(outcomes, sys.stdout)
    else:
        for outcome in outcomes:
            describe_cards(outcome, sys.stdout)
    for builtin, why in refused:
        print(_refusal_advice(builtin, why, args.fhir_port), file=sys.stderr)
        return 2
    failed = any(not o.passed for o in outcomes)
    return 1 if failed and (args.expect or args.all) else 0


def _meaning(status: int, args: argparse.Namespace) -> str:
    """What an HTTP status from the service means for the tester, and what to do: one line."""
    if status == 401 and args.sign_key:
        return (
            f"401 Unauthorized: the service refused the signed JWT (iss {args.iss}, kid {args.kid}); it must trust "
            "that issuer and key (DVT_CDS_TRUSTED_ISSUERS), and --public-url must be the URL it believes it has "
            "(DVT_CDS_PUBLIC_BASE_URL: the JWT aud) when that is not --url"
        )
    if status == 401:
        return (
            "401 Unauthorized: the service requires a signed JWT (DVT_CDS_AUTH=jwt); pass --sign-key KEY.pem --iss ISS "
            "--kid KID of an issuer in its DVT_CDS_TRUSTED_ISSUERS (the development issuer: --sign-key "
            "deploy/dev-issuer/private-key.pem), or run it with DVT_CDS_AUTH=off (loopback development only)"
        )
    if status == 404:
        return "404 Not Found: no CDS Hooks service at this URL; check --url (the service's base URL, no path)"
    if status == 503:
        return "503 Service Unavailable: the service is starting, draining or overloaded; try again shortly"
    return f"HTTP {status}, not a CDS Hooks discovery document"


# The fhirServer policy's refusals as the service words them (security.fhir_server_policy), inside its diagnostics.
_REFUSED = re.compile(r"(?:fhirServer [^;]*|DVT_CDS_FHIR_SERVER_ALLOWLIST is empty); (?:fhirServer )?not contacted")


def _refusal(body: object) -> str | None:
    """The service's words when it would not contact the fhirServer it was given (its policy, security.py)."""
    if isinstance(body, dict):
        found = (_refusal(value) for value in body.values())
    elif isinstance(body, list):
        found = (_refusal(value) for value in body)
    elif isinstance(body, str):
        found = (m.group(0) for m in _REFUSED.finditer(body))
    else:
        return None
    return next((f for f in found if f), None)


def _refusal_advice(builtin: str, why: str, port: int) -> str:
    port = port or 8091
    return (
        f"dvt-cds replay: the service would not contact replay's built-in FHIR server {builtin} (it said: {why}). "
        "Its policy decides, not this server: with authentication on it contacts only FHIR servers listed in "
        "DVT_CDS_FHIR_SERVER_ALLOWLIST (or the issuer's fhir_servers), plain http only with "
        "DVT_CDS_FHIR_ALLOW_HTTP=true, and the built-in server takes any free port unless given --fhir-port. Either "
        f"start the service with DVT_CDS_FHIR_SERVER_ALLOWLIST=http://127.0.0.1:{port}/fhir "
        f"DVT_CDS_FHIR_ALLOW_HTTP=true (test networks only) and replay with --fhir-port {port}, or pass "
        "--fhir-server URL of a FHIR server on its allowlist that holds the fixtures (dvt-cds load-fixtures)."
    )


def _replay_one(
    library: Library, scenario: Scenario, args: argparse.Namespace, post: Post, discovery: dict, now: datetime
) -> tuple[str | None, list[CallOutcome]]:
    """The scenario's outcomes, and the built-in FHIR server's URL when one was started for it."""
    needs_server = args.no_prefetch or library.needs_fhir_server(scenario)
    builtin = None
    with ExitStack() as stack:
        fhir = args.fhir_server
        if needs_server and not fhir:
            resources = shift_dates(library.resources(scenario), days_between(library.anchor, now))
            try:
                server = ScenarioFhirServer(resources, port=args.fhir_port)
            except OSError as error:
                print(
                    f"dvt-cds replay: cannot start the built-in FHIR server on 127.0.0.1:{args.fhir_port}: "
                    f"{error.strerror or error} (choose another --fhir-port, or leave it out for any free port)",
                    file=sys.stderr,
                )
                raise SystemExit(2) from None
            fhir = builtin = stack.enter_context(server).base_url
        runner = Runner(
            library, post=post, discovery=discovery, now=now, fhir_server=fhir, use_prefetch=not args.no_prefetch
        )
        return builtin, runner.run(scenario)


def _wait_for(base: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(f"{base}/metadata", timeout=5).status_code == 200:
                return True
        except requests.RequestException:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(2)


def load_fixtures(args: argparse.Namespace) -> int:
    """PUT every scenario's resources into a FHIR server (dates moved to today), as one transaction each."""
    library = Library(args.fixtures or default_folder())
    shift = days_between(library.anchor, datetime.now(UTC))
    base = args.fhir_server.rstrip("/")
    if not _wait_for(base, args.wait):
        print(f"{base} did not answer /metadata within {args.wait} s", file=sys.stderr)
        return 1
    for scenario in library.scenarios:
        resources = with_fhir_base(shift_dates(library.resources(scenario), shift), base)
        transaction = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                for r in resources
            ],
        }
        response = requests.post(base, json=transaction, timeout=60, headers={"Content-Type": "application/fhir+json"})
        if response.status_code >= 300:
            print(f"{scenario.id}: HTTP {response.status_code}", file=sys.stderr)
            return 1
        print(f"{scenario.id}: {len(resources)} resources")
    return 0
