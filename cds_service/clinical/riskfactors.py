"""The patient-level factors, each read from its stated FHIR source (docs/clinical/RULES.md R-RISK-*, R-PREG-1,
R-SERIAL-4).

Every function returns a ``Finding`` whose ``sources`` name the resources it came from. A factor whose
source data could not be obtained is ``Finding.unknown`` (``present=None``), never silently "absent": the
caller passes ``available=False`` when the record has a gap for that resource type.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from cds_service.clinical import terminology as tx
from cds_service.clinical.fhirdata import (
    concept_text,
    condition_abatement,
    condition_onset,
    listed,
    observation_date,
    period_end,
    period_start,
    procedure_date,
    reference_of,
    status_code,
)
from cds_service.clinical.model import Finding, ProvokingFactor, SourceRef
from cds_service.clinical.thresholds import (
    COVID_WINDOW_DAYS,
    DIALYSIS_WINDOW_DAYS,
    PAIN_WINDOW_DAYS,
    POSTPARTUM_WEEKS,
    SEVERE_PAIN_SCORE,
)

_ACTIVE = {"active", "recurrence", "relapse"}
_IGNORED = {"refuted", "entered-in-error"}
_FINAL = {"final", "amended", "corrected"}
_INPATIENT_OPEN = {"in-progress", "arrived", "triaged", "onleave"}
_ENCOUNTER_IGNORED = {"cancelled", "entered-in-error", "planned"}
SURGICAL_PROCEDURE_SETS = ("procedure-surgical",)


def unknown(resource_type: str) -> Finding:
    """A factor whose source resource type could not be read (the gap itself is reported once, elsewhere)."""
    return Finding.unknown(f"{resource_type} data unavailable")


def _recorded(condition: dict[str, Any]) -> bool:
    return status_code(condition, "verificationStatus") not in _IGNORED


def is_active(condition: dict[str, Any]) -> bool:
    status = status_code(condition, "clinicalStatus")
    return (
        _recorded(condition)
        and status_code(condition, "verificationStatus") not in {"differential", "unconfirmed"}
        and (status in _ACTIVE or status is None)
        and condition_abatement(condition) is None
    )


def matching_conditions(
    conditions: Iterable[dict[str, Any]], valueset_id: str, *, active_only: bool
) -> list[tuple[dict[str, Any], tx.Match]]:
    found = []
    vs = tx.valueset(valueset_id)
    for condition in conditions:
        if not _recorded(condition) or (active_only and not is_active(condition)):
            continue
        match = vs.match(condition.get("code"))
        if match is not None:
            found.append((condition, match))
    return found


def _condition_ref(condition: dict[str, Any], match: tx.Match) -> SourceRef:
    return SourceRef(
        reference_of(condition), condition_onset(condition), f"{match.display or ''} ({match.label()})".strip()
    )


def condition_finding(
    conditions: list[dict[str, Any]], valueset_id: str, *, active_only: bool = True, since: date | None = None
) -> Finding:
    hits = matching_conditions(conditions, valueset_id, active_only=active_only)
    if since is not None:
        hits = [(c, m) for c, m in hits if (condition_onset(c) or since) >= since]
    if not hits:
        return Finding.absent()
    note = "recognised from text" if all(m.by_text for _, m in hits) else ""
    return Finding(True, [_condition_ref(c, m) for c, m in hits], note)


# --- encounters -------------------------------------------------------------------------------------------------
def is_inpatient_encounter(encounter: dict[str, Any]) -> bool:
    return inpatient_recognition(encounter) is not None


def inpatient_recognition(encounter: dict[str, Any]) -> str | None:
    """ "code" when the class or type code says inpatient; "text" when only a local code's display does."""
    klass = encounter.get("class")
    if isinstance(klass, dict) and tx.valueset("encounter-class-inpatient").coding_match(klass) is not None:
        return "code"
    types = (
        [t for t in listed(encounter, "type") if isinstance(t, dict)] if isinstance(encounter.get("type"), list) else []
    )
    matches = [tx.valueset("encounter-type-inpatient").match(t) for t in types]
    if any(m is not None and not m.by_text for m in matches):
        return "code"
    display = klass.get("display") if isinstance(klass, dict) else None
    if isinstance(display, str) and tx.valueset("encounter-class-inpatient").text_match(display):
        return "text"
    return "text" if any(m is not None for m in matches) else None


def _encounter_ref(encounter: dict[str, Any], what: str) -> SourceRef:
    period = encounter.get("period")
    return SourceRef(reference_of(encounter), period_end(period) or period_start(period), what)


def inpatient(encounters: list[dict[str, Any]], context_encounter_id: str | None) -> Finding:
    sources = []
    for encounter in encounters:
        if not is_inpatient_encounter(encounter) or encounter.get("status") in _ENCOUNTER_IGNORED:
            continue
        is_context = context_encounter_id is not None and encounter.get("id") == context_encounter_id
        open_stay = encounter.get("status") in _INPATIENT_OPEN and period_end(encounter.get("period")) is None
        if is_context or open_stay:
            sources.append(_encounter_ref(encounter, "current inpatient encounter"))
    return Finding(True, sources) if sources else Finding.absent()


