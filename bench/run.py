"""`make bench`: the service under its production server against the floor, driven from another process.

Every figure is measured in this run, on this machine:

* the report reader, the EHR profiles and the production front (bench/reports.py, profiles.py, front.py);
* the prefetch path: each hook, the typical and the 2,771-resource record, 1, 8 and 32 clients, JWT off, beside the
  floor (bench/floor.py: the same gunicorn configuration, GC settings and JSON parser answering a fixed card) —
  p50/p95/p99, throughput and server CPU per call (from /proc), and their ratios to the floor; then JWT on;
* the fetch path (bench/fetch.py): no prefetch, the Medplum test server behind a 50 ms proxy, paging as Medplum does;
* where a call's CPU goes, per stage, under the production server (bench/stages.py).

No two requests are the same (bench/load.py). Results go to bench/results/<time>.json and are compared with the
previous run; the targets of issue 15 are checked at the end.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import requests

from bench import fetch, front, payloads, profiles, reports, stages
from bench.load import drive, summarize
from bench.servers import ROOT, SIGNER, base_url, free_port, start_gunicorn, stop
from hooks import BY_ID

RESULTS = ROOT / "bench" / "results"
VARIANTS = 4  # patients per record and hook: each request is one of them, with its own hookInstance
SERVICE_APP = "cds_service.wsgi:application"
# Issue 15's targets, as ratios measured in one run.
CPU_TARGETS = {"typical": 3.0, "large": 1.5}  # server CPU per call ≤ this × the floor's
THROUGHPUT_TARGET = 0.3  # typical record: throughput ≥ this × the floor's
NO_LOSS_TOLERANCE = 1.10  # the prefetch path: p50 at most 10 % above the previous run's (same rows)


def bodies(workdir: Path, service: dict[str, Any], record: str, now: Any) -> list[Path]:
    """The run's request bodies for one hook and record: ``VARIANTS`` patients, full prefetch."""
    patient = {"typical": payloads.TYPICAL, "large": payloads.LARGE}[record]
    resources = payloads.record(patient, now)
    paths = []
    for k in range(VARIANTS):
        varied, patient_id = payloads.variant(resources, patient, k)
        body = payloads.hook_request(service, varied, patient_id, now, prefetch=True)
        path = workdir / f"{record}-{service['hook']}-{k}.json"
        path.write_bytes(orjson.dumps(body))
        paths.append(path)
    return paths


