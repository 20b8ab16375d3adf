"""One CDS Hooks call from parsed JSON to cards: validate, resolve prefetch, run the hook, audit, log.

The web layer (app.py) hands over the JSON body; everything after that is here so it can be tested without
HTTP and so app.py stays routes only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from pydantic import ValidationError

from cds_service import metrics
from cds_service.audit import AuditWriter, Decision
from cds_service.clinical.config import RuleConfig
from cds_service.clinical.followups import ATTACHMENT_BYTES, needed_reads
from cds_service.clinical.screen import dvt_in_view
from cds_service.errors import BadRequest, CdsError
from cds_service.fhir.client import ByteBudget, FhirClient
from cds_service.fhir.conceptmaps import SiteConceptMaps
from cds_service.fhir.followup import read_followups
from cds_service.fhir.prefetch import PrefetchResolver
from cds_service.fhir.record import PatientRecord
from cds_service.logs import log_fields
from cds_service.profiles import OrderCatalog, ShapeContext, profile
from cds_service.protocol import CdsResponse, HookRequest
from cds_service.settings import Settings
from cds_service.store import IssuedCard, Store
from hooks import HookCall, HookService
from hooks.templates import lookbacks

log = logging.getLogger("cds_service.calls")
_TRIGGER = "com.epic.cdshooks.request.bpa-trigger-action"


@dataclass(frozen=True)
class Caller:
    """Who called, as far as answering goes: the EHR profile to shape the cards for, a short issuer name for logs
    and metrics, and which fhirServers may receive its access token."""

    profile: str = "hl7"
    issuer: str = metrics.NO_ISSUER
    server_allowed: Callable[[str], tuple[bool, str]] | None = None


def epic_trigger(request: HookRequest) -> str | None:
    """Epic's native trigger, sent as patient-view with ``com.epic.cdshooks.request.bpa-trigger-action``."""
    value = (request.extension or {}).get(_TRIGGER)
    return str(value).strip() if isinstance(value, str | int) and str(value).strip() else None


def validation_details(error: ValidationError, prefix: str = "") -> list[str]:
    """Where and what, never the offending value (it may be PHI)."""
    details = []
    for item in error.errors(include_input=False, include_url=False)[:20]:
        where = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        details.append(f"{where or 'body'}: {item['msg']}")
    return details


