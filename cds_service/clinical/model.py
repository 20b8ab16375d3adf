"""Plain data the clinical core passes around: facts read from the record, and what was decided.

No FHIR models, no Flask: the facts carry only what the rules and the cards need, each with the resource
(``SourceRef``) it came from so a card can say why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from enum import StrEnum


class VeinClass(StrEnum):
    PROXIMAL = "proximal"
    DISTAL_AXIAL = "distal-axial"
    DISTAL_MUSCULAR = "distal-muscular"
    DISTAL_UNSPECIFIED = "distal-unspecified"
    UNKNOWN = "unknown"

    @property
    def is_distal(self) -> bool:
        return self in (VeinClass.DISTAL_AXIAL, VeinClass.DISTAL_MUSCULAR, VeinClass.DISTAL_UNSPECIFIED)


# Order of "how proximal": an episode is classified by its most proximal vein.
_PROXIMALITY = {
    VeinClass.PROXIMAL: 4,
    VeinClass.DISTAL_AXIAL: 3,
    VeinClass.DISTAL_UNSPECIFIED: 2,
    VeinClass.DISTAL_MUSCULAR: 1,
    VeinClass.UNKNOWN: 0,
}


class Side(StrEnum):
    RIGHT = "right"
    LEFT = "left"
    BILATERAL = "bilateral"
    UNKNOWN = "unknown"

    def covers(self, other: Side) -> bool:
        """Whether findings on this side include the ``other`` leg."""
        return self == other or self == Side.BILATERAL

    @property
    def other(self) -> Side:
        return {Side.RIGHT: Side.LEFT, Side.LEFT: Side.RIGHT}.get(self, Side.UNKNOWN)


class Verification(StrEnum):
    CONFIRMED = "confirmed"
    PROVISIONAL = "provisional"
    SUSPECTED = "suspected"  # differential / unconfirmed


@dataclass(frozen=True)
class SourceRef:
    """Where a fact came from: ``Condition/123`` dated 2026-11-20, coded ICD-10-CM I82.461; for a fact read
    from report text, the sentence it came from (``quote``, at most 160 characters)."""

    reference: str
    when: date | None = None
    how: str = ""
    quote: str | None = None

    def describe(self) -> str:
        parts = [self.reference]
        if self.when:
            parts.append(self.when.isoformat())
        if self.how:
            parts.append(self.how)
        if self.quote:
            parts.append(f'report text: "{self.quote}"')
        return ", ".join(parts)

    @property
    def from_text(self) -> bool:
        return self.quote is not None


@dataclass(frozen=True)
class Vein:
    name: str
    vein_class: VeinClass
    code: str | None = None
    specific: bool = True  # False for a code's vein group ("tibial vein", "calf muscular vein")

    def covers(self, other: Vein) -> bool:
        """Whether this generic vein group includes ``other`` (I82.46- "calf muscular vein" includes the
        gastrocnemius vein): the same thrombus described at two precisions, not two veins."""
        if self.specific:
            return self.name == other.name
        if self.vein_class == VeinClass.DISTAL_UNSPECIFIED:
            return other.vein_class.is_distal
        if self.vein_class != other.vein_class:
            return False
        stem = self.name.split()[0]
        return stem in ("calf", "proximal") or stem in other.name

    def __lt__(self, other: Vein) -> bool:
        return (self.vein_class, self.name) < (other.vein_class, other.name)


def _breadth(vein: Vein) -> int:
    """0 a vein, 1 a group of one class ("calf muscular vein", "tibial vein"), 2 a group of all distal or all
    proximal veins."""
    if vein.specific:
        return 0
    if vein.vein_class == VeinClass.DISTAL_UNSPECIFIED or vein.name.split()[0] == "proximal":
        return 2
    return 1


def distinct_veins(veins: Iterable[Vein]) -> list[Vein]:
    """Each vein once; a vein group folds into any more precise vein or group it includes, so one clot recorded
    as "calf muscular vein" (I82.46-) and as "distal deep veins" (I82.4Z-) is one thrombus, not two veins."""
    found: dict[str, Vein] = {}
    for vein in sorted(veins, key=_breadth):
        if vein.name in found:
            continue
        if not vein.specific and any(vein.covers(kept) for kept in found.values()):
            continue
        found[vein.name] = vein
    return list(found.values())


@dataclass
class Thrombosis:
    """One DVT: from a Condition, or from a venous ultrasound finding."""

    veins: tuple[Vein, ...]
    side: Side
    onset: date | None
    verification: Verification
    acute: bool
    source: SourceRef
    from_text: bool = False
    length_cm: float | None = None
    diameter_mm: float | None = None
    distance_to_popliteal_cm: float | None = None
    from_imaging: bool = False
    from_report_text: bool = False  # read from a report's narrative (docs/clinical/RULES.md R-TEXT-10), not from codes
    occlusive: bool | None = None
    evidence: dict[str, str] = field(default_factory=dict)  # fact (veins, length, ...) -> the sentence it came from

    def source_for(self, fact: str) -> SourceRef:
        """The source of one fact of this thrombosis: for text, with the sentence that states it."""
        quote = self.evidence.get(fact) or self.evidence.get("veins")
        return replace(self.source, quote=quote) if quote else self.source

    @property
    def vein_class(self) -> VeinClass:
        if not self.veins:
            return VeinClass.UNKNOWN
        return max((v.vein_class for v in self.veins), key=_PROXIMALITY.__getitem__)

    @property
    def is_distal(self) -> bool:
        return self.vein_class.is_distal

    @property
    def muscular_only(self) -> bool:
        return bool(self.veins) and all(v.vein_class == VeinClass.DISTAL_MUSCULAR for v in self.veins)

    @property
    def vein_count(self) -> int:
        return len(distinct_veins(self.veins))

    def describe(self) -> str:
        veins = ", ".join(sorted({v.name for v in self.veins})) or "veins not documented"
        side = "" if self.side == Side.UNKNOWN else f"{self.side.value} "
        return f"{side}{veins}"


@dataclass
class ImagingStudy:
    """A venous duplex ultrasound result (Observation, grouped by a DiagnosticReport where present)."""

    source: SourceRef
    when: date | None
    legs_examined: Side
    thromboses: list[Thrombosis] = field(default_factory=list)  # one per leg with thrombus
    no_thrombus: bool = False
    coded: bool = True  # findings from coded components or conclusionCode
    limited: bool = False
    text_read: bool = False  # findings read from the report's narrative
    change: str | None = None  # what the report text says changed: extension | unchanged | resolved
    change_source: SourceRef | None = None
    chronic: list[SourceRef] = field(default_factory=list)  # chronic (old) thrombus: prior VTE, not this episode
    uncertain: list[SourceRef] = field(default_factory=list)  # "possible thrombus": a suspected DVT
    notes: list[str] = field(default_factory=list)  # what the text said that is not DVT, or could not be read

    @property
    def readable(self) -> bool:
        """Whether anything about the veins could be read from this study (codes or text)."""
        return self.coded or self.text_read


@dataclass
class DDimer:
    positive: bool | None
    reason: str  # why positive/negative, in words: "lab interpretation H", ">= 500 ng/mL FEU"
    value_text: str
    source: SourceRef


@dataclass
class Finding:
    """A yes/no fact with its evidence; ``present`` None means it could not be assessed."""

    present: bool | None
    sources: list[SourceRef] = field(default_factory=list)
    note: str = ""

    @classmethod
    def absent(cls, note: str = "") -> Finding:
        return cls(False, [], note)

    @classmethod
    def unknown(cls, note: str) -> Finding:
        return cls(None, [], note)


@dataclass
class Measurement:
    value: float
    unit: str
    source: SourceRef


class DoseIntensity(StrEnum):
    TREATMENT = "treatment"
    PROPHYLACTIC = "prophylactic"
    UNKNOWN = "unknown"  # counts as treatment (docs/clinical/RULES.md R-MED-2); the card says so


@dataclass
class MedicationUse:
    agent: str  # ingredient name, e.g. "apixaban"
    agent_class: str  # doac | vka | lmwh | fondaparinux | ufh | parenteral-dti | antiplatelet | nsaid
    source: SourceRef
    intensity: DoseIntensity = DoseIntensity.UNKNOWN
    daily_dose_mg: float | None = None
    duration_days: int | None = None
    matched_by_text: bool = False
    dose_text: str = ""


@dataclass
class PlannedImaging:
    source: SourceRef
    due: date | None
    legs: Side
    done: bool = False  # a repeat study already performed


@dataclass
class ProvokingFactor:
    kind: str  # surgery | hospitalization | leg-trauma | immobilization | pregnancy | postpartum | estrogen
    label: str
    source: SourceRef


@dataclass
class Patient:
    age: int | None
    sex: str | None  # male | female | other | unknown
    reference: str


@dataclass
class Labs:
    weight: Measurement | None = None
    creatinine_mg_dl: Measurement | None = None
    crcl_ml_min: Measurement | None = None
    egfr: Measurement | None = None
    platelets: Measurement | None = None
    hemoglobin_g_dl: Measurement | None = None


@dataclass
class ClinicalFacts:
    patient: Patient
    thromboses: list[Thrombosis]  # acute episodes, Conditions and imaging
    suspected: list[Thrombosis]  # differential/unconfirmed DVT conditions
    imaging: list[ImagingStudy]
    ddimer: DDimer | None
    anticoagulants: list[MedicationUse]
    antiplatelets: list[MedicationUse]
    nsaids: list[MedicationUse]
    planned_imaging: list[PlannedImaging]
    provoking: list[ProvokingFactor]
    active_cancer: Finding
    metastatic_cancer: Finding
    prior_vte: Finding
    inpatient: Finding
    recent_hospitalization: Finding
    recent_surgery: Finding
    severe_symptoms: Finding
    covid19: Finding
    pregnant: Finding
    postpartum: Finding
    prefers_no_anticoagulation: Finding
    labs: Labs
    bleeding_conditions: dict[str, Finding]  # bleeding-risk factors read from Conditions and history
    pulmonary_embolism: Finding
    interacting_drugs: list[MedicationUse] = field(default_factory=list)  # strong P-gp/CYP3A4 drugs (DOAC caution)
    unidentified_medications: list[str] = field(default_factory=list)  # current orders whose drug could not be read
    # DVT-coded Conditions that are not valid FHIR R4 (a DSTU2 or STU3 server, a broken interface): never silence
    unreadable_dvt: list[str] = field(default_factory=list)
    not_assessed: list[str] = field(default_factory=list)  # data gaps, in words
    data_notes: list[str] = field(default_factory=list)  # data-quality notes (text-only codes, invalid resources)

    @property
    def anticoagulated(self) -> bool:
        return any(m.intensity != DoseIntensity.PROPHYLACTIC for m in self.anticoagulants)

    @property
    def anticoagulation_unchecked(self) -> bool:
        """Whether current anticoagulation could not be checked: medication data missing, or an order whose drug
        could not be read. A card must then not recommend starting anticoagulation as if none were given."""
        return bool(self.unidentified_medications) or any(
            gap.startswith("MedicationRequest ") for gap in self.not_assessed
        )
