"""What speaking an EHR's dialect costs a call (`make bench` prints it; `python -m bench.profiles` alone).

In-process, one core: every call of every fixture scenario that needs no FHIR server, posted to three apps that
differ only in DVT_CDS_EHR_PROFILE (hl7, epic, oracle). Rounds interleave the profiles so drift in the machine hits
all three alike; the figure is the median, over rounds, of the time to answer the whole set, and its ratio to hl7.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from cds_service.app import create_app
from cds_service.replay.runner import Runner
from cds_service.replay.scenarios import Library
from cds_service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ("hl7", "epic", "oracle")
TARGET_ADDED_MS = 0.5  # what shaping a call's cards for an EHR may add: a fraction of the ~500 ms the spec allows


def _calls(library: Library, app: Any) -> list[tuple[str, dict[str, Any]]]:
    client = app.test_client()
    discovery = client.get("/cds-services").get_json()
    runner = Runner(library, post=lambda *_: (0, None), discovery=discovery, now=library.anchor)
    return [
        (call.service_id, runner.request(scenario, call))
        for scenario in library.scenarios
        if not library.needs_fhir_server(scenario)
        for call in scenario.calls
        if call.expect.status == 200
    ]


def measure(rounds: int = 15) -> dict[str, float]:
    logging.disable(logging.WARNING)  # one warning per call with authentication off would dominate the figure
    library = Library(ROOT / "fhir_fixtures")
    folder = Path(tempfile.mkdtemp(prefix="dvt-cds-bench-profiles-"))
    apps = {
        name: create_app(
            Settings(auth="off", database_url=f"sqlite:///{folder / name}.sqlite3", ehr_profile=name),
            clock=lambda: library.anchor,
        )
        for name in PROFILES
    }
    calls = _calls(library, apps["hl7"])
    clients = {name: app.test_client() for name, app in apps.items()}
    times: dict[str, list[float]] = {name: [] for name in PROFILES}
    for round_number in range(rounds + 2):
        for name in PROFILES:
            started = time.perf_counter()
            for service_id, body in calls:
                response = clients[name].post(f"/cds-services/{service_id}", json=body)
                assert response.status_code == 200, (name, service_id)
            if round_number >= 2:  # two warm-up rounds
                times[name].append((time.perf_counter() - started) * 1000 / len(calls))
    logging.disable(logging.NOTSET)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "calls": float(len(calls)),
        **{f"{name}_ms": medians[name] for name in PROFILES},
        **{f"{name}_ratio": medians[name] / medians["hl7"] for name in PROFILES if name != "hl7"},
        "added_ms": max(medians["epic"], medians["oracle"]) - medians["hl7"],
    }


def print_report(figures: dict[str, float]) -> None:
    print(
        f"EHR profiles (in-process, one core, {figures['calls']:.0f} scenario calls per round, median per call):\n"
        f"  hl7     {figures['hl7_ms']:6.2f} ms\n"
        f"  epic    {figures['epic_ms']:6.2f} ms   {figures['epic_ratio']:.3f} × hl7\n"
        f"  oracle  {figures['oracle_ms']:6.2f} ms   {figures['oracle_ratio']:.3f} × hl7\n"
        f"  {'met ' if figures['added_ms'] <= TARGET_ADDED_MS else 'MISS'}  a profile adds ≤ {TARGET_ADDED_MS:g} ms "
        f"to a call: {figures['added_ms']:.2f} ms\n"
    )


if __name__ == "__main__":
    print_report(measure())
    print(f"(measured {datetime.now().astimezone():%Y-%m-%d %H:%M})")
