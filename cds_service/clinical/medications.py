"""What a MedicationRequest is: which anticoagulant (or antiplatelet, NSAID), at what daily dose, for how long.

The agent comes from the RxNorm value sets (ingredient, brand and product codes from VSAC), else from the
drug name in the text (reported as such). The dose per administration comes from ``doseQuantity`` (mg, or
tablets/syringes/mL times the strength in the RxNorm display, or mg/kg times the latest weight) and the
frequency from ``timing`` (repeat, or BID/TID/Q12H codes). Treatment vs prophylactic intensity is decided
against the per-agent limits in ``thresholds.PROPHYLACTIC_DAILY_DOSE``; an unknown dose counts as treatment
(docs/clinical/RULES.md R-MED-2) and says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cds_service.clinical import terminology as tx
from cds_service.clinical.fhirdata import concept_codes, concept_text, listed, parse_date, reference_of
from cds_service.clinical.model import DoseIntensity, MedicationUse, SourceRef
from cds_service.clinical.thresholds import PROPHYLACTIC_DAILY_DOSE

AGENT_CLASS = {
    "apixaban": "doac",
    "rivaroxaban": "doac",
    "dabigatran": "doac",
    "edoxaban": "doac",
    "warfarin": "vka",
    "enoxaparin": "lmwh",
    "dalteparin": "lmwh",
    "fondaparinux": "fondaparinux",
    "heparin": "ufh",
    "argatroban": "parenteral-dti",
    "bivalirudin": "parenteral-dti",
    "desirudin": "parenteral-dti",
}
CURRENT_STATUSES = {"active", "on-hold"}
ORDER_INTENTS = {"order", "plan", "original-order", "reflex-order", "filler-order", "instance-order"}
_PER_DAY = {
    "QD": 1,
    "QOD": 0.5,
    "BID": 2,
    "TID": 3,
    "QID": 4,
    "AM": 1,
    "PM": 1,
    "Q24H": 1,
    "Q12H": 2,
    "Q8H": 3,
    "Q6H": 4,
    "Q4H": 6,
}
_DAYS_PER_UNIT = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1, "wk": 7, "mo": 30.4, "a": 365.25}
_STRENGTH = re.compile(r"(?:(\d+(?:\.\d+)?)\s*ML\s+)?[a-z ,]*?(\d+(?:\.\d+)?)\s*(MG|UNT)(/ML)?", re.IGNORECASE)
_UNIT_DOSE_WORDS = {
    "tablet",
    "tablets",
    "tab",
    "tabs",
    "{tbl}",
    "capsule",
    "capsules",
    "cap",
    "syringe",
    "syringes",
    "{syringe}",
    "1",
    "each",
    "{each}",
    "dose",
    "doses",
    "injection",
    "pen",
    "unit dose",
}


@dataclass(frozen=True)
class DrugMatch:
    agent: str
    agent_class: str
    match: tx.Match
    display: str


def anticoagulant_of(concept: Any) -> DrugMatch | None:
    for agent, agent_class in AGENT_CLASS.items():
        match = tx.valueset(f"anticoagulant-{agent}").match(concept)
        if match is not None:
            return DrugMatch(agent, agent_class, match, _display(concept, match))
    return None


def other_drug_of(concept: Any, valueset_id: str, agent_class: str) -> DrugMatch | None:
    match = tx.valueset(valueset_id).match(concept)
    if match is None:
        return None
    return DrugMatch(concept_text(concept).lower() or agent_class, agent_class, match, _display(concept, match))


def _display(concept: Any, match: tx.Match) -> str:
    return match.display or concept_text(concept)


def medication_key(reference: str) -> str:
    """``Medication/<id>`` of a reference written relative, absolute or versioned."""
    return "/".join(reference.split("/_history")[0].split("/")[-2:])


class MedicationLookup:
    """Resolves ``medicationReference`` within a request: contained, the record (``_include``d or fetched), or
    the draftOrders bundle; failing those, the reference's ``display`` (a drug name, matched as text)."""

    def __init__(self, medications: list[dict[str, Any]]):
        self._by_ref: dict[str, dict[str, Any]] = {}
        for med in medications:
            if isinstance(med.get("id"), str):
                self._by_ref[f"Medication/{med['id']}"] = med

    def concept(self, request: dict[str, Any]) -> Any:
        return self.resolve(request)[0]

    def resolve(self, request: dict[str, Any]) -> tuple[Any, bool]:
        """(the medication's CodeableConcept or None, whether a referenced Medication was found)."""
        if isinstance(request.get("medicationCodeableConcept"), dict):
            return request["medicationCodeableConcept"], True
        ref = request.get("medicationReference")
        if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
            display = ref.get("display") if isinstance(ref, dict) else None
            return ({"text": display} if isinstance(display, str) else None), False
        target = ref["reference"]
        if target.startswith("#"):
            for contained in listed(request, "contained"):
                if isinstance(contained, dict) and contained.get("id") == target[1:]:
                    return contained.get("code"), True
            return None, False
        med = self._by_ref.get(medication_key(target))
        if med is not None:
            return med.get("code"), True
        return ({"text": ref["display"]} if isinstance(ref.get("display"), str) else None), False

    def unresolved(self, request: dict[str, Any]) -> str | None:
        """What a request's ``medicationReference`` points at when it is in neither the request nor the record:
        ``Medication/<id>``, or for a logical reference (an identifier, a display only) its words."""
        ref = request.get("medicationReference")
        if not isinstance(ref, dict):
            return None
        target = ref.get("reference")
        if not isinstance(target, str):
            identifier = ref.get("identifier")
            value = identifier.get("value") if isinstance(identifier, dict) else None
            label = ref.get("display") or value
            return f"medication {label}" if isinstance(label, str) and label else "a medication with no reference"
        if target.startswith("#"):
            return None
        key = medication_key(target)
        return None if key in self._by_ref else key


