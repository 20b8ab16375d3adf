"""Checks on drafted orders (order-select, order-sign): docs/clinical/RULES.md R-ORDER-*, R-PREG-3, R-PITFALL-1 for
anticoagulants and venous ultrasound. Plain functions from drafts and facts to findings; cards.py renders them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cds_service.clinical import terminology as tx
from cds_service.clinical import thresholds as th
from cds_service.clinical.assessment import Assessment, Situation
from cds_service.clinical.fhirdata import concept_text, listed, reference_of
from cds_service.clinical.medications import MedicationLookup, anticoagulant_of, medication_use
from cds_service.clinical.model import ClinicalFacts, MedicationUse, Side
from cds_service.clinical.regimens import THREE_MONTHS_DAYS
from cds_service.clinical.thrombosis import CONDITION_SETS, is_limited_ultrasound, is_venous_duplex, legs_examined


@dataclass
class DraftAnticoagulant:
    use: MedicationUse
    resource: dict[str, Any]

    @property
    def reference(self) -> str:
        return reference_of(self.resource)


@dataclass
class DraftUltrasound:
    resource: dict[str, Any]
    limited: bool
    legs: Side
    for_dvt: bool  # reasonCode / reasonReference names a DVT

    @property
    def reference(self) -> str:
        return reference_of(self.resource)


@dataclass
class NotChecked:
    """A drafted order that could not be read, so none of the checks ran on it: said in a card, never silence."""

    resource: dict[str, Any]
    what: str  # "warfarin 5 MG Oral Tablet", "a drafted medication"
    why: str

    @property
    def reference(self) -> str:
        return reference_of(self.resource)


@dataclass
class Drafts:
    anticoagulants: list[DraftAnticoagulant] = field(default_factory=list)
    ultrasounds: list[DraftUltrasound] = field(default_factory=list)
    not_checked: list[NotChecked] = field(default_factory=list)


_DRUG_PRODUCT = re.compile(r"\d\s*(?:mg|mcg|g|unit|units|iu|ml|%)\b", re.IGNORECASE)


def read_drafts(
    resources: list[dict[str, Any]],
    *,
    weight_kg: float | None,
    medications: list[dict[str, Any]] | None = None,
    invalid: list[tuple[dict[str, Any], str]] | None = None,
) -> Drafts:
    """The drafted anticoagulants and venous ultrasounds among ``resources`` (valid R4), and what could not be
    checked: ``invalid`` drafts (with why) that are an anticoagulant or a venous duplex, and medication drafts
    whose drug cannot be identified at all (it may be an anticoagulant)."""
    lookup = MedicationLookup([r for r in resources if r.get("resourceType") == "Medication"] + (medications or []))
    drafts = Drafts()
    for resource, why in invalid or []:
        kind = resource.get("resourceType")
        if kind == "MedicationRequest":
            concept, _ = lookup.resolve(resource)
            if anticoagulant_of(concept) is not None:
                drafts.not_checked.append(NotChecked(resource, concept_text(concept) or "a drafted anticoagulant", why))
        elif kind == "ServiceRequest" and is_venous_duplex(resource.get("code")):
            drafts.not_checked.append(NotChecked(resource, concept_text(resource.get("code")), why))
    for resource in resources:
        kind = resource.get("resourceType")
        if kind == "MedicationRequest":
            concept, _ = lookup.resolve(resource)
            drug = anticoagulant_of(concept)
            if drug is not None:
                drafts.anticoagulants.append(
                    DraftAnticoagulant(medication_use(resource, drug, weight_kg=weight_kg), resource)
                )
            elif lookup.unresolved(resource) and not _names_a_drug(concept):
                drafts.not_checked.append(
                    NotChecked(resource, concept_text(concept) or "a drafted medication", "its drug could not be read")
                )
        elif kind == "ServiceRequest" and is_venous_duplex(resource.get("code")):
            text = " ".join(
                [concept_text(resource.get("code"))]
                + [n.get("text", "") for n in listed(resource, "note") if isinstance(n, dict)]
            )
            limited = is_limited_ultrasound(resource.get("code")) or tx.valueset(
                "venous-ultrasound-limited"
            ).text_match(text)
            drafts.ultrasounds.append(
                DraftUltrasound(resource, limited, legs_examined(resource.get("code")), _for_dvt(resource))
            )
    return drafts


def _names_a_drug(concept: Any) -> bool:
    text = concept_text(concept)
    return bool(text) and _DRUG_PRODUCT.search(text) is not None


def _for_dvt(resource: dict[str, Any]) -> bool:
    for reason in listed(resource, "reasonCode"):
        if tx.match_any(reason, [vs for vs, _ in CONDITION_SETS]) is not None:
            return True
    return False


# ----------------------------------------------------------------------------------------------------------------
def pregnancy_conflict(draft: DraftAnticoagulant, facts: ClinicalFacts) -> bool:
    """Warfarin (teratogenic) or a DOAC drafted in pregnancy: LMWH instead (Blood 2020; CHEST AT9)."""
    return bool(facts.pregnant.present) and draft.use.agent_class in ("doac", "vka")


def duration_problem(draft: DraftAnticoagulant, assessment: Assessment) -> str | None:
    """Duration differing from docs/clinical/RULES.md R-REGIMEN-2 (R-ORDER-2) for an isolated distal DVT; None when it
    agrees or is unknown."""
    days = draft.use.duration_days
    if days is None or not assessment.isolated_distal or assessment.regimen is None:
        return None
    tolerance = th.DURATION_TOLERANCE_DAYS.value
    at_least_only = assessment.regimen.population in ("cancer", "pregnancy")
    if days < THREE_MONTHS_DAYS - tolerance:
        return f"{days} days drafted: shorter than the recommended {assessment.regimen.duration_text}"
    if not at_least_only and days > THREE_MONTHS_DAYS + tolerance:
        return (
            f"{days} days drafted: longer than the 3 months recommended for isolated distal DVT "
            "(provoked or first unprovoked)"
        )
    return None


def cautions(
    draft: DraftAnticoagulant, facts: ClinicalFacts, other_drafts: list[DraftAnticoagulant] | None = None
) -> list[str]:
    """Renal, platelet, weight and interaction cautions for the drafted agent (docs/clinical/RULES.md R-ORDER-3,
    RESEARCH.md §2), and another anticoagulant current or drafted beside it."""
    agent, found = draft.use.agent, []
    crcl = facts.labs.crcl_ml_min
    if crcl is not None:
        value = crcl.value
        where = f"CrCl {value:g} mL/min ({crcl.source.describe()})"
        if value < th.RENAL_DRUG_CRCL.value and agent in ("dabigatran", "edoxaban", "fondaparinux"):
            found.append(f"{where}: {agent} is not recommended below {th.RENAL_DRUG_CRCL.value:g} mL/min")
        elif agent == "rivaroxaban" and value < th.RIVAROXABAN_MIN_CRCL.value:
            found.append(f"{where}: avoid rivaroxaban below {th.RIVAROXABAN_MIN_CRCL.value:g} mL/min")
        elif value < th.RENAL_DRUG_CRCL.value and agent in ("rivaroxaban", "apixaban"):
            found.append(f"{where}: use {agent} with caution (limited data below {th.RENAL_DRUG_CRCL.value:g} mL/min)")
        elif value < th.RENAL_DRUG_CRCL.value and agent == "enoxaparin":
            found.append(f"{where}: enoxaparin 1 mg/kg once daily (not every 12 hours); consider anti-Xa monitoring")
    elif agent in ("dabigatran", "edoxaban", "fondaparinux", "enoxaparin"):
        found.append(
            "No creatinine clearance could be calculated (creatinine, weight, age or sex missing): "
            f"{agent} dosing depends on renal function"
        )
    platelets = facts.labs.platelets
    if platelets is not None and platelets.value < th.SEVERE_THROMBOCYTOPENIA.value:
        found.append(
            f"Platelets {platelets.value:g} × 10⁹/L ({platelets.source.describe()}): generally avoid full-dose "
            "anticoagulation below 50"
        )
    weight = facts.labs.weight
    if weight is not None:
        if weight.value > th.HIGH_WEIGHT_KG.value and agent in ("dabigatran", "edoxaban"):
            found.append(
                f"Weight {weight.value:g} kg: avoid {agent} above {th.HIGH_WEIGHT_KG.value:g} kg (ISTH guidance)"
            )
        if weight.value <= th.LOW_WEIGHT_EDOXABAN_KG.value and agent == "edoxaban":
            found.append(
                f"Weight {weight.value:g} kg: edoxaban 30 mg daily at or below {th.LOW_WEIGHT_EDOXABAN_KG.value:g} kg"
            )
    for other in facts.antiplatelets:
        found.append(f"Antiplatelet therapy ({other.source.describe()}): added bleeding risk")
    for other in facts.nsaids:
        found.append(f"NSAID ({other.source.describe()}): added bleeding risk")
    if draft.use.agent_class == "doac":
        for other in facts.interacting_drugs:
            found.append(
                f"Interacting drug ({other.source.describe()}): strong P-gp/CYP3A4 inhibitors or inducers "
                f"change {agent} levels; check the label"
            )
    hit = facts.bleeding_conditions.get("heparin-induced-thrombocytopenia")
    if hit is not None and hit.present and draft.use.agent_class in ("lmwh", "ufh"):
        found.append(
            f"History of heparin-induced thrombocytopenia ({'; '.join(s.describe() for s in hit.sources)}): "
            "avoid heparins"
        )
    for other in facts.anticoagulants:
        if other.source.reference != draft.reference:
            found.append(f"Already on an anticoagulant ({other.source.describe()}): avoid duplicate anticoagulation")
    for other_draft in other_drafts or []:
        if other_draft.reference != draft.reference:
            found.append(
                f"Another anticoagulant is drafted too ({other_draft.use.agent}, {other_draft.reference}): "
                "avoid duplicate anticoagulation"
            )
    return found


def serial_imaging_alternative(draft: DraftAnticoagulant, assessment: Assessment) -> bool:
    """Anticoagulant drafted for an isolated distal DVT with no factor favouring anticoagulation."""
    return assessment.situation == Situation.DISTAL_DECISION and not assessment.for_anticoagulation


def limited_ultrasound_problem(draft: DraftUltrasound, facts: ClinicalFacts, assessment: Assessment) -> str | None:
    if not draft.limited:
        return None
    if assessment.isolated_distal:
        return "a distal DVT is active"
    if facts.suspected:
        return f"DVT is suspected ({facts.suspected[0].source.describe()})"
    if draft.for_dvt:
        return "the order is for suspected DVT"
    return None
