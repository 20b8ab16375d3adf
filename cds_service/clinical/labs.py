"""Weight, renal function, platelets and haemoglobin: the newest final result within the lab window.

Units are converted to one unit per quantity (kg, mg/dL, mL/min, 10^9/L, g/dL); a result in a unit we do
not understand is skipped and reported rather than guessed. Creatinine clearance is computed by
Cockcroft–Gault (the convention of the DOAC labels; eGFR is not CrCl — RESEARCH.md §2):
CrCl = (140 − age) × weight / (72 × serum creatinine mg/dL), × 0.85 for women
(Cockcroft DW, Gault MH. Nephron 1976;16:31-41).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from cds_service.clinical import terminology as tx
from cds_service.clinical.fhirdata import observation_date, reference_of
from cds_service.clinical.model import Labs, Measurement, Patient, SourceRef
from cds_service.clinical.thresholds import LAB_WINDOW_DAYS

_FINAL = {"final", "amended", "corrected"}

# unit (lower-case, UCUM code or common display) -> factor to the target unit
_WEIGHT = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237, "lbs": 0.45359237}
_CREATININE = {"mg/dl": 1.0, "umol/l": 1 / 88.4, "µmol/l": 1 / 88.4, "mmol/l": 1000 / 88.4}
_EGFR = {"ml/min/{1.73_m2}": 1.0, "ml/min/1.73m2": 1.0, "ml/min/1.73 m2": 1.0, "ml/min": 1.0}
_PLATELETS = {
    "10*3/ul": 1.0,
    "10*9/l": 1.0,
    "k/ul": 1.0,
    "x10e3/ul": 1.0,
    "10^9/l": 1.0,
    "10^3/ul": 1.0,
    "thou/ul": 1.0,
    "/ul": 0.001,
    "/mm3": 0.001,
}
_HEMOGLOBIN = {"g/dl": 1.0, "g/l": 0.1, "mmol/l": 1.611, "mg/dl": 0.001}


def _newest(observations: list[dict[str, Any]], valueset_id: str, today: date) -> list[dict[str, Any]]:
    window = timedelta(days=LAB_WINDOW_DAYS.int_value)
    found = []
    for observation in observations:
        if observation.get("status") not in _FINAL:
            continue
        when = observation_date(observation)
        if when is None or when > today or today - when > window:
            continue
        if tx.valueset(valueset_id).match(observation.get("code")) is not None:
            found.append((when, observation))
    found.sort(key=lambda pair: pair[0], reverse=True)
    return [observation for _, observation in found]


def _measure(
    observations: list[dict[str, Any]],
    valueset_id: str,
    factors: dict[str, float],
    unit: str,
    today: date,
    notes: list[str],
) -> Measurement | None:
    for observation in _newest(observations, valueset_id, today):
        quantity = observation.get("valueQuantity")
        if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), int | float):
            continue
        raw_unit = str(quantity.get("code") or quantity.get("unit") or "").strip().lower()
        factor = factors.get(raw_unit) or factors.get(str(quantity.get("unit") or "").strip().lower())
        if factor is None:
            notes.append(f"{reference_of(observation)}: unit {raw_unit or 'missing'!r} not understood; result not used")
            continue
        code = tx.valueset(valueset_id).match(observation.get("code"))
        return Measurement(
            round(float(quantity["value"]) * factor, 2),
            unit,
            SourceRef(reference_of(observation), observation_date(observation), code.label() if code else ""),
        )
    return None


def read_labs(observations: list[dict[str, Any]], patient: Patient, *, today: date, notes: list[str]) -> Labs:
    labs = Labs(
        weight=_measure(observations, "observation-body-weight", _WEIGHT, "kg", today, notes),
        creatinine_mg_dl=_measure(observations, "observation-creatinine", _CREATININE, "mg/dL", today, notes),
        egfr=_measure(observations, "observation-egfr", _EGFR, "mL/min/1.73m2", today, notes),
        platelets=_measure(observations, "observation-platelets", _PLATELETS, "10^9/L", today, notes),
        hemoglobin_g_dl=_measure(observations, "observation-hemoglobin", _HEMOGLOBIN, "g/dL", today, notes),
    )
    labs.crcl_ml_min = cockcroft_gault(patient, labs)
    return labs


def cockcroft_gault(patient: Patient, labs: Labs) -> Measurement | None:
    if patient.age is None or labs.weight is None or labs.creatinine_mg_dl is None:
        return None
    if patient.sex not in ("male", "female") or labs.creatinine_mg_dl.value <= 0:
        return None
    crcl = (140 - patient.age) * labs.weight.value / (72 * labs.creatinine_mg_dl.value)
    if patient.sex == "female":
        crcl *= 0.85
    source = SourceRef(
        labs.creatinine_mg_dl.source.reference,
        labs.creatinine_mg_dl.source.when,
        f"Cockcroft-Gault from age {patient.age}, {labs.weight.value:g} kg ({labs.weight.source.reference}), "
        f"creatinine {labs.creatinine_mg_dl.value:g} mg/dL",
    )
    return Measurement(round(max(crcl, 0.0), 1), "mL/min", source)
