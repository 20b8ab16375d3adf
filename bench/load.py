"""The load generator: concurrent keep-alive clients in their own process, timing every request.

No two requests are the same: each client walks the run's bodies (patients with their own ids and dates) and puts
a fresh ``hookInstance`` in each, and with JWT on each request carries its own token (signed before the clock
starts: signing is the EHR's work, not the service's). The server's CPU (user + system of the gunicorn master and
its workers, from /proc) is read at the start and the end of the measured window.
"""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.procstat import cpu_seconds, descendants
from cds_service.replay.signing import Signer

PLACEHOLDER = "00000000-0000-4000-8000-00000000b0d1"  # the hookInstance each request replaces with its own


def split_body(raw: bytes) -> tuple[bytes, bytes]:
    prefix, found, suffix = raw.partition(PLACEHOLDER.encode())
    if not found:
        raise ValueError("the body has no hookInstance placeholder")
    return prefix, suffix


def drive(
    port: int,
    path: str,
    bodies: list[Path],
    concurrency: int,
    seconds: float,
    warmup: float,
    *,
    server_pid: int | None = None,
    signer: tuple[str, str, str] | None = None,
    tokens_hint: int = 0,
    audience: str = "",
) -> dict[str, Any]:
    """Post to ``path`` from ``concurrency`` clients for ``warmup + seconds``; time the last ``seconds``.

    ``signer`` (key file, iss, kid): JWT on, a token per request for ``audience + path``; ``tokens_hint`` of them
    signed before the clock starts."""
    parts = [split_body(p.read_bytes()) for p in bodies]
    sign: Callable[[str], str] | None = None
    if signer is not None:
        key, iss, kid = signer
        sign = Signer(Path(key), iss=iss, kid=kid).header  # "Bearer <token>"
    tokens: list[str] = [sign(audience + path) for _ in range(tokens_hint)] if sign else []
    token_lock = threading.Lock()
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    completed = [0]
    lock = threading.Lock()
    cpu: dict[str, float] = {}

    def next_token() -> str | None:
        if sign is None:
            return None
        with token_lock:
            if tokens:
                return tokens.pop()
        return sign(audience + path)  # the pool ran out: sign now (counted as the client's time, not the server's)

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[float] = []
        codes: dict[int, int] = {}
        done = 0
        turn = index
        while True:
            prefix, suffix = parts[turn % len(parts)]
            turn += 1
            instance = str(uuid.uuid4()).encode()
            headers = {
                "Content-Type": "application/json",
                "Connection": "keep-alive",
                "Content-Length": str(len(prefix) + len(instance) + len(suffix)),
            }
            token = next_token()
            if token:
                headers["Authorization"] = token
            began = time.perf_counter()
            if began >= stop_at:
                break
            try:
                connection.request("POST", path, body=iter((prefix, instance, suffix)), headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                status = 0
            ended = time.perf_counter()
            if began >= measure_from and ended <= stop_at:
                mine.append((ended - began) * 1000)
                codes[status] = codes.get(status, 0) + 1
            if measure_from <= ended <= stop_at:
                done += 1
        connection.close()
        with lock:
            latencies.extend(mine)
            completed[0] += done
            for code, n in codes.items():
                statuses[code] = statuses.get(code, 0) + n

    def server_cpu() -> None:
        if server_pid is None:
            return
        pids = descendants(server_pid)
        time.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu["start"] = cpu_seconds(pids)
        time.sleep(max(0.0, stop_at - time.perf_counter()))
        cpu["end"] = cpu_seconds(pids)

    meter = threading.Thread(target=server_cpu)
    meter.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    meter.join()
    return {
        "latencies_ms": latencies,
        "statuses": statuses,
        "seconds": seconds,
        "completed": completed[0],
        "cpu_s": cpu["end"] - cpu["start"] if "end" in cpu else None,
    }


def summarize(result: dict[str, Any]) -> dict[str, float]:
    values = sorted(result["latencies_ms"])
    if not values:
        nan = float("nan")
        return {"n": 0, "p50": nan, "p95": nan, "p99": nan, "rps": 0.0, "errors": 0, "cpu_ms": nan}

    def pct(q: float) -> float:
        return values[min(len(values) - 1, round(q * (len(values) - 1)))]

    ok = result["statuses"].get(200, 0)
    cpu_s, completed = result.get("cpu_s"), result.get("completed") or 0
    return {
        "n": len(values),
        "p50": round(pct(0.50), 2),
        "p95": round(pct(0.95), 2),
        "p99": round(pct(0.99), 2),
        "rps": round(len(values) / result["seconds"], 1),
        "errors": len(values) - ok,
        "cpu_ms": round(cpu_s * 1000 / completed, 3) if cpu_s is not None and completed else float("nan"),
    }
