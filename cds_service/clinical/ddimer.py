"""Is the D-dimer positive? (docs/clinical/RULES.md R-DDIMER-1 to R-DDIMER-6; RESEARCH.md §1.4)

The newest final result within ``DDIMER_WINDOW_DAYS`` of diagnosis decides, read in this order:
1. the lab's interpretation (H, HH, POS, A, DET positive; N, NEG, ND, L negative);
2. the lab's own reference range (above ``referenceRange.high`` is positive);
3. the conventional cutoffs, 500 ng/mL FEU or 250 ng/mL DDU, after unit conversion (ng/mL, µg/L, µg/mL,
   mg/L) and with the assay type taken from the unit annotation, else from the LOINC code.
Comparators (``<0.27``, ``>20.00`` above the analytic range) and values sent as strings are handled; a value
without a unit takes the unit of its reference range, and a range sent only as text ("0.00 - 0.49 ug/mL FEU",
"<0.50 ug/mL FEU") is read. Units are spelled as labs spell them (mcg/mL, µg/mL, ug/mL FEU, ng/mL DDU). When the
assay type is unknown a value is still decisive if it is on the same side of both cutoffs; otherwise the result is
reported as indeterminate.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

from cds_service.clinical import terminology as tx
from cds_service.clinical.fhirdata import concept_codes, concept_text, listed, observation_date, reference_of
from cds_service.clinical.model import DDimer, SourceRef
from cds_service.clinical.thresholds import DDIMER_DDU_CUTOFF, DDIMER_FEU_CUTOFF, DDIMER_WINDOW_DAYS

_FINAL = {"final", "amended", "corrected"}
_POSITIVE_INTERPRETATION = {"H", "HH", "HU", "POS", "A", "AA", "DET"}
_NEGATIVE_INTERPRETATION = {"N", "NEG", "ND", "L", "LL"}
# factor to ng/mL
_UNIT_FACTORS = {"ng/ml": 1.0, "ug/l": 1.0, "ug/ml": 1000.0, "mg/l": 1000.0, "ng/l": 0.001, "mg/dl": 10000.0}
_NUMBER = re.compile(r"^\s*(<=|>=|<|>)?\s*([0-9]+(?:\.[0-9]+)?)\s*(.*)$")

DDIMER_SETS = ("observation-ddimer-feu", "observation-ddimer-ddu", "observation-ddimer-other")


def is_ddimer(observation: dict[str, Any]) -> bool:
    return tx.match_any(observation.get("code"), DDIMER_SETS) is not None


def newest_ddimer(observations: list[dict[str, Any]], *, diagnosis: date, today: date) -> DDimer | None:
    window = timedelta(days=DDIMER_WINDOW_DAYS.int_value)
    candidates = []
    for observation in observations:
        if observation.get("status") not in _FINAL or not is_ddimer(observation):
            continue
        when = observation_date(observation)
        if when is None or when > today or abs(when - diagnosis) > window:
            continue
        result = interpret(observation)
        if result is not None:
            candidates.append((when, result))
    if not candidates:
        return None
    candidates.sort(key=lambda c: c[0])
    return candidates[-1][1]


def interpret(observation: dict[str, Any]) -> DDimer | None:
    """One D-dimer result read per the rules above; None when the result carries no value at all."""
    coded = tx.match_any(observation.get("code"), DDIMER_SETS)
    # Callers pass results already recognised as D-dimers (by code, unit or ConceptMap); the label names the code.
    source = SourceRef(reference_of(observation), observation_date(observation), coded.label() if coded else "D-dimer")
    value_text = _value_text(observation)

    flags = {c.upper() for i in listed(observation, "interpretation") for c in concept_codes(i)}
    if flags & _POSITIVE_INTERPRETATION:
        return DDimer(True, f"lab interpretation {sorted(flags & _POSITIVE_INTERPRETATION)[0]}", value_text, source)
    if flags & _NEGATIVE_INTERPRETATION:
        return DDimer(False, f"lab interpretation {sorted(flags & _NEGATIVE_INTERPRETATION)[0]}", value_text, source)

    qualitative = _qualitative(observation)
    if qualitative is not None:
        return DDimer(qualitative, "qualitative result", value_text, source)

    parsed = _quantity(observation)
    if parsed is None:
        return None
    comparator, value, unit = parsed
    if not _normal_unit(unit):
        unit = _range_unit(observation) or unit  # ">20.00" with the unit only on the reference range
    family = _assay_family(observation, unit)

    reference = _reference_high(observation, unit)
    if reference is not None:
        high, inclusive = reference
        above = value > high or (not inclusive and value >= high) or (comparator in (">", ">=") and value >= high)
        below = not above and comparator not in (">", ">=")
        if above or below:
            return DDimer(
                above,
                f"{'above' if above else 'within'} the lab's reference range (upper limit {high:g} {unit})",
                value_text,
                source,
            )

    ng_ml = _to_ng_ml(value, unit)
    if ng_ml is None:
        return DDimer(None, f"unit {unit!r} not understood", value_text, source)
    cutoffs = {"FEU": DDIMER_FEU_CUTOFF, "DDU": DDIMER_DDU_CUTOFF}
    if family in cutoffs:
        cutoff = cutoffs[family]
        return _against_cutoff(ng_ml, comparator, cutoff.value, f"{cutoff.value:g} ng/mL {family}", value_text, source)
    # Assay type unknown: decisive only on the same side of both cutoffs.
    high_cut, low_cut = DDIMER_FEU_CUTOFF.value, DDIMER_DDU_CUTOFF.value
    if ng_ml >= high_cut and comparator not in ("<", "<="):
        return DDimer(True, f">= {high_cut:g} ng/mL (positive whether FEU or DDU)", value_text, source)
    if ng_ml < low_cut and comparator not in (">", ">="):
        return DDimer(False, f"< {low_cut:g} ng/mL (negative whether FEU or DDU)", value_text, source)
    return DDimer(
        None, "assay type (FEU or DDU) unknown and the value lies between the two cutoffs", value_text, source
    )


def _against_cutoff(
    ng_ml: float, comparator: str, cutoff: float, label: str, value_text: str, source: SourceRef
) -> DDimer:
    if comparator in ("<", "<=") and ng_ml <= cutoff:
        return DDimer(False, f"below {label}", value_text, source)
    positive = ng_ml >= cutoff
    return DDimer(positive, f"{'>=' if positive else '<'} {label}", value_text, source)


def _quantity(observation: dict[str, Any]) -> tuple[str, float, str] | None:
    quantity = observation.get("valueQuantity")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
        code, text = quantity.get("code"), quantity.get("unit")
        unit = str(code or text or "")
        family = _family_of_unit(str(text or ""))
        if code and family and not _family_of_unit(str(code)):
            unit = f"{code} {family}"  # the UCUM code's unit, the assay type written only in the display unit
        return str(quantity.get("comparator") or ""), float(quantity["value"]), unit
    text = observation.get("valueString")
    if isinstance(text, str):
        match = _NUMBER.match(text)
        if match:
            return match.group(1) or "", float(match.group(2)), match.group(3).strip()
    return None


def _qualitative(observation: dict[str, Any]) -> bool | None:
    texts = []
    if isinstance(observation.get("valueCodeableConcept"), dict):
        texts.append(concept_text(observation["valueCodeableConcept"]))
    if isinstance(observation.get("valueString"), str) and not _NUMBER.match(observation["valueString"]):
        texts.append(observation["valueString"])
    for text in texts:
        lowered = text.lower()
        if "not detected" in lowered or "negative" in lowered:
            return False
        if "detected" in lowered or "positive" in lowered:
            return True
    return None


_RANGE_TEXT = re.compile(
    r"^\s*(?:(?P<low>[0-9]+(?:\.[0-9]+)?)\s*(?:-|–|to)\s*(?P<high>[0-9]+(?:\.[0-9]+)?)"
    r"|(?P<op><=|<|≤)\s*(?P<limit>[0-9]+(?:\.[0-9]+)?))\s*(?P<unit>.*?)\s*$"
)


def _range_text(reference: dict[str, Any]) -> tuple[float, bool, str] | None:
    """A reference range written only as text: "0.00 - 0.49 ug/mL FEU" (up to 0.49), "<0.50 ug/mL FEU"."""
    text = reference.get("text")
    match = _RANGE_TEXT.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    if match.group("high") is not None:
        return float(match.group("high")), True, match.group("unit")
    return float(match.group("limit")), match.group("op") != "<", match.group("unit")


def _range_unit(observation: dict[str, Any]) -> str | None:
    for reference in listed(observation, "referenceRange"):
        if not isinstance(reference, dict):
            continue
        high = reference.get("high")
        if isinstance(high, dict) and (high.get("unit") or high.get("code")):
            return str(high.get("unit") or high.get("code"))
        parsed = _range_text(reference)
        if parsed is not None and parsed[2]:
            return parsed[2]
    return None


def _reference_high(observation: dict[str, Any], unit: str) -> tuple[float, bool] | None:
    """The lab's upper reference limit in the value's unit, and whether the limit itself is normal."""
    for reference in listed(observation, "referenceRange"):
        if not isinstance(reference, dict):
            continue
        high = reference.get("high")
        if isinstance(high, dict) and isinstance(high.get("value"), int | float):
            limit: tuple[float, bool, str] | None = (
                float(high["value"]),
                True,
                str(high.get("code") or high.get("unit") or unit),
            )
        else:
            limit = _range_text(reference)
            if limit is not None and not limit[2]:
                limit = (limit[0], limit[1], unit)
        if limit is None:
            continue
        value, inclusive, high_unit = limit
        if _normal_unit(high_unit) == _normal_unit(unit):
            return value, inclusive
        converted_high, converted_unit = _to_ng_ml(value, high_unit), _to_ng_ml(1.0, unit)
        if converted_high is not None and converted_unit:
            return converted_high / converted_unit, inclusive
    return None


def _normal_unit(unit: str) -> str:
    unit = unit.lower().replace("µ", "u").replace("μ", "u").replace("mcg", "ug")
    unit = re.sub(r"\{[^}]*\}", "", unit)
    unit = re.sub(r"\b(feu|ddu)\b", "", unit)
    return unit.replace(" ", "")


def _to_ng_ml(value: float, unit: str) -> float | None:
    factor = _UNIT_FACTORS.get(_normal_unit(unit))
    return None if factor is None else value * factor


def _family_of_unit(unit: str) -> str | None:
    upper = unit.upper()
    if "FEU" in upper:
        return "FEU"
    if "DDU" in upper:
        return "DDU"
    return None


def _assay_family(observation: dict[str, Any], unit: str) -> str | None:
    from_unit = _family_of_unit(unit)
    if from_unit:
        return from_unit  # the annotation beside the number wins over a mislabelled LOINC code
    code = observation.get("code")
    if tx.valueset("observation-ddimer-feu").match(code):
        return "FEU"
    if tx.valueset("observation-ddimer-ddu").match(code):
        return "DDU"
    return None


def _value_text(observation: dict[str, Any]) -> str:
    quantity = observation.get("valueQuantity")
    if isinstance(quantity, dict) and quantity.get("value") is not None:
        unit = quantity.get("unit") or quantity.get("code") or ""
        return f"{quantity.get('comparator', '')}{quantity['value']} {unit}".strip()
    if isinstance(observation.get("valueString"), str):
        return observation["valueString"][:60]
    if isinstance(observation.get("valueCodeableConcept"), dict):
        return concept_text(observation["valueCodeableConcept"])[:60]
    return "no value"
