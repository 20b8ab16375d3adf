"""``dvt-cds replay`` and ``dvt-cds load-fixtures``: the testers' side of the scenario library."""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import requests

from cds_service.replay.fhirserver import ScenarioFhirServer
from cds_service.replay.report import Progress, as_json, describe_cards, table
from cds_service.replay.runner import CallOutcome, Runner, http_transport
from cds_service.replay.scenarios import (
    Library,
    Scenario,
    days_between,
    default_folder,
    shift_dates,
    with_fhir_base,
)
from cds_service.replay.signing import Signer


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
    chosen = library.scenarios if args.all or not args.scenarios else [library.scenario(s) for s in args.scenarios]
    if not args.all and not args.scenarios:
        print("dvt-cds replay: name scenarios, or use --all (--list shows them)", file=sys.stderr)
        return 2
    authorization = None
    if args.sign_key:
        signer = Signer(args.sign_key, iss=args.iss, kid=args.kid, alg=args.alg)
        public = (args.public_url or args.url).rstrip("/")
        authorization = lambda url: signer.header(public + url[len(args.url.rstrip("/")) :])  # noqa: E731
    elif args.bearer:
        authorization = lambda url: args.bearer  # noqa: E731
    try:
        post, discovery = http_transport(args.url.rstrip("/"), authorization=authorization)
    except requests.RequestException as error:
        print(
            f"dvt-cds replay: cannot reach {args.url} ({type(error).__name__}); is the service running (make run)?",
            file=sys.stderr,
        )
        return 2
    now = datetime.now(UTC)
    outcomes: list[CallOutcome] = []
    progress = Progress(len(chosen), force=args.all and not args.json)
    for scenario in chosen:
        outcomes.extend(_replay_one(library, scenario, args, post, discovery, now))
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
    failed = any(not o.passed for o in outcomes)
    return 1 if failed and (args.expect or args.all) else 0


def _replay_one(library: Library, scenario: Scenario, args: argparse.Namespace, post, discovery, now) -> list:
    needs_server = args.no_prefetch or library.needs_fhir_server(scenario)
    with ExitStack() as stack:
        fhir = args.fhir_server
        if needs_server and not fhir:
            resources = shift_dates(library.resources(scenario), days_between(library.anchor, now))
            fhir = stack.enter_context(ScenarioFhirServer(resources)).base_url
        runner = Runner(
            library, post=post, discovery=discovery, now=now, fhir_server=fhir, use_prefetch=not args.no_prefetch
        )
        return runner.run(scenario)


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
