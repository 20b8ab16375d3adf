"""Every factor that weighs for anticoagulation (A) or for serial imaging (S), declared once.

The rules: docs/clinical/RULES.md R-RISK-* and R-SERIAL-*.

One row per factor: its code, its label (numbers rendered from ``thresholds.py``, never retyped), the option it
favours, its citation (CHEST, or the seed document alone), the resource types and value sets it reads, the
``ClinicalFacts`` finding it reads (so a resource type the record could not obtain makes it "not assessed"), and
its reader. From this table come the rule lists of each profile (``assessment.py``), what the facts builder
selects (``facts.py``), and which findings become "not assessed" when data is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from cds_service.clinical import evidence
from cds_service.clinical import thresholds as th
from cds_service.clinical.bleeding import BleedingCategory, BleedingRisk
from cds_service.clinical.config import RuleConfig
from cds_service.clinical.ddimer import DDIMER_SETS
from cds_service.clinical.evidence import Citation
from cds_service.clinical.model import ClinicalFacts, Side, SourceRef, Thrombosis, distinct_veins


class Option(StrEnum):
    ANTICOAGULATION = "anticoagulation"
    SERIAL_IMAGING = "serial-imaging"


@dataclass
class Factor:
    code: str
    label: str
    favours: Option
    sources: list[SourceRef]
    chest: bool  # True: in CHEST (and the seed); False: in the project's source document only
    detail: str = ""

    @property
    def source_label(self) -> str:
        return "CHEST" if self.chest else "seed only"


@dataclass(frozen=True)
class Evidence:
    """What a reader found: the resources (with the report sentence, for text) and the detail in words."""

    sources: list[SourceRef]
    detail: str = ""


@dataclass(frozen=True)
class RuleInputs:
    config: RuleConfig
    bleeding: BleedingRisk | None = None


Reader = Callable[[ClinicalFacts, Thrombosis, RuleInputs], "Evidence | None"]


@dataclass(frozen=True)
class Reads:
    """A resource type a factor is read from, and the value sets selecting it (empty: any of the type)."""

    resource_type: str
    valuesets: tuple[str, ...] = ()


@dataclass(frozen=True)
class FactorSpec:
    code: str
    label: str
    favours: Option
    citation: Citation  # CHEST_2016 for CHEST's factors, SEED for the seed document's additions
    reads: tuple[Reads, ...]
    reader: Reader
    fact: str | None = None  # the ClinicalFacts Finding this factor reads, made "not assessed" with its data
    profiles: frozenset[str] = field(default=frozenset({"seed", "chest"}))

    @property
    def chest(self) -> bool:
        return self.citation is not evidence.SEED

    def evaluate(self, facts: ClinicalFacts, episode: Thrombosis, inputs: RuleInputs) -> Factor | None:
        found = self.reader(facts, episode, inputs)
        if found is None:
            return None
        return Factor(self.code, self.label, self.favours, list(dict.fromkeys(found.sources)), self.chest, found.detail)


def words(rule: str) -> str:
    """A threshold's rule as shown to people: ">= 2 veins" → "≥ 2 veins"."""
    return rule.replace(">=", "≥").replace("<=", "≤")


def same_leg(side: Side, baseline: Side) -> bool:
    return Side.UNKNOWN in (side, baseline) or side == baseline or Side.BILATERAL in (side, baseline)


def episode_thromboses(facts: ClinicalFacts, episode: Thrombosis) -> list[Thrombosis]:
    """The distal thromboses of the current episode (Condition and imaging of the same leg)."""
    return [t for t in facts.thromboses if t.acute and t.is_distal and same_leg(t.side, episode.side)] or [episode]


# ----------------------------------------------------------------------------------------------------------------
# Readers of the factors favouring anticoagulation: CHEST AT9 §2.3 risk factors for extension (2016/2021), and
# the seed document's three additions.
# ------------------------------------------------------------------------------------------------------------------
def _positive_ddimer(facts: ClinicalFacts, episode: Thrombosis, inputs: RuleInputs) -> Evidence | None:
    d = facts.ddimer
    if d is None or d.positive is not True:
        return None
    return Evidence([d.source], f"{d.value_text}: {d.reason}")