def topics(port: int, path: str, body: Path) -> list[str]:
    raw = body.read_bytes().replace(payloads.PLACEHOLDER.encode(), b"00000000-0000-4000-8000-00000000cafe")
    answer = requests.post(
        f"{base_url(port)}{path}", data=raw, timeout=60, headers={"Content-Type": "application/json"}
    ).json()
    return [card["source"]["topic"]["code"] for card in answer.get("cards", [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--jwt-concurrency", default="8", help="client counts of the JWT-on runs")
    parser.add_argument("--hooks", default="patient-view,order-select,order-sign,encounter-discharge")
    parser.add_argument("--records", default="typical,large")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--before", default=None, help="also measure this git revision (prefetch and fetch paths) in the same run"
    )
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--no-reports", action="store_true", help="skip the report-reader measurement")
    parser.add_argument("--no-profiles", action="store_true", help="skip the EHR-profile measurement")
    parser.add_argument("--no-front", action="store_true", help="skip the production-front measurement")
    parser.add_argument("--no-fetch", action="store_true", help="skip the fetch path")
    parser.add_argument("--no-stages", action="store_true", help="skip the per-stage profile")
    args = parser.parse_args(argv)
    print(
        f"bench: {args.workers} gunicorn workers × {args.threads} threads; {args.seconds:g} s per run after "
        f"{args.warmup:g} s warm-up; clients in a separate process; {os.cpu_count()} CPUs\n"
    )
    reader_figures = {} if args.no_reports else reports.measure()
    if reader_figures:
        reports.print_report(reader_figures)
    profile_figures = {} if args.no_profiles else profiles.measure()
    if profile_figures:
        profiles.print_report(profile_figures)
    front_figures = {} if args.no_front else front.measure(args.workers, args.threads)
    if front_figures:
        front.print_report(front_figures)

    rows = prefetch_path(args)
    fetch_figures: dict[str, Any] = {}
    if not args.no_fetch:
        print("\nFetch path: no prefetch; Medplum (20 a page, 1,000 at most) behind a proxy adding 50 ms per request")
        fetch_figures = fetch.measure(
            workers=args.workers,
            threads=args.threads,
            seconds=args.seconds,
            warmup=args.warmup,
            before_rev=args.before,
            report=fetch.print_row,
        )
        print(f"(one round trip, GET Patient through the proxy: {fetch_figures['round_trip_ms']:.1f} ms)")
    stage_figures = {} if args.no_stages else stage_profile(args)
    report(rows, args, reader_figures, profile_figures, front_figures, fetch_figures, stage_figures)
    return 0


# --- the prefetch path --------------------------------------------------------------------------------------------
def prefetch_path(args: argparse.Namespace) -> list[dict[str, Any]]:
    levels = [int(c) for c in args.concurrency.split(",")]
    jwt_levels = [int(c) for c in args.jwt_concurrency.split(",") if c]
    now = payloads.bench_now()
    workdir = Path(tempfile.mkdtemp(prefix="dvt-cds-bench-"))
    mp = multiprocessing.get_context("spawn")
    ports = {"service": free_port(), "floor": free_port(), "jwt": free_port(), "before": free_port()}
    service = start_gunicorn(SERVICE_APP, ports["service"], workdir, args.workers, args.threads)
    floor = start_gunicorn("bench.floor:application", ports["floor"], workdir, args.workers, args.threads)
    secured = start_gunicorn(SERVICE_APP, ports["jwt"], workdir, args.workers, args.threads, jwt=True)
    servers = [service, floor, secured]
    if args.before:  # the same rows on an older revision, in this run: "no loss on the prefetch path"
        old = fetch.source_tree(args.before, workdir)
        servers.append(start_gunicorn(SERVICE_APP, ports["before"], workdir, args.workers, args.threads, root=old))
    pids = {"service": service.pid, "floor": floor.pid, "jwt": secured.pid, "before": servers[-1].pid}
    discovery = {
        s["hook"]: s for s in requests.get(f"{base_url(ports['service'])}/cds-services", timeout=5).json()["services"]
    }
    rows: list[dict[str, Any]] = []
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=mp) as loader:

            def run(target: str, path: str, paths: list[Path], level: int, tokens: int = 0) -> dict[str, Any]:
                jwt = target == "jwt"
                result = loader.submit(
                    drive,
                    ports[target],
                    path,
                    paths,
                    level,
                    args.seconds,
                    args.warmup,
                    server_pid=pids[target],
                    signer=SIGNER if jwt else None,
                    tokens_hint=tokens,
                    audience=base_url(ports[target]) if jwt else "",
                ).result()
                return summarize(result)

            for record in args.records.split(","):
                for hook in args.hooks.split(","):
                    desc = discovery[hook]
                    path = f"/cds-services/{desc['id']}"
                    paths = bodies(workdir, desc, record, now)
                    found = topics(ports["service"], path, paths[0])
                    for level in levels:
                        row = {
                            "record": record,
                            "hook": hook,
                            "concurrency": level,
                            "jwt": False,
                            "service": run("service", path, paths, level),
                            "floor": run("floor", path, paths, level),
                            "body_bytes": paths[0].stat().st_size,
                            "topics": found,
                        }
                        if args.before:
                            row["before"] = run("before", path, paths, level)
                        rows.append(row)
                        print_row(row)
                    for level in jwt_levels:
                        plain = next((r for r in rows if r["record"] == record and r["hook"] == hook), None)
                        hint = int((plain["service"]["rps"] if plain else 100) * (args.seconds + args.warmup) * 1.5)
                        row = {
                            "record": record,
                            "hook": hook,
                            "concurrency": level,
                            "jwt": True,
                            "service": run("jwt", path, paths, level, tokens=hint + 50),
                            "floor": same_floor(rows, record, hook, level) or run("floor", path, paths, level),
                            "body_bytes": paths[0].stat().st_size,
                            "topics": found,
                        }
                        rows.append(row)
                        print_row(row)
    finally:
        for process in servers:
            stop(process)
    return rows


def same_floor(rows: list[dict[str, Any]], record: str, hook: str, level: int) -> dict[str, Any] | None:
    """The floor measured for the JWT-off row of the same record, hook and clients (the floor checks no token)."""
    for row in rows:
        if (row["record"], row["hook"], row["concurrency"], row["jwt"]) == (record, hook, level, False):
            return row["floor"]
    return None


HEADER = (
    f"{'record':8} {'hook':20} {'c':>3} {'jwt':>3} │ {'p50':>6} {'p95':>6} {'p99':>6} {'req/s':>6} {'CPU ms':>6} │ "
    f"floor {'p50':>5} {'p99':>5} {'req/s':>6} {'CPU ms':>6} │ {'p99/fl':>6} {'rps/fl':>6} {'CPU/fl':>6}"
)


def ratio(a: float, b: float) -> float:
    return a / b if b and b == b and a == a else float("nan")


def print_row(row: dict[str, Any]) -> None:
    if not getattr(print_row, "header", False):
        print("\nPrefetch path: the service beside the floor (same server, GC and parser; a fixed card)")
        print(HEADER)
        print("─" * len(HEADER))
        print_row.header = True  # type: ignore[attr-defined]
    s, f = row["service"], row["floor"]
    errors = f"  ({s['errors']} errors)" if s["errors"] else ""
    before = row.get("before")
    was = (
        f"  before: p50 {before['p50']:.1f} ms, {before['rps']:.1f} req/s, CPU {before['cpu_ms']:.2f} ms"
        if before
        else ""
    )
    print(
        f"{row['record']:8} {row['hook']:20} {row['concurrency']:>3} {'on' if row['jwt'] else 'off':>3} │ "
        f"{s['p50']:6.1f} {s['p95']:6.1f} {s['p99']:6.1f} {s['rps']:6.1f} {s['cpu_ms']:6.2f} │ "
        f"{'':5} {f['p50']:5.1f} {f['p99']:5.1f} {f['rps']:6.1f} {f['cpu_ms']:6.2f} │ "
        f"{ratio(s['p99'], f['p99']):6.2f} {ratio(s['rps'], f['rps']):6.2f} {ratio(s['cpu_ms'], f['cpu_ms']):6.2f}"
        f"{errors}{was}",
        flush=True,
    )


# --- where the CPU goes -----------------------------------------------------------------------------------------
def stage_profile(args: argparse.Namespace) -> dict[str, Any]:
    """patient-view, 8 clients, JWT on (as in production), per record: ms of CPU per call in each stage."""
    now = payloads.bench_now()
    workdir = Path(tempfile.mkdtemp(prefix="dvt-cds-bench-stages-"))
    figures: dict[str, Any] = {}
    mp = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=mp) as loader:
        for record in args.records.split(","):
            dumps = workdir / f"stages-{record}"
            dumps.mkdir()
            port = free_port()
            server = start_gunicorn(
                "bench.stages:application",
                port,
                workdir,
                args.workers,
                args.threads,
                jwt=True,
                extra={"BENCH_STAGES_DIR": str(dumps)},
            )
            try:
                desc = BY_ID["distal-dvt-patient-view"].descriptor().to_json()  # discovery needs a token here
                path = f"/cds-services/{desc['id']}"
                paths = bodies(workdir, desc, record, now)
                for item in dumps.iterdir():
                    item.unlink()  # what start-up and the first call cost is not a call's
                result = loader.submit(
                    drive,
                    port,
                    path,
                    paths,
                    8,
                    args.seconds * 2,
                    0.0,
                    server_pid=server.pid,
                    signer=SIGNER,
                    tokens_hint=int(200 * args.seconds * 2),
                    audience=base_url(port),
                ).result()
            finally:
                stop(server)  # the workers write their totals as they stop
            calls, totals = stages.read(dumps)
            process_ms = summarize(result)["cpu_ms"]
            figures[record] = stages.per_call(calls, totals, process_ms)
    print_stages(figures)
    return figures


