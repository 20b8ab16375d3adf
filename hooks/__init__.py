"""The CDS services this project offers, one module per hook. Discovery lists them in this order."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

from cds_service.fhir.conceptmaps import SiteConceptMaps
from cds_service.fhir.prefetch import PrefetchKey
from hooks import encounter_discharge, order_select, order_sign, patient_view, templates
from hooks.base import HookCall, HookResult, HookService

SERVICES: tuple[HookService, ...] = (
    patient_view.SERVICE,
    order_select.SERVICE,
    order_sign.SERVICE,
    encounter_discharge.SERVICE,
)
BY_ID: dict[str, HookService] = {service.id: service for service in SERVICES}


def site_services(concept_maps: SiteConceptMaps, prefetch: str = "full") -> tuple[HookService, ...]:
    """The services with the site's mapped local codes added to their code-filtered prefetch queries; with
    ``prefetch="lean"`` each service that can asks the EHR only for its screen (DVT_CDS_PREFETCH)."""
    services = SERVICES
    if concept_maps:

        @cache
        def local_for(valuesets: tuple[str, ...]) -> list[str]:
            return concept_maps.local_codes(templates.standard_codes(valuesets))

        def sited(keys: tuple[PrefetchKey, ...]) -> tuple[PrefetchKey, ...]:
            return tuple(templates.with_site_codes(k, local_for) for k in keys)

        services = tuple(replace(s, prefetch=sited(s.prefetch), screen=sited(s.screen)) for s in services)
    return tuple(service.lean() for service in services) if prefetch == "lean" else services


__all__ = ["BY_ID", "SERVICES", "HookCall", "HookResult", "HookService", "site_services"]