def is_being_discharged(encounter: dict[str, Any] | None, *, today: date) -> bool:
    """The context encounter is an inpatient stay ending now: a discharge disposition recorded or the stay
    finished, and its end (if any) within a day of today. A stay that ended weeks ago is not a discharge."""
    if not isinstance(encounter, dict) or not is_inpatient_encounter(encounter):
        return False
    hospitalization = encounter.get("hospitalization")
    disposition = isinstance(hospitalization, dict) and isinstance(hospitalization.get("dischargeDisposition"), dict)
    if not disposition and encounter.get("status") != "finished":
        return False
    ended = period_end(encounter.get("period"))
    return ended is None or abs((today - ended).days) <= 1


def hospitalizations(encounters: list[dict[str, Any]], *, start: date, end: date) -> list[SourceRef]:
    """Inpatient stays overlapping [start, end]."""
    found = []
    for encounter in encounters:
        if not is_inpatient_encounter(encounter) or encounter.get("status") in _ENCOUNTER_IGNORED:
            continue
        period = encounter.get("period")
        began = period_start(period)
        ended = period_end(period) or (end if encounter.get("status") in _INPATIENT_OPEN else began)
        if began is None or ended is None:
            continue
        if began <= end and ended >= start:
            found.append(_encounter_ref(encounter, "inpatient stay"))
    return found


def recent_hospitalization(encounters: list[dict[str, Any]], *, today: date, days: int) -> Finding:
    found = []
    for encounter in encounters:
        if not is_inpatient_encounter(encounter) or encounter.get("status") != "finished":
            continue
        ended = period_end(encounter.get("period"))
        if ended is not None and timedelta(0) <= today - ended <= timedelta(days=days):
            found.append(_encounter_ref(encounter, f"inpatient stay ended within {days} days"))
    return Finding(True, found) if found else Finding.absent()


# --- procedures -------------------------------------------------------------------------------------------------
def is_surgical(procedure: dict[str, Any]) -> tx.Match | None:
    category = procedure.get("category")
    for vs_id in SURGICAL_PROCEDURE_SETS:
        vs = tx.valueset(vs_id)
        match = vs.match(category) if isinstance(category, dict) else None
        if match is None:
            match = vs.match(procedure.get("code"))
        if match is not None:
            return match
    return None


def surgeries(procedures: list[dict[str, Any]], *, start: date, end: date) -> list[SourceRef]:
    found = []
    for procedure in procedures:
        if procedure.get("status") != "completed":
            continue
        when = procedure_date(procedure)
        if when is None or not start <= when <= end:
            continue
        match = is_surgical(procedure)
        if match is not None:
            what = concept_text(procedure.get("code")) or "surgical procedure"
            found.append(SourceRef(reference_of(procedure), when, f"{what} ({match.label()})"))
    return found


# --- symptoms, preferences --------------------------------------------------------------------------------------
def severe_symptoms(
    dvt_conditions: list[dict[str, Any]], observations: list[dict[str, Any]], *, today: date
) -> Finding:
    sources = []
    for condition in dvt_conditions:
        severity = condition.get("severity")
        match = tx.valueset("severity-severe").match(severity) if isinstance(severity, dict) else None
        if match is not None:
            sources.append(SourceRef(reference_of(condition), condition_onset(condition), f"severity {match.label()}"))
    window = timedelta(days=PAIN_WINDOW_DAYS.int_value)
    for observation in observations:
        if observation.get("status") not in _FINAL:
            continue
        if tx.valueset("observation-pain-score").match(observation.get("code")) is None:
            continue
        when = observation_date(observation)
        score = _number(observation)
        if when is None or score is None or not timedelta(0) <= today - when <= window:
            continue
        if score >= SEVERE_PAIN_SCORE.value:
            sources.append(SourceRef(reference_of(observation), when, f"pain score {score:g}/10"))
    return Finding(True, sources) if sources else Finding.absent()


def _number(observation: dict[str, Any]) -> float | None:
    quantity = observation.get("valueQuantity")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
        return float(quantity["value"])
    if isinstance(observation.get("valueInteger"), int):
        return float(observation["valueInteger"])
    return None


def prefers_no_anticoagulation(observations: list[dict[str, Any]]) -> Finding:
    newest: tuple[date, dict[str, Any]] | None = None
    for observation in observations:
        if observation.get("status") not in _FINAL | {"preliminary"}:
            continue
        if tx.valueset("preference-avoid-anticoagulation").match(observation.get("code")) is None:
            continue
        when = observation_date(observation) or date.min
        if newest is None or when >= newest[0]:
            newest = (when, observation)
    if newest is None or newest[1].get("valueBoolean") is not True:
        return Finding.absent()
    return Finding(
        True, [SourceRef(reference_of(newest[1]), observation_date(newest[1]), "patient preference recorded")]
    )


