"""What a CDS service of this project is: its descriptor, its context model and its handler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from cds_service.clinical.config import RuleConfig
from cds_service.fhir.prefetch import PrefetchKey
from cds_service.fhir.record import PatientRecord
from cds_service.protocol import Card, HookContext, HookRequest, ServiceDescriptor


@dataclass
class HookCall:
    """One invocation, parsed and resolved: everything a handler reads."""

    request: HookRequest
    context: HookContext
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
    prefetch: tuple[PrefetchKey, ...]  # what discovery advertises (and the EHR may prefetch)
    context_model: type[HookContext]
    handler: Callable[[HookCall], HookResult]
    usage_requirements: str | None = None
    # DVT_CDS_PREFETCH=lean: the keys that show whether a DVT is in view (a service answering nothing without one
    # offers them; empty: always the full record), and, once lean, the keys read only when one is.
    screen: tuple[PrefetchKey, ...] = ()
    rest: tuple[PrefetchKey, ...] = ()

    def lean(self) -> HookService:
        """The service asking the EHR only for its screen; the rest of its record is read when a DVT is in view."""
        if not self.screen:
            return self
        names = {key.name for key in self.screen}
        # The screen's Patient and DVT Conditions are what a call cannot do without (412); what the rest could not
        # read is named in the card, as for any other key.
        rest = tuple(replace(key, required=False) for key in self.prefetch if key.name not in names)
        return replace(self, prefetch=self.screen, rest=rest)

    def descriptor(self) -> ServiceDescriptor:
        return ServiceDescriptor(
            hook=self.hook,
            id=self.id,
            title=self.title,
            description=self.description,
            prefetch={key.name: key.template for key in self.prefetch},
            usageRequirements=self.usage_requirements,
        )
