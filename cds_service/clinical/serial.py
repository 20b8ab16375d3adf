"""Is repeat venous imaging arranged? (docs/clinical/RULES.md R-US-2)

Planned: an active or draft ServiceRequest for lower-extremity venous duplex due from the diagnosis up to
``IMAGING_PLANNED_WITHIN_DAYS`` ahead (an order without a date counts, and says so), or a repeat study already
performed after the diagnosing one that could be read and shows no extension (a repeat study showing extension is
the extension card's business; one that could not be read proves nothing, and the card says so).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from cds_service.clinical.fhirdata import concept_text, parse_date, period_start, reference_of
from cds_service.clinical.model import ImagingStudy, PlannedImaging, Side, SourceRef
from cds_service.clinical.thresholds import IMAGING_PLANNED_WITHIN_DAYS
from cds_service.clinical.thrombosis import legs_examined, side_from_concepts

_OPEN_ORDER = {"active", "draft", "on-hold"}
_ORDER_INTENTS = {"order", "plan", "original-order", "reflex-order", "filler-order", "instance-order", "proposal"}


def due_date(request: dict[str, Any]) -> date | None:
    timing = request.get("occurrenceTiming")
    events = timing.get("event") if isinstance(timing, dict) else None
    first_event = parse_date(events[0]) if isinstance(events, list) and events else None
    return parse_date(request.get("occurrenceDateTime")) or period_start(request.get("occurrencePeriod")) or first_event


def order_legs(request: dict[str, Any]) -> Side:
    legs = legs_examined(request.get("code"))
    if legs == Side.UNKNOWN and isinstance(request.get("bodySite"), list):
        legs = side_from_concepts(request["bodySite"])
    return legs


def planned_imaging(
    service_requests: list[dict[str, Any]],
    imaging: list[ImagingStudy],
    *,
    index: date,
    today: date,
    notes: list[str] | None = None,
) -> list[PlannedImaging]:
    planned = []
    horizon = today + timedelta(days=IMAGING_PLANNED_WITHIN_DAYS.int_value)
    for request in service_requests:
        if request.get("status") not in _OPEN_ORDER or request.get("intent", "order") not in _ORDER_INTENTS:
            continue
        due = due_date(request)
        if due is not None and not index <= due <= horizon:
            continue
        how = concept_text(request.get("code")) + ("" if due else "; no date on the order")
        planned.append(PlannedImaging(SourceRef(reference_of(request), due, how), due, order_legs(request)))
    diagnosing = next((s for s in imaging if any(t.acute for t in s.thromboses)), None)
    for study in imaging:
        if study is diagnosing or study.when is None or study.when <= index:
            continue
        if not study.readable:
            if notes is not None:
                notes.append(
                    f"{study.source.reference}: a repeat ultrasound of {study.when.isoformat()} could not be read, "
                    "so it was not counted as surveillance (check it for extension)"
                )
            continue
        if study.change == "extension":
            continue
        planned.append(PlannedImaging(study.source, study.when, study.legs_examined, done=True))
    return planned
