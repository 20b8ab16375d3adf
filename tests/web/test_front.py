"""`dvt-cds serve --production` as operators run it: gunicorn behind the nginx front it starts and supervises.

Slow and silent clients cost the front a connection, never one of gunicorn's threads; overload is shed with 503
and Retry-After at once; the front's own errors are OperationOutcomes; draining shows on /readyz; a dead nginx is
restarted and a dead gunicorn stops the service. Loopback only, bounded loops.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import orjson
import pytest
import requests

from bench import payloads
from cds_service.front import supervisor
from cds_service.settings import Settings
from hooks import BY_ID
from tests.builders import condition, hook_request
from tests.processes import clean_env, dvt_cds, free_port

pytestmark = pytest.mark.e2e
PATIENT_VIEW = "/cds-services/distal-dvt-patient-view"


@contextmanager
def production(tmp_path: Path, **settings: str) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = free_port()
    env = clean_env(tmp_path, DVT_CDS_PORT=str(port), DVT_CDS_WORKERS="1", DVT_CDS_THREADS="2", **settings)
    log_path = tmp_path / "service.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([dvt_cds(), "serve", "--production"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("service did not start: " + log_path.read_text())
            time.sleep(0.1)
        yield base, process, log_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def processes() -> list[tuple[int, int, int, str]]:
    """(pid, parent pid, process group, command line) of every live process (a zombie is already gone: here
    init may never reap an orphan)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if fields[0] != "Z":
                found.append((int(entry.name), int(fields[1]), int(fields[2]), command))
    return found


def children(pid: int) -> list[tuple[int, str]]:
    return [(p, command) for p, parent, _, command in processes() if parent == pid]


def group(pgid: int) -> list[int]:
    return [p for p, _, g, _ in processes() if g == pgid]


def small_call() -> dict:
    return hook_request("patient-view", [condition("I82.452", onset=2)])


# --- slow and silent clients ----------------------------------------------------------------------------------------
def test_a_probe_is_answered_while_64_slowloris_and_64_silent_connections_hold(tmp_path: Path) -> None:
    """Before (gunicorn facing clients, 2 workers × 4 threads): with 8 trickling connections a probe was answered
    once in 30 s; with 64 silent ones, never. Here 1 worker × 2 threads, 128 hostile connections."""
    with production(tmp_path, DVT_CDS_CLIENT_TIMEOUT_S="3") as (base, _, _), ExitStack() as hostile:
        port = int(base.rsplit(":", 1)[1])
        trickling = []
        for _ in range(64):
            conn = hostile.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            conn.sendall(b"POST /cds-services/distal-dvt-patient-view HTTP/1.1\r\nHost: x\r\n")
            trickling.append(conn)
        for _ in range(64):
            hostile.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        for conn in trickling:
            conn.sendall(b"X-Slow: 1\r\n")
        waits = []
        for _ in range(5):
            started = time.monotonic()
            assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
            assert requests.post(base + PATIENT_VIEW, json=small_call(), timeout=5).status_code == 200
            waits.append(time.monotonic() - started)
        assert max(waits) < 1.0, waits
        # A client that never finishes its headers is dropped after DVT_CDS_CLIENT_TIMEOUT_S.
        trickling[0].settimeout(8)
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):  # reset_timedout_connection: the socket is freed at once
            assert trickling[0].recv(1024) == b""  # closed by the front, no answer sent
        assert time.monotonic() - started < 6


def test_the_fronts_own_errors_are_operation_outcomes(tmp_path: Path) -> None:
    with production(tmp_path, DVT_CDS_MAX_BODY_BYTES="4096") as (base, _, _):
        too_big = requests.post(
            base + PATIENT_VIEW, data=b"{" + b" " * 8000 + b"}", timeout=5, headers={"Content-Type": "application/json"}
        )
        assert too_big.status_code == 413
        assert too_big.json()["issue"][0]["code"] == "too-long"

        def chunks() -> Iterator[bytes]:
            yield b'{"a": "'
            for _ in range(4):
                yield b"x" * 2048
            yield b'"}'

        chunked = requests.post(
            base + PATIENT_VIEW, data=chunks(), timeout=5, headers={"Content-Type": "application/json"}
        )
        assert chunked.status_code == 413  # before: 400 "not valid JSON" (the body was cut at the limit)
        assert chunked.json()["resourceType"] == "OperationOutcome"
        ok = requests.post(base + PATIENT_VIEW, json=small_call(), timeout=5)
        assert ok.status_code == 200