def _extensive(facts: ClinicalFacts, episode: Thrombosis, inputs: RuleInputs) -> Evidence | None:
    """Length over the threshold, or at least two veins counted across the episode's Condition and imaging, each
    vein once (a code's vein group and the vein an ultrasound names are the same thrombus)."""
    details, sources = [], []
    thromboses = episode_thromboses(facts, episode)
    for t in thromboses:
        if t.length_cm is not None and t.length_cm > th.THROMBUS_LENGTH_CM.value:
            details.append(f"length {t.length_cm:g} cm ({th.THROMBUS_LENGTH_CM.rule})")
            sources.append(t.source_for("length"))
    veins = distinct_veins(v for t in thromboses for v in t.veins)
    if len(veins) >= th.THROMBOSED_VEIN_COUNT.value:
        details.append(f"{len(veins)} veins: {', '.join(sorted(v.name for v in veins))}")
        sources.extend(t.source_for("veins") for t in thromboses if any(v in veins for v in t.veins))
    return Evidence(sources, "; ".join(details)) if details else None


def _wide(facts: ClinicalFacts, episode: Thrombosis, inputs: RuleInputs) -> Evidence | None:
    for t in episode_thromboses(facts, episode):
        if t.diameter_mm is not None and t.diameter_mm > th.THROMBUS_DIAMETER_MM.value:
            return Evidence([t.source_for("diameter")], f"diameter {t.diameter_mm:g} mm")
    return None


def _close(facts: ClinicalFacts, episode: Thrombosis, inputs: RuleInputs) -> Evidence | None:
    limit = inputs.config.close_to_popliteal_cm
    for t in episode_thromboses(facts, episode):
        d = t.distance_to_popliteal_cm
        if d is not None and d <= limit:
            return Evidence(
                [t.source_for("distance")],
                f"{d:g} cm from the popliteal vein (≤ {limit:g} cm, a project setting: CHEST gives no number)",
            )
    return None


def _unprovoked(facts: ClinicalFacts, episode: Thrombosis, inputs: RuleInputs) -> Evidence | None:
    if facts.provoking:
        return None
    if any(f.present is None for f in (facts.recent_surgery, facts.recent_hospitalization)):
        return None  # cannot call it unprovoked without the data; reported as missing
    return Evidence(
        [episode.source],
        "no surgery, hospitalization, leg injury, immobilization, pregnancy or estrogen therapy found in the record "
        f"in the {th.PROVOKING_WINDOW_DAYS.int_value} days before diagnosis",
    )


def _finding(attribute: str, detail: str = "", *, with_note: bool = False) -> Reader:
    """A factor that is a ``ClinicalFacts`` finding present in the record (its note as the detail, if asked)."""

    def read(facts: ClinicalFacts, episode: Thrombosis, inputs: RuleInputs) -> Evidence | None:
        found = getattr(facts, attribute)
        return Evidence(found.sources, found.note if with_note else detail) if found.present else None

    return read


def _recent_hospitalization(facts: ClinicalFacts, episode: Thrombosis, inputs: RuleInputs) -> Evidence | None:
    found = facts.recent_hospitalization
    days = inputs.config.recent_hospitalization_days
    return Evidence(found.sources, f"within {days} days") if found.present else None


def _recent_surgery(facts: ClinicalFacts, episode: Thrombosis, inputs: RuleInputs) -> Evidence | None:
    found = facts.recent_surgery
    days = inputs.config.recent_surgery_days
    detail = f"within {days} days (in CHEST a surgical trigger makes the DVT provoked)"
    return Evidence(found.sources, detail) if found.present else None