def is_current(request: dict[str, Any]) -> bool:
    return request.get("status") in CURRENT_STATUSES and request.get("intent", "order") in ORDER_INTENTS


def medication_use(
    request: dict[str, Any],
    drug: DrugMatch,
    *,
    weight_kg: float | None,
) -> MedicationUse:
    when = parse_date(request.get("authoredOn"))
    source = SourceRef(reference_of(request), when, f"{drug.display} ({drug.match.label()})")
    dose_mg, per_day, dose_text = _dose(request, drug, weight_kg)
    daily = dose_mg * per_day if dose_mg is not None and per_day is not None else None
    use = MedicationUse(
        agent=drug.agent,
        agent_class=drug.agent_class,
        source=source,
        daily_dose_mg=daily,
        duration_days=duration_days(request),
        matched_by_text=drug.match.by_text,
        dose_text=dose_text,
    )
    use.intensity = intensity(drug.agent, daily, request, weight_kg)
    return use


def intensity(agent: str, daily_mg: float | None, request: dict[str, Any], weight_kg: float | None) -> DoseIntensity:
    if agent == "heparin" and _route_is_iv(request):
        return DoseIntensity.TREATMENT  # an infusion is therapeutic
    limit = PROPHYLACTIC_DAILY_DOSE.get(agent)
    if limit is None:
        return DoseIntensity.TREATMENT  # no prophylactic regimen of this agent (warfarin, edoxaban, ...)
    if daily_mg is None:
        return DoseIntensity.UNKNOWN
    if agent == "enoxaparin" and weight_kg:
        return DoseIntensity.TREATMENT if daily_mg / weight_kg >= 1.0 else DoseIntensity.PROPHYLACTIC
    return DoseIntensity.TREATMENT if daily_mg > limit.value else DoseIntensity.PROPHYLACTIC


def _route_is_iv(request: dict[str, Any]) -> bool:
    for dosage in listed(request, "dosageInstruction"):
        text = concept_text(dosage.get("route")).lower() if isinstance(dosage, dict) else ""
        if "intravenous" in text or text in {"iv", "47625008"}:
            return True
    return False


def strength_of(display: str) -> tuple[float, str] | None:
    """Amount per unit (tablet, syringe) from an RxNorm display: "0.4 ML enoxaparin sodium 100 MG/ML
    Prefilled Syringe" -> (40, "mg"); "apixaban 5 MG Oral Tablet" -> (5, "mg")."""
    match = _STRENGTH.search(display)
    if match is None:
        return None
    volume, amount, unit, per_ml = match.groups()
    value = float(amount)
    if per_ml and volume:
        value *= float(volume)
    elif per_ml:
        return None  # a concentration without a volume: needs the dose in mL
    return value, "mg" if unit.upper() == "MG" else "unit"


