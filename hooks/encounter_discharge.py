"""encounter-discharge: a distal DVT leaving hospital with neither anticoagulation nor repeat imaging."""

from __future__ import annotations

from cds_service import cards
from cds_service.clinical.assessment import Situation
from cds_service.protocol import EncounterDischargeContext
from hooks import templates
from hooks.base import HookCall, HookResult, HookService
from hooks.common import evaluate


def handle(call: HookCall) -> HookResult:
    evaluation = evaluate(call)
    assessment = evaluation.assessment
    found = []
    if assessment.situation == Situation.DISTAL_DECISION:
        found.append(cards.surveillance_gap_card(assessment, evaluation.ctx))
    decision = "surveillance-gap" if found else assessment.decision_code
    return HookResult(found, decision, evaluation.facts.not_assessed)


SERVICE = HookService(
    id="distal-dvt-encounter-discharge",
    hook="encounter-discharge",
    title="Distal DVT: surveillance gap at discharge",
    description=(
        "At discharge, flags an acute distal DVT that is neither anticoagulated nor scheduled for repeat venous "
        "duplex at 1 and 2 weeks, with ready-to-sign orders for both options."
    ),
    prefetch=(*templates.PATIENT_DATA, templates.ENCOUNTER),
    screen=templates.SCREEN,
    context_model=EncounterDischargeContext,
    handler=handle,
)
