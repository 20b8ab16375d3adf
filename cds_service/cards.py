"""Assessments and order findings → CDS Hooks cards, with suggestions that are real, valid R4 orders.

Every card: a ``source.topic`` from KNOWLEDGE.md §5, a uuid, a summary under 140 characters, and markdown
detail naming the deciding factors with the resource and date each came from, the bleeding risk, the data
that was missing, and the guideline citation. Text taken from resources is escaped before it goes into
markdown, so a resource cannot inject markup into the EHR.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from cds_service.clinical import thresholds as th
from cds_service.clinical.assessment import Assessment, Factor, Option
from cds_service.clinical.bleeding import BleedingRisk
from cds_service.clinical.evidence import CHEST_AT9_DIAGNOSIS, PREGNANCY_BLOOD_2020, Citation
from cds_service.clinical.model import ClinicalFacts, Side, SourceRef, Thrombosis
from cds_service.clinical.regimens import Regimen
from cds_service.clinical.terminology import LOINC, RXNORM, UCUM
from cds_service.clinical.topics import TOPIC_DISPLAY, TOPIC_SYSTEM, Topic
from cds_service.protocol import (
    OVERRIDE_REASON_SYSTEM,
    OVERRIDE_REASONS,
    Action,
    Card,
    Coding,
    Source,
    Suggestion,
)

SUMMARY_MAX = 139
INDICATOR: dict[Topic, str] = {
    Topic.ANTICOAGULATE: "warning",
    Topic.SERIAL_IMAGING: "warning",
    Topic.SHARED_DECISION: "warning",
    Topic.EXTENSION: "warning",  # critical when the extension is proximal
    Topic.SURVEILLANCE_GAP: "critical",
    Topic.BILATERAL_SURVEILLANCE: "info",
    Topic.PROXIMAL_DVT: "critical",
    Topic.LOCATION_UNKNOWN: "info",
    Topic.PREGNANCY_ANTICOAGULANT: "critical",
    Topic.ANTICOAGULATION_DURATION: "info",
    Topic.ANTICOAGULANT_CAUTION: "warning",
    Topic.LIMITED_COMPRESSION_ULTRASOUND: "warning",
    Topic.DRAFT_ORDER_NOT_CHECKED: "warning",
}
OVERRIDE_CODINGS = [Coding(system=OVERRIDE_REASON_SYSTEM, code=c, display=d) for c, d in OVERRIDE_REASONS.items()]
DUPLEX = {
    Side.BILATERAL: ("39420-5", "US.doppler Lower extremity vein - bilateral", "both legs"),
    Side.RIGHT: ("39443-7", "US.doppler Lower extremity vein - right", "right leg"),
    Side.LEFT: ("39432-0", "US.doppler Lower extremity vein - left", "left leg"),
}
_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|<>~])")


# ----------------------------------------------------------------------------------------------------------------
# text helpers
# ------------------------------------------------------------------------------------------------------------------
def md(text: Any) -> str:
    """Escape text from a resource for GitHub-flavoured markdown (and the HTML it may carry)."""
    flat = " ".join(str(text).split())
    flat = flat.replace("&", "&amp;")
    return _MD_SPECIAL.sub(r"\\\1", flat)


def fit(summary: str) -> str:
    """The summary within the limit, shortened at a word boundary with "…" when it must be (never mid-word)."""
    summary = " ".join(summary.split())
    if len(summary) <= SUMMARY_MAX:
        return summary
    cut = summary[: SUMMARY_MAX - 1]
    if " " in cut and not summary[SUMMARY_MAX - 1].isspace():
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:—-") + "…"


UNCHECKED = "Current anticoagulation could not be checked"


def unchecked(summary: str, ctx: CardContext) -> str:
    """A patient card's summary, led by a warning when current anticoagulation could not be checked."""
    return f"{UNCHECKED}: {summary[0].lower()}{summary[1:]}" if ctx.facts.anticoagulation_unchecked else summary


def _source_cell(sources: list[SourceRef]) -> str:
    return "; ".join(md(s.describe()) for s in sources[:4]) + (
        f"; and {len(sources) - 4} more" if len(sources) > 4 else ""
    )


