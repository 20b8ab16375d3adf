"""CDS Hooks 2.0 wire models: what EHRs send us and what we answer.

Requests are parsed leniently where real EHRs vary (unknown fields and extensions ignored, Epic's feedback
shape accepted) and strictly where a wrong value would make us lie (types, the patient id, the
fhirAuthorization/fhirServer invariant). Responses are built strictly and serialised without null or
empty optional fields, as the specification requires (CONFORMANCE.md §1.1).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

# Epic ids are long opaque strings; FHIR ids are [A-Za-z0-9-.]{1,64}. Allow what either sends, nothing that
# could change the meaning of a URL we build from it.
_ID_PATTERN = re.compile(r"^[A-Za-z0-9\-._~+=]{1,512}$")
_REFERENCE_PATTERN = re.compile(r"^[A-Za-z]{1,64}/[A-Za-z0-9\-._~+=]{1,512}$")


class _Request(BaseModel):
    """Inbound: tolerate fields we do not know (extensions, newer spec versions)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class _Response(BaseModel):
    """Outbound: only the fields we mean to send."""

    model_config = ConfigDict(extra="forbid")

    def to_json(self) -> dict[str, Any]:
        return prune_empty(self.model_dump(mode="json", exclude_none=True, by_alias=True))


def prune_empty(value: Any) -> Any:
    """Drop null and empty optional members, recursively (the spec forbids ``null``, ``""``, ``[]``, ``{}``)."""
    if isinstance(value, dict):
        pruned = {k: prune_empty(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v is not None and v != "" and v != [] and v != {}}
    if isinstance(value, list):
        return [prune_empty(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------------------------
# Request
# ------------------------------------------------------------------------------------------------------------------
class FhirAuthorization(_Request):
    access_token: SecretStr = Field(min_length=1)
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int | None = Field(default=None, ge=0)
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None

    @field_validator("token_type")
    @classmethod
    def _bearer(cls, value: str) -> str:
        if value.lower() != "bearer":
            raise ValueError("token_type must be Bearer")
        return "Bearer"


def _check_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.match(r"^https?://[^\s/?#]+", value) or any(c.isspace() for c in value):
        raise ValueError("must be an absolute http(s) URL")
    return value.rstrip("/")


class HookRequest(_Request):
    hook: str = Field(min_length=1, max_length=128)
    hookInstance: str = Field(min_length=1, max_length=256)
    fhirServer: str | None = Field(default=None, max_length=2048)
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, dict[str, Any] | None] | None = None
    extension: dict[str, Any] | None = None

    @field_validator("fhirServer")
    @classmethod
    def _server(cls, value: str | None) -> str | None:
        return _check_url(value)

    @model_validator(mode="after")
    def _authorization_needs_server(self) -> HookRequest:
        # cds-r-1: fhirAuthorization.exists() implies fhirServer.exists()
        if self.fhirAuthorization is not None and self.fhirServer is None:
            raise ValueError("fhirAuthorization requires fhirServer")
        return self

    @property
    def access_token(self) -> str | None:
        return self.fhirAuthorization.access_token.get_secret_value() if self.fhirAuthorization else None


class HookContext(_Request):
    """The context every hook shares (CDS Hooks 2.0): who is looking at which patient, in which encounter."""

    userId: str | None = Field(default=None, max_length=1024)
    patientId: str
    encounterId: str | None = None

    @field_validator("patientId", "encounterId")
    @classmethod
    def _fhir_id(cls, value: str | None) -> str | None:
        if value is not None and not _ID_PATTERN.match(value):
            raise ValueError("must be a FHIR resource id")
        return value


def _draft_bundle(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("resourceType") != "Bundle":
        raise ValueError("draftOrders must be a FHIR Bundle")
    entries = value.get("entry", [])
    if entries is not None and not isinstance(entries, list):
        raise ValueError("draftOrders.entry must be an array")
    for entry in entries or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("resource", {}), dict):
            raise ValueError("draftOrders.entry[] must be objects with a resource object")
    return value


def _draft_resources(bundle: dict[str, Any] | None) -> list[dict[str, Any]]:
    entries = (bundle or {}).get("entry") or []
    return [
        e["resource"]
        for e in entries
        if isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and isinstance(e["resource"].get("resourceType"), str)
    ]


class PatientViewContext(HookContext):
    # Epic fires its native order triggers (enter order 18, sign orders 23) as patient-view, with the orders.
    draftOrders: dict[str, Any] | None = None

    @field_validator("draftOrders")
    @classmethod
    def _bundle(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _draft_bundle(value)

    def draft_resources(self) -> list[dict[str, Any]]:
        return _draft_resources(self.draftOrders)


class _DraftOrdersContext(HookContext):
    draftOrders: dict[str, Any]

    @field_validator("draftOrders")
    @classmethod
    def _bundle(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _draft_bundle(value)

    def draft_resources(self) -> list[dict[str, Any]]:
        return _draft_resources(self.draftOrders)


class OrderSignContext(_DraftOrdersContext):
    pass


class OrderSelectContext(_DraftOrdersContext):
    selections: list[str] = Field(min_length=1)

    @field_validator("selections")
    @classmethod
    def _references(cls, value: list[str]) -> list[str]:
        for ref in value:
            # ord-1: selections are Type/id references into draftOrders
            if not _REFERENCE_PATTERN.match(ref):
                raise ValueError("selections must be Type/id references")
        return value


class EncounterDischargeContext(HookContext):
    encounterId: str  # required by the encounter-discharge hook


# ----------------------------------------------------------------------------------------------------------------
# Response
# ------------------------------------------------------------------------------------------------------------------
class Coding(_Response):
    system: str
    code: str
    display: str | None = None


class Source(_Response):
    label: str = Field(min_length=1)
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Link(_Response):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None


class Action(_Response):
    type: Literal["create", "update", "delete"]
    description: str = Field(min_length=1)
    resource: dict[str, Any] | None = None
    resourceId: str | None = None
    # The order's key in a site's order catalog (never sent: the EHR profile maps it to the site's own codes).
    order_key: str | None = Field(default=None, exclude=True)


class Suggestion(_Response):
    label: str = Field(min_length=1)
    uuid: str = Field(default_factory=lambda: str(uuid.uuid4()))
    isRecommended: bool | None = None
    actions: list[Action] | None = None
    # The catalog key of an order set that can stand for all the actions (serial imaging); never sent.
    order_set_key: str | None = Field(default=None, exclude=True)


class Card(_Response):
    uuid: str = Field(default_factory=lambda: str(uuid.uuid4()))
    summary: str = Field(min_length=1, max_length=139)  # "<140-character"
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None

    @model_validator(mode="after")
    def _selection_rules(self) -> Card:
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("selectionBehavior is required with suggestions")
        recommended = sum(1 for s in self.suggestions or [] if s.isRecommended)
        if self.selectionBehavior == "at-most-one" and recommended > 1:
            raise ValueError("at most one suggestion may be recommended with at-most-one")  # cds-resp-1
        for reason in self.overrideReasons or []:
            if not reason.display:
                raise ValueError("overrideReasons need a display")
        return self


class CdsResponse(_Response):
    cards: list[Card] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        # ``{"cards": []}`` is the one empty array the specification asks for.
        return {"cards": [card.to_json() for card in self.cards]}


class ServiceDescriptor(_Response):
    hook: str
    id: str
    title: str
    description: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


# ----------------------------------------------------------------------------------------------------------------
# Feedback
# ------------------------------------------------------------------------------------------------------------------
class AcceptedSuggestion(_Request):
    id: str = Field(min_length=1, max_length=256)


class FeedbackCoding(_Request):
    system: str | None = None
    code: str | None = None
    display: str | None = None


# Why a clinician overrides a card (CDS Hooks 2.0 ``overrideReasons``): stable codes an EHR maps to its own
# acknowledgment reasons, and the feedback report counts. Never rename a code.
OVERRIDE_REASON_SYSTEM = "urn:distal-dvt-cds:override-reason"
OVERRIDE_REASONS: dict[str, str] = {
    "patient-declined": "Patient declined",
    "managed-elsewhere": "Managed by another clinician or service",
    "already-on-treatment": "Already anticoagulated or repeat imaging already arranged",
    "contraindicated": "Contraindicated for this patient",
    "not-distal-dvt": "Not a distal DVT (diagnosis not confirmed or veins misrecorded)",
    "record-incorrect": "The record the card was based on is wrong or incomplete",
}


_EPIC_REASON = "com.epic.cdshooks.feedback.overrideReason."
EPIC_REASON_SYSTEM = "urn:com.epic.cdshooks.feedback.override-reason"


class OverrideReason(_Request):
    reason: FeedbackCoding | None = None
    userComment: str | None = Field(default=None, max_length=4000)
    extension: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _epic_reason(self) -> OverrideReason:
        """Epic sends the reason in its extension (reasonCategory, reasonDisplay, reasonTitle): read it as a
        coding, ours when the site mapped Epic's reason onto one of our codes or displays."""
        if (self.reason is not None and self.reason.code) or not isinstance(self.extension, dict):
            return self
        values = {k.removeprefix(_EPIC_REASON): v for k, v in self.extension.items() if isinstance(v, str | int)}
        category = str(values.get("reasonCategory", "")).strip() or None
        display = str(values.get("reasonDisplay") or values.get("reasonTitle") or "").strip() or None
        if category is None and display is None:
            return self
        ours = next(
            (
                code
                for code, words in OVERRIDE_REASONS.items()
                if category == code or (display or "").lower() in (code, words.lower())
            ),
            None,
        )
        if ours is not None:
            self.reason = FeedbackCoding(system=OVERRIDE_REASON_SYSTEM, code=ours, display=OVERRIDE_REASONS[ours])
        else:
            self.reason = FeedbackCoding(system=EPIC_REASON_SYSTEM, code=category or display, display=display)
        return self


class FeedbackItem(_Request):
    card: str = Field(min_length=1, max_length=256)  # Epic sends non-UUID ids
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: datetime
    extension: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _epic_override_reasons(cls, data: Any) -> Any:
        # Epic's examples use the plural key ``overrideReasons`` (an object, sometimes a list).
        if isinstance(data, dict) and "overrideReasons" in data and "overrideReason" not in data:
            data = dict(data)
            reasons = data.pop("overrideReasons")
            if isinstance(reasons, list):
                reasons = reasons[0] if reasons else None
            data["overrideReason"] = reasons
        return data

    @field_validator("outcomeTimestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class FeedbackRequest(_Request):
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=1000)