# --- overload ---------------------------------------------------------------------------------------------------------
def test_overload_is_shed_with_503_at_once_and_every_answer_comes_in_time(tmp_path: Path) -> None:
    """128 clients, each sending a 2,768-resource record again as soon as it is answered (after Retry-After when
    shed), to 1 worker × 2 threads: far more than it can compute. Only 200 and 503 + Retry-After come back, none
    later than an EHR's 5 s timeout. Before (no admission control, same load): 182 of 278 answers were computed
    after 5 s, for clients that had given up; median 6.4 s."""
    now = payloads.bench_now()
    service = BY_ID["distal-dvt-patient-view"].descriptor().to_json()
    body = orjson.dumps(
        payloads.hook_request(service, payloads.record(payloads.LARGE, now), payloads.LARGE, now, prefetch=True)
    )
    with production(tmp_path, DVT_CDS_MAX_QUEUE_WAIT_S="0.5") as (base, _, _):
        stop_at = time.monotonic() + 8

        def client(_: int) -> list[tuple[int, float, str | None]]:
            seen = []
            with requests.Session() as session:
                while time.monotonic() < stop_at:
                    started = time.monotonic()
                    response = session.post(
                        base + PATIENT_VIEW, data=body, timeout=30, headers={"Content-Type": "application/json"}
                    )
                    seen.append((response.status_code, time.monotonic() - started, response.headers.get("Retry-After")))
                    if response.status_code == 503:
                        assert response.json()["resourceType"] == "OperationOutcome"
                        time.sleep(float(response.headers.get("Retry-After", "1")))  # as an EHR retrying would
            return seen

        with ThreadPoolExecutor(max_workers=128) as pool:
            answers = [a for seen in pool.map(client, range(128)) for a in seen]
        metrics = requests.get(f"{base}/metrics", timeout=5).text
    statuses = {status for status, _, _ in answers}
    assert statuses <= {200, 503}, statuses
    assert 200 in statuses
    assert 503 in statuses
    assert all(retry == "1" for status, _, retry in answers if status == 503)
    slowest = max(seconds for _, seconds, _ in answers)
    assert slowest < 5.0, slowest
    assert "dvt_cds_shed_total" in metrics


# --- supervision ------------------------------------------------------------------------------------------------------
def test_draining_shows_on_readyz_then_the_service_stops_cleanly(tmp_path: Path) -> None:
    with production(tmp_path, DVT_CDS_DRAIN_S="3") as (base, process, _):
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 503
        assert ready.json() == {"status": "not ready", "reason": "draining"}
        assert requests.post(base + PATIENT_VIEW, json=small_call(), timeout=5).status_code == 200  # still answers
        assert process.wait(timeout=40) == 0


def test_a_dead_nginx_is_restarted_and_a_dead_gunicorn_stops_the_service(tmp_path: Path) -> None:
    with production(tmp_path) as (base, process, log_path):
        nginx = [pid for pid, cmd in children(process.pid) if "nginx" in cmd]
        assert len(nginx) == 1
        assert len(group(nginx[0])) >= 2  # the master and its worker
        os.kill(nginx[0], signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            restarted = [pid for pid, cmd in children(process.pid) if "nginx" in cmd and pid != nginx[0]]
            if restarted:
                try:
                    if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
            time.sleep(0.1)
        else:
            pytest.fail("nginx was not restarted: " + log_path.read_text())
        assert group(nginx[0]) == []  # its orphaned worker went with it (else it keeps the port, and answers)
        gunicorn = [pid for pid, cmd in children(process.pid) if "gunicorn" in cmd]
        nginx = [pid for pid, cmd in children(process.pid) if "nginx" in cmd]
        os.kill(gunicorn[0], signal.SIGKILL)
        assert process.wait(timeout=40) != 0
        assert group(gunicorn[0]) == []
        assert group(nginx[0]) == []
        assert '"event": "gunicorn-exit"' in log_path.read_text()


def test_without_nginx_the_production_command_refuses_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(supervisor, "find_nginx", lambda: None)
    assert supervisor.serve_production(Settings(auth="off"), {}) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "nginx not found" in lines[0]
    assert "DVT_CDS_FRONT=none" in lines[0]