@dataclass
class CardContext:
    """What every card built for one call needs besides the assessment."""

    patient_id: str
    encounter_id: str | None
    now: datetime
    facts: ClinicalFacts

    @property
    def today(self) -> date:
        return self.now.date()


def _card(
    topic: Topic,
    summary: str,
    detail: str,
    citation: Citation,
    *,
    indicator: str | None = None,
    suggestions: list[Suggestion] | None = None,
) -> Card:
    return Card(
        summary=fit(summary),
        detail=detail,
        indicator=indicator or INDICATOR[topic],  # type: ignore[arg-type]
        source=Source(
            label=f"Distal DVT CDS — {citation.label}",
            url=citation.url,
            topic=Coding(system=TOPIC_SYSTEM, code=topic.value, display=TOPIC_DISPLAY[topic]),
        ),
        suggestions=suggestions or None,
        selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=list(OVERRIDE_CODINGS),
    )


# ----------------------------------------------------------------------------------------------------------------
# detail sections
# ------------------------------------------------------------------------------------------------------------------
def episode_line(episode: Thrombosis | None, facts: ClinicalFacts | None = None) -> str:
    if episode is None:
        return ""
    kind = "suspected " if episode.verification.value == "suspected" else ""
    origin = ""
    if episode.from_imaging and facts is not None and not any(not t.from_imaging for t in facts.thromboses):
        when = episode.onset.isoformat() if episode.onset else "an undated study"
        origin = f" From the ultrasound report of {when} (not on the problem list)."
    return f"**Episode:** {kind}acute DVT, {md(episode.describe())} ({md(episode.source.describe())}).{origin}"


def factor_table(factors: list[Factor]) -> str:
    if not factors:
        return ""
    rows = ["| Factor | Favours | Listed by | From |", "|---|---|---|---|"]
    for f in factors:
        label = md(f.label) + (f": {md(f.detail)}" if f.detail else "")
        rows.append(f"| {label} | {f.favours.value} | {f.source_label} | {_source_cell(f.sources) or 'the record'} |")
    return "\n".join(rows)


def bleeding_section(bleeding: BleedingRisk | None) -> str:
    if bleeding is None:
        return ""
    found = "; ".join(md(f.label) + (f" ({_source_cell(f.sources)})" if f.sources else "") for f in bleeding.factors)
    text = f"**Bleeding risk:** {bleeding.category.value} — {bleeding.estimate}."
    text += f" Factors: {found}." if found else " No bleeding-risk factor found in the record."
    if bleeding.not_assessed:
        text += " Not assessed: " + "; ".join(md(n) for n in bleeding.not_assessed) + "."
    return text + f" {bleeding.caveat}"


def list_section(title: str, items: list[str]) -> str:
    items = list(dict.fromkeys(i.rstrip(". ") for i in items if i))
    return f"**{title}:** " + "; ".join(md(i) for i in items) + "." if items else ""


def citations_section(citations: list[Citation], grade: str = "") -> str:
    seen = list(dict.fromkeys(citations))
    lines = [f"- {md(c.reference)}" for c in seen]
    head = "**Sources**" + (f" ({md(grade)})" if grade else "") + ":"
    return head + "\n" + "\n".join(lines)


def join(*sections: str) -> str:
    return "\n\n".join(s for s in sections if s)


_MUST_SEE = ("could not", "unknown", "not read", "cannot", "disagree", "not counted")


def data_notes(facts: ClinicalFacts) -> str:
    """At most eight notes; what could not be read or checked first (it is what a clinician must know)."""
    ordered = sorted(facts.data_notes, key=lambda note: not any(word in note for word in _MUST_SEE))
    return list_section("Data notes", ordered[:8])


def not_evaluated(facts: ClinicalFacts) -> str:
    """Data the service needed but could not read: said up front, never silently treated as absent."""
    return list_section("Could not be evaluated", facts.not_assessed)


