"""Evaluation shared by the hooks: facts and assessment for the patient of a call, and card hygiene."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cds_service.cards import CardContext
from cds_service.clinical.assessment import Assessment, assess
from cds_service.clinical.facts import build_facts
from cds_service.clinical.model import ClinicalFacts
from hooks.base import HookCall


@dataclass
class Evaluation:
    facts: ClinicalFacts
    assessment: Assessment
    ctx: CardContext


def evaluate(call: HookCall, extra_medications: list[dict[str, Any]] | None = None) -> Evaluation:
    today = call.now.date()
    facts = build_facts(
        call.record,
        today=today,
        config=call.config,
        context_encounter_id=call.context.encounterId,
        extra_medications=extra_medications,
    )
    assessment = assess(facts, today=today, config=call.config)
    ctx = CardContext(
        patient_id=call.context.patientId,
        encounter_id=call.context.encounterId,
        now=call.now,
        facts=facts,
        base_url=call.base_url,
    )
    return Evaluation(facts, assessment, ctx)
