"""assess(facts, today, config) → Assessment: what the guideline logic says about this patient's DVT.

docs/clinical/RULES.md R-DECIDE-1 to R-DECIDE-4, R-CANCER-1, R-EXT-*, R-PROX-1, R-DX-3.
For an acute, isolated distal DVT, not anticoagulated, with no serial imaging planned:
1. no factor favouring anticoagulation (A) → serial imaging (CHEST 2016 Grade 2C; CHEST 2021 weak);
2. A factors and no factor favouring serial imaging (S) → anticoagulate;
3. both → shared decision: serial imaging favoured when bleeding risk is high or the patient prefers to
   avoid anticoagulation, otherwise anticoagulation; with active cancer, anticoagulation unless an absolute
   contraindication (active bleeding, platelets < 50 × 10⁹/L) — NCCN.
Under surveillance: extension into proximal veins → anticoagulate now (1B); extension within the calf →
anticoagulation suggested (2C); no extension → no anticoagulation (1B). A proximal DVT not anticoagulated, and
a DVT whose veins are not documented, have their own answers.

Each A and S factor is one row of ``factors.py`` (code, label, citation, what it reads, its reader).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from cds_service.clinical import evidence
from cds_service.clinical import thresholds as th
from cds_service.clinical.bleeding import BleedingCategory, BleedingRisk, assess_bleeding
from cds_service.clinical.config import RuleConfig
from cds_service.clinical.evidence import Citation
from cds_service.clinical.factors import (
    Factor,
    Option,
    RuleInputs,
    episode_thromboses,
    factors_of,
    same_leg,
)
from cds_service.clinical.model import ClinicalFacts, Side, SourceRef, Thrombosis, VeinClass, distinct_veins
from cds_service.clinical.regimens import Regimen, choose_regimen
from cds_service.clinical.topics import Topic


class Situation(StrEnum):
    NO_DVT = "no-dvt"
    SUSPECTED = "suspected-dvt"
    PROXIMAL_UNTREATED = "proximal-dvt-untreated"
    PROXIMAL_TREATED = "proximal-dvt-anticoagulated"
    LOCATION_UNKNOWN = "location-unknown"
    LOCATION_UNKNOWN_TREATED = "location-unknown-anticoagulated"
    DISTAL_ANTICOAGULATED = "distal-anticoagulated"
    DISTAL_SURVEILLANCE = "distal-under-surveillance"
    EXTENSION_PROXIMAL = "extension-proximal"
    EXTENSION_DISTAL = "extension-distal"
    DISTAL_DECISION = "distal-decision-needed"


@dataclass
class Extension:
    proximal: bool
    study: SourceRef
    detail: str


@dataclass
class Assessment:
    situation: Situation
    episode: Thrombosis | None
    for_anticoagulation: list[Factor] = field(default_factory=list)
    for_serial_imaging: list[Factor] = field(default_factory=list)
    bleeding: BleedingRisk | None = None
    regimen: Regimen | None = None
    recommendation: Topic | None = None
    recommended: Option | None = None
    offer_anticoagulation: bool = True
    offer_serial_imaging: bool = True
    extension: Extension | None = None
    bilateral_imaging: bool = False
    imaging_side: Side = Side.BILATERAL
    other_leg_not_imaged: bool = False
    caveats: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    grade: str = ""  # the evidence grade of the recommendation, as cards and the pathway view show it
    favoured_reason: str = ""  # why the recommended option was favoured, in words (cards never re-derive it)

    @property
    def decision_code(self) -> str:
        return self.recommendation.value if self.recommendation else self.situation.value

    @property
    def isolated_distal(self) -> bool:
        return self.situation in (
            Situation.DISTAL_ANTICOAGULATED,
            Situation.DISTAL_SURVEILLANCE,
            Situation.EXTENSION_DISTAL,
            Situation.DISTAL_DECISION,
        )


# ----------------------------------------------------------------------------------------------------------------
def assess(facts: ClinicalFacts, *, today: date, config: RuleConfig) -> Assessment:
    thromboses = [t for t in facts.thromboses if t.acute]
    if not thromboses:
        if facts.unreadable_dvt and not facts.anticoagulated:
            # A DVT diagnosis the service could not read: say so, recommend nothing built on it.
            result = Assessment(situation=Situation.LOCATION_UNKNOWN, episode=None)
            result.recommendation = Topic.LOCATION_UNKNOWN
            return _complete(result, facts, config)
        situation = Situation.SUSPECTED if facts.suspected else Situation.NO_DVT
        return _complete(Assessment(situation=situation, episode=None), facts, config)

    bleeding = assess_bleeding(facts, today=today)
    anticoagulated = facts.anticoagulated
    distal = sorted((t for t in thromboses if t.is_distal), key=lambda t: t.onset or today)
    proximal = [t for t in thromboses if t.vein_class == VeinClass.PROXIMAL]
    baseline = distal[0] if distal else None
    extension = find_extension(facts, baseline) if baseline else None

    if extension is not None and extension.proximal:
        situation = Situation.PROXIMAL_TREATED if anticoagulated else Situation.EXTENSION_PROXIMAL
        result = Assessment(situation=situation, episode=baseline, bleeding=bleeding, extension=extension)
        if not anticoagulated:
            result.recommendation, result.recommended = Topic.EXTENSION, Option.ANTICOAGULATION
            result.offer_serial_imaging, result.grade = False, "CHEST 2016 Grade 1B; CHEST 2021 strong"
            result.favoured_reason = f"extension into the proximal veins ({extension.detail})"
        return _complete(result, facts, config)
    if proximal:
        result = Assessment(
            situation=Situation.PROXIMAL_TREATED if anticoagulated else Situation.PROXIMAL_UNTREATED,
            episode=proximal[0],
            bleeding=bleeding,
        )
        if not anticoagulated:
            result.recommendation, result.recommended = Topic.PROXIMAL_DVT, Option.ANTICOAGULATION
            result.offer_serial_imaging, result.grade = False, "CHEST 2016 Grade 1B"
            result.favoured_reason = "a proximal DVT is treated with anticoagulation; serial imaging is not an option"
        return _complete(result, facts, config)
    if baseline is None:
        unknown = thromboses[0]
        result = Assessment(
            situation=Situation.LOCATION_UNKNOWN_TREATED if anticoagulated else Situation.LOCATION_UNKNOWN,
            episode=unknown,
            bleeding=bleeding,
        )
        if not anticoagulated:
            result.recommendation = Topic.LOCATION_UNKNOWN
        return _complete(result, facts, config)

    # An acute isolated distal DVT.
    result = Assessment(situation=Situation.DISTAL_DECISION, episode=baseline, bleeding=bleeding, extension=extension)
    result.for_anticoagulation = _factors(facts, baseline, config)
    result.for_serial_imaging = _serial_factors(facts, baseline, bleeding, config)
    if anticoagulated:
        result.situation = Situation.DISTAL_ANTICOAGULATED
        return _complete(result, facts, config)
    if extension is not None:
        result.situation = Situation.EXTENSION_DISTAL
        result.recommendation, result.recommended = Topic.EXTENSION, Option.ANTICOAGULATION
        result.grade = "CHEST 2016 Grade 2C; CHEST 2021 weak"
        result.favoured_reason = f"extension within the calf ({extension.detail})"
        return _complete(result, facts, config)
    if facts.planned_imaging:
        result.situation = Situation.DISTAL_SURVEILLANCE
        result.other_leg_not_imaged = other_leg_never_imaged(facts, baseline)
        if result.other_leg_not_imaged and any(v.vein_class == VeinClass.DISTAL_MUSCULAR for v in baseline.veins):
            result.recommendation = Topic.BILATERAL_SURVEILLANCE
        return _complete(result, facts, config)
    decide(result, facts)
    return _complete(result, facts, config)


def decide(result: Assessment, facts: ClinicalFacts) -> None:
    """An untreated, unsurveilled isolated distal DVT: docs/clinical/RULES.md R-DECIDE-1 to R-DECIDE-4, R-CANCER-1."""
    a, s = result.for_anticoagulation, result.for_serial_imaging
    bleeding = result.bleeding
    high_bleeding = bleeding is not None and bleeding.category == BleedingCategory.HIGH
    contraindicated = bleeding is not None and any(
        f.code in ("active-bleeding", "severe-thrombocytopenia") for f in bleeding.factors
    )
    result.grade = "CHEST 2016 Grade 2C; CHEST 2021 weak, low-certainty"
    if not a:
        result.recommendation, result.recommended = Topic.SERIAL_IMAGING, Option.SERIAL_IMAGING
        result.favoured_reason = "no factor favouring anticoagulation was found in the record"
    elif not s:
        result.recommendation, result.recommended = Topic.ANTICOAGULATE, Option.ANTICOAGULATION
        result.favoured_reason = "factors favour anticoagulation and none favours serial imaging"
    else:
        result.recommendation = Topic.SHARED_DECISION
        result.grade += " (values and preferences decide)"
        if facts.active_cancer.present and not contraindicated:
            result.recommended = Option.ANTICOAGULATION  # NCCN: anticoagulate unless absolutely contraindicated
            result.citations.append(evidence.NCCN_CAT)
            result.favoured_reason = "active cancer (NCCN: anticoagulate unless absolutely contraindicated)"
        elif high_bleeding or facts.prefers_no_anticoagulation.present:
            result.recommended = Option.SERIAL_IMAGING
            result.favoured_reason = (
                ", ".join(f.label for f in s if f.code in ("high-bleeding-risk", "patient-preference"))
                or "the factors favouring serial imaging"
            )
        else:
            result.recommended = Option.ANTICOAGULATION
            result.favoured_reason = "no high bleeding risk and no stated preference against anticoagulation"
    if contraindicated:
        result.caveats.append(
            "Active bleeding or platelets < 50 × 10⁹/L: an absolute contraindication to anticoagulation."
        )
    if any(f.code == "pulmonary-embolism" for f in a):
        result.recommendation, result.recommended = Topic.ANTICOAGULATE, Option.ANTICOAGULATION
        result.offer_serial_imaging = False
        result.favoured_reason = "acute pulmonary embolism"
        result.caveats.append(
            "Acute pulmonary embolism: anticoagulation is indicated; serial imaging is not an option."
        )


def find_extension(facts: ClinicalFacts, baseline: Thrombosis) -> Extension | None:
    """A later study than the diagnosing one showing proximal veins (proximal extension), or new veins or a
    longer thrombus (distal extension), in the same leg."""
    base_date = baseline.onset
    # Everything known on the diagnosis day (the Condition and the diagnosing study) is the baseline.
    at_diagnosis = [baseline] + [
        t
        for t in facts.thromboses
        if base_date is not None
        and t.acute
        and t.is_distal
        and t.onset is not None
        and t.onset <= base_date
        and same_leg(t.side, baseline.side)
    ]
    known = distinct_veins(v for t in at_diagnosis for v in t.veins)
    base_length = max((t.length_cm for t in at_diagnosis if t.length_cm is not None), default=None)
    for study in facts.imaging:
        if study.source.reference == baseline.source.reference:
            continue
        if base_date is not None and (study.when is None or study.when <= base_date):
            continue
        for t in study.thromboses:
            if not same_leg(t.side, baseline.side):
                continue
            if t.vein_class == VeinClass.PROXIMAL:
                veins = ", ".join(v.name for v in t.veins if v.vein_class == VeinClass.PROXIMAL)
                return Extension(True, t.source_for("veins"), f"thrombus now in the {veins}")
            new = [v for v in t.veins if not any(k.covers(v) or v.covers(k) for k in known)]
            if new:
                names = ", ".join(sorted(v.name for v in new))
                return Extension(False, t.source_for("veins"), f"thrombus now also in the {names}")
            if base_length is not None and t.length_cm is not None and t.length_cm > base_length:
                longer = f"thrombus longer: {base_length:g} → {t.length_cm:g} cm"
                return Extension(False, t.source_for("length"), longer)
            base_length = t.length_cm if t.length_cm is not None else base_length
            known = distinct_veins([*known, *t.veins])
        if study.change == "extension" and study.change_source is not None:
            # The report says it extended without naming a new vein or length ("interval propagation").
            return Extension(False, study.change_source, "the report states the thrombus has extended")
    return None


def other_leg_never_imaged(facts: ClinicalFacts, episode: Thrombosis) -> bool:
    if episode.side not in (Side.RIGHT, Side.LEFT):
        return False
    other = episode.side.other
    imaged = any(s.legs_examined.covers(other) for s in facts.imaging)
    planned = any(p.legs.covers(other) for p in facts.planned_imaging if not p.done)
    return not imaged and not planned


def _factors(facts: ClinicalFacts, episode: Thrombosis, config: RuleConfig) -> list[Factor]:
    inputs = RuleInputs(config)
    specs = factors_of(config.profile, Option.ANTICOAGULATION)
    return [f for f in (spec.evaluate(facts, episode, inputs) for spec in specs) if f is not None]


def _serial_factors(
    facts: ClinicalFacts, episode: Thrombosis, bleeding: BleedingRisk, config: RuleConfig
) -> list[Factor]:
    inputs = RuleInputs(config, bleeding)
    specs = factors_of(config.profile, Option.SERIAL_IMAGING)
    return [f for f in (spec.evaluate(facts, episode, inputs) for spec in specs) if f is not None]


def _complete(result: Assessment, facts: ClinicalFacts, config: RuleConfig) -> Assessment:
    """Regimen, imaging plan, missing data and citations: everything a card needs besides the decision."""
    episode = result.episode
    proximal = result.situation in (
        Situation.PROXIMAL_UNTREATED,
        Situation.PROXIMAL_TREATED,
        Situation.EXTENSION_PROXIMAL,
    )
    result.regimen = choose_regimen(facts, isolated_distal=not proximal)
    if episode is not None:
        muscular = any(v.vein_class == VeinClass.DISTAL_MUSCULAR for v in episode.veins)
        result.bilateral_imaging = muscular or episode.side not in (Side.RIGHT, Side.LEFT)
        result.imaging_side = Side.BILATERAL if result.bilateral_imaging else episode.side
    result.missing = missing_data(result, facts)
    result.caveats.extend(_caveats(result, facts))
    if not any(c.key == "chest-2016" for c in result.citations):
        result.citations.insert(0, evidence.CHEST_2016)
    result.citations.insert(1, evidence.CHEST_2021)
    if result.regimen is not None and result.regimen.citation not in result.citations:
        result.citations.append(result.regimen.citation)
    if result.bilateral_imaging and result.recommendation in (
        Topic.SERIAL_IMAGING,
        Topic.SHARED_DECISION,
        Topic.BILATERAL_SURVEILLANCE,
        Topic.SURVEILLANCE_GAP,
    ):
        result.citations.append(evidence.KRET_2013)
    if config.profile == "chest":
        result.caveats.append("Rule profile 'chest': only factors listed by CHEST are counted.")
    return result


def missing_data(result: Assessment, facts: ClinicalFacts) -> list[str]:
    """What the record did not tell us that could change the answer."""
    missing: list[str] = []
    if result.situation != Situation.DISTAL_DECISION:
        return missing
    codes = {f.code for f in result.for_anticoagulation}
    if "positive-d-dimer" not in codes:
        if facts.ddimer is None:
            missing.append(f"no D-dimer within {th.DDIMER_WINDOW_DAYS.int_value} days of diagnosis")
        elif facts.ddimer.positive is None:
            missing.append(f"D-dimer could not be interpreted ({facts.ddimer.reason})")
    threads = episode_thromboses(facts, result.episode) if result.episode else []
    if not any(t.length_cm is not None for t in threads):
        missing.append("thrombus length not recorded (> 5 cm favours anticoagulation)")
    if not any(t.diameter_mm is not None for t in threads):
        missing.append("thrombus diameter not recorded (> 7 mm favours anticoagulation)")
    if not any(t.distance_to_popliteal_cm is not None for t in threads):
        missing.append("distance to the popliteal vein not recorded")
    if "unprovoked" not in codes and not facts.provoking:
        missing.append(
            "whether the DVT was provoked could not be established (surgery or hospitalization data missing)"
        )
    for label, finding in (
        ("inpatient status", facts.inpatient),
        ("severe symptoms", facts.severe_symptoms),
        ("patient preference", facts.prefers_no_anticoagulation),
        ("pregnancy", facts.pregnant),
    ):
        if finding.present is None:
            missing.append(f"{label} ({finding.note})")
    if result.bleeding is not None and result.bleeding.category != BleedingCategory.HIGH:
        missing.extend(
            f"bleeding factor not assessed: {n}"
            for n in result.bleeding.not_assessed
            if not n.startswith("comorbidity")
        )
    return missing


def _caveats(result: Assessment, facts: ClinicalFacts) -> list[str]:
    caveats = []
    if facts.anticoagulants and any(m.intensity.value == "unknown" for m in facts.anticoagulants):
        caveats.append("An anticoagulant order without a readable dose was counted as treatment dose.")
    if "MedicationRequest" in " ".join(facts.not_assessed):
        caveats.append("Current anticoagulation could not be checked (medication data unavailable).")
    elif facts.unidentified_medications:
        caveats.append(
            "Current anticoagulation could not be checked: the drug of "
            + ", ".join(facts.unidentified_medications[:3])
            + " could not be read. Check the medication list before ordering."
        )
    if result.episode is not None and result.episode.from_text:
        caveats.append("The DVT was recognised from text, not from a code: confirm the diagnosis and the veins.")
    if result.episode is not None and result.episode.onset is None:
        caveats.append("The DVT has no onset date; it was treated as current.")
    return caveats
