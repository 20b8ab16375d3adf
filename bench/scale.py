"""`make bench-scale`: what a second instance adds — throughput of one `dvt-cds serve --production` against two on
one PostgreSQL database, as two pods behind one Service are (JWT on: every call's token id is checked against the
shared database; the decision audit of every call goes to it through each instance's outbox).

The same clients (threads in this process, keep-alive, a fresh signed token per call, the typical record's
patient-view call) drive one instance, then both (half the clients each). On one machine both instances share its
cores with each other, the database and the clients: the ratio shows what sharing the database costs, not what a
second machine would add; run it where the instances have cores of their own for that. Loopback only; bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from bench import payloads
from cds_service.replay.signing import Signer
from hooks import BY_ID

ROOT = Path(__file__).resolve().parents[1]
DVT_CDS = str(Path(sys.executable).parent / "dvt-cds")
PUBLIC = "https://cds.hospital.example"
PATH = "/cds-services/distal-dvt-patient-view"
ISS = "urn:distal-dvt-cds:dev-issuer"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def database(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"dvt_cds_bench_scale_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def environment(url: str, workdir: Path, name: str, workers: int, threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVT_CDS_")}
    jwks = json.loads((ROOT / "deploy" / "dev-issuer" / "jwks.json").read_text())
    (workdir / name).mkdir()
    env.update(
        {
            "DVT_CDS_HOST": "127.0.0.1",
            "DVT_CDS_PORT": str(free_port()),
            "DVT_CDS_AUTH": "jwt",
            "DVT_CDS_TRUSTED_ISSUERS": json.dumps([{"iss": ISS, "name": "bench", "jwks": jwks}]),
            "DVT_CDS_PUBLIC_BASE_URL": PUBLIC,
            "DVT_CDS_DATABASE_URL": url,
            "DVT_CDS_OUTBOX_PATH": str(workdir / name / "outbox.sqlite3"),
            "DVT_CDS_METRICS_DIR": str(workdir / name),
            "DVT_CDS_WORKERS": str(workers),
            "DVT_CDS_THREADS": str(threads),
            "DVT_CDS_LOG_LEVEL": "WARNING",
        }
    )
    return env


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        process = subprocess.Popen([DVT_CDS, "serve", "--production"], env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{env['DVT_CDS_PORT']}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                return process
        except requests.RequestException:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the service did not start: see {log}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def drive(ports: list[int], body: bytes, clients: int, seconds: float, warmup: float) -> dict[str, Any]:
    """``clients`` threads, client i on ports[i % len(ports)], each posting as soon as it is answered."""
    signer = Signer(ROOT / "deploy" / "dev-issuer" / "private-key.pem", iss=ISS, kid="dev-1")
    began = time.monotonic()
    measure_from, stop_at = began + warmup, began + warmup + seconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def client(number: int) -> None:
        url = f"http://127.0.0.1:{ports[number % len(ports)]}{PATH}"
        with requests.Session() as session:
            while (now := time.monotonic()) < stop_at:
                headers = {"Content-Type": "application/json", "Authorization": signer.header(PUBLIC + PATH)}
                try:
                    status = session.post(url, data=body, headers=headers, timeout=30).status_code
                except requests.RequestException:
                    status = 0
                ended = time.monotonic()
                if now >= measure_from and ended <= stop_at:
                    with lock:
                        latencies.append((ended - now) * 1000)
                        statuses[status] = statuses.get(status, 0) + 1

    workers = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=warmup + seconds + 60)
    ok = statuses.get(200, 0)
    ordered = sorted(latencies) or [0.0]
    return {
        "calls_per_s": ok / seconds,
        "p50_ms": statistics.median(ordered),
        "p95_ms": ordered[int(0.95 * (len(ordered) - 1))],
        "statuses": statuses,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers per instance")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args(argv)
    now = payloads.bench_now()
    service = BY_ID["distal-dvt-patient-view"].descriptor().to_json()
    record = payloads.record(payloads.TYPICAL, now)
    body = json.dumps(payloads.hook_request(service, record, payloads.TYPICAL, now, prefetch=True)).encode()
    workdir = Path(tempfile.mkdtemp(prefix="dvt-cds-bench-scale-"))
    results: dict[str, dict[str, Any]] = {}
    with database(args.admin_url) as url:
        envs = [environment(url, workdir, name, args.workers, args.threads) for name in ("one", "two")]
        subprocess.run([DVT_CDS, "db", "upgrade"], env=envs[0], check=True, capture_output=True)
        first = start(envs[0], workdir / "one.log")
        try:
            ports = [int(envs[0]["DVT_CDS_PORT"])]
            results["1 instance"] = drive(ports, body, args.clients, args.seconds, args.warmup)
            second = start(envs[1], workdir / "two.log")
            try:
                ports.append(int(envs[1]["DVT_CDS_PORT"]))
                results["2 instances"] = drive(ports, body, args.clients, args.seconds, args.warmup)
            finally:
                stop(second)
        finally:
            stop(first)
    print(
        f"\nScale-out on one PostgreSQL database: patient-view, typical record, JWT on, {args.clients} clients, "
        f"{args.seconds:g} s, {args.workers} worker(s) × {args.threads} threads per instance, "
        f"{os.cpu_count()} CPU cores shared by everything"
    )
    print(f"{'':12} {'calls/s':>8} {'p50 ms':>8} {'p95 ms':>8}  statuses")
    for name, figures in results.items():
        print(
            f"{name:12} {figures['calls_per_s']:8.1f} {figures['p50_ms']:8.1f} {figures['p95_ms']:8.1f}  "
            f"{figures['statuses']}"
        )
    ratio = results["2 instances"]["calls_per_s"] / max(results["1 instance"]["calls_per_s"], 1e-9)
    print(f"ratio 2 / 1 instances: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