class CallPipeline:
    def __init__(
        self,
        settings: Settings,
        *,
        client: FhirClient,
        store: Store,
        clock: Callable[[], datetime],
        server_allowed: Callable[[str], tuple[bool, str]],
        concept_maps: SiteConceptMaps | None = None,
        catalog: OrderCatalog | None = None,
    ):
        self._settings = settings
        self._catalog = catalog or OrderCatalog()
        self._concept_maps = concept_maps or SiteConceptMaps()
        self._client = client
        self._server_allowed = server_allowed
        self.audit = AuditWriter(store)
        self._clock = clock
        self._config = RuleConfig(
            profile=settings.rule_profile,
            acute_window_days=settings.acute_window_days,
            recent_hospitalization_days=settings.recent_hospitalization_days,
            recent_surgery_days=settings.recent_surgery_days,
            close_to_popliteal_cm=settings.close_to_popliteal_cm,
        )
        self._resolver = PrefetchResolver(
            client, server_allowed, max_entries=settings.max_bundle_entries, lookbacks=lookbacks(self._config)
        )

    def invoke(
        self, service: HookService, body: Any, *, started: float, caller: Caller | None = None
    ) -> dict[str, Any]:
        caller = caller or Caller(profile=self._settings.ehr_profile)
        hook_instance = body.get("hookInstance") if isinstance(body, dict) else None
        fields: dict[str, Any] = {
            "event": "hook-call",
            "service": service.id,
            "hookInstance": hook_instance if isinstance(hook_instance, str) else None,
            "issuer": caller.issuer,
            "profile": caller.profile,
        }
        status, decision, topics, gaps = 200, None, [], []
        issued: list[IssuedCard] = []
        try:
            request = self._parse(service, body)
            context = self._context(service, request)
            deadline = started + self._settings.call_deadline_s
            fetch_started = time.monotonic()
            trigger = epic_trigger(request)
            if trigger:
                fields["trigger"] = trigger
            server_allowed = caller.server_allowed or self._server_allowed
            budget = self._client.call_budget()  # one for the whole call: the prefetch fetches and the follow-ups
            drafts = context.draft_resources() if hasattr(context, "draft_resources") else []
            # DVT_CDS_PREFETCH=lean (service.rest): the screen first, the rest only for a DVT in view; order checks
            # on draft orders read the whole record at once.
            resolve = partial(
                self._resolver.resolve,
                context=context.model_dump(),
                patient_id=context.patientId,
                prefetch=request.prefetch,
                fhir_server=request.fhirServer,
                access_token=request.access_token,
                deadline=deadline,
                today=self._clock().date(),
                server_allowed=server_allowed,
                budget=budget,
            )
            record = resolve((*service.prefetch, *service.rest) if drafts else service.prefetch)
            self._concept_maps.apply_record(record, drafts)  # before the follow-ups: a local code may name a report
            in_view = True
            if service.rest and not drafts:
                in_view = dvt_in_view(record, today=self._clock().date(), config=self._config)
                fields["lean"] = "whole record" if in_view else "screen only"
                if in_view:
                    resolve(service.rest, into=record)
                    self._concept_maps.apply_record(record)
            if in_view:
                self._follow_up(record, context, request, deadline, server_allowed, budget)
                self._concept_maps.apply_record(record)  # the Medications and reports the follow-ups brought
            fields["fetch_ms"] = round((time.monotonic() - fetch_started) * 1000, 1)
            fields["sources"] = record.sources
            call = HookCall(
                request, context, record, self._clock(), self._config, caller.profile, trigger, self._settings.base_url
            )
            result = service.handler(call)
            decision, gaps = result.decision, result.data_gaps
            topics = [c.source.topic.code for c in result.cards if c.source.topic]
            for topic in topics:
                metrics.CARDS.labels(topic, caller.issuer).inc()
            issued = [
                IssuedCard(c.uuid, c.source.topic.code if c.source.topic else "", c.indicator) for c in result.cards
            ]
            shaped = profile(caller.profile).shape(result.cards, ShapeContext(service.hook, self._catalog))
            return CdsResponse(cards=shaped).to_json()
        except CdsError as error:
            status = error.status
            fields["error"] = error.message
            raise
        except Exception:
            status = 500
            raise
        finally:
            duration = round((time.monotonic() - started) * 1000, 1)
            log_fields(
                log,
                logging.INFO if status < 500 else logging.ERROR,
                "hook call",
                **fields,
                status=status,
                duration_ms=duration,
                decision=decision,
                topics=topics,
                gaps=gaps,
            )
            if isinstance(fields.get("hookInstance"), str):
                self._audit(fields["hookInstance"], service.id, status, decision, issued, gaps, duration)

    def _follow_up(
        self,
        record: PatientRecord,
        context: Any,
        request: HookRequest,
        deadline: float,
        server_allowed: Callable[[str], tuple[bool, str]],
        budget: ByteBudget,
    ) -> None:
        """Report text held in Binary resources, and Medications neither included nor contained."""
        drafts = context.draft_resources() if hasattr(context, "draft_resources") else []
        needs = needed_reads(record, drafts)
        if not needs:
            return
        read_followups(
            self._client,
            record,
            attachments=needs.attachments,
            medications=needs.medications,
            fhir_server=request.fhirServer,
            access_token=request.access_token,
            deadline=deadline,
            server_allowed=server_allowed,
            attachment_bytes=ATTACHMENT_BYTES,
            budget=budget,
        )

    def _audit(
        self,
        hook_instance: str,
        service_id: str,
        status: int,
        decision: str | None,
        issued: list[IssuedCard],
        gaps: list[str],
        duration: float,
    ) -> None:
        decision_row = Decision(hook_instance[:256], service_id, status, decision, tuple(issued), tuple(gaps), duration)
        self.audit.submit(decision_row)  # written in the background: the call never waits for the database

    @staticmethod
    def _parse(service: HookService, body: Any) -> HookRequest:
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object")
        try:
            request = HookRequest.model_validate(body)
        except ValidationError as error:
            raise BadRequest(
                "The request is not a valid CDS Hooks request", details=validation_details(error)
            ) from None
        if request.hook != service.hook:
            raise BadRequest(f"Service {service.id} answers the {service.hook} hook, not {request.hook[:64]!r}")
        return request

    @staticmethod
    def _context(service: HookService, request: HookRequest) -> Any:
        try:
            return service.context_model.model_validate(request.context)
        except ValidationError as error:
            raise BadRequest(
                f"The context is not valid for the {service.hook} hook", details=validation_details(error, "context")
            ) from None