# ----------------------------------------------------------------------------------------------------------------
# suggestions: real orders
# ------------------------------------------------------------------------------------------------------------------
def _reason(episode: Thrombosis | None, allowed: tuple[str, ...]) -> list[dict[str, Any]] | None:
    if episode is None or episode.source.reference.split("/")[0] not in allowed:
        return None
    return [{"reference": episode.source.reference}]


def _ucum(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def medication_request(regimen: Regimen, ctx: CardContext, episode: Thrombosis | None) -> dict[str, Any]:
    weight = ctx.facts.labs.weight
    dosages = []
    for i, phase in enumerate(regimen.phases, start=1):
        repeat: dict[str, Any] = {"frequency": phase.per_day, "period": 1, "periodUnit": "d"}
        if phase.days is not None:
            repeat["boundsDuration"] = _ucum(phase.days, "days", "d")
        text = phase.text
        if phase.unit == "mg/kg" and weight is not None:
            dose = _ucum(round(phase.dose * weight.value), "mg", "mg")
            text += f" = {dose['value']} mg for {weight.value:g} kg ({weight.source.reference}, {weight.source.when})"
        elif phase.unit == "mg/kg":
            dose = _ucum(phase.dose, "mg/kg", "mg/kg")
            text += " (no recent weight in the record: calculate the dose)"
        else:
            dose = _ucum(phase.dose, "mg", "mg")
        dosages.append(
            {
                "sequence": i,
                "text": text,
                "timing": {"repeat": repeat},
                "route": {"text": regimen.route},
                "doseAndRate": [{"doseQuantity": dose}],
            }
        )
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": regimen.rxnorm_code, "display": regimen.rxnorm_display}],
            "text": regimen.rxnorm_display,
        },
        "subject": {"reference": f"Patient/{ctx.patient_id}"},
        "authoredOn": ctx.now.isoformat(timespec="seconds"),
        "dosageInstruction": dosages,
        "note": [{"text": f"Duration: {regimen.duration_text}. " + " ".join(regimen.notes)}],
    }
    if ctx.encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{ctx.encounter_id}"}
    reason = _reason(episode, ("Condition", "Observation"))
    if reason:
        resource["reasonReference"] = reason
    if regimen.total_days is not None:
        resource["dispenseRequest"] = {"expectedSupplyDuration": _ucum(regimen.total_days, "days", "d")}
    return resource


def service_request(
    side: Side, due: date, ctx: CardContext, episode: Thrombosis | None, purpose: str
) -> dict[str, Any]:
    code, display, legs = DUPLEX.get(side, DUPLEX[Side.BILATERAL])
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "priority": "routine",
        "code": {
            "coding": [{"system": LOINC, "code": code, "display": display}],
            "text": f"Venous duplex ultrasound, {legs}, including the calf veins ({purpose})",
        },
        "subject": {"reference": f"Patient/{ctx.patient_id}"},
        "occurrenceDateTime": due.isoformat(),
        "authoredOn": ctx.now.isoformat(timespec="seconds"),
        "note": [
            {"text": "Whole-leg compression duplex including the calf veins; anticoagulate if the thrombus extends."}
        ],
    }
    if ctx.encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{ctx.encounter_id}"}
    reason = _reason(episode, ("Condition", "Observation", "DiagnosticReport"))
    if reason:
        resource["reasonReference"] = reason
    return resource


def anticoagulation_suggestion(
    regimen: Regimen, ctx: CardContext, episode: Thrombosis | None, recommended: bool
) -> Suggestion:
    return Suggestion(
        label=f"Anticoagulate: {regimen.summary}, {regimen.duration_text}",
        isRecommended=recommended,
        actions=[
            Action(
                type="create",
                description=f"Order {regimen.summary}; duration {regimen.duration_text}",
                resource=medication_request(regimen, ctx, episode),
                order_key=regimen.key,
            )
        ],
    )


def _side_word(side: Side) -> str:
    return side.value if side in (Side.RIGHT, Side.LEFT) else "bilateral"


def duplex_key(side: Side) -> str:
    return f"imaging.venous-duplex.{_side_word(side)}"