def _dose(request: dict[str, Any], drug: DrugMatch, weight_kg: float | None) -> tuple[float | None, float | None, str]:
    """(amount per administration in mg or units, administrations per day, the dose in words).

    Structured ``doseAndRate`` and ``timing`` first (Epic sends three typed doses: calculated, admin-amount and
    ordered — the ordered one is the order); what they leave out is read from the dosage text ("40 mg,
    Subcutaneous, Daily", "5 mg BID", "1 mg/kg q12h"), so a prophylactic dose written only in words is read as
    prophylactic."""
    dosages = [d for d in listed(request, "dosageInstruction") if isinstance(d, dict)]
    if not dosages:
        return None, None, "no dosage instructions"
    # The first phase of a multi-phase regimen is the most intense; judge intensity by the maintenance
    # (last) phase so a loading phase does not hide a prophylactic maintenance dose, and vice versa.
    dosage = sorted(dosages, key=lambda d: d.get("sequence", 0) if isinstance(d.get("sequence"), int) else 0)[-1]
    text = " ".join(
        t for t in (dosage.get("text"), dosage.get("patientInstruction")) if isinstance(t, str) and t.strip()
    )
    per_day = _per_day(dosage.get("timing"))
    amount: float | None = None
    for dose_rate in _dose_rates(dosage):
        quantity = dose_rate.get("doseQuantity")
        if not isinstance(quantity, dict):
            rng = dose_rate.get("doseRange")
            quantity = rng.get("high") if isinstance(rng, dict) else None
        if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
            amount = _amount(
                float(quantity["value"]),
                str(quantity.get("code") or quantity.get("unit") or ""),
                drug.display,
                weight_kg,
            )
            break
    if text and (amount is None or per_day is None):
        text_amount, text_per_day = dose_from_text(text, weight_kg)
        amount = amount if amount is not None else text_amount
        per_day = per_day if per_day is not None else text_per_day
    words = text or (f"{amount:g} per dose, {per_day:g}/day" if amount is not None and per_day else "dose not coded")
    return amount, per_day, words


def _dose_rates(dosage: dict[str, Any]) -> list[dict[str, Any]]:
    """The doseAndRate entries, the one typed "ordered" first (Epic: calculated, admin-amount, ordered)."""
    rates = [r for r in listed(dosage, "doseAndRate") if isinstance(r, dict)]

    def ordered(rate: dict[str, Any]) -> bool:
        return (
            "ordered" in {c.lower() for c in concept_codes(rate.get("type"))}
            or concept_text(rate.get("type")).lower() == "ordered"
        )

    return sorted(rates, key=lambda r: not ordered(r))


_TEXT_DOSE = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)\s*(mg/kg|units?/kg|iu/kg|mg|units?|iu|mcg)\b(?!\s*/\s*ml\b)",
    re.IGNORECASE,
)
_TEXT_TOTAL = re.compile(r"\((\d+(?:\.\d+)?)\s*(mg|units?)\s+total\)", re.IGNORECASE)
_TIMES = r"(?: (?:a |per )?day| daily| a day)"
_TEXT_FREQUENCIES: tuple[tuple[re.Pattern[str], float], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), per_day)
    for pattern, per_day in (
        (rf"\b(?:bid|b\.i\.d\.?|twice{_TIMES}|2 times{_TIMES})\b", 2),
        (rf"\b(?:tid|t\.i\.d\.?|three times{_TIMES}|3 times{_TIMES})\b", 3),
        (rf"\b(?:qid|q\.i\.d\.?|four times{_TIMES}|4 times{_TIMES})\b", 4),
        (
            r"\b(?:qd|q\.d\.?|daily|once (?:a |per )?day|once daily|every day|nightly|at bedtime|qhs|q ?am|q ?pm"
            r"|every (?:morning|evening))\b",
            1,
        ),
    )
)
_EVERY_HOURS = re.compile(r"\b(?:q|every)\s*(\d+)\s*(?:\(\w+\)\s*)?(?:h|hr|hrs|hour|hours)\b", re.IGNORECASE)
_EVERY_DAYS = re.compile(r"\bevery\s+(\d+)\s*(?:\(\w+\)\s*)?days?\b", re.IGNORECASE)


def dose_from_text(text: str, weight_kg: float | None) -> tuple[float | None, float | None]:
    """(amount per administration in mg or units, administrations per day) read from a dosage's words."""
    amount: float | None = None
    total = _TEXT_TOTAL.search(text)  # Epic: "Take 1 tablet (80 mg total) by mouth ..."
    match = total or _TEXT_DOSE.search(text)
    if match is not None:
        value, unit = float(match.group(1)), match.group(2).lower()
        if unit.endswith("/kg"):
            amount = value * weight_kg if weight_kg else None
        elif unit == "mcg":
            amount = value / 1000
        else:
            amount = value
    per_day: float | None = None
    hours = _EVERY_HOURS.search(text)
    days = _EVERY_DAYS.search(text)
    if hours and float(hours.group(1)) > 0:
        per_day = 24 / float(hours.group(1))
    elif days and float(days.group(1)) > 0:
        per_day = 1 / float(days.group(1))
    else:
        per_day = next((n for pattern, n in _TEXT_FREQUENCIES if pattern.search(text)), None)
    return amount, per_day


