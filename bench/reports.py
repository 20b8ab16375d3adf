"""What reading venous duplex report text costs a call (`make bench` prints it; `python -m bench.reports` alone).

Two figures, in-process, on one core:

* the reader alone: narrative extraction (HTML) and the medspaCy pipeline, per report, with every report text
  different so the per-worker cache cannot answer (and, beside it, what a cached report costs);
* what a report adds to a call: the clinical core (facts + assessment) for the typical bench record whose
  ultrasound is a narrative report, minus the same record with the coded ultrasound — medians over varied reports.

Target (issue "read the record as EHRs write it"): a typical report adds ≤ 5 ms to a call.
"""

from __future__ import annotations

import base64
import copy
import statistics
import time
from datetime import datetime, timedelta
from typing import Any

from bench import payloads
from cds_service.clinical.assessment import assess
from cds_service.clinical.config import RuleConfig
from cds_service.clinical.facts import build_facts
from cds_service.clinical.reports import reader
from cds_service.clinical.reports.narrative import report_narrative
from cds_service.fhir.record import PatientRecord

TARGET_MS = 5.0
_VEINS = ("gastrocnemius", "soleal", "peroneal", "posterior tibial")
_SIDES = ("left", "right")


def report_text(i: int) -> str:
    """A typical complete venous duplex report (~1.2 kB), different for every ``i``."""
    vein, side = _VEINS[i % len(_VEINS)], _SIDES[(i // len(_VEINS)) % 2]
    other = "right" if side == "left" else "left"
    length = 2.0 + (i % 37) / 10
    return (
        f"EXAM: US VENOUS DUPLEX BILATERAL LOWER EXTREMITIES (accession {100000 + i})\n"
        f"INDICATION: {side.capitalize()} calf pain and swelling for 3 days, rule out DVT.\n"
        "COMPARISON: None.\n"
        "TECHNIQUE: Grayscale, color and spectral Doppler with compression of the deep veins of both legs.\n"
        "FINDINGS:\n"
        f"{other.upper()}: The common femoral, femoral, popliteal, posterior tibial and peroneal veins are fully "
        "compressible with normal color flow and augmentation. No thrombus.\n"
        f"{side.upper()}: The common femoral, femoral and popliteal veins are fully compressible with normal "
        f"phasic flow. There is nonocclusive thrombus in the {side} {vein} vein, measuring {length:.1f} cm in "
        f"length and {4 + i % 4} mm in diameter, approximately {8 + i % 5} cm below the popliteal vein. "
        "The remaining calf veins are compressible. The great saphenous vein is patent.\n"
        f"IMPRESSION:\n1. Acute nonocclusive deep vein thrombosis of the {side} {vein} vein.\n"
        f"2. No DVT in the {other} lower extremity.\n"
    )


def html_report(i: int, when: str, patient_id: str) -> dict[str, Any]:
    lines = "".join(f"<p>{line}</p>" for line in report_text(i).splitlines())
    return {
        "resourceType": "DiagnosticReport",
        "id": f"bench-report-{i}",
        "status": "final",
        "subject": {"reference": f"Patient/{patient_id}"},
        "code": {"text": "US Venous Doppler Lower Extremity Bilateral"},
        "effectiveDateTime": when,
        "presentedForm": [
            {
                "contentType": "text/html",
                "data": base64.b64encode(f"<html><body>{lines}</body></html>".encode()).decode(),
            }
        ],
    }


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def measure(n: int = 200) -> dict[str, float]:
    reader.read_report(report_text(-1))  # the pipeline is built once per worker, at start (warm-up)
    uncached = reader._read_cached.__wrapped__  # the reader without its per-worker cache
    reader_alone, narrative_and_reader, cached = [], [], []
    for i in range(n):
        text = report_text(i)
        started = time.perf_counter()
        uncached(text)
        reader_alone.append(time.perf_counter() - started)
        form = html_report(n + i, "2026-01-01", "p")
        started = time.perf_counter()
        uncached(report_narrative(form, {}).text)
        narrative_and_reader.append(time.perf_counter() - started)
        reader.read_report(text)
        started = time.perf_counter()
        reader.read_report(text)
        cached.append(time.perf_counter() - started)

    now = payloads.bench_now()
    today = now.date()
    when = (now - timedelta(days=2)).isoformat(timespec="seconds")
    coded = payloads.record(payloads.TYPICAL, now)
    without_us = [r for r in coded if r.get("id") != "bench-us"]
    config = RuleConfig()

    def call(resources: list[dict[str, Any]]) -> float:
        record = PatientRecord(patient_id=payloads.TYPICAL)
        record.add(copy.deepcopy(resources))
        started = time.perf_counter()
        assess(build_facts(record.finish(), today=today, config=config), today=today, config=config)
        return time.perf_counter() - started

    for _ in range(20):
        call(coded)
    with_coded, with_text = [], []
    for i in range(n):
        with_coded.append(call(coded))
        with_text.append(call([*without_us, html_report(2 * n + i, when, payloads.TYPICAL)]))
    return {
        "reader_ms": _median_ms(reader_alone),
        "html_and_reader_ms": _median_ms(narrative_and_reader),
        "cached_ms": _median_ms(cached),
        "call_coded_ms": _median_ms(with_coded),
        "call_text_ms": _median_ms(with_text),
        "added_ms": _median_ms(with_text) - _median_ms(with_coded),
        "report_chars": float(len(report_text(0))),
    }


def print_report(figures: dict[str, float]) -> None:
    print(
        f"Report reader (in-process, one core, {figures['report_chars']:.0f}-character reports, all different):\n"
        f"  medspaCy reading alone        {figures['reader_ms']:6.2f} ms per report (median)\n"
        f"  HTML to text + reading        {figures['html_and_reader_ms']:6.2f} ms per report\n"
        f"  the same report again         {figures['cached_ms']:6.3f} ms (per-worker cache)\n"
        f"  clinical core, coded study    {figures['call_coded_ms']:6.2f} ms per call (typical record)\n"
        f"  clinical core, report text    {figures['call_text_ms']:6.2f} ms per call\n"
        f"  {'met ' if figures['added_ms'] <= TARGET_MS else 'MISS'}  a typical report adds ≤ {TARGET_MS:g} ms "
        f"to a call: {figures['added_ms']:.2f} ms\n"
    )


if __name__ == "__main__":
    print_report(measure())
    print(f"(measured {datetime.now().astimezone():%Y-%m-%d %H:%M})")
