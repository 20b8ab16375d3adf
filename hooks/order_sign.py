"""order-sign: the last check before the orders are signed (all ``context.draftOrders``)."""

from __future__ import annotations

from cds_service.protocol import OrderSignContext
from hooks import templates
from hooks.base import HookCall, HookResult, HookService
from hooks.order_checks import check_drafts


def handle(call: HookCall) -> HookResult:
    context = call.context
    if not isinstance(context, OrderSignContext):
        raise TypeError(f"order-sign needs an OrderSignContext, not {type(context).__name__}")
    drafts = context.draft_resources()
    return check_drafts(call, drafts, drafts)


SERVICE = HookService(
    id="distal-dvt-order-sign",
    hook="order-sign",
    title="Distal DVT: checks on anticoagulant and venous ultrasound orders at signing",
    description=(
        "Checks every draft order against the distal-DVT rules before signing: warfarin or a DOAC in pregnancy, "
        "treatment duration for isolated distal DVT, renal/platelet/weight/interaction cautions, serial imaging as "
        "the alternative, and limited venous ultrasound that skips the calf."
    ),
    prefetch=(*templates.PATIENT_DATA, templates.ENCOUNTER),
    context_model=OrderSignContext,
    handler=handle,
)
