"""Where a call's CPU goes, per stage, under the production server (`make bench` prints it).

gunicorn runs ``bench.stages:application``: the service's own WSGI module (``cds_service.wsgi``: the same settings,
app and GC tuning) with each stage's functions wrapped to add the thread CPU time they spend, exclusive of the
stages nested in them (the report reader inside the facts, the metrics inside the audit...). Each worker writes its
totals to ``BENCH_STAGES_DIR`` every few calls. The bench drives it like the service, reads the process CPU
from /proc around the run, and prints per call: each stage, the rest of the request (Flask, werkzeug, glue), and
what the process spends outside requests (gunicorn's HTTP parsing, the outbox mover, other threads).
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_totals: dict[str, float] = {}
_calls = [0]
_local = threading.local()
_lock = threading.Lock()
_DUMP_EVERY = 50
STAGES = (
    "JWT",
    "body read",
    "JSON read",
    "request validation",
    "record",
    "lean screen",
    "facts",
    "reports",
    "assessment",
    "cards",
    "shaping",
    "answer JSON",
    "audit outbox submit",
    "metrics",
    "log line",
)


def _timed(stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` adding its thread CPU to ``stage``, minus what stages nested in it spent."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        stack = getattr(_local, "stack", None)
        if stack is None:
            stack = _local.stack = []
        began = time.thread_time()
        stack.append(0.0)  # CPU of nested stages, subtracted from this one
        try:
            return function(*args, **kwargs)
        finally:
            spent = time.thread_time() - began
            nested = stack.pop()
            if stack:
                stack[-1] += spent
            with _lock:
                _totals[stage] = _totals.get(stage, 0.0) + spent - nested

    return wrapper


def _patch(owner: Any, name: str, stage: str) -> None:
    timed = _timed(stage, getattr(owner, name))
    static = isinstance(owner, type) and isinstance(owner.__dict__.get(name), staticmethod)
    setattr(owner, name, staticmethod(timed) if static else timed)


def _request(function: Callable[..., Any]) -> Callable[..., Any]:
    """The whole WSGI call of a hook invocation: its CPU is the request's total, stages included."""

    @functools.wraps(function)
    def wrapper(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") != "POST":
            return function(environ, start_response)
        began = time.thread_time()
        try:
            return function(environ, start_response)
        finally:
            spent = time.thread_time() - began
            with _lock:
                _totals["request"] = _totals.get("request", 0.0) + spent
                _calls[0] += 1
                due = _calls[0] % _DUMP_EVERY == 0
            if due:
                dump()

    return wrapper


def dump() -> None:
    directory = os.environ.get("BENCH_STAGES_DIR")
    if not directory:
        return
    with _lock:
        snapshot = {"calls": _calls[0], "cpu_s": dict(_totals)}
    path = Path(directory) / f"{os.getpid()}.json"
    path.with_suffix(".tmp").write_text(json.dumps(snapshot))
    path.with_suffix(".tmp").replace(path)


def _install() -> Any:
    # Before the app is built: the services copy their handlers when the app makes them (hooks.site_services).
    import prometheus_client.metrics as prom

    import hooks
    from cds_service import app as app_module
    from cds_service import pipeline
    from cds_service.audit import AuditWriter
    from cds_service.clinical import thrombosis
    from cds_service.fhir.conceptmaps import SiteConceptMaps
    from cds_service.fhir.prefetch import PrefetchResolver
    from cds_service.profiles.base import Profile
    from cds_service.protocol import CdsResponse
    from cds_service.security import ClientAuthenticator
    from hooks import common

    _patch(ClientAuthenticator, "authenticate", "JWT")
    _patch(app_module, "_body_bytes", "body read")
    _patch(app_module, "read_json", "JSON read")
    _patch(pipeline.CallPipeline, "_parse", "request validation")
    _patch(pipeline.CallPipeline, "_context", "request validation")
    _patch(PrefetchResolver, "resolve", "record")
    _patch(SiteConceptMaps, "apply_record", "record")
    _patch(pipeline, "read_followups", "record")
    _patch(pipeline, "dvt_in_view", "lean screen")
    _patch(common, "build_facts", "facts")
    _patch(thrombosis, "read_text_findings", "reports")
    _patch(common, "assess", "assessment")
    for service in hooks.SERVICES:
        object.__setattr__(service, "handler", _timed("cards", service.handler))
    _patch(Profile, "shape", "shaping")
    _patch(CdsResponse, "to_json", "answer JSON")
    _patch(app_module.OrjsonProvider, "response", "answer JSON")
    _patch(AuditWriter, "submit", "audit outbox submit")
    updates = {prom.Counter: ("inc",), prom.Histogram: ("observe",), prom.Gauge: ("set", "inc", "dec")}
    for kind, methods in updates.items():
        for method in (*methods, "labels"):
            _patch(kind, method, "metrics")
    _patch(pipeline, "log_fields", "log line")
    _patch(app_module, "log_fields", "log line")

    from cds_service import wsgi  # the service's own WSGI module: settings, app, GC tuning

    wsgi.application.wsgi_app = _request(wsgi.application.wsgi_app)  # type: ignore[method-assign]
    atexit.register(dump)  # a worker stopping writes its last calls too
    with _lock:
        _totals.clear()  # what building the app and its warm-up (the report reader's pipeline) cost is no call's
    return wsgi.application


if os.environ.get("BENCH_STAGES_DIR"):
    application = _install()


def read(directory: Path) -> tuple[int, dict[str, float]]:
    """Calls and CPU seconds per stage, summed over the workers' last dumps."""
    calls, totals = 0, {}
    for path in directory.glob("*.json"):
        data = json.loads(path.read_text())
        calls += data["calls"]
        for stage, seconds in data["cpu_s"].items():
            totals[stage] = totals.get(stage, 0.0) + seconds
    return calls, totals


def per_call(calls: int, totals: dict[str, float], process_ms: float) -> dict[str, float]:
    """ms per call: each stage, the rest of the request, and what the process spent outside requests."""
    if not calls:
        return {}
    figures = {stage: round(totals.get(stage, 0.0) * 1000 / calls, 3) for stage in STAGES if stage in totals}
    request_ms = totals.get("request", 0.0) * 1000 / calls
    figures["rest of the request (Flask, werkzeug, glue)"] = round(request_ms - sum(figures.values()), 3)
    figures["outside requests (gunicorn's HTTP, background threads)"] = round(process_ms - request_ms, 3)
    figures["total (process CPU from /proc)"] = round(process_ms, 3)
    return figures
