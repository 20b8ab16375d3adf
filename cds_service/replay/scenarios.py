"""The scenario library: ``fhir_fixtures/manifest.json`` and the FHIR Bundles it names.

A scenario is one patient (a FHIR ``collection`` Bundle with exactly one Patient) and the hook calls to make
about them, each with its context, draft orders where the hook needs them, how the EHR shapes the prefetch, and
the cards expected back. Dates in the bundles are written relative to the manifest's ``anchor``: the tests run
the service with its clock at the anchor; replay against a live service shifts every date by (now − anchor) so
the clinical picture is the same on any day.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PrefetchShape = Literal[
    "present",  # a searchset Bundle (or the resource) — the default
    "absent",  # the key is left out: the service must fetch it
    "null",  # the key is null: "no data" for a search
    "operation-outcome",  # an OperationOutcome in place of the data: the service must fetch it
    "outcome-entry",  # Epic style: the matches plus an informational OperationOutcome entry (search.mode outcome)
    "paginated",  # the first page only, with a next link to the FHIR server
    "no-include",  # the EHR ignored _include: the referenced Medications are not in the prefetch
]
# Fixtures write absolute URLs into the EHR's FHIR server (Oracle Health's presentedForm Binary links) under this
# base; the replay puts the FHIR server it uses in its place.
FIXTURE_FHIR_BASE = "https://ehr.example.org/fhir/r4"
_SERVER_SHAPES = frozenset({"absent", "operation-outcome", "paginated", "no-include"})


class ExpectedCard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: str
    indicator: Literal["info", "warning", "critical"] | None = None
    recommended: Literal["anticoagulation", "serial-imaging", "other"] | None = None
    summary_contains: str | None = None
    detail_contains: list[str] = Field(default_factory=list)


class Expectation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cards: list[ExpectedCard] = Field(default_factory=list)
    status: int = 200


class Call(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hook: Literal["patient-view", "order-select", "order-sign", "encounter-discharge"]
    encounter_id: str | None = Field(default=None, alias="encounterId")
    draft_orders: str | None = Field(default=None, alias="draftOrders")  # file of a collection Bundle
    selections: list[str] | None = None
    prefetch_shape: dict[str, PrefetchShape] = Field(default_factory=dict, alias="prefetchShape")
    expect: Expectation

    @property
    def service_id(self) -> str:
        return f"distal-dvt-{self.hook}"


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{2,80}$")
    title: str
    description: str
    bundle: str
    covers: list[str] = Field(default_factory=list)  # the docs/clinical/RULES.md rules / hook-table rows it exercises
    why: str | None = None  # for a vendor-shaped record: where the shape is documented
    calls: list[Call] = Field(min_length=1)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    anchor: datetime
    scenarios: list[Scenario]

    @field_validator("anchor")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Library:
    """The manifest and its files, loaded from a fixtures folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.manifest = Manifest.model_validate_json((folder / "manifest.json").read_text(encoding="utf-8"))
        self._by_id = {s.id: s for s in self.manifest.scenarios}

    @property
    def anchor(self) -> datetime:
        return self.manifest.anchor

    @property
    def scenarios(self) -> list[Scenario]:
        return self.manifest.scenarios

    def scenario(self, scenario_id: str) -> Scenario:
        try:
            return self._by_id[scenario_id]
        except KeyError:
            raise KeyError(f"no scenario {scenario_id!r} in {self.folder / 'manifest.json'}") from None

    def read(self, relative: str) -> dict[str, Any]:
        return json.loads((self.folder / relative).read_text(encoding="utf-8"))

    def resources(self, scenario: Scenario) -> list[dict[str, Any]]:
        bundle = self.read(scenario.bundle)
        return [e["resource"] for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)]

    def drafts(self, call: Call) -> dict[str, Any] | None:
        return self.read(call.draft_orders) if call.draft_orders else None

    def needs_fhir_server(self, scenario: Scenario) -> bool:
        """Whether a full-prefetch replay of the scenario still needs a FHIR server: data the EHR leaves out, or
        report text the service reads from a ``Binary``."""
        if any(shape in _SERVER_SHAPES for call in scenario.calls for shape in call.prefetch_shape.values()):
            return True
        return any(r.get("resourceType") == "Binary" for r in self.resources(scenario))


def with_fhir_base(value: Any, base: str | None) -> Any:
    """Every absolute URL written under ``FIXTURE_FHIR_BASE`` moved to ``base`` (the FHIR server in use)."""
    if base is None:
        return value
    if isinstance(value, dict):
        return {k: with_fhir_base(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [with_fhir_base(v, base) for v in value]
    if isinstance(value, str) and value.startswith(FIXTURE_FHIR_BASE):
        return base.rstrip("/") + value[len(FIXTURE_FHIR_BASE) :]
    return value


def default_folder() -> Path:
    """``fhir_fixtures/`` of the source tree this package runs from (replay from a checkout)."""
    return Path(__file__).resolve().parents[2] / "fhir_fixtures"


def patient_id(resources: list[dict[str, Any]]) -> str:
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    if len(patients) != 1:
        raise ValueError(f"a scenario bundle needs exactly one Patient, found {len(patients)}")
    return str(patients[0]["id"])


_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$")


def shift_dates(value: Any, days: int) -> Any:
    """Every full date or dateTime string moved by ``days`` (birth dates too, so ages stay the same)."""
    if days == 0:
        return value
    if isinstance(value, dict):
        return {k: shift_dates(v, days) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_dates(v, days) for v in value]
    if isinstance(value, str):
        match = _DATE.match(value)
        if match:
            moved = datetime.fromisoformat(match.group(1)) + timedelta(days=days)
            return moved.date().isoformat() + (match.group(2) or "")
    return value


def days_between(anchor: datetime, now: datetime) -> int:
    return (now.astimezone(UTC).date() - anchor.astimezone(UTC).date()).days