def print_stages(figures: dict[str, dict[str, float]]) -> None:
    if not figures:
        return
    records = list(figures)
    names = list(dict.fromkeys(name for fig in figures.values() for name in fig))
    print("\nWhere a call's CPU goes (ms per call; patient-view, 8 clients, JWT on, under gunicorn):")
    print(f"  {'stage':58}" + "".join(f"{r:>10}" for r in records))
    for name in names:
        print(f"  {name:58}" + "".join(f"{figures[r].get(name, float('nan')):10.3f}" for r in records))


# --- the closing report -----------------------------------------------------------------------------------------
def _median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def _targets(
    rows: list[dict[str, Any]], fetch_figures: dict[str, Any], previous: dict[str, Any] | None
) -> list[tuple[str, float, bool, str]]:
    found: list[tuple[str, float, bool, str]] = list(fetch.targets(fetch_figures))
    plain = [r for r in rows if not r["jwt"]]
    for record, limit in CPU_TARGETS.items():
        value = _median([ratio(r["service"]["cpu_ms"], r["floor"]["cpu_ms"]) for r in plain if r["record"] == record])
        if value == value:
            name = f"server CPU per call, {record} record, ≤ {limit:g} × the floor's"
            found.append((name, value, value <= limit, "×"))
    value = _median([ratio(r["service"]["rps"], r["floor"]["rps"]) for r in plain if r["record"] == "typical"])
    if value == value:
        target = THROUGHPUT_TARGET
        found.append((f"throughput, typical record, ≥ {target:g} × the floor's", value, value >= target, "×"))
    same_run = [r for r in plain if r.get("before")]
    if same_run:  # the older revision measured in this run, row by row
        for what, key in (("p50", "p50"), ("CPU per call", "cpu_ms")):
            value = _median([ratio(r["service"][key], r["before"][key]) for r in same_run])
            name = f"no loss on the prefetch path: {what} against the older revision ≤ {NO_LOSS_TOLERANCE:g} ×"
            found.append((name, value, value <= NO_LOSS_TOLERANCE, "×"))
    elif previous:  # weaker: another run, perhaps on a busier or another machine
        before = {(r["record"], r["hook"], r["concurrency"]): r for r in previous.get("runs", []) if not r.get("jwt")}
        changes = [
            ratio(r["service"]["p50"], before[key]["service"]["p50"])
            for r in plain
            if (key := (r["record"], r["hook"], r["concurrency"])) in before
        ]
        value = _median(changes)
        if value == value:
            name = f"no loss on the prefetch path: p50 against the previous saved run ≤ {NO_LOSS_TOLERANCE:g} ×"
            found.append((name, value, value <= NO_LOSS_TOLERANCE, "×"))
    return found


