"""order-select: early checks on the orders the clinician has just selected (``context.selections``)."""

from __future__ import annotations

from cds_service.clinical.fhirdata import reference_of
from cds_service.protocol import OrderSelectContext
from hooks import templates
from hooks.base import HookCall, HookResult, HookService
from hooks.order_checks import check_drafts


def handle(call: HookCall) -> HookResult:
    context = call.context
    if not isinstance(context, OrderSelectContext):
        raise TypeError(f"order-select needs an OrderSelectContext, not {type(context).__name__}")
    drafts = context.draft_resources()
    selected = set(context.selections)
    chosen = [r for r in drafts if reference_of(r) in selected]
    return check_drafts(call, chosen, drafts)


SERVICE = HookService(
    id="distal-dvt-order-select",
    hook="order-select",
    title="Distal DVT: checks on selected anticoagulant and venous ultrasound orders",
    description=(
        "Checks the selected draft orders against the distal-DVT rules: warfarin or a DOAC in pregnancy, treatment "
        "duration for isolated distal DVT, renal/platelet/weight/interaction cautions, serial imaging as the "
        "alternative when no risk factor for extension is present, and limited venous ultrasound that skips the calf."
    ),
    prefetch=(*templates.PATIENT_DATA, templates.ENCOUNTER),
    context_model=OrderSelectContext,
    handler=handle,
)
