"""The fetch path: nothing prefetched, every key read from the Medplum test server (paging as Medplum's server
does: 20 a page without `_count`, 1,000 at most) behind a proxy that holds every request 50 ms — a real EHR's
round trip. The typical and the 2,771-resource record (each as two patients), and a chart without a DVT for the lean
prefetch; FHIR batch against separate GETs; optionally an older revision of the service for a before/after figure.

Per row: p50/p95/p99, throughput, the p50 as a multiple of one round trip, the server's CPU per call, and the EHR's
requests per call with the time the EHR (Medplum) took to answer them, counted by the proxy over a few sequential
calls: a fetch's latency is the round trips, the EHR's own work and the service's.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import requests

from bench import payloads
from bench.load import drive, summarize
from bench.proxy import COUNT_PATH
from bench.proxy import serve as serve_proxy
from bench.servers import ROOT, free_port, start_gunicorn, stop
from tests.medplum_server import MEDPLUM_MAX_COUNT, MEDPLUM_PAGE_SIZE, MedplumServer

ROUND_TRIP_MS = 50.0
VARIANTS = 2
NO_DVT = "no-dvt"
CONFIGS: dict[str, dict[str, str]] = {
    "full, batch": {"DVT_CDS_FHIR_BATCH": "auto", "DVT_CDS_PREFETCH": "full"},
    "full, GETs": {"DVT_CDS_FHIR_BATCH": "off", "DVT_CDS_PREFETCH": "full"},
    "lean, batch": {"DVT_CDS_FHIR_BATCH": "auto", "DVT_CDS_PREFETCH": "lean"},
}
TARGETS = {"typical": 1.3, "large": 3.0}  # p50 at 1 client, as multiples of one round trip


def _records(now: Any) -> dict[str, list[tuple[list[dict[str, Any]], str]]]:
    """Each record as its patients: (resources, patient id)."""
    found: dict[str, list[tuple[list[dict[str, Any]], str]]] = {}
    for name, patient in (("typical", payloads.TYPICAL), ("large", payloads.LARGE)):
        record = payloads.record(patient, now)
        found[name] = [payloads.variant(record, patient, k) for k in range(VARIANTS)]
    found[NO_DVT] = [payloads.variant(payloads.synthea(payloads.TYPICAL), payloads.TYPICAL, 7)]
    return found


def _bodies(workdir: Path, record: str, patients: list[tuple[list, str]], fhir_url: str, now: Any) -> list[Path]:
    service = {"hook": "patient-view", "prefetch": {}}
    paths = []
    for index, (resources, patient_id) in enumerate(patients):
        body = payloads.hook_request(service, resources, patient_id, now, prefetch=False, fhir_server=fhir_url)
        path = workdir / f"fetch-{record}-{index}.json"
        path.write_bytes(orjson.dumps(body))
        paths.append(path)
    return paths


def _ehr_load(port: int, proxy_url: str, body: Path, calls: int = 5) -> tuple[float, float]:
    """Requests the EHR received per call, and ms it spent answering them (Medplum's own work, the proxy's delay
    apart), over ``calls`` sequential calls after the warm-up."""

    def count() -> dict[str, float]:
        return requests.get(proxy_url + COUNT_PATH.decode(), timeout=5).json()

    raw = body.read_bytes().replace(payloads.PLACEHOLDER.encode(), b"00000000-0000-4000-8000-0000000c0c0c")
    before = count()
    for _ in range(calls):
        requests.post(
            f"http://127.0.0.1:{port}/cds-services/distal-dvt-patient-view",
            data=raw,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
    after = count()
    return (after["requests"] - before["requests"]) / calls, (after["upstream_ms"] - before["upstream_ms"]) / calls


def measure_round_trip(fhir_url: str, patient_id: str) -> float:
    session = requests.Session()
    times = []
    for _ in range(20):
        started = time.perf_counter()
        session.get(f"{fhir_url}/Patient/{patient_id}", timeout=5)
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)[len(times) // 2]


def measure(
    *,
    workers: int,
    threads: int,
    seconds: float,
    warmup: float,
    levels: tuple[int, ...] = (1, 8),
    before_rev: str | None = None,
    report: Callable[[dict[str, Any]], None] = lambda row: None,
) -> dict[str, Any]:
    now = payloads.bench_now()
    workdir = Path(tempfile.mkdtemp(prefix="dvt-cds-bench-fetch-"))
    records = _records(now)
    mp = multiprocessing.get_context("spawn")
    rows: list[dict[str, Any]] = []
    with MedplumServer(page_size=MEDPLUM_PAGE_SIZE, max_count=MEDPLUM_MAX_COUNT) as medplum:
        for patients in records.values():
            for resources, _ in patients:
                entries = [{"resource": r} for r in resources]
                medplum.load({"resourceType": "Bundle", "type": "collection", "entry": entries})
        queue = mp.Queue()
        proxy = mp.Process(target=serve_proxy, args=(medplum.port, ROUND_TRIP_MS / 1000, queue), daemon=True)
        proxy.start()
        proxy_url = f"http://127.0.0.1:{queue.get(timeout=30)}"
        fhir_url = f"{proxy_url}/fhir"
        round_trip = measure_round_trip(fhir_url, payloads.TYPICAL)
        bodies = {name: _bodies(workdir, name, patients, fhir_url, now) for name, patients in records.items()}
        configs: dict[str, tuple[dict[str, str], Path]] = {name: (env, ROOT) for name, env in CONFIGS.items()}
        if before_rev:
            configs[f"before ({before_rev[:10]})"] = ({}, source_tree(before_rev, workdir))
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=mp) as loader:
                for config, (env, root) in configs.items():
                    port = free_port()
                    service = start_gunicorn(
                        "cds_service.wsgi:application", port, workdir, workers, threads, extra=env, root=root
                    )
                    try:
                        for record, paths in bodies.items():
                            if record == NO_DVT and not config.startswith(("lean", "full, batch")):
                                continue
                            _warm(port, paths)
                            per_call, ehr_ms = _ehr_load(port, proxy_url, paths[0])
                            for level in levels:
                                got = loader.submit(
                                    drive,
                                    port,
                                    "/cds-services/distal-dvt-patient-view",
                                    paths,
                                    level,
                                    seconds,
                                    warmup,
                                    server_pid=service.pid,
                                ).result()
                                row = {
                                    "config": config,
                                    "record": record,
                                    "concurrency": level,
                                    "service": summarize(got),
                                    "ehr_requests_per_call": round(per_call, 2),
                                    "ehr_ms_per_call": round(ehr_ms, 1),
                                    "round_trip_ms": round(round_trip, 2),
                                }
                                rows.append(row)
                                report(row)
                    finally:
                        stop(service)
        finally:
            proxy.terminate()
    return {"round_trip_ms": round(round_trip, 2), "nominal_round_trip_ms": ROUND_TRIP_MS, "rows": rows}


def _warm(port: int, paths: list[Path], clients: int = 8) -> None:
    """Calls from several clients at once first, so every worker has made one: a worker's first call to a FHIR
    server starts its CapabilityStatement read (in the background); its later calls use what it said."""
    raw = paths[0].read_bytes().replace(payloads.PLACEHOLDER.encode(), b"00000000-0000-4000-8000-0000000a0a0a")

    def call() -> None:
        requests.post(
            f"http://127.0.0.1:{port}/cds-services/distal-dvt-patient-view",
            data=raw,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )

    for _ in range(3):
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda _: call(), range(clients)))
        time.sleep(0.3)


def source_tree(rev: str, workdir: Path) -> Path:
    """The source tree of an older revision (git archive: the working copy is not touched)."""
    target = workdir / f"tree-{rev[:12]}"
    target.mkdir()
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


HEADER = (
    f"{'config':22} {'record':8} {'c':>2} │ {'p50':>7} {'p95':>7} {'p99':>7} {'req/s':>6} │ {'p50/RT':>6} "
    f"{'CPU ms':>7} │ {'EHR req':>7} {'EHR ms':>6}"
)


def print_row(row: dict[str, Any]) -> None:
    if not getattr(print_row, "header", False):
        print(HEADER)
        print("─" * len(HEADER))
        print_row.header = True  # type: ignore[attr-defined]
    s = row["service"]
    ratio = s["p50"] / row["round_trip_ms"]
    errors = f"  ({s['errors']} errors)" if s["errors"] else ""
    ehr, ehr_ms = row["ehr_requests_per_call"], row["ehr_ms_per_call"]
    print(
        f"{row['config']:22} {row['record']:8} {row['concurrency']:>2} │ {s['p50']:7.1f} {s['p95']:7.1f} "
        f"{s['p99']:7.1f} {s['rps']:6.1f} │ {ratio:6.2f} {s['cpu_ms']:7.2f} │ {ehr:7.2f} {ehr_ms:6.1f}{errors}",
        flush=True,
    )


def targets(figures: dict[str, Any]) -> list[tuple[str, float, bool, str]]:
    """Fetch path p50 at 1 client against one measured round trip, full prefetch, the faster of batch and GETs."""
    found = []
    for record, limit in TARGETS.items():
        candidates = [
            r["service"]["p50"] / r["round_trip_ms"]
            for r in figures.get("rows", [])
            if r["record"] == record and r["concurrency"] == 1 and r["config"].startswith("full")
        ]
        if candidates:
            value = min(candidates)
            name = f"fetch path, {record} record, p50 at 1 client ≤ {limit:g} × one round trip"
            found.append((name, value, value <= limit, "×"))
    return found


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--before", default=None, help="also measure this git revision of the service")
    args = parser.parse_args()
    result = measure(
        workers=args.workers,
        threads=args.threads,
        seconds=args.seconds,
        warmup=args.warmup,
        before_rev=args.before,
        report=print_row,
    )
    for name, value, met, unit in targets(result):
        print(f"  {'met ' if met else 'MISS'}  {name}: {value:.2f} {unit}")