# ----------------------------------------------------------------------------------------------------------------
# Readers of the factors favouring serial imaging: CHEST's remarks, and the seed's "moderate bleeding risk".
# ------------------------------------------------------------------------------------------------------------------
def _muscular_only(facts: ClinicalFacts, episode: Thrombosis, inputs: RuleInputs) -> Evidence | None:
    threads = episode_thromboses(facts, episode)
    if threads and all(t.muscular_only for t in threads):
        return Evidence([t.source_for("veins") for t in threads], "lower extension risk than axial calf veins")
    return None


def _bleeding(category: BleedingCategory) -> Reader:
    def read(facts: ClinicalFacts, episode: Thrombosis, inputs: RuleInputs) -> Evidence | None:
        bleeding = inputs.bleeding
        if bleeding is None or bleeding.category != category:
            return None
        return Evidence([s for f in bleeding.factors for s in f.sources], ", ".join(f.label for f in bleeding.factors))

    return read


_CANCER = (Reads("Condition", ("condition-active-cancer",)),)
_DVT_AND_IMAGING = (
    Reads("Condition", ("condition-dvt-distal-axial", "condition-dvt-distal-muscular")),
    Reads("Observation", ("venous-duplex-lower-extremity",)),
    Reads("DiagnosticReport", ("venous-duplex-lower-extremity",)),
)
_BLEEDING_READS = (Reads("Condition"), Reads("Observation"), Reads("MedicationRequest"), Reads("Procedure"))

