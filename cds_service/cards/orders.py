"""Suggestions that are real, valid R4 orders: the anticoagulant MedicationRequest, the venous duplex
ServiceRequests of serial imaging, and the suggestions carrying them (with the order keys a site's catalog maps)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from cds_service.cards.context import CardContext
from cds_service.clinical import thresholds as th
from cds_service.clinical.assessment import Assessment, Option
from cds_service.clinical.model import Side, Thrombosis
from cds_service.clinical.regimens import Regimen
from cds_service.clinical.terminology import LOINC, RXNORM, UCUM
from cds_service.protocol import Action, Suggestion

DUPLEX = {
    Side.BILATERAL: ("39420-5", "US.doppler Lower extremity vein - bilateral", "both legs"),
    Side.RIGHT: ("39443-7", "US.doppler Lower extremity vein - right", "right leg"),
    Side.LEFT: ("39432-0", "US.doppler Lower extremity vein - left", "left leg"),
}


def legs_of(side: Side) -> str:
    """The legs a duplex of ``side`` images, in words: "both legs", "the right leg"."""
    legs = DUPLEX.get(side, DUPLEX[Side.BILATERAL])[2]
    return legs if legs == "both legs" else f"the {legs}"


def delete_action(reference: str, what: str) -> Action:
    return Action(type="delete", description=f"Remove the drafted {what}", resourceId=reference)


def _reason(episode: Thrombosis | None, allowed: tuple[str, ...]) -> list[dict[str, Any]] | None:
    if episode is None or episode.source.reference.split("/")[0] not in allowed:
        return None
    return [{"reference": episode.source.reference}]


def _ucum(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def medication_request(regimen: Regimen, ctx: CardContext, episode: Thrombosis | None) -> dict[str, Any]:
    weight = ctx.facts.labs.weight
    dosages = []
    for i, phase in enumerate(regimen.phases, start=1):
        repeat: dict[str, Any] = {"frequency": phase.per_day, "period": 1, "periodUnit": "d"}
        if phase.days is not None:
            repeat["boundsDuration"] = _ucum(phase.days, "days", "d")
        text = phase.text
        if phase.unit == "mg/kg" and weight is not None:
            dose = _ucum(round(phase.dose * weight.value), "mg", "mg")
            text += f" = {dose['value']} mg for {weight.value:g} kg ({weight.source.reference}, {weight.source.when})"
        elif phase.unit == "mg/kg":
            dose = _ucum(phase.dose, "mg/kg", "mg/kg")
            text += " (no recent weight in the record: calculate the dose)"
        else:
            dose = _ucum(phase.dose, "mg", "mg")
        dosages.append(
            {
                "sequence": i,
                "text": text,
                "timing": {"repeat": repeat},
                "route": {"text": regimen.route},
                "doseAndRate": [{"doseQuantity": dose}],
            }
        )
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": regimen.rxnorm_code, "display": regimen.rxnorm_display}],
            "text": regimen.rxnorm_display,
        },
        "subject": {"reference": f"Patient/{ctx.patient_id}"},
        "authoredOn": ctx.now.isoformat(timespec="seconds"),
        "dosageInstruction": dosages,
        "note": [{"text": f"Duration: {regimen.duration_text}. " + " ".join(regimen.notes)}],
    }
    if ctx.encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{ctx.encounter_id}"}
    reason = _reason(episode, ("Condition", "Observation"))
    if reason:
        resource["reasonReference"] = reason
    if regimen.total_days is not None:
        resource["dispenseRequest"] = {"expectedSupplyDuration": _ucum(regimen.total_days, "days", "d")}
    return resource


def service_request(
    side: Side, due: date, ctx: CardContext, episode: Thrombosis | None, purpose: str
) -> dict[str, Any]:
    code, display, legs = DUPLEX.get(side, DUPLEX[Side.BILATERAL])
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "priority": "routine",
        "code": {
            "coding": [{"system": LOINC, "code": code, "display": display}],
            "text": f"Venous duplex ultrasound, {legs}, including the calf veins ({purpose})",
        },
        "subject": {"reference": f"Patient/{ctx.patient_id}"},
        "occurrenceDateTime": due.isoformat(),
        "authoredOn": ctx.now.isoformat(timespec="seconds"),
        "note": [
            {"text": "Whole-leg compression duplex including the calf veins; anticoagulate if the thrombus extends."}
        ],
    }
    if ctx.encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{ctx.encounter_id}"}
    reason = _reason(episode, ("Condition", "Observation", "DiagnosticReport"))
    if reason:
        resource["reasonReference"] = reason
    return resource


def anticoagulation_suggestion(
    regimen: Regimen, ctx: CardContext, episode: Thrombosis | None, recommended: bool
) -> Suggestion:
    return Suggestion(
        label=f"Anticoagulate: {regimen.summary}, {regimen.duration_text}",
        isRecommended=recommended,
        actions=[
            Action(
                type="create",
                description=f"Order {regimen.summary}; duration {regimen.duration_text}",
                resource=medication_request(regimen, ctx, episode),
                order_key=regimen.key,
            )
        ],
    )


def _side_word(side: Side) -> str:
    return side.value if side in (Side.RIGHT, Side.LEFT) else "bilateral"


def duplex_key(side: Side) -> str:
    return f"imaging.venous-duplex.{_side_word(side)}"


def serial_imaging_days(ctx: CardContext) -> tuple[date, date]:
    return (
        ctx.today + timedelta(days=th.SERIAL_IMAGING_FIRST_DAY.int_value),
        ctx.today + timedelta(days=th.SERIAL_IMAGING_SECOND_DAY.int_value),
    )


def serial_imaging_suggestion(
    side: Side, ctx: CardContext, episode: Thrombosis | None, recommended: bool
) -> Suggestion:
    first, second = serial_imaging_days(ctx)
    legs = DUPLEX.get(side, DUPLEX[Side.BILATERAL])[2]
    return Suggestion(
        label=f"Serial imaging: venous duplex of {legs} at +7 and +14 days",
        isRecommended=recommended,
        actions=[
            Action(
                type="create",
                description=f"Order venous duplex ultrasound of {legs} on {first.isoformat()} (day 7)",
                resource=service_request(side, first, ctx, episode, "repeat at 1 week"),
                order_key=duplex_key(side),
            ),
            Action(
                type="create",
                description=f"Order venous duplex ultrasound of {legs} on {second.isoformat()} (day 14)",
                resource=service_request(side, second, ctx, episode, "repeat at 2 weeks"),
                order_key=duplex_key(side),
            ),
        ],
        order_set_key=f"orderset.serial-imaging.{_side_word(side)}",
    )


def both_options(assessment: Assessment, ctx: CardContext) -> list[Suggestion]:
    suggestions = []
    favoured = assessment.recommended
    if assessment.offer_anticoagulation and assessment.regimen is not None:
        suggestions.append(
            anticoagulation_suggestion(assessment.regimen, ctx, assessment.episode, favoured == Option.ANTICOAGULATION)
        )
    if assessment.offer_serial_imaging:
        suggestions.append(
            serial_imaging_suggestion(
                assessment.imaging_side, ctx, assessment.episode, favoured == Option.SERIAL_IMAGING
            )
        )
    suggestions.sort(key=lambda s: not s.isRecommended)
    return suggestions