def report(
    rows: list[dict[str, Any]],
    args: argparse.Namespace,
    reader: dict[str, float],
    dialects: dict[str, float],
    front_figures: dict[str, float],
    fetch_figures: dict[str, Any],
    stage_figures: dict[str, Any],
) -> None:
    saved = sorted(RESULTS.glob("*.json"))
    previous = json.loads(saved[-1].read_text()) if saved else None
    targets = _targets(rows, fetch_figures, previous)
    extra: list[tuple[str, float, bool, str]] = []
    if reader:
        limit = reports.TARGET_MS
        value = reader["added_ms"]
        extra.append((f"report reader: a report adds ≤ {limit:g} ms", value, value <= limit, "ms"))
    if dialects:
        limit = profiles.TARGET_ADDED_MS
        value = dialects["added_ms"]
        extra.append((f"EHR profiles: shaping adds ≤ {limit:g} ms", value, value <= limit, "ms"))
    if front_figures:
        value = front_figures["ratio"]
        limit = front.TARGET_RATIO
        extra.append((f"production front keeps ≥ {limit:.0%} of direct throughput", value, value >= limit, "×"))
    print("\nTargets (ratios measured in this run):")
    for name, value, met, unit in [*targets, *extra]:
        print(f"  {'met ' if met else 'MISS'}  {name}: {value:.2f} {unit}")
    summary = {name: {"value": round(value, 3), "met": met} for name, value, met, _ in [*targets, *extra]}
    if previous:
        print(f"\nCompared with {saved[-1].name}:")
        for name, now in summary.items():
            before = previous.get("targets", {}).get(name)
            if before:
                print(f"  {name}: {before['value']} → {now['value']}")
    if not args.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(
            json.dumps(
                {
                    "settings": vars(args),
                    "cpus": os.cpu_count(),
                    "report_reader": {k: round(v, 3) for k, v in reader.items()},
                    "profiles": {k: round(v, 3) for k, v in dialects.items()},
                    "front": {k: round(v, 3) for k, v in front_figures.items()},
                    "fetch": fetch_figures,
                    "stages_ms_per_call": stage_figures,
                    "targets": summary,
                    "runs": rows,
                },
                indent=1,
            )
            + "\n"
        )
        print(f"\nSaved {path.relative_to(ROOT)}")


if __name__ == "__main__":
    raise SystemExit(main())