def _amount(value: float, unit: str, display: str, weight_kg: float | None) -> float | None:
    unit = unit.strip().lower()
    if unit == "mg":
        return value
    if unit == "g":
        return value * 1000
    if unit in {"[iu]", "iu", "u", "[u]", "unit", "units"}:
        return value
    if unit in {"mg/kg", "mg/kg/dose"}:
        return value * weight_kg if weight_kg else None
    if unit in {"[iu]/kg", "iu/kg", "u/kg", "units/kg"}:
        return value * weight_kg if weight_kg else None
    strength = strength_of(display)
    if unit in _UNIT_DOSE_WORDS and strength is not None:
        return value * strength[0]
    if unit == "ml":
        concentration = re.search(r"(\d+(?:\.\d+)?)\s*(MG|UNT)/ML", display, re.IGNORECASE)
        return value * float(concentration.group(1)) if concentration else None
    return None


def _per_day(timing: Any) -> float | None:
    if not isinstance(timing, dict):
        return None
    repeat = timing.get("repeat")
    if isinstance(repeat, dict):
        frequency = repeat.get("frequencyMax") or repeat.get("frequency") or 1
        period = repeat.get("period")
        unit = repeat.get("periodUnit")
        if isinstance(period, int | float) and period > 0 and unit in _DAYS_PER_UNIT:
            return float(frequency) / (float(period) * _DAYS_PER_UNIT[unit])
    code = timing.get("code")
    for coding in listed(code, "coding"):
        if isinstance(coding, dict) and str(coding.get("code", "")).upper() in _PER_DAY:
            return float(_PER_DAY[str(coding["code"]).upper()])
    text = concept_text(code).upper().replace(" ", "") if isinstance(code, dict) else ""
    return float(_PER_DAY[text]) if text in _PER_DAY else None


def _days(duration: Any) -> float | None:
    if not isinstance(duration, dict) or not isinstance(duration.get("value"), int | float):
        return None
    unit = str(duration.get("code") or duration.get("unit") or "").lower()
    unit = {"day": "d", "days": "d", "week": "wk", "weeks": "wk", "month": "mo", "months": "mo"}.get(unit, unit)
    factor = _DAYS_PER_UNIT.get(unit)
    return float(duration["value"]) * factor if factor else None


_TEXT_DURATION = re.compile(r"\b(?:for|x|×)\s*(\d+)\s*(day|days|week|weeks|wk|wks|month|months|mo)\b", re.IGNORECASE)


def duration_days(request: dict[str, Any]) -> int | None:
    """The intended length of treatment: summed dosage phases (``boundsDuration``/``boundsPeriod``), else a length
    the dosage text states ("for 3 months"). A dispense supply (``expectedSupplyDuration``, refills) is what the
    pharmacy hands out, not how long to treat, and is never read as a treatment duration."""
    phases: list[float | None] = []
    for dosage in listed(request, "dosageInstruction"):
        repeat = (dosage.get("timing") or {}).get("repeat") if isinstance(dosage, dict) else None
        if not isinstance(repeat, dict):
            phases.append(None)
            continue
        days = _days(repeat.get("boundsDuration"))
        if days is None and isinstance(repeat.get("boundsPeriod"), dict):
            start = parse_date(repeat["boundsPeriod"].get("start"))
            end = parse_date(repeat["boundsPeriod"].get("end"))
            days = float((end - start).days) if start and end else None
        phases.append(days)
    if phases and all(p is not None for p in phases):
        return round(sum(p for p in phases if p is not None))
    stated = [
        _TEXT_DURATION.search(d["text"])
        for d in listed(request, "dosageInstruction")
        if isinstance(d, dict) and isinstance(d.get("text"), str)
    ]
    total = 0.0
    for match in stated:
        if match is None:
            return None
        unit = {"day": "d", "days": "d", "week": "wk", "weeks": "wk", "wks": "wk", "month": "mo", "months": "mo"}
        total += int(match.group(1)) * _DAYS_PER_UNIT[unit.get(match.group(2).lower(), match.group(2).lower())]
    return round(total) if stated else None


def current_uses(
    requests: list[dict[str, Any]],
    lookup: MedicationLookup,
    classify: Callable[[Any], DrugMatch | None],
    *,
    weight_kg: float | None,
) -> list[MedicationUse]:
    uses = []
    for request in requests:
        if not is_current(request):
            continue
        drug = classify(lookup.concept(request))
        if drug is not None:
            uses.append(medication_use(request, drug, weight_kg=weight_kg))
    return uses
