"""Checks on drafted orders, shared by order-select (the selected drafts) and order-sign (all drafts)."""

from __future__ import annotations

from typing import Any

from cds_service import cards
from cds_service.clinical import orders
from cds_service.protocol import Card
from hooks.base import HookCall, HookResult
from hooks.common import evaluate, unique_topics


def check_drafts(call: HookCall, drafts: list[dict[str, Any]], all_drafts: list[dict[str, Any]]) -> HookResult:
    # Drafts are resources from the request: validated like any other before a rule reads them (an invalid
    # one is skipped and named in the data notes of any card).
    drafts = [d for d in drafts if call.record.typed(d) is not None]
    medications = [r for r in all_drafts if r.get("resourceType") == "Medication" and call.record.typed(r) is not None]
    evaluation = evaluate(call, extra_medications=medications)
    facts, assessment, ctx = evaluation.facts, evaluation.assessment, evaluation.ctx
    weight = facts.labs.weight.value if facts.labs.weight else None
    found = orders.read_drafts(drafts + medications, weight_kg=weight)
    result: list[Card] = []
    for draft in found.anticoagulants:
        agent, ref = draft.use.agent, draft.reference
        if orders.pregnancy_conflict(draft, facts):
            result.append(cards.pregnancy_anticoagulant_card(ref, agent, assessment, ctx))
        problem = orders.duration_problem(draft, assessment)
        if problem:
            result.append(cards.duration_card(ref, agent, problem, assessment))
        cautions = orders.cautions(draft, facts)
        if cautions:
            result.append(cards.caution_card(ref, agent, cautions, assessment))
        if orders.serial_imaging_alternative(draft, assessment):
            result.append(cards.serial_alternative_card(ref, agent, assessment, ctx))
    for ultrasound in found.ultrasounds:
        reason = orders.limited_ultrasound_problem(ultrasound, facts, assessment)
        if reason:
            result.append(cards.limited_ultrasound_card(ultrasound.reference, ultrasound.legs, reason, assessment, ctx))
    decision = "order-checks:" + (",".join(c.source.topic.code for c in result if c.source.topic) or "none")
    return HookResult(unique_topics(result), decision, facts.not_assessed)