def serial_imaging_days(ctx: CardContext) -> tuple[date, date]:
    return (
        ctx.today + timedelta(days=th.SERIAL_IMAGING_FIRST_DAY.int_value),
        ctx.today + timedelta(days=th.SERIAL_IMAGING_SECOND_DAY.int_value),
    )


def serial_imaging_suggestion(
    side: Side, ctx: CardContext, episode: Thrombosis | None, recommended: bool
) -> Suggestion:
    first, second = serial_imaging_days(ctx)
    legs = DUPLEX.get(side, DUPLEX[Side.BILATERAL])[2]
    return Suggestion(
        label=f"Serial imaging: venous duplex of {legs} at +7 and +14 days",
        isRecommended=recommended,
        actions=[
            Action(
                type="create",
                description=f"Order venous duplex ultrasound of {legs} on {first.isoformat()} (day 7)",
                resource=service_request(side, first, ctx, episode, "repeat at 1 week"),
                order_key=duplex_key(side),
            ),
            Action(
                type="create",
                description=f"Order venous duplex ultrasound of {legs} on {second.isoformat()} (day 14)",
                resource=service_request(side, second, ctx, episode, "repeat at 2 weeks"),
                order_key=duplex_key(side),
            ),
        ],
        order_set_key=f"orderset.serial-imaging.{_side_word(side)}",
    )


def _both_options(assessment: Assessment, ctx: CardContext) -> list[Suggestion]:
    suggestions = []
    favoured = assessment.recommended
    if assessment.offer_anticoagulation and assessment.regimen is not None:
        suggestions.append(
            anticoagulation_suggestion(assessment.regimen, ctx, assessment.episode, favoured == Option.ANTICOAGULATION)
        )
    if assessment.offer_serial_imaging:
        suggestions.append(
            serial_imaging_suggestion(
                assessment.imaging_side, ctx, assessment.episode, favoured == Option.SERIAL_IMAGING
            )
        )
    suggestions.sort(key=lambda s: not s.isRecommended)
    return suggestions


# ----------------------------------------------------------------------------------------------------------------
# patient-level cards
# ------------------------------------------------------------------------------------------------------------------
def _factor_words(factors: list[Factor], limit: int = 3) -> str:
    words = [f.label for f in factors[:limit]]
    return ", ".join(words) + (f" +{len(factors) - limit}" if len(factors) > limit else "")


def _regimen_line(assessment: Assessment) -> str:
    r = assessment.regimen
    if r is None:
        return ""
    return f"**Regimen:** {md(r.summary)}; duration {md(r.duration_text)}." + (
        " " + " ".join(md(n) for n in r.notes) if r.notes else ""
    )


def _imaging_line(assessment: Assessment, ctx: CardContext) -> str:
    first, second = serial_imaging_days(ctx)
    legs = DUPLEX.get(assessment.imaging_side, DUPLEX[Side.BILATERAL])[2]
    why = (
        " Both legs: in muscular calf vein thrombosis further DVT, some in the other leg, is reported within weeks "
        "(Kret 2013, a study: 19 % further DVT, ≈5 % contralateral)."
        if assessment.bilateral_imaging
        else ""
    )
    return (
        f"**Serial imaging:** whole-leg venous duplex of {legs} on {first.isoformat()} (day 7) and "
        f"{second.isoformat()} (day 14); no anticoagulation if it does not extend (CHEST 1B), anticoagulate if it "
        f"extends into the proximal veins (1B) and consider it if it extends within the calf (2C).{why}"
    )


