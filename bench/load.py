"""The load generator: concurrent keep-alive clients in their own process, timing every request."""

from __future__ import annotations

import http.client
import threading
import time
from typing import Any


def drive(port: int, path: str, body: bytes, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    """Post ``body`` to ``path`` from ``concurrency`` clients for ``warmup + seconds``; time the last ``seconds``."""
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        codes: dict[int, int] = {}
        while True:
            began = time.perf_counter()
            if began >= stop_at:
                break
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status = 0
            ended = time.perf_counter()
            if began >= measure_from and ended <= stop_at:
                mine.append((ended - began) * 1000)
                codes[status] = codes.get(status, 0) + 1
        connection.close()
        with lock:
            latencies.extend(mine)
            for code, n in codes.items():
                statuses[code] = statuses.get(code, 0) + n

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies_ms": latencies, "statuses": statuses, "seconds": seconds}


def summarize(result: dict[str, Any]) -> dict[str, float]:
    values = sorted(result["latencies_ms"])
    if not values:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "rps": 0.0, "errors": 0}

    def pct(q: float) -> float:
        return values[min(len(values) - 1, round(q * (len(values) - 1)))]

    ok = result["statuses"].get(200, 0)
    return {
        "n": len(values),
        "p50": round(pct(0.50), 2),
        "p95": round(pct(0.95), 2),
        "p99": round(pct(0.99), 2),
        "rps": round(len(values) / result["seconds"], 1),
        "errors": len(values) - ok,
    }
