"""The DVT pathway view: a SMART on FHIR app (EHR launch) served by the service under ``/smart/``.

A clinician opens it from a card's ``smart`` link. It reads the patient's record from the EHR's FHIR server with
its own access token, runs the same clinical core as the hooks, and shows the legs, the episode's timeline, the
factors with their sources, the bleeding risk, what was not assessed and the evidence. Modules, one job each:
``launch`` (discovery, PKCE, token), ``session`` and ``cookies`` (the sealed cookies that hold a launch and a
page's token), ``reader`` (the record, as a patient-view call reads it), ``pathway``, ``legs`` and ``sources``
(the page's model), ``views`` (the routes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from flask import Flask

from cds_service.clinical.config import RuleConfig
from cds_service.egress import Egress
from cds_service.fhir.client import FhirClient
from cds_service.fhir.conceptmaps import SiteConceptMaps
from cds_service.logs import log_fields
from cds_service.settings import Settings
from cds_service.smart.cookies import CookiePolicy
from cds_service.smart.launch import SmartClient, default_scopes, iss_policy
from cds_service.smart.reader import RecordReader
from cds_service.smart.session import SessionBox
from cds_service.smart.views import PathwayConfig, blueprint
from hooks import site_services
from hooks.templates import lookbacks

log = logging.getLogger("cds_service.smart")


def register_pathway_view(
    app: Flask,
    settings: Settings,
    *,
    client: FhirClient,
    concept_maps: SiteConceptMaps,
    clock: Callable[[], datetime] | None = None,
) -> None:
    """Add ``/smart/launch``, ``/smart/callback`` and ``/smart/pathway/…`` to the service."""
    patient_view = next(service for service in site_services(concept_maps) if service.hook == "patient-view")
    keys = patient_view.prefetch
    config = PathwayConfig(
        client_id=settings.smart_client_id,
        scopes=settings.smart_scopes or default_scopes([key.template for key in keys]),
        redirect_uri=f"{settings.base_url}/smart/callback",
        box=_session_box(settings),
        cookies=CookiePolicy(secure=settings.base_url.startswith("https://")),
        session_max_s=settings.smart_session_max_s,
        frame_ancestors=settings.smart_frame_ancestors,
        rules=RuleConfig(
            profile=settings.rule_profile,
            acute_window_days=settings.acute_window_days,
            recent_hospitalization_days=settings.recent_hospitalization_days,
            recent_surgery_days=settings.recent_surgery_days,
            close_to_popliteal_cm=settings.close_to_popliteal_cm,
        ),
        iss_allowed=iss_policy(settings),
        clock=clock or (lambda: datetime.now(UTC)),
    )
    oauth = SmartClient(timeout_s=settings.smart_timeout_s, egress=Egress.from_settings(settings))
    reader = RecordReader(
        client,
        keys,
        concept_maps,
        max_entries=settings.max_bundle_entries,
        timeout_s=settings.smart_timeout_s,
        lookbacks=lookbacks(config.rules),
    )
    app.register_blueprint(blueprint(config, oauth, reader))


def _session_box(settings: Settings) -> SessionBox | None:
    if settings.smart_session_key is not None:
        return SessionBox.from_secret(settings.smart_session_key.get_secret_value())
    if settings.auth == "off" and settings.smart_client_id:
        # Development: one process (`make run`), so a key of its own serves; sessions end when it stops.
        log_fields(
            log,
            logging.WARNING,
            "DVT_CDS_SMART_SESSION_KEY is empty: the pathway view seals its sessions with a key of this process "
            "(development only; every worker and instance needs the same key)",
            event="smart-ephemeral-key",
        )
        return SessionBox.ephemeral()
    return None