def recommendation_card(assessment: Assessment, ctx: CardContext) -> Card:
    topic = assessment.recommendation
    assert topic in (Topic.ANTICOAGULATE, Topic.SERIAL_IMAGING, Topic.SHARED_DECISION)
    episode = assessment.episode
    where = "muscular calf vein" if episode is not None and episode.muscular_only else "calf"
    if topic == Topic.SERIAL_IMAGING:
        summary = (
            f"Isolated {where} DVT, no risk factor for extension: repeat duplex at 1 and 2 weeks, no anticoagulation"
        )
        headline = (
            "**Recommendation:** serial imaging instead of anticoagulation — no factor favouring "
            "anticoagulation was found in the record."
        )
        if ctx.facts.not_assessed:
            headline += " Some data could not be read (below): check it before relying on this."
    elif topic == Topic.ANTICOAGULATE:
        summary = f"Isolated {where} DVT with {_factor_words(assessment.for_anticoagulation)}: anticoagulate"
        if assessment.regimen and assessment.regimen.total_days:
            summary += f" ({assessment.regimen.agent}, 3 months)"
        headline = (
            "**Recommendation:** anticoagulate — factors favouring anticoagulation and none favouring serial imaging."
        )
    else:
        favoured = "anticoagulation" if assessment.recommended == Option.ANTICOAGULATION else "serial imaging"
        summary = f"Isolated {where} DVT: anticoagulation and serial imaging both reasonable; {favoured} favoured"
        headline = (
            f"**Recommendation:** shared decision — factors on both sides; {favoured} is favoured "
            f"({_favoured_reason(assessment)})."
        )
    detail = join(
        headline,
        episode_line(episode, ctx.facts),
        not_evaluated(ctx.facts),
        factor_table(assessment.for_anticoagulation + assessment.for_serial_imaging),
        "" if assessment.for_anticoagulation else "No factor favouring anticoagulation was found.",
        bleeding_section(assessment.bleeding),
        _regimen_line(assessment) if assessment.offer_anticoagulation else "",
        _imaging_line(assessment, ctx) if assessment.offer_serial_imaging else "",
        list_section("Missing data that could change this", assessment.missing),
        list_section("Caveats", assessment.caveats),
        data_notes(ctx.facts),
        citations_section(assessment.citations, assessment.grade),
    )
    return _card(
        topic, unchecked(summary, ctx), detail, assessment.citations[0], suggestions=_both_options(assessment, ctx)
    )


def _favoured_reason(assessment: Assessment) -> str:
    if assessment.recommended == Option.ANTICOAGULATION:
        if any(f.code == "active-cancer" for f in assessment.for_anticoagulation):
            return "active cancer, NCCN"
        return "no high bleeding risk and no stated preference against anticoagulation"
    reasons = [f.label for f in assessment.for_serial_imaging if f.code in ("high-bleeding-risk", "patient-preference")]
    return ", ".join(reasons) or "serial imaging factors"


def extension_card(assessment: Assessment, ctx: CardContext) -> Card:
    ext = assessment.extension
    assert ext is not None
    regimen = assessment.regimen
    suggestions = [anticoagulation_suggestion(regimen, ctx, assessment.episode, True)] if regimen else []
    if ext.proximal:
        summary = "Calf DVT has extended into the proximal veins on repeat ultrasound: start anticoagulation now"
        headline = (
            f"**Recommendation:** anticoagulate now — proximal extension ({md(ext.detail)}; "
            f"{md(ext.study.describe())}). CHEST 2016 Grade 1B; CHEST 2021 strong."
        )
    else:
        summary = "Calf DVT extended on repeat ultrasound (still below the knee): anticoagulation suggested"
        headline = (
            f"**Recommendation:** anticoagulation suggested — the thrombus extended within the calf "
            f"({md(ext.detail)}; {md(ext.study.describe())}). CHEST 2016 Grade 2C; CHEST 2021 weak."
        )
    detail = join(
        headline,
        episode_line(assessment.episode, ctx.facts),
        not_evaluated(ctx.facts),
        bleeding_section(assessment.bleeding),
        _regimen_line(assessment),
        list_section("Caveats", assessment.caveats),
        data_notes(ctx.facts),
        citations_section(assessment.citations),
    )
    return _card(
        Topic.EXTENSION,
        unchecked(summary, ctx),
        detail,
        assessment.citations[0],
        indicator="critical" if ext.proximal else "warning",
        suggestions=suggestions,
    )