FACTORS: tuple[FactorSpec, ...] = (
    FactorSpec(
        "positive-d-dimer",
        "positive D-dimer",
        Option.ANTICOAGULATION,
        evidence.CHEST_2016,
        (Reads("Observation", DDIMER_SETS),),
        _positive_ddimer,
    ),
    FactorSpec(
        "extensive-thrombosis",
        f"length {words(th.THROMBUS_LENGTH_CM.rule)} or {words(th.THROMBOSED_VEIN_COUNT.rule)}",
        Option.ANTICOAGULATION,
        evidence.CHEST_2016,
        _DVT_AND_IMAGING,
        _extensive,
    ),
    FactorSpec(
        "diameter-over-7mm",
        f"maximum diameter {words(th.THROMBUS_DIAMETER_MM.rule)}",
        Option.ANTICOAGULATION,
        evidence.CHEST_2016,
        _DVT_AND_IMAGING,
        _wide,
    ),
    FactorSpec(
        "close-to-proximal-veins",
        "close to the proximal veins",
        Option.ANTICOAGULATION,
        evidence.CHEST_2016,
        _DVT_AND_IMAGING,
        _close,
    ),
    FactorSpec(
        "unprovoked",
        "unprovoked (no transient provoking factor)",
        Option.ANTICOAGULATION,
        evidence.CHEST_2016,
        (
            Reads("Procedure", ("procedure-surgical", "procedure-delivery")),
            Reads("Encounter", ("encounter-class-inpatient", "encounter-type-inpatient")),
            Reads("Condition", ("condition-leg-trauma", "condition-immobilization", "condition-pregnancy")),
            Reads("MedicationRequest", ("medication-estrogen",)),
        ),
        _unprovoked,
    ),
    FactorSpec(
        "active-cancer",
        "active cancer",
        Option.ANTICOAGULATION,
        evidence.CHEST_2016,
        _CANCER,
        _finding("active_cancer", with_note=True),
        fact="active_cancer",
    ),
    FactorSpec(
        "prior-vte",
        "previous VTE",
        Option.ANTICOAGULATION,
        evidence.CHEST_2016,
        (
            Reads("Condition", ("condition-dvt-chronic", "condition-vte-history", "condition-pulmonary-embolism")),
            Reads("DiagnosticReport", ("venous-duplex-lower-extremity",)),
        ),
        _finding("prior_vte"),
        fact="prior_vte",
    ),
    FactorSpec(
        "inpatient",
        "inpatient",
        Option.ANTICOAGULATION,
        evidence.CHEST_2016,
        (Reads("Encounter", ("encounter-class-inpatient", "encounter-type-inpatient")),),
        _finding("inpatient"),
        fact="inpatient",
    ),
    FactorSpec(
        "severe-symptoms",
        "severe symptoms",
        Option.ANTICOAGULATION,
        evidence.CHEST_2016,
        (
            Reads("Condition", ("condition-dvt-distal-axial", "condition-dvt-distal-muscular")),  # its severity
            Reads("Observation", ("observation-pain-score",)),
        ),
        _finding("severe_symptoms"),
        fact="severe_symptoms",
    ),
    FactorSpec(
        # Not an extension-risk factor but a treatment indication in itself (CHEST 2016 treats PE with
        # anticoagulation): serial imaging is then not offered.
        "pulmonary-embolism",
        "acute pulmonary embolism",
        Option.ANTICOAGULATION,
        evidence.CHEST_2016,
        (Reads("Condition", ("condition-pulmonary-embolism",)),),
        _finding("pulmonary_embolism", "PE is itself an indication for anticoagulation"),
        fact="pulmonary_embolism",
    ),
    FactorSpec(
        "recent-hospitalization",
        "recent hospitalization",
        Option.ANTICOAGULATION,
        evidence.SEED,
        (Reads("Encounter", ("encounter-class-inpatient", "encounter-type-inpatient")),),
        _recent_hospitalization,
        fact="recent_hospitalization",
        profiles=frozenset({"seed"}),
    ),
    FactorSpec(
        "recent-surgery",
        "recent surgery",
        Option.ANTICOAGULATION,
        evidence.SEED,
        (Reads("Procedure", ("procedure-surgical",)),),
        _recent_surgery,
        fact="recent_surgery",
        profiles=frozenset({"seed"}),
    ),
    FactorSpec(
        "covid-19",
        "COVID-19",
        Option.ANTICOAGULATION,
        evidence.SEED,
        (Reads("Condition", ("condition-covid19",)),),
        _finding("covid19"),
        fact="covid19",
        profiles=frozenset({"seed"}),
    ),
    FactorSpec(
        "muscular-veins-only",
        "confined to the muscular calf veins",
        Option.SERIAL_IMAGING,
        evidence.CHEST_2016,
        _DVT_AND_IMAGING,
        _muscular_only,
    ),
    FactorSpec(
        "high-bleeding-risk",
        "high bleeding risk",
        Option.SERIAL_IMAGING,
        evidence.CHEST_2016,
        _BLEEDING_READS,
        _bleeding(BleedingCategory.HIGH),
    ),
    FactorSpec(
        "moderate-bleeding-risk",
        "moderate bleeding risk",
        Option.SERIAL_IMAGING,
        evidence.SEED,
        _BLEEDING_READS,
        _bleeding(BleedingCategory.MODERATE),
        profiles=frozenset({"seed"}),
    ),
    FactorSpec(
        "patient-preference",
        "patient prefers to avoid anticoagulation",
        Option.SERIAL_IMAGING,
        evidence.CHEST_2016,
        (Reads("Observation", ("preference-avoid-anticoagulation",)),),
        _finding("prefers_no_anticoagulation"),
        fact="prefers_no_anticoagulation",
    ),
)
BY_CODE: dict[str, FactorSpec] = {spec.code: spec for spec in FACTORS}


def factors_of(profile: str, favours: Option) -> tuple[FactorSpec, ...]:
    """The factors a rule profile counts on one side, in the table's order."""
    return tuple(spec for spec in FACTORS if spec.favours == favours and profile in spec.profiles)


def valuesets_read(resource_type: str) -> tuple[str, ...]:
    """Every value set the factors select ``resource_type`` by (for the facts builder's selection)."""
    found = (vs for spec in FACTORS for r in spec.reads if r.resource_type == resource_type for vs in r.valuesets)
    return tuple(dict.fromkeys(found))


def facts_read_from(resource_type: str) -> tuple[str, ...]:
    """The ``ClinicalFacts`` findings read from ``resource_type``: "not assessed" when it cannot be obtained."""
    return tuple(
        dict.fromkeys(
            spec.fact for spec in FACTORS if spec.fact and any(r.resource_type == resource_type for r in spec.reads)
        )
    )
