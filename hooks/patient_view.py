"""patient-view: the distal-DVT recommendation, extension, proximal DVT, bilateral surveillance and
location-unknown cards (docs/clinical/RULES.md R-HOOK-1).

Some EHRs send only patient-view and say why it fired: Epic's native triggers arrive as patient-view with
``com.epic.cdshooks.request.bpa-trigger-action`` — 27 (inpatient discharge) runs the discharge checks, 18 (enter
order) and 23 (sign orders) the order checks on the draft orders sent; Oracle Health (profile ``oracle``) runs the
discharge checks when the context encounter is being discharged.
"""

from __future__ import annotations

from cds_service import cards
from cds_service.clinical.assessment import Situation
from cds_service.clinical.riskfactors import is_being_discharged
from cds_service.clinical.topics import Topic
from cds_service.protocol import Card, PatientViewContext
from hooks import templates
from hooks.base import HookCall, HookResult, HookService
from hooks.common import Evaluation, evaluate
from hooks.order_checks import order_check_cards

EPIC_DISCHARGE = "27"
EPIC_ORDER_TRIGGERS = frozenset({"18", "23"})
_RECOMMENDATIONS = (Topic.ANTICOAGULATE, Topic.SERIAL_IMAGING, Topic.SHARED_DECISION)


def handle(call: HookCall) -> HookResult:
    evaluation = evaluate(call)
    assessment, ctx = evaluation.assessment, evaluation.ctx
    found = patient_cards(evaluation)
    decision = assessment.decision_code
    if _discharging(call, evaluation) and assessment.situation == Situation.DISTAL_DECISION:
        # Leaving hospital untreated and unsurveilled: the discharge card says it all (it offers both options).
        found = [c for c in found if c.source.topic is None or c.source.topic.code not in _RECOMMENDATIONS]
        found.insert(0, cards.surveillance_gap_card(assessment, ctx))
        decision = "surveillance-gap"
    context = call.context
    drafts = context.draft_resources() if isinstance(context, PatientViewContext) else []
    if call.trigger in EPIC_ORDER_TRIGGERS and drafts:
        order_cards, _ = order_check_cards(call, drafts, drafts)
        found += order_cards
    return HookResult(found, decision, evaluation.facts.not_assessed)


def patient_cards(evaluation: Evaluation) -> list[Card]:
    assessment, ctx = evaluation.assessment, evaluation.ctx
    topic = assessment.recommendation
    if topic in _RECOMMENDATIONS:
        return [cards.recommendation_card(assessment, ctx)]
    if topic == Topic.EXTENSION:
        return [cards.extension_card(assessment, ctx)]
    if topic == Topic.PROXIMAL_DVT:
        return [cards.proximal_card(assessment, ctx)]
    if topic == Topic.LOCATION_UNKNOWN:
        return [cards.location_unknown_card(assessment, ctx)]
    if topic == Topic.BILATERAL_SURVEILLANCE:
        return [cards.bilateral_card(assessment, ctx)]
    return []


def _discharging(call: HookCall, evaluation: Evaluation) -> bool:
    if call.trigger == EPIC_DISCHARGE:
        return True
    if call.profile != "oracle" or not call.context.encounterId:
        return False
    encounter = next((e for e in call.record.resources("Encounter") if e.get("id") == call.context.encounterId), None)
    return is_being_discharged(encounter, today=evaluation.ctx.today)


SERVICE = HookService(
    id="distal-dvt-patient-view",
    hook="patient-view",
    title="Distal DVT: anticoagulate or serial imaging",
    description=(
        "For a patient with an acute isolated distal (calf) DVT, including gastrocnemius and soleal vein "
        "thrombosis: recommends anticoagulation or serial duplex imaging at 1 and 2 weeks per CHEST 2016/2021, "
        "with ready-to-sign orders; flags extension on repeat imaging, untreated proximal DVT, undocumented veins "
        "and an un-imaged other leg in muscular-vein thrombosis. Epic's native discharge (27) and order (18, 23) "
        "triggers, sent as patient-view, also run the discharge and order checks."
    ),
    prefetch=(*templates.PATIENT_DATA, templates.ENCOUNTER),
    screen=templates.SCREEN,
    context_model=PatientViewContext,
    handler=handle,
)
