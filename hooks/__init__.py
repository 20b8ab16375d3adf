"""The CDS services this project offers, one module per hook. Discovery lists them in this order."""

from __future__ import annotations

from hooks import encounter_discharge, order_select, order_sign, patient_view
from hooks.base import HookCall, HookResult, HookService

SERVICES: tuple[HookService, ...] = (
    patient_view.SERVICE,
    order_select.SERVICE,
    order_sign.SERVICE,
    encounter_discharge.SERVICE,
)
BY_ID: dict[str, HookService] = {service.id: service for service in SERVICES}

__all__ = ["BY_ID", "SERVICES", "HookCall", "HookResult", "HookService"]
