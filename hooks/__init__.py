"""The CDS services this project offers, one module per hook. Discovery lists them in this order."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

from cds_service.fhir.conceptmaps import SiteConceptMaps
from hooks import encounter_discharge, order_select, order_sign, patient_view, templates
from hooks.base import HookCall, HookResult, HookService

SERVICES: tuple[HookService, ...] = (
    patient_view.SERVICE,
    order_select.SERVICE,
    order_sign.SERVICE,
    encounter_discharge.SERVICE,
)
BY_ID: dict[str, HookService] = {service.id: service for service in SERVICES}


def site_services(concept_maps: SiteConceptMaps) -> tuple[HookService, ...]:
    """The services with the site's mapped local codes added to their code-filtered prefetch queries."""
    if not concept_maps:
        return SERVICES

    @cache
    def local_for(valuesets: tuple[str, ...]) -> list[str]:
        return concept_maps.local_codes(templates.standard_codes(valuesets))

    return tuple(
        replace(service, prefetch=tuple(templates.with_site_codes(k, local_for) for k in service.prefetch))
        for service in SERVICES
    )


__all__ = ["BY_ID", "SERVICES", "HookCall", "HookResult", "HookService", "site_services"]