def proximal_card(assessment: Assessment, ctx: CardContext) -> Card:
    episode = assessment.episode
    regimen = assessment.regimen
    veins = md(episode.describe()) if episode else "proximal veins"
    where = episode.describe() if episode else "proximal veins"
    summary = f"Proximal DVT ({where}) with no anticoagulation ordered: anticoagulate"
    detail = join(
        f"**Recommendation:** anticoagulate — a proximal DVT ({veins}) is treated with anticoagulation; serial "
        "imaging is not an option. CHEST 2016 Grade 1B.",
        episode_line(episode, ctx.facts),
        not_evaluated(ctx.facts),
        bleeding_section(assessment.bleeding),
        _regimen_line(assessment),
        list_section("Caveats", assessment.caveats),
        data_notes(ctx.facts),
        citations_section(assessment.citations),
    )
    suggestions = [anticoagulation_suggestion(regimen, ctx, episode, True)] if regimen else []
    return _card(Topic.PROXIMAL_DVT, unchecked(summary, ctx), detail, assessment.citations[0], suggestions=suggestions)


def location_unknown_card(assessment: Assessment, ctx: CardContext) -> Card:
    episode = assessment.episode
    if episode is None:
        return unreadable_dvt_card(assessment, ctx)
    summary = "DVT recorded without the veins involved: document the vein, or get a whole-leg duplex ultrasound"
    first = ctx.today
    detail = join(
        "**Recommendation:** the veins involved decide between anticoagulation (proximal, or distal with risk "
        "factors) and serial imaging (isolated distal without risk factors). Document the vein, or image the whole "
        "leg including the calf veins.",
        episode_line(episode, ctx.facts),
        not_evaluated(ctx.facts),
        list_section("Caveats", assessment.caveats),
        data_notes(ctx.facts),
        citations_section(assessment.citations),
    )
    side = episode.side if episode and episode.side in (Side.RIGHT, Side.LEFT) else Side.BILATERAL
    suggestion = Suggestion(
        label="Order a whole-leg venous duplex ultrasound",
        isRecommended=True,
        actions=[
            Action(
                type="create",
                description=f"Order whole-leg venous duplex ultrasound including the calf veins on {first.isoformat()}",
                resource=service_request(side, first, ctx, episode, "to document the veins involved"),
                order_key=duplex_key(side),
            )
        ],
    )
    return _card(Topic.LOCATION_UNKNOWN, summary, detail, assessment.citations[0], suggestions=[suggestion])


def unreadable_dvt_card(assessment: Assessment, ctx: CardContext) -> Card:
    """A DVT diagnosis is recorded but its Condition is not valid FHIR R4: the veins, dates and status cannot be
    read, so nothing is recommended from it — the card says what was not read."""
    refs = ctx.facts.unreadable_dvt
    summary = "A DVT diagnosis could not be read (not valid FHIR R4): check the record and the veins involved"
    detail = join(
        "**Not evaluated:** the record holds a DVT diagnosis this service could not read, so it could not tell "
        "which veins, when, or whether it is current; no recommendation is built on it.",
        list_section(
            "Not read",
            [f"{md(ref)}: not valid FHIR R4 (a DSTU2 or STU3 record, or a broken interface)" for ref in refs[:5]],
        ),
        not_evaluated(ctx.facts),
        data_notes(ctx.facts),
        citations_section(assessment.citations),
    )
    return _card(Topic.LOCATION_UNKNOWN, summary, detail, assessment.citations[0])


def bilateral_card(assessment: Assessment, ctx: CardContext) -> Card:
    episode = assessment.episode
    assert episode is not None
    other = episode.side.other
    first, _ = serial_imaging_days(ctx)
    summary = f"Muscular calf vein DVT under surveillance: the {other.value} leg has not been imaged"
    detail = join(
        f"**Suggestion:** include the {other.value} leg in the surveillance scans. In isolated calf muscular vein "
        "thrombosis, further DVT (19 %) including contralateral DVT (≈5 %) was reported within weeks "
        "(Kret 2013, a study, not a guideline recommendation).",
        episode_line(episode, ctx.facts),
        list_section("Imaging found", [p.source.describe() for p in ctx.facts.planned_imaging]),
        citations_section(assessment.citations),
    )
    suggestion = Suggestion(
        label=f"Add a venous duplex of the {other.value} leg",
        isRecommended=True,
        actions=[
            Action(
                type="create",
                description=f"Order venous duplex ultrasound of the {other.value} leg on {first}",
                resource=service_request(other, first, ctx, episode, "contralateral surveillance"),
                order_key=duplex_key(other),
            )
        ],
    )
    return _card(Topic.BILATERAL_SURVEILLANCE, summary, detail, assessment.citations[0], suggestions=[suggestion])


