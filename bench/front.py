"""What the production front costs (`make bench` prints it; `python -m bench.front` alone).

`dvt-cds serve --production` puts nginx in front of gunicorn so slow and silent clients cannot hold gunicorn's
threads (cds_service/front/). This measures its price: the same gunicorn (workers × threads, same settings) once
answering clients directly and once behind the front, driven alternately by the same clients in another process,
typical record, patient-view, 8 clients. The figure is the median over rounds of each one's throughput, and
their ratio; the target is that the front keeps at least 90 % of the direct throughput.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench import payloads
from bench.load import drive, summarize
from bench.servers import wait_healthy

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 0.90
CLIENTS = 8


def _env(port: int, workdir: Path, workers: int, threads: int, name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVT_CDS_")}
    metrics = workdir / f"metrics-{name}"
    metrics.mkdir()
    env.update(
        {
            "DVT_CDS_HOST": "127.0.0.1",
            "DVT_CDS_PORT": str(port),
            "DVT_CDS_AUTH": "off",
            "DVT_CDS_WORKERS": str(workers),
            "DVT_CDS_THREADS": str(threads),
            "DVT_CDS_DATABASE_URL": f"sqlite:///{workdir / f'{name}.sqlite3'}",
            "DVT_CDS_METRICS_DIR": str(metrics),
        }
    )
    return env


def _start(command: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    subprocess.run(  # the service refuses a database whose schema is behind: bring it up as an operator would
        [str(Path(sys.executable).parent / "dvt-cds"), "db", "upgrade"], env=env, check=True, capture_output=True
    )
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    return wait_healthy(process, port, f"{command[-1]} did not start: see {log}")


def measure(workers: int = 2, threads: int = 8, seconds: float = 3.0, rounds: int = 3) -> dict[str, float]:
    from bench.servers import free_port

    workdir = Path(tempfile.mkdtemp(prefix="dvt-cds-bench-front-"))
    now = payloads.bench_now()
    direct_port, front_port = free_port(), free_port()
    gunicorn = [sys.executable, "-m", "gunicorn", "--config", "python:cds_service.gunicorn_conf"]
    direct = _start(
        [*gunicorn, "cds_service.wsgi:application"],
        _env(direct_port, workdir, workers, threads, "direct"),
        direct_port,
        workdir / "direct.log",
    )
    front = _start(
        [str(Path(sys.executable).parent / "dvt-cds"), "serve", "--production"],
        _env(front_port, workdir, workers, threads, "front"),
        front_port,
        workdir / "front.log",
    )
    try:
        service = requests.get(f"http://127.0.0.1:{direct_port}/cds-services", timeout=5).json()["services"][0]
        body = workdir / "body.json"  # bench/load.py gives each request its own hookInstance
        body.write_text(
            json.dumps(
                payloads.hook_request(
                    service, payloads.record(payloads.TYPICAL, now), payloads.TYPICAL, now, prefetch=True
                )
            )
        )
        path = f"/cds-services/{service['id']}"
        runs: dict[str, list[dict[str, float]]] = {"direct": [], "front": []}
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as loader:
            for _ in range(rounds):  # interleaved: drift in the machine hits both alike
                for name, port in (("direct", direct_port), ("front", front_port)):
                    result = loader.submit(drive, port, path, [body], CLIENTS, seconds, 0.5).result()
                    runs[name].append(summarize(result))
    finally:
        for process in (front, direct):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    figures = {
        f"{name}_{key}": statistics.median(run[key] for run in runs[name])
        for name in runs
        for key in ("rps", "p50", "p99")
    }
    figures["errors"] = sum(run["errors"] for name in runs for run in runs[name])
    figures["ratio"] = figures["front_rps"] / figures["direct_rps"] if figures["direct_rps"] else float("nan")
    return figures


def print_report(figures: dict[str, Any]) -> None:
    print(
        f"Production front (nginx → gunicorn), typical record, patient-view, {CLIENTS} clients, medians over rounds:\n"
        f"  direct: {figures['direct_rps']:.1f} req/s, p50 {figures['direct_p50']:.1f} ms, "
        f"p99 {figures['direct_p99']:.1f} ms\n"
        f"  front:  {figures['front_rps']:.1f} req/s, p50 {figures['front_p50']:.1f} ms, "
        f"p99 {figures['front_p99']:.1f} ms\n"
        f"  throughput behind the front: {figures['ratio']:.2f} × direct (target ≥ {TARGET_RATIO:.2f})"
        + (f"; {figures['errors']:.0f} errors" if figures["errors"] else "")
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    print_report(measure(args.workers, args.threads, args.seconds, args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
