"""Which anticoagulant regimen the population calls for (docs/clinical/RULES.md R-REGIMEN-*, R-CANCER-2, R-PREG-2).

Standard: apixaban 10 mg twice daily for 7 days then 5 mg twice daily (rivaroxaban 15 mg twice daily with food
for 21 days then 20 mg daily as the alternative), 3 months for isolated distal DVT (CHEST 1B; DOAC over
warfarin, ASH/CHEST). Pregnancy or postpartum: therapeutic LMWH, enoxaparin 1 mg/kg every 12 h by the latest
weight, until at least 6 weeks postpartum and 3 months in total; no warfarin, no DOAC (Blood 2020). Active
cancer: apixaban (NCCN category 1; edoxaban after ≥ 5 days of parenteral anticoagulation or rivaroxaban are
alternatives; LMWH with gastric or gastro-oesophageal lesions), at least 3 months and while the cancer or its
treatment is active. CrCl < 30 mL/min: enoxaparin 1 mg/kg once daily (no dabigatran, edoxaban or
fondaparinux; caution with rivaroxaban and apixaban).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cds_service.clinical import evidence
from cds_service.clinical.evidence import Citation
from cds_service.clinical.model import ClinicalFacts
from cds_service.clinical.thresholds import RENAL_DRUG_CRCL, TREATMENT_DURATION_MONTHS

THREE_MONTHS_DAYS = 90


@dataclass(frozen=True)
class DosePhase:
    dose: float
    unit: str  # "mg" or "mg/kg"
    per_day: int
    days: int | None  # None: until the end of the course
    text: str
    with_food: bool = False


@dataclass(frozen=True)
class Regimen:
    agent: str
    rxnorm_code: str
    rxnorm_display: str
    route: str  # SNOMED-free wording; the order carries text
    phases: tuple[DosePhase, ...]
    total_days: int | None
    duration_text: str
    population: str  # standard | pregnancy | cancer | renal
    citation: Citation
    notes: tuple[str, ...] = field(default_factory=tuple)
    # The stable key of this order for a site's order catalog (DVT_CDS_ORDER_CATALOG): never rename.
    key: str = ""

    @property
    def summary(self) -> str:
        return f"{self.agent} " + ", then ".join(p.text for p in self.phases)


def _standard() -> Regimen:
    months = TREATMENT_DURATION_MONTHS.int_value
    return Regimen(
        agent="apixaban",
        rxnorm_code="1364445",
        rxnorm_display="apixaban 5 MG Oral Tablet",
        route="oral",
        phases=(
            DosePhase(10, "mg", 2, 7, "10 mg twice daily for 7 days"),
            DosePhase(5, "mg", 2, THREE_MONTHS_DAYS - 7, "5 mg twice daily"),
        ),
        total_days=THREE_MONTHS_DAYS,
        duration_text=f"{months} months (isolated distal DVT)",
        population="standard",
        citation=evidence.CHEST_2016,
        notes=("Alternative: rivaroxaban 15 mg twice daily with food for 21 days, then 20 mg once daily with food.",),
        key="anticoagulation.apixaban.3-months",
    )


def choose_regimen(facts: ClinicalFacts, *, isolated_distal: bool = True) -> Regimen:
    """The regimen for this patient. The 3-month course is for isolated distal DVT; a proximal DVT or an extension
    into the proximal veins is treated for at least 3 months (then reassessed), so the order says so."""
    regimen = _choose(facts)
    if isolated_distal or regimen.population in ("pregnancy", "cancer"):
        return regimen
    return replace(
        regimen,
        duration_text="at least 3 months, then reassess (proximal DVT)",
        key=f"anticoagulation.{regimen.agent}.at-least-3-months",
    )


def _choose(facts: ClinicalFacts) -> Regimen:
    crcl = facts.labs.crcl_ml_min
    if facts.pregnant.present or facts.postpartum.present:
        return Regimen(
            agent="enoxaparin",
            rxnorm_code="67108",
            rxnorm_display="enoxaparin",
            route="subcutaneous",
            phases=(DosePhase(1, "mg/kg", 2, None, "1 mg/kg subcutaneously every 12 hours"),),
            total_days=None,
            duration_text="until at least 6 weeks after delivery, and at least 3 months in total",
            population="pregnancy",
            citation=evidence.PREGNANCY_BLOOD_2020,
            notes=("No warfarin (teratogenic) and no DOAC in pregnancy; LMWH is compatible with breastfeeding.",),
            key="anticoagulation.enoxaparin.pregnancy",
        )
    if facts.active_cancer.present:
        base = _standard()
        return Regimen(
            agent=base.agent,
            rxnorm_code=base.rxnorm_code,
            rxnorm_display=base.rxnorm_display,
            route=base.route,
            phases=base.phases,
            total_days=THREE_MONTHS_DAYS,
            duration_text="at least 3 months, and as long as the cancer or its treatment is active",
            population="cancer",
            citation=evidence.NCCN_CAT,
            notes=(
                "Alternatives: edoxaban after at least 5 days of parenteral anticoagulation, or rivaroxaban; "
                "LMWH is preferred with gastric or gastro-oesophageal lesions.",
            ),
            key="anticoagulation.apixaban.cancer",
        )
    if crcl is not None and crcl.value < RENAL_DRUG_CRCL.value:
        return Regimen(
            agent="enoxaparin",
            rxnorm_code="67108",
            rxnorm_display="enoxaparin",
            route="subcutaneous",
            phases=(DosePhase(1, "mg/kg", 1, None, "1 mg/kg subcutaneously once daily (CrCl < 30 mL/min)"),),
            total_days=THREE_MONTHS_DAYS,
            duration_text="3 months (isolated distal DVT)",
            population="renal",
            citation=evidence.CHEST_2016,
            notes=(
                f"CrCl {crcl.value:g} mL/min: no dabigatran, edoxaban or fondaparinux; caution with rivaroxaban and "
                "apixaban. Consider anti-Xa monitoring.",
            ),
            key="anticoagulation.enoxaparin.renal",
        )
    return _standard()


# Every order the service can propose, by its stable catalog key (``dvt-cds ehr-config`` lists them).
ORDER_KEYS: dict[str, str] = {
    "anticoagulation.apixaban.3-months": "apixaban 10 mg twice daily for 7 days, then 5 mg twice daily; 3 months",
    "anticoagulation.apixaban.at-least-3-months": "apixaban, the same doses; at least 3 months (proximal DVT)",
    "anticoagulation.rivaroxaban.3-months": (
        "rivaroxaban 15 mg twice daily with food for 21 days, then 20 mg once daily with food; 3 months"
    ),
    "anticoagulation.apixaban.cancer": "apixaban, the same doses; while the cancer or its treatment is active",
    "anticoagulation.enoxaparin.pregnancy": "enoxaparin 1 mg/kg subcutaneously every 12 hours (pregnancy)",
    "anticoagulation.enoxaparin.renal": "enoxaparin 1 mg/kg subcutaneously once daily (CrCl < 30 mL/min)",
    "anticoagulation.enoxaparin.at-least-3-months": "enoxaparin, as above; at least 3 months (proximal DVT)",
    "imaging.venous-duplex.bilateral": "venous duplex ultrasound of both legs, including the calf veins",
    "imaging.venous-duplex.right": "venous duplex ultrasound of the right leg, including the calf veins",
    "imaging.venous-duplex.left": "venous duplex ultrasound of the left leg, including the calf veins",
    "orderset.serial-imaging.bilateral": "order set: venous duplex of both legs at 1 and 2 weeks",
    "orderset.serial-imaging.right": "order set: venous duplex of the right leg at 1 and 2 weeks",
    "orderset.serial-imaging.left": "order set: venous duplex of the left leg at 1 and 2 weeks",
}