def surveillance_gap_card(assessment: Assessment, ctx: CardContext) -> Card:
    summary = "Calf DVT with no anticoagulation and no repeat ultrasound arranged: arrange duplex at 1 and 2 weeks"
    detail = join(
        "**Before discharge:** this distal DVT is neither anticoagulated nor under surveillance. Untreated distal DVT "
        "needs repeat whole-leg duplex at about 1 and 2 weeks (CHEST: serial imaging for 2 weeks), or anticoagulation.",
        episode_line(assessment.episode, ctx.facts),
        not_evaluated(ctx.facts),
        factor_table(assessment.for_anticoagulation + assessment.for_serial_imaging),
        bleeding_section(assessment.bleeding),
        _imaging_line(assessment, ctx),
        list_section("Caveats", assessment.caveats),
        data_notes(ctx.facts),
        citations_section(assessment.citations, assessment.grade),
    )
    return _card(
        Topic.SURVEILLANCE_GAP,
        unchecked(summary, ctx),
        detail,
        assessment.citations[0],
        suggestions=_both_options(assessment, ctx),
    )


# ----------------------------------------------------------------------------------------------------------------
# order checks (order-select, order-sign)
# ------------------------------------------------------------------------------------------------------------------
def _delete(reference: str, what: str) -> Action:
    return Action(type="delete", description=f"Remove the drafted {what}", resourceId=reference)


def pregnancy_anticoagulant_card(draft_reference: str, agent: str, assessment: Assessment, ctx: CardContext) -> Card:
    regimen = assessment.regimen
    summary = f"{agent.capitalize()} drafted in pregnancy: use therapeutic LMWH (enoxaparin) instead"
    detail = join(
        f"**Stop:** {md(agent)} is drafted ({md(draft_reference)}) for a pregnant patient. Warfarin is teratogenic and "
        "DOACs are not recommended in pregnancy; therapeutic-dose LMWH is the treatment of choice, until at least "
        "6 weeks after delivery and 3 months in total.",
        list_section("Pregnancy recorded in", [s.describe() for s in ctx.facts.pregnant.sources]),
        _regimen_line(assessment),
        citations_section([c for c in assessment.citations if c.key == "blood-2020-pregnancy"] + assessment.citations),
    )
    actions = [_delete(draft_reference, agent)]
    if regimen is not None and regimen.population == "pregnancy":
        actions.append(
            Action(
                type="create",
                description=f"Order {regimen.summary}; duration {regimen.duration_text}",
                resource=medication_request(regimen, ctx, assessment.episode),
                order_key=regimen.key,
            )
        )
    suggestion = Suggestion(label="Replace with enoxaparin 1 mg/kg every 12 hours", isRecommended=True, actions=actions)
    return _card(Topic.PREGNANCY_ANTICOAGULANT, summary, detail, PREGNANCY_BLOOD_2020, suggestions=[suggestion])


def duration_card(draft_reference: str, agent: str, problem: str, assessment: Assessment) -> Card:
    regimen = assessment.regimen
    recommended = regimen.duration_text if regimen else "3 months"
    summary = f"{agent.capitalize()} duration differs from the recommended {recommended}"
    detail = join(
        f"**Duration:** {md(problem)} ({md(draft_reference)}). Recommended: {md(recommended)} for this isolated distal "
        "DVT (CHEST 2016: 3 months over shorter or extended courses for provoked or first unprovoked distal DVT).",
        episode_line(assessment.episode),
        "ESC working groups (2017) allow shorter courses for low-risk distal DVT: a guideline disagreement.",
        citations_section(assessment.citations),
    )
    return _card(Topic.ANTICOAGULATION_DURATION, summary, detail, assessment.citations[0])


