"""A FHIR search over a list of resources, for the query subset CDS Hooks prefetch templates may use.

Instance reads, and type searches with reference parameters (``patient``, ``subject``), token parameters with
equality on comma-separated lists (``code``, ``status``, ``category``, ``clinical-status``, ``_id``), date
parameters with the ``eq/lt/gt/ge/le`` prefixes over the searched date's range (a Period, a partial date) and
``:missing``, ``_sort`` on ``date``, ``_count``, and
``_include=MedicationRequest:medication`` (US Core; the included Medications follow the matches). Anything else
raises: a replay must not quietly answer a query it does not understand. Used by ``dvt-cds replay`` to fill
prefetch from a fixture, and by its embedded FHIR server.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote

from cds_service.clinical.fhirdata import (
    observation_date,
    parse_date,
    period_start,
    procedure_date,
)


class UnsupportedQuery(ValueError):
    pass


def _references(resource: dict[str, Any], fields: tuple[str, ...]) -> list[str]:
    found = []
    for name in fields:
        value = resource.get(name)
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            found.append(value["reference"])
    return found


def _reference_matches(references: list[str], wanted: str) -> bool:
    wanted = wanted if "/" in wanted else f"Patient/{wanted}"
    return any(ref == wanted or ref.endswith("/" + wanted) for ref in references)


def _tokens(value: Any) -> list[tuple[str | None, str]]:
    concepts = value if isinstance(value, list) else [value]
    found: list[tuple[str | None, str]] = []
    for concept in concepts:
        if isinstance(concept, dict):
            if "coding" in concept:
                for coding in concept.get("coding") or []:
                    if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                        found.append((coding.get("system"), coding["code"]))
            elif isinstance(concept.get("code"), str):  # a Coding (Encounter.class)
                found.append((concept.get("system"), concept["code"]))
        elif isinstance(concept, str):
            found.append((None, concept))
    return found


def _token_matches(candidates: list[tuple[str | None, str]], wanted: str) -> bool:
    for alternative in wanted.split(","):
        if "|" in alternative:
            system, code = alternative.split("|", 1)
            if any(c == code and (not system or s == system) for s, c in candidates):
                return True
        elif any(c == alternative for _, c in candidates):
            return True
    return False


def _date_of(resource: dict[str, Any]) -> str:
    kind = resource.get("resourceType")
    if kind in ("Observation", "DiagnosticReport"):
        value = observation_date(resource)
    elif kind == "Encounter":
        value = period_start(resource.get("period"))
    elif kind == "Procedure":
        value = procedure_date(resource)
    elif kind == "Condition":
        value = parse_date(resource.get("recordedDate")) or parse_date(resource.get("onsetDateTime"))
    elif kind == "MedicationRequest":
        value = parse_date(resource.get("authoredOn"))
    elif kind == "ServiceRequest":
        value = parse_date(resource.get("occurrenceDateTime")) or parse_date(resource.get("authoredOn"))
    else:
        value = None
    return value.isoformat() if value else ""


_TOKEN_PARAMS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "code": lambda r: (
        r.get("code") if r.get("resourceType") != "MedicationRequest" else r.get("medicationCodeableConcept")
    ),
    "status": lambda r: r.get("status"),
    "category": lambda r: r.get("category"),
    "clinical-status": lambda r: r.get("clinicalStatus"),
    "_id": lambda r: r.get("id"),
    "class": lambda r: r.get("class"),
}


_INCLUDES = {"MedicationRequest:medication": ("medicationReference", "Medication")}
_DATE_PREFIXES = ("eq", "ne", "lt", "gt", "ge", "le")


# What a server's ``date`` parameter searches, per type (FHIR R4 SearchParameter clinical-date): Observation's is
# effective[x], not ``issued``; a resource without it is what ``date:missing=true`` finds.
_DATE_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Observation": ("effectiveDateTime", "effectivePeriod", "effectiveInstant"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod"),
    "Encounter": ("period",),
    "Procedure": ("performedDateTime", "performedPeriod"),
}


def _value_range(value: Any) -> tuple[date, date] | None:
    """The days a date, a partial date or a dateTime covers (``2026-03`` is all of March)."""
    start = parse_date(value)
    if start is None:
        return None
    text = value if isinstance(value, str) else ""
    if len(text) == 4:
        return start, date(start.year, 12, 31)
    if len(text) == 7:
        following = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        return start, following - timedelta(days=1)
    return start, start


def _date_range(resource: dict[str, Any]) -> tuple[date, date] | None:
    """The days the resource's searched date covers: a Period runs from its start to its end, an open end is
    ongoing (FHIR date search compares ranges, so a stay that began before a bound and continues matches ``ge``)."""
    for element in _DATE_ELEMENTS.get(str(resource.get("resourceType")), ()):
        value = resource.get(element)
        if isinstance(value, dict):
            low, high = _value_range(value.get("start")), _value_range(value.get("end"))
            if low is None and high is None:
                continue
            return (low[0] if low else date.min), (high[1] if high else date.max)
        found = _value_range(value)
        if found is not None:
            return found
    return None


def _date_matches(resource: dict[str, Any], wanted: str, modifier: str) -> bool:
    span = _date_range(resource)
    if modifier == "missing":
        return (span is None) == (wanted == "true")
    if modifier:
        raise UnsupportedQuery(f"date:{modifier} not supported")
    prefix, bound = ("eq", wanted)
    if wanted[:2] in _DATE_PREFIXES and not wanted[:2].isdigit():
        prefix, bound = wanted[:2], wanted[2:]
    limit = _value_range(bound)
    if span is None or limit is None:
        return False
    (low, high), (first, last) = span, limit
    return {
        "eq": first <= low and high <= last,
        "ne": not (first <= low and high <= last),
        "lt": low < first,
        "gt": high > last,
        "ge": high >= first,
        "le": low <= last,
    }[prefix]


def _included(matches: list[dict[str, Any]], include: str, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if include not in _INCLUDES:
        raise UnsupportedQuery(f"_include={include} not supported")
    element, target = _INCLUDES[include]
    wanted = set()
    for resource in matches:
        ref = resource.get(element)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            wanted.add(ref["reference"].split("/_history")[0].split("/")[-1])
    return [r for r in resources if r.get("resourceType") == target and r.get("id") in wanted]


def search(query: str, resources: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]] | dict[str, Any] | None]:
    """Run one rendered template. Returns ("read", resource-or-None) or ("search", matches + included)."""
    path, _, raw_params = query.partition("?")
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if not raw_params and len(parts) == 2:
        kind, rid = parts
        found = next((r for r in resources if r.get("resourceType") == kind and r.get("id") == rid), None)
        return "read", found
    if len(parts) != 1:
        raise UnsupportedQuery(f"unsupported query path {path!r}")
    kind = parts[0]
    matches = [r for r in resources if r.get("resourceType") == kind]
    sort = None
    includes: list[str] = []
    for name, value in parse_qsl(raw_params, keep_blank_values=True):
        base = name.split(":", 1)[0]
        if base in ("patient", "subject"):
            matches = [r for r in matches if _reference_matches(_references(r, ("subject", "patient")), value)]
        elif base in _TOKEN_PARAMS:
            getter = _TOKEN_PARAMS[base]
            matches = [r for r in matches if _token_matches(_tokens(getter(r)), value)]
        elif base == "_sort":
            sort = value
        elif base == "date":
            modifier = name.partition(":")[2]
            matches = [r for r in matches if _date_matches(r, value, modifier)]
        elif base == "_include":
            includes.append(value)
        elif base == "_count":
            continue  # prefetch answers are complete; paging is the replay's prefetchShape
        else:
            raise UnsupportedQuery(f"search parameter {name!r} is not in the prefetch subset")
    if sort is not None:
        if sort.lstrip("-") != "date":
            raise UnsupportedQuery(f"_sort={sort} not supported")
        matches = sorted(matches, key=_date_of, reverse=sort.startswith("-"))
    included = [r for include in includes for r in _included(matches, include, resources)]
    return "search", matches + [r for r in included if r not in matches]


def searchset(
    matches: list[dict[str, Any]],
    *,
    base_url: str | None = None,
    next_url: str | None = None,
    total: int | None = None,
    primary_type: str | None = None,
) -> dict[str, Any]:
    """A searchset Bundle; resources of another type than ``primary_type`` are entries of mode ``include``."""

    def mode(resource: dict[str, Any]) -> str:
        return "include" if primary_type and resource.get("resourceType") != primary_type else "match"

    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": sum(1 for r in matches if mode(r) == "match") if total is None else total,
    }
    if matches:
        bundle["entry"] = [
            {
                **({"fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}"} if base_url and r.get("id") else {}),
                "resource": r,
                "search": {"mode": mode(r)},
            }
            for r in matches
        ]
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle
