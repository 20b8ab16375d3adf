"""What a CDS service of this project is: its descriptor, its context model and its handler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from cds_service.clinical.config import RuleConfig
from cds_service.fhir.prefetch import PrefetchKey
from cds_service.fhir.record import PatientRecord
from cds_service.protocol import Card, HookRequest, ServiceDescriptor, _Context


@dataclass
class HookCall:
    """One invocation, parsed and resolved: everything a handler reads."""

    request: HookRequest
    context: _Context
    record: PatientRecord
    now: datetime
    config: RuleConfig
    profile: str = "hl7"  # the EHR dialect the answer will be shaped for (profiles/)
    trigger: str | None = None  # Epic's native trigger action, when Epic sent one (patient-view)
    base_url: str | None = None  # the service's public base URL: cards link to the pathway view under it


@dataclass
class HookResult:
    cards: list[Card]
    decision: str  # for the audit and the log line, never shown to users
    data_gaps: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HookService:
    id: str
    hook: str
    title: str
    description: str
    prefetch: tuple[PrefetchKey, ...]
    context_model: type[_Context]
    handler: Callable[[HookCall], HookResult]
    usage_requirements: str | None = None

    def descriptor(self) -> ServiceDescriptor:
        return ServiceDescriptor(
            hook=self.hook,
            id=self.id,
            title=self.title,
            description=self.description,
            prefetch={key.name: key.template for key in self.prefetch},
            usageRequirements=self.usage_requirements,
        )