def caution_card(draft_reference: str, agent: str, found: list[str], assessment: Assessment) -> Card:
    summary = f"Caution with drafted {agent}: " + "; ".join(found)[:90]
    detail = join(
        f"**Cautions for {md(agent)}** ({md(draft_reference)}):\n" + "\n".join(f"- {md(f)}" for f in found),
        bleeding_section(assessment.bleeding),
        citations_section(assessment.citations),
    )
    return _card(Topic.ANTICOAGULANT_CAUTION, summary, detail, assessment.citations[0])


def serial_alternative_card(draft_reference: str, agent: str, assessment: Assessment, ctx: CardContext) -> Card:
    summary = "No risk factor for extension of this calf DVT: serial duplex at 1 and 2 weeks is the alternative"
    detail = join(
        f"**Alternative:** {md(agent)} is drafted ({md(draft_reference)}), but no factor favouring anticoagulation was "
        "found. For isolated distal DVT without severe symptoms or risk factors for extension, CHEST suggests serial "
        "imaging of the deep veins for 2 weeks over anticoagulation (Grade 2C). Anticoagulation remains reasonable.",
        episode_line(assessment.episode, ctx.facts),
        factor_table(assessment.for_serial_imaging),
        list_section("Missing data that could change this", assessment.missing),
        _imaging_line(assessment, ctx),
        citations_section(assessment.citations, "CHEST 2016 Grade 2C"),
    )
    serial = serial_imaging_suggestion(assessment.imaging_side, ctx, assessment.episode, False)
    serial = Suggestion(
        label=f"Replace the {agent} order with serial imaging",
        isRecommended=False,
        actions=[_delete(draft_reference, agent), *(serial.actions or [])],
    )
    return _card(Topic.SERIAL_IMAGING, summary, detail, assessment.citations[0], indicator="info", suggestions=[serial])


def limited_ultrasound_card(
    draft_reference: str, side: Side, reason: str, assessment: Assessment, ctx: CardContext
) -> Card:
    summary = "Limited venous ultrasound drafted: it may not image the calf veins; order a whole-leg duplex"
    detail = join(
        f"**Pitfall:** a limited or proximal-only compression ultrasound is drafted ({md(draft_reference)}) while "
        f"{md(reason)}. Limited protocols do not evaluate the calf veins, so a distal DVT can be missed or its "
        "extension not seen; a negative proximal-only study needs a repeat at about 1 week (CHEST AT9 diagnosis).",
        episode_line(assessment.episode, ctx.facts),
        citations_section([c for c in assessment.citations if c.key != "chest-2021"] or assessment.citations),
    )
    whole = side if side in (Side.RIGHT, Side.LEFT) else Side.BILATERAL
    suggestion = Suggestion(
        label="Replace with a whole-leg venous duplex",
        isRecommended=True,
        actions=[
            _delete(draft_reference, "limited ultrasound"),
            Action(
                type="create",
                description=f"Order whole-leg venous duplex ultrasound including the calf veins on {ctx.today}",
                resource=service_request(whole, ctx.today, ctx, assessment.episode, "whole leg"),
                order_key=duplex_key(whole),
            ),
        ],
    )
    return _card(Topic.LIMITED_COMPRESSION_ULTRASOUND, summary, detail, CHEST_AT9_DIAGNOSIS, suggestions=[suggestion])


def draft_not_checked_card(unread: Any, assessment: Assessment) -> Card:
    """A drafted anticoagulant or venous ultrasound (or a drug that cannot be identified) that could not be read."""
    summary = f"Could not check {unread.what}: {unread.why}"
    detail = join(
        f"**Not checked:** the drafted order {md(unread.reference)} ({md(unread.what)}) could not be read — "
        f"{md(unread.why)} — so the distal-DVT checks did not run on it: warfarin or a DOAC in pregnancy, "
        "renal, platelet and weight cautions, treatment duration, and a limited ultrasound that skips the calf. "
        "Check the order by hand, or re-enter it.",
        episode_line(assessment.episode),
    )
    return _card(Topic.DRAFT_ORDER_NOT_CHECKED, summary, detail, assessment.citations[0])