def covid19(conditions: list[dict[str, Any]], *, today: date) -> Finding:
    return condition_finding(conditions, "condition-covid19", since=today - timedelta(days=COVID_WINDOW_DAYS.int_value))


# --- pregnancy --------------------------------------------------------------------------------------------------
def pregnancy(
    conditions: list[dict[str, Any]],
    observations: list[dict[str, Any]],
    procedures: list[dict[str, Any]],
    *,
    today: date,
) -> tuple[Finding, Finding]:
    """(pregnant, postpartum within 6 weeks). The newest pregnancy-status observation wins when it says
    pregnant or not pregnant; an 'unknown' status defers to pregnancy conditions."""
    status_obs = sorted(
        (
            (observation_date(o) or date.min, o)
            for o in observations
            if o.get("status") in _FINAL and tx.valueset("observation-pregnancy-status").match(o.get("code"))
        ),
        key=lambda pair: pair[0],
    )
    pregnant: Finding | None = None
    if status_obs:
        _, newest = status_obs[-1]
        value = newest.get("valueCodeableConcept")
        if tx.valueset("finding-pregnant").match(value):
            pregnant = Finding(
                True, [SourceRef(reference_of(newest), observation_date(newest), "pregnancy status: pregnant")]
            )
        elif tx.valueset("finding-not-pregnant").match(value):
            pregnant = Finding.absent("pregnancy status: not pregnant")
    if pregnant is None:
        pregnant = condition_finding(conditions, "condition-pregnancy")
    window = timedelta(weeks=POSTPARTUM_WEEKS.int_value)
    postpartum_sources = []
    for condition, match in matching_conditions(conditions, "condition-delivery-puerperium", active_only=False):
        onset = condition_onset(condition)
        if onset is not None and timedelta(0) <= today - onset <= window:
            postpartum_sources.append(_condition_ref(condition, match))
    for condition, match in matching_conditions(conditions, "condition-pregnancy", active_only=False):
        ended = condition_abatement(condition)
        if ended is not None and timedelta(0) <= today - ended <= window:
            postpartum_sources.append(SourceRef(reference_of(condition), ended, f"pregnancy ended ({match.label()})"))
    for procedure in procedures:
        when = procedure_date(procedure)
        delivery = tx.valueset("procedure-delivery").match(procedure.get("code"))
        if delivery is not None and when is not None and timedelta(0) <= today - when <= window:
            postpartum_sources.append(SourceRef(reference_of(procedure), when, f"delivery ({delivery.label()})"))
    postpartum = Finding(True, postpartum_sources) if postpartum_sources else Finding.absent()
    if postpartum.present and pregnant.present and not status_obs:
        # A delivery after the pregnancy condition was recorded: postpartum, no longer pregnant.
        pregnant = Finding.absent("delivered")
    return pregnant, postpartum


def dialysis(procedures: list[dict[str, Any]], *, today: date) -> list[SourceRef]:
    window = timedelta(days=DIALYSIS_WINDOW_DAYS.int_value)
    found = []
    for procedure in procedures:
        when = procedure_date(procedure)
        match = tx.valueset("procedure-dialysis").match(procedure.get("code"))
        if match is not None and when is not None and timedelta(0) <= today - when <= window:
            found.append(SourceRef(reference_of(procedure), when, f"dialysis ({match.label()})"))
    return found


# --- provoking factors ------------------------------------------------------------------------------------------
def provoking_factors(
    *,
    conditions: list[dict[str, Any]],
    encounters: list[dict[str, Any]],
    procedures: list[dict[str, Any]],
    estrogen: list[SourceRef],
    pregnant: Finding,
    postpartum: Finding,
    start: date,
    end: date,
) -> list[ProvokingFactor]:
    found = [ProvokingFactor("surgery", "surgery", s) for s in surgeries(procedures, start=start, end=end)]
    found += [
        ProvokingFactor("hospitalization", "hospitalization", s)
        for s in hospitalizations(encounters, start=start, end=end)
    ]
    for condition, match in matching_conditions(conditions, "condition-leg-trauma", active_only=False):
        onset = condition_onset(condition)
        if onset is not None and start <= onset <= end:
            found.append(ProvokingFactor("leg-trauma", "leg injury", _condition_ref(condition, match)))
    for condition, match in matching_conditions(conditions, "condition-immobilization", active_only=False):
        onset = condition_onset(condition) or end
        if start <= onset <= end or is_active(condition):
            found.append(ProvokingFactor("immobilization", "immobilization", _condition_ref(condition, match)))
    found += [ProvokingFactor("pregnancy", "pregnancy", s) for s in pregnant.sources]
    found += [ProvokingFactor("postpartum", "postpartum", s) for s in postpartum.sources]
    found += [ProvokingFactor("estrogen", "estrogen-containing therapy", s) for s in estrogen]
    return found
