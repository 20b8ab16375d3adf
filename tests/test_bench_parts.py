"""The bench's own parts that decide what it reports: varied patients, a fresh hookInstance per request, CPU from
/proc, exclusive stage times, the floor under the service's GC settings. (The figures are `make bench`'s.)"""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path

from bench import payloads, stages
from bench.load import PLACEHOLDER, split_body
from bench.procstat import cpu_seconds, descendants
from cds_service import gc_tuning


def test_a_variant_is_another_patient_with_its_own_ids_and_dates() -> None:
    now = payloads.bench_now()
    record = payloads.record(payloads.TYPICAL, now)
    varied, patient_id = payloads.variant(record, payloads.TYPICAL, 2)
    assert patient_id == f"{payloads.TYPICAL}-v2"
    assert len(varied) == len(record)
    assert {r["id"] for r in varied}.isdisjoint({r["id"] for r in record})
    subjects = {r["subject"]["reference"] for r in varied if isinstance(r.get("subject"), dict)}
    assert subjects == {f"Patient/{patient_id}"}
    dvt = next(r for r in varied if r["id"].startswith("bench-dvt"))
    original = next(r for r in record if r["id"].startswith("bench-dvt"))
    assert dvt["onsetDateTime"] < original["onsetDateTime"]  # two days earlier
    assert payloads.variant(record, payloads.TYPICAL, 0) == (record, payloads.TYPICAL)


def test_each_request_gets_its_own_hook_instance() -> None:
    body = payloads.hook_request({"hook": "patient-view"}, [], "p", payloads.bench_now(), prefetch=False)
    assert body["hookInstance"] == PLACEHOLDER
    import orjson

    prefix, suffix = split_body(orjson.dumps(body))
    assert PLACEHOLDER.encode() not in prefix + suffix


def test_server_cpu_comes_from_proc_for_a_process_and_its_children() -> None:
    assert os.getpid() in descendants(os.getpid())
    before = cpu_seconds([os.getpid()])
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert cpu_seconds([os.getpid()]) > before


def test_a_stage_counts_its_own_time_not_what_nested_stages_spent() -> None:
    stages._totals.clear()

    def inner() -> None:
        deadline = time.thread_time() + 0.02
        while time.thread_time() < deadline:
            pass

    timed_inner = stages._timed("inner", inner)

    def outer() -> None:
        timed_inner()

    thread = threading.Thread(target=stages._timed("outer", outer))
    thread.start()
    thread.join()
    assert stages._totals["inner"] >= 0.02
    assert stages._totals["outer"] < stages._totals["inner"] / 2
    stages._totals.clear()


def test_per_call_figures_add_up_to_the_process_total() -> None:
    figures = stages.per_call(10, {"JWT": 0.01, "facts": 0.02, "request": 0.05}, process_ms=8.0)
    assert figures["JWT"] == 1.0
    assert figures["rest of the request (Flask, werkzeug, glue)"] == 2.0
    assert figures["outside requests (gunicorn's HTTP, background threads)"] == 3.0
    assert figures["total (process CPU from /proc)"] == 8.0


def test_the_floor_and_the_service_share_the_gc_settings() -> None:
    thresholds = gc.get_threshold()
    try:
        gc_tuning.tune()
        assert gc.get_threshold() == gc_tuning.THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    floor = (Path(payloads.__file__).parent / "floor.py").read_text()  # not imported: it tunes this process's GC
    assert "gc_tuning.tune()" in floor
    assert '"python:cds_service.gunicorn_conf"' in (Path(payloads.__file__).parent / "servers.py").read_text()
