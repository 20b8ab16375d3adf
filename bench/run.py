"""`make bench`: the service under gunicorn against its floor, driven by concurrent clients in another process.

For each hook, record size and concurrency it prints p50/p95/p99 latency and throughput, beside the floor measured
in the same run (the same gunicorn setup answering a fixed card after only parsing the same body), their ratios,
and for the fetch path the ratio to one FHIR round trip. Results go to bench/results/<time>.json and are compared
with the previous run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench import front, payloads, profiles, reports
from bench.fhir_delay import serve as serve_fhir
from bench.load import drive, summarize

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ROUND_TRIP_MS = 50.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(app: str, port: int, workdir: Path, workers: int, threads: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVT_CDS_")}
    (workdir / f"metrics-{port}").mkdir()
    env.update(
        {
            "DVT_CDS_HOST": "127.0.0.1",
            "DVT_CDS_PORT": str(port),
            "DVT_CDS_AUTH": "off",
            "DVT_CDS_WORKERS": str(workers),
            "DVT_CDS_THREADS": str(threads),
            "DVT_CDS_DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
            "DVT_CDS_METRICS_DIR": str(workdir / f"metrics-{port}"),
            "DVT_CDS_LOG_LEVEL": "INFO",
        }
    )
    subprocess.run(  # the service refuses a database whose schema is behind: bring it up as an operator would
        [str(Path(sys.executable).parent / "dvt-cds"), "db", "upgrade"], env=env, check=True, capture_output=True
    )
    log = (workdir / f"gunicorn-{port}.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "python:cds_service.gunicorn_conf", app],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    for _ in range(300):
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except requests.RequestException:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{app} did not start: see {workdir}")


def measure_round_trip(fhir_url: str) -> float:
    session = requests.Session()
    times = []
    for _ in range(20):
        started = time.perf_counter()
        session.get(f"{fhir_url}/Patient/{payloads.TYPICAL}", timeout=5)
        times.append((time.perf_counter() - started) * 1000)
    return median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--hooks", default="patient-view,order-select,order-sign,encounter-discharge")
    parser.add_argument("--records", default="typical,large,fetch")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--no-reports", action="store_true", help="skip the report-reader measurement")
    parser.add_argument("--no-profiles", action="store_true", help="skip the EHR-profile measurement")
    parser.add_argument("--no-front", action="store_true", help="skip the production-front measurement")
    args = parser.parse_args(argv)
    reader_figures = {} if args.no_reports else reports.measure()
    if reader_figures:
        reports.print_report(reader_figures)
    profile_figures = {} if args.no_profiles else profiles.measure()
    if profile_figures:
        profiles.print_report(profile_figures)
    front_figures = {} if args.no_front else front.measure(args.workers, args.threads)
    if front_figures:
        front.print_report(front_figures)
    levels = [int(c) for c in args.concurrency.split(",")]
    hooks = args.hooks.split(",")
    now = payloads.bench_now()

    records = {
        "typical": (payloads.TYPICAL, payloads.record(payloads.TYPICAL, now)),
        "large": (payloads.LARGE, payloads.record(payloads.LARGE, now)),
    }
    records["fetch"] = records["typical"]
    workdir = Path(tempfile.mkdtemp(prefix="dvt-cds-bench-"))
    mp = multiprocessing.get_context("spawn")
    port_queue = mp.Queue()
    fhir = mp.Process(target=serve_fhir, args=(records["fetch"][1], port_queue, ROUND_TRIP_MS / 1000), daemon=True)
    fhir.start()
    fhir_url = f"http://127.0.0.1:{port_queue.get(timeout=30)}/fhir"

    round_trip = measure_round_trip(fhir_url)
    service_port, floor_port = free_port(), free_port()
    service = start_gunicorn("cds_service.wsgi:application", service_port, workdir, args.workers, args.threads)
    floor = start_gunicorn("bench.floor:app", floor_port, workdir, args.workers, args.threads)
    discovery = {
        s["hook"]: s
        for s in requests.get(f"http://127.0.0.1:{service_port}/cds-services", timeout=5).json()["services"]
    }
    rows: list[dict[str, Any]] = []
    print(
        f"FHIR server for the fetch path: {ROUND_TRIP_MS:g} ms added per query; one round trip measured "
        f"{round_trip:.1f} ms (median of 20 sequential GETs)"
    )
    print(
        f"bench: {args.workers} gunicorn workers × {args.threads} threads; {args.seconds:g} s per run after "
        f"{args.warmup:g} s warm-up; clients in a separate process; {os.cpu_count()} CPUs; workdir {workdir}\n"
    )
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=mp) as loader:
            for record_name in args.records.split(","):
                patient_id, resources = records[record_name]
                for hook in hooks:
                    service_desc = discovery[hook]
                    body = payloads.hook_request(
                        service_desc,
                        resources,
                        patient_id,
                        now,
                        prefetch=record_name != "fetch",
                        fhir_server=fhir_url if record_name == "fetch" else None,
                    )
                    raw = json.dumps(body).encode()
                    path = f"/cds-services/{service_desc['id']}"
                    probe = requests.post(
                        f"http://127.0.0.1:{service_port}{path}",
                        data=raw,
                        timeout=30,
                        headers={"Content-Type": "application/json"},
                    )
                    topics = [c["source"]["topic"]["code"] for c in probe.json().get("cards", [])]
                    for level in levels:
                        got = summarize(
                            loader.submit(drive, service_port, path, raw, level, args.seconds, args.warmup).result()
                        )
                        base = summarize(
                            loader.submit(drive, floor_port, path, raw, level, args.seconds, args.warmup).result()
                        )
                        row = {
                            "record": record_name,
                            "hook": hook,
                            "concurrency": level,
                            "service": got,
                            "floor": base,
                            "body_bytes": len(raw),
                            "prefetch_resources": payloads.count_resources(body),
                            "record_resources": len(resources),
                            "status": probe.status_code,
                            "topics": topics,
                        }
                        rows.append(row)
                        print_row(row)
    finally:
        for process in (service, floor):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        fhir.terminate()
    report(rows, args, round_trip, reader_figures, profile_figures, front_figures)
    return 0


HEADER = (
    f"{'record':8} {'hook':20} {'c':>3} │ {'p50':>7} {'p95':>7} {'p99':>7} {'req/s':>7} │ floor {'p50':>6} "
    f"{'p99':>6} {'req/s':>7} │ {'p99/fl':>6} {'rps/fl':>6} │ {'p50/RT':>6}"
)


def print_row(row: dict[str, Any]) -> None:
    if not getattr(print_row, "header", False):
        print(HEADER)
        print("─" * len(HEADER))
        print_row.header = True  # type: ignore[attr-defined]
    s, f = row["service"], row["floor"]
    p99_ratio = s["p99"] / f["p99"] if f["p99"] else float("nan")
    rps_ratio = s["rps"] / f["rps"] if f["rps"] else float("nan")
    rt = f"{s['p50'] / ROUND_TRIP_MS:6.2f}" if row["record"] == "fetch" else "     –"
    errors = f"  ({s['errors']} errors)" if s["errors"] else ""
    print(
        f"{row['record']:8} {row['hook']:20} {row['concurrency']:>3} │ {s['p50']:7.1f} {s['p95']:7.1f} "
        f"{s['p99']:7.1f} {s['rps']:7.1f} │ {'':5} {f['p50']:6.1f} {f['p99']:6.1f} {f['rps']:7.1f} │ "
        f"{p99_ratio:6.2f} {rps_ratio:6.2f} │ {rt}{errors}",
        flush=True,
    )


def median(values: list[float]) -> float:
    ordered = sorted(v for v in values if v == v)
    if not ordered:
        return float("nan")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def report(
    rows: list[dict[str, Any]],
    args: argparse.Namespace,
    round_trip: float,
    reader: dict[str, float],
    dialects: dict[str, float],
    front_figures: dict[str, float],
) -> None:
    def pick(record: str, level: int | None = None) -> list[dict[str, Any]]:
        return [r for r in rows if r["record"] == record and (level is None or r["concurrency"] == level)]

    targets = []
    typical8 = pick("typical", 8)
    if typical8:
        value = median([r["service"]["p99"] for r in typical8])
        targets.append(("typical record, p99 at 8 clients ≤ 50 ms", value, value <= 50, "ms"))
    large = pick("large", 8) or pick("large")
    if large:
        value = median([r["service"]["p99"] for r in large])
        targets.append(("large record, p99 at 8 clients ≤ 300 ms", value, value <= 300, "ms"))
    fetch = pick("fetch", 1) or pick("fetch")
    if fetch:
        value = median([r["service"]["p50"] / ROUND_TRIP_MS for r in fetch])
        targets.append(("fetch path, p50 at 1 client ≤ 1.5 × one 50 ms round trip", value, value <= 1.5, "×"))
        measured = median([r["service"]["p50"] / round_trip for r in fetch])
        print(f"\n(fetch path against the measured round trip of {round_trip:.1f} ms: {measured:.2f} ×)")
    prefetched = [r for r in rows if r["record"] != "fetch" and r["floor"]["rps"]]
    if prefetched:
        value = median([r["service"]["rps"] / r["floor"]["rps"] for r in prefetched])
        targets.append(("throughput ≥ 50 % of the floor (median over prefetch runs)", value, value >= 0.5, "×"))
    if reader:
        targets.append(
            (
                f"report reader: a typical report adds ≤ {reports.TARGET_MS:g} ms to a call",
                reader["added_ms"],
                reader["added_ms"] <= reports.TARGET_MS,
                "ms",
            )
        )
    if dialects:
        targets.append(
            (
                f"EHR profiles: shaping adds ≤ {profiles.TARGET_ADDED_MS:g} ms to a call",
                dialects["added_ms"],
                dialects["added_ms"] <= profiles.TARGET_ADDED_MS,
                "ms",
            )
        )
    if front_figures:
        targets.append(
            (
                f"production front keeps ≥ {front.TARGET_RATIO:.0%} of direct throughput",
                front_figures["ratio"],
                front_figures["ratio"] >= front.TARGET_RATIO,
                "×",
            )
        )
    print("\nTargets (medians over the runs):")
    for name, value, met, unit in targets:
        print(f"  {'met ' if met else 'MISS'}  {name}: {value:.2f} {unit}")
    summary = {name: {"value": round(value, 3), "met": met} for name, value, met, _ in targets}

    previous = sorted(RESULTS.glob("*.json"))
    if previous:
        old = json.loads(previous[-1].read_text())
        print(f"\nCompared with {previous[-1].name}:")
        for name, now in summary.items():
            before = old.get("targets", {}).get(name)
            if before:
                print(f"  {name}: {before['value']} → {now['value']}")
    if not args.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        for row in rows:
            row.pop("latencies_ms", None)
        path.write_text(
            json.dumps(
                {
                    "settings": vars(args),
                    "round_trip_ms": round(round_trip, 2),
                    "report_reader": {k: round(v, 3) for k, v in reader.items()},
                    "front": {k: round(v, 3) for k, v in front_figures.items()},
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
