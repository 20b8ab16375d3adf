"""Starting what the bench measures: gunicorn under the service's own configuration file, on loopback, with its own
database and metrics directory, with or without JWT; and stopping it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
DEV_ISSUER = ROOT / "deploy" / "dev-issuer"
ISS = "urn:distal-dvt-cds:dev-issuer"
KID = "dev-1"
SIGNER = (str(DEV_ISSUER / "private-key.pem"), ISS, KID)  # the key the load generator signs each call's JWT with


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def start_gunicorn(
    app: str,
    port: int,
    workdir: Path,
    workers: int,
    threads: int,
    *,
    jwt: bool = False,
    extra: dict[str, str] | None = None,
    root: Path = ROOT,
) -> subprocess.Popen:
    """``app`` (module:callable) under ``python:cds_service.gunicorn_conf``, the configuration production runs.

    ``root``: the source tree to run it from (the bench's own, or an older revision's for a before/after figure)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVT_CDS_")}
    name = f"{port}"
    (workdir / f"metrics-{name}").mkdir()
    env.update(
        {
            "PYTHONPATH": str(root),
            "DVT_CDS_HOST": "127.0.0.1",
            "DVT_CDS_PORT": str(port),
            "DVT_CDS_PUBLIC_BASE_URL": base_url(port),
            "DVT_CDS_AUTH": "jwt" if jwt else "off",
            "DVT_CDS_WORKERS": str(workers),
            "DVT_CDS_THREADS": str(threads),
            "DVT_CDS_DATABASE_URL": f"sqlite:///{workdir / f'bench-{name}.sqlite3'}",
            "DVT_CDS_METRICS_DIR": str(workdir / f"metrics-{name}"),
            "DVT_CDS_LOG_LEVEL": "INFO",
        }
    )
    if jwt:
        jwks = json.loads((DEV_ISSUER / "jwks.json").read_text())
        env["DVT_CDS_TRUSTED_ISSUERS"] = json.dumps([{"iss": ISS, "jwks": jwks, "name": "bench"}])
    env.update(extra or {})
    if (root / "cds_service" / "dbcommands.py").exists():
        # The service refuses a database whose schema is behind: bring it up as an operator would.
        upgrade = [sys.executable, "-m", "cds_service.cli", "db", "upgrade"]
        subprocess.run(upgrade, env=env, check=True, capture_output=True, cwd=root)
    log = (workdir / f"gunicorn-{name}.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "python:cds_service.gunicorn_conf", app],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    return wait_healthy(process, port, f"{app} did not start: see {workdir}")


def wait_healthy(process: subprocess.Popen, port: int, failure: str) -> subprocess.Popen:
    """``process`` once its /healthz answers 200 (at most a minute), else killed and the bench stops."""
    for _ in range(600):
        try:
            if requests.get(f"{base_url(port)}/healthz", timeout=1).status_code == 200:
                return process
        except requests.RequestException:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(failure)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
