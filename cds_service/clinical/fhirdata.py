"""Small readers over raw FHIR R4 JSON (resources already validated by the record).

Dates in FHIR may be partial (``2026``, ``2026-11``): a partial date reads as its first day, which errs on
the side of "older" for recency windows. Times are converted to UTC dates.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def listed(element: Any, key: str) -> list[Any]:
    """``element[key]`` as a list, whatever the client sent: absent or null → []; a single object where R4 has a
    list (the CDS Hooks sandbox sends ``category`` so) → [it]; anything else → []. Read every repeating element of
    client data through this: ``.get(key, [])`` returns None for an explicit null."""
    if not isinstance(element, dict):
        return []
    value = element.get(key)
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, dict) else []


def reference_of(resource: dict[str, Any]) -> str:
    kind = resource.get("resourceType", "Resource")
    rid = resource.get("id")
    return f"{kind}/{rid}" if isinstance(rid, str) else f"{kind} (no id)"


def parse_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    if "T" in value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed.astimezone(UTC).date() if parsed.tzinfo else parsed.date()
    match = _DATE.match(value)
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2) or 1), int(match.group(3) or 1))
    except ValueError:
        return None


def period_start(period: Any) -> date | None:
    return parse_date(period.get("start")) if isinstance(period, dict) else None


def period_end(period: Any) -> date | None:
    return parse_date(period.get("end")) if isinstance(period, dict) else None


def concept_codes(concept: Any) -> list[str]:
    if not isinstance(concept, dict):
        return []
    return [c["code"] for c in listed(concept, "coding") if isinstance(c, dict) and isinstance(c.get("code"), str)]


def concept_text(concept: Any) -> str:
    """Human words for a CodeableConcept: its text, else the first display, else its first code."""
    if not isinstance(concept, dict):
        return ""
    if isinstance(concept.get("text"), str) and concept["text"].strip():
        return concept["text"].strip()
    for coding in listed(concept, "coding"):
        if isinstance(coding, dict) and isinstance(coding.get("display"), str):
            return coding["display"].strip()
    codes = concept_codes(concept)
    return codes[0] if codes else ""


def status_code(resource: dict[str, Any], element: str) -> str | None:
    """Condition.clinicalStatus / verificationStatus code (any system: EHRs vary)."""
    concept = resource.get(element)
    codes = concept_codes(concept)
    return codes[0].lower() if codes else None


def condition_onset(condition: dict[str, Any]) -> date | None:
    return (
        parse_date(condition.get("onsetDateTime"))
        or period_start(condition.get("onsetPeriod"))
        or parse_date(condition.get("recordedDate"))
    )


def condition_abatement(condition: dict[str, Any]) -> date | None:
    return parse_date(condition.get("abatementDateTime")) or period_end(condition.get("abatementPeriod"))


def observation_date(observation: dict[str, Any]) -> date | None:
    return (
        parse_date(observation.get("effectiveDateTime"))
        or period_start(observation.get("effectivePeriod"))
        or parse_date(observation.get("effectiveInstant"))
        or parse_date(observation.get("issued"))
    )


def procedure_date(procedure: dict[str, Any]) -> date | None:
    return (
        parse_date(procedure.get("performedDateTime"))
        or period_end(procedure.get("performedPeriod"))
        or period_start(procedure.get("performedPeriod"))
    )


def age_on(birth_date: date, on: date) -> int:
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))
