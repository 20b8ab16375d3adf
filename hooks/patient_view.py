"""patient-view: the distal-DVT recommendation, extension, proximal DVT, bilateral surveillance and
location-unknown cards (KNOWLEDGE.md §6)."""

from __future__ import annotations

from cds_service import cards
from cds_service.clinical.topics import Topic
from cds_service.protocol import PatientViewContext
from hooks import templates
from hooks.base import HookCall, HookResult, HookService
from hooks.common import evaluate


def handle(call: HookCall) -> HookResult:
    evaluation = evaluate(call)
    assessment, ctx = evaluation.assessment, evaluation.ctx
    topic = assessment.recommendation
    found = []
    if topic in (Topic.ANTICOAGULATE, Topic.SERIAL_IMAGING, Topic.SHARED_DECISION):
        found.append(cards.recommendation_card(assessment, ctx))
    elif topic == Topic.EXTENSION:
        found.append(cards.extension_card(assessment, ctx))
    elif topic == Topic.PROXIMAL_DVT:
        found.append(cards.proximal_card(assessment, ctx))
    elif topic == Topic.LOCATION_UNKNOWN:
        found.append(cards.location_unknown_card(assessment, ctx))
    elif topic == Topic.BILATERAL_SURVEILLANCE:
        found.append(cards.bilateral_card(assessment, ctx))
    return HookResult(found, assessment.decision_code, evaluation.facts.not_assessed)


SERVICE = HookService(
    id="distal-dvt-patient-view",
    hook="patient-view",
    title="Distal DVT: anticoagulate or serial imaging",
    description=(
        "For a patient with an acute isolated distal (calf) DVT, including gastrocnemius and soleal vein "
        "thrombosis: recommends anticoagulation or serial duplex imaging at 1 and 2 weeks per CHEST 2016/2021, "
        "with ready-to-sign orders; flags extension on repeat imaging, untreated proximal DVT, undocumented veins "
        "and an un-imaged other leg in muscular-vein thrombosis."
    ),
    prefetch=(*templates.PATIENT_DATA, templates.ENCOUNTER),
    context_model=PatientViewContext,
    handler=handle,
)
