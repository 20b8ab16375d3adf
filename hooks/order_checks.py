"""Checks on drafted orders, shared by order-select (the selected drafts), order-sign (all drafts) and Epic's
patient-view fired on entering or signing orders.

Drafts arrive as clients write them: single objects where R4 has lists (the CDS Hooks sandbox's ``category``) are
normalised first; a draft that is still not valid R4, or whose drug cannot be identified, gets a
``draft-order-not-checked`` card — never silence. Every draft is checked: each drafted anticoagulant gets its own
findings, and two of them a duplicate-anticoagulation caution.
"""

from __future__ import annotations

from typing import Any

from cds_service import cards
from cds_service.clinical import orders
from cds_service.fhir.lenient import normalize
from cds_service.fhir.record import validation_problem
from cds_service.protocol import Card
from hooks.base import HookCall, HookResult
from hooks.common import evaluate


def check_drafts(call: HookCall, drafts: list[dict[str, Any]], all_drafts: list[dict[str, Any]]) -> HookResult:
    cards_found, facts = order_check_cards(call, drafts, all_drafts)
    decision = "order-checks:" + (",".join(c.source.topic.code for c in cards_found if c.source.topic) or "none")
    return HookResult(cards_found, decision, facts.not_assessed)


def order_check_cards(call: HookCall, drafts: list[dict[str, Any]], all_drafts: list[dict[str, Any]]) -> tuple:
    """The order-check cards for ``drafts`` (checked against everything drafted), and the facts they came from."""
    for resource in all_drafts:
        normalize(resource)
    valid, invalid = _validated(drafts)
    medications = [r for r in all_drafts if r.get("resourceType") == "Medication" and call.record.typed(r) is not None]
    evaluation = evaluate(call, extra_medications=medications)
    facts, assessment, ctx = evaluation.facts, evaluation.assessment, evaluation.ctx
    weight = facts.labs.weight.value if facts.labs.weight else None
    known_medications = [*call.record.resources("Medication"), *medications]
    found = orders.read_drafts(valid, weight_kg=weight, medications=known_medications, invalid=invalid)
    everything = orders.read_drafts(
        [r for r in all_drafts if call.record.typed(r) is not None], weight_kg=weight, medications=known_medications
    )
    keyed: list[tuple[tuple[str, str], Card]] = []
    for draft in found.anticoagulants:
        agent, ref = draft.use.agent, draft.reference
        if orders.pregnancy_conflict(draft, facts):
            keyed.append((("pregnancy", ref), cards.pregnancy_anticoagulant_card(ref, agent, assessment, ctx)))
        problem = orders.duration_problem(draft, assessment)
        if problem:
            keyed.append((("duration", ref), cards.duration_card(ref, agent, problem, assessment, ctx)))
        cautions = orders.cautions(draft, facts, everything.anticoagulants)
        if cautions:
            keyed.append((("caution", ref), cards.caution_card(ref, agent, cautions, assessment, ctx)))
        if orders.serial_imaging_alternative(draft, assessment):
            # One alternative, however many anticoagulants are drafted.
            keyed.append((("serial-alternative", ""), cards.serial_alternative_card(ref, agent, assessment, ctx)))
    for ultrasound in found.ultrasounds:
        reason = orders.limited_ultrasound_problem(ultrasound, facts, assessment)
        if reason:
            card = cards.limited_ultrasound_card(ultrasound.reference, ultrasound.legs, reason, assessment, ctx)
            keyed.append((("limited", ultrasound.reference), card))
    for unread in found.not_checked:
        keyed.append((("not-checked", unread.reference), cards.draft_not_checked_card(unread, assessment, ctx)))
    return _once_each(keyed), facts


def _validated(drafts: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    valid, invalid = [], []
    for resource in drafts:
        problem = validation_problem(resource)
        if problem is None:
            valid.append(resource)
        else:
            invalid.append((resource, problem))
    return valid, invalid


def _once_each(keyed: list[tuple[tuple[str, str], Card]]) -> list[Card]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for key, card in keyed:
        if key not in seen:
            seen.add(key)
            unique.append(card)
    return unique
