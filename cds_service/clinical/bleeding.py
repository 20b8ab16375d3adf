"""Bleeding-risk category from the CHEST AT9/2016 Table 2 factors (docs/clinical/RULES.md R-BLEED-*).

Low: 0 factors (≈1.6 % major bleeding in the first 3 months); moderate: 1 (≈3.2 %); high: ≥ 2 (≈12.8 %) or any
single severe factor (active bleeding, platelets < 50 × 10⁹/L, major surgery within 2 days). Age > 75 and
metastatic cancer each count as a second factor. A factor that cannot be assessed from the data is listed as
"not assessed", never counted as absent. The table's own footnote: the scheme has not been validated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum

from cds_service.clinical import thresholds as th
from cds_service.clinical.model import ClinicalFacts, Finding, SourceRef


class BleedingCategory(StrEnum):
    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"


@dataclass
class BleedingFactor:
    code: str
    label: str
    sources: list[SourceRef] = field(default_factory=list)
    weight: int = 1
    severe: bool = False
    uncertain_source: bool = False  # NSAID: unverified in the CHEST table (docs/clinical/RULES.md R-BLEED-7)


@dataclass
class BleedingRisk:
    category: BleedingCategory
    factors: list[BleedingFactor]
    not_assessed: list[str]
    caveat: str = "The CHEST bleeding-risk categorization has not been validated (CHEST AT9 Table 2 footnote)."

    @property
    def count(self) -> int:
        return sum(f.weight for f in self.factors)

    @property
    def severe(self) -> list[BleedingFactor]:
        return [f for f in self.factors if f.severe]

    @property
    def estimate(self) -> str:
        return {"low": "≈1.6 %", "moderate": "≈3.2 %", "high": "≈12.8 %"}[
            self.category.value
        ] + " major bleeding in the first 3 months of anticoagulation (CHEST estimate)"


def assess_bleeding(facts: ClinicalFacts, *, today: date) -> BleedingRisk:
    factors: list[BleedingFactor] = []
    not_assessed: list[str] = []

    def from_finding(code: str, label: str, finding: Finding, *, severe: bool = False, weight: int = 1) -> None:
        if finding.present is True:
            factors.append(BleedingFactor(code, label, list(finding.sources), weight=weight, severe=severe))
        elif finding.present is None:
            not_assessed.append(f"{label} ({finding.note or 'data unavailable'})")

    age = facts.patient.age
    if age is None:
        not_assessed.append("age (no birth date)")
    else:
        ref = [SourceRef(facts.patient.reference, None, f"age {age}")]
        if age > th.BLEEDING_AGE_1.value:
            factors.append(BleedingFactor("age-over-65", f"age {th.BLEEDING_AGE_1.rule}", ref))
        if age > th.BLEEDING_AGE_2.value:
            factors.append(BleedingFactor("age-over-75", f"age {th.BLEEDING_AGE_2.rule} (second factor)", ref))

    conditions = facts.bleeding_conditions
    from_finding("active-bleeding", "active bleeding", conditions.get("active-bleeding", Finding.absent()), severe=True)
    from_finding(
        "previous-bleeding",
        "previous bleeding or bleeding disorder",
        conditions.get("previous-bleeding", Finding.absent()),
    )
    from_finding("cancer", "cancer", facts.active_cancer)
    from_finding("metastatic-cancer", "metastatic cancer (second factor)", facts.metastatic_cancer)

    renal = _renal_failure(facts)
    from_finding("renal-failure", f"renal failure ({th.RENAL_FAILURE_CRCL.rule}, CKD 4-5 or dialysis)", renal)
    for code, label in (
        ("liver-failure", "liver failure"),
        ("previous-stroke", "previous stroke"),
        ("diabetes", "diabetes"),
        ("frequent-falls", "frequent falls"),
        ("alcohol-abuse", "alcohol abuse"),
    ):
        from_finding(code, label, conditions[code])

    platelets = facts.labs.platelets
    if platelets is None:
        not_assessed.append("thrombocytopenia (no platelet count in the last 30 days)")
    elif platelets.value < th.SEVERE_THROMBOCYTOPENIA.value:
        factors.append(
            BleedingFactor(
                "severe-thrombocytopenia",
                f"severe thrombocytopenia ({platelets.value:g} × 10⁹/L)",
                [platelets.source],
                severe=True,
            )
        )
    elif platelets.value < th.THROMBOCYTOPENIA.value:
        factors.append(
            BleedingFactor("thrombocytopenia", f"thrombocytopenia ({platelets.value:g} × 10⁹/L)", [platelets.source])
        )

    anaemia = _anaemia(facts)
    from_finding("anaemia", "anaemia", anaemia)

    if facts.antiplatelets:
        factors.append(BleedingFactor("antiplatelet", "antiplatelet therapy", [m.source for m in facts.antiplatelets]))
    if facts.nsaids:
        factors.append(
            BleedingFactor(
                "nsaid",
                "NSAID use (source uncertain: not verified in the CHEST 2016 table)",
                [m.source for m in facts.nsaids],
                uncertain_source=True,
            )
        )

    from_finding("recent-surgery", "recent surgery", facts.recent_surgery)
    if facts.recent_surgery.present:
        recent = [
            s
            for s in facts.recent_surgery.sources
            if s.when and today - s.when <= timedelta(days=th.MAJOR_SURGERY_SEVERE_DAYS.int_value)
        ]
        if recent:
            factors.append(
                BleedingFactor("surgery-within-2-days", "surgery within the past 2 days", recent, weight=0, severe=True)
            )

    if any(m.agent_class == "vka" for m in facts.anticoagulants):
        not_assessed.append("poor anticoagulant control (INR history not read)")
    not_assessed.append("comorbidity and reduced functional capacity (a clinical judgement)")

    count = sum(f.weight for f in factors)
    if any(f.severe for f in factors) or count >= th.BLEEDING_HIGH_FACTORS.value:
        category = BleedingCategory.HIGH
    elif count >= th.BLEEDING_MODERATE_FACTORS.value:
        category = BleedingCategory.MODERATE
    else:
        category = BleedingCategory.LOW
    return BleedingRisk(category, factors, not_assessed)


def _renal_failure(facts: ClinicalFacts) -> Finding:
    sources = []
    labs = facts.labs
    if labs.crcl_ml_min is not None and labs.crcl_ml_min.value < th.RENAL_FAILURE_CRCL.value:
        sources.append(labs.crcl_ml_min.source)
    if labs.egfr is not None and labs.egfr.value < th.RENAL_FAILURE_CRCL.value:
        sources.append(labs.egfr.source)
    condition = facts.bleeding_conditions.get("renal-failure", Finding.absent())
    sources.extend(condition.sources if condition.present else [])
    if sources:
        return Finding(True, sources)
    if labs.crcl_ml_min is None and labs.egfr is None:
        # No CKD 4-5 code is not proof of normal kidneys: without a recent CrCl or eGFR it is not assessed.
        return Finding.unknown("no creatinine clearance or eGFR in the last 30 days")
    return Finding.absent()


def _anaemia(facts: ClinicalFacts) -> Finding:
    hb = facts.labs.hemoglobin_g_dl
    sex = facts.patient.sex
    limit = {"female": th.ANAEMIA_HB_FEMALE.value, "male": th.ANAEMIA_HB_MALE.value}.get(sex or "")
    sources = [hb.source] if hb is not None and limit is not None and hb.value < limit else []
    condition = facts.bleeding_conditions.get("anaemia", Finding.absent())
    sources.extend(condition.sources if condition.present else [])
    if sources:
        return Finding(True, sources)
    if hb is None:
        return Finding.unknown("no haemoglobin in the last 30 days")
    if limit is None:
        return Finding.unknown("sex not recorded, so the haemoglobin limit is unknown")
    return Finding.absent()
