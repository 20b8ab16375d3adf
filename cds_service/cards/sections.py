"""The blocks a card's detail is made of, each in the forms it can take when the detail must be shorter
(``markdown.Part``): the lead, the deciding factors, what could change the answer, what could not be evaluated, the
plan (regimen or scan dates), the bleeding risk, caveats, data notes and the evidence line.

When the detail would be too long, the details that matter least give way first (``markdown.compose``): report
quotes beyond the episode's, data notes, the bleeding-risk line, the imaging rules and the regimen's alternative
agent, then the extra items of each list. Never dropped: the lead, the recommendation, one deciding factor per side,
the most important missing datum, what could not be evaluated (its first item), the plan and the evidence line.
"""

from __future__ import annotations

from cds_service.cards.context import CardContext
from cds_service.cards.markdown import Part, bullets, day, md
from cds_service.cards.orders import legs_of, serial_imaging_days
from cds_service.cards.words import QUOTE_MAX, UNCHECKED, Words, citation_line, listed
from cds_service.clinical.assessment import Assessment
from cds_service.clinical.bleeding import BleedingRisk
from cds_service.clinical.evidence import Citation
from cds_service.clinical.factors import Factor

MOST_BULLETS = 5


def lead(assessment: Assessment, ctx: CardContext, w: Words) -> Part:
    """A card must never be confident on data it could not read: when current anticoagulation could not be
    checked, the detail says so first (and the summary starts with it)."""
    if not ctx.facts.anticoagulation_unchecked:
        return Part.of("")
    said = next((c for c in assessment.caveats if c.startswith(UNCHECKED)), f"{UNCHECKED}.")
    rest = said.removeprefix(UNCHECKED)
    text = f"**{UNCHECKED}**" + (" " if rest.startswith(" ") else "") + w.plain(rest)
    if "medication list" not in text:
        text += " Check the medication list before ordering."
    return Part.of(text)


def unchecked_summary(summary: str, ctx: CardContext, short: str | None = None) -> str:
    """A patient card's summary, led by a warning when current anticoagulation could not be checked (then in its
    ``short`` form, so that the recommendation still fits after the warning)."""
    if not ctx.facts.anticoagulation_unchecked:
        return summary
    text = short or summary
    return f"{UNCHECKED}: {text[0].lower()}{text[1:]}"


def factors(w: Words, groups: list[tuple[str, list[Factor]]]) -> Part:
    """The deciding factors as at most five short bullets, each naming its evidence and date; with factors on both
    sides, under a heading per side. Leaner forms: without report quotes, then fewer bullets ("Also: …")."""
    groups = [(title, found) for title, found in groups if found]
    if not groups:
        return Part.of("")
    return Part.steps(
        (_factor_block(w, groups, MOST_BULLETS, quote=QUOTE_MAX), 30),
        (_factor_block(w, groups, MOST_BULLETS, quote=70), 45),
        (_factor_block(w, groups, MOST_BULLETS, quote=70, brief=True), 66),
        (_factor_block(w, groups, MOST_BULLETS, quote=0, brief=True), 70),
        (_factor_block(w, groups, 4, quote=0, brief=True), 72),
        (_factor_block(w, groups, 3, quote=0, brief=True), 74),
        (_factor_block(w, groups, 2, quote=0, brief=True), 76),
        (_factor_block(w, groups, 2, quote=0, brief=True, evidence=1), 0),
    )


def _factor_block(
    w: Words, groups: list[tuple[str, list[Factor]]], most: int, *, quote: int, brief: bool = False, evidence: int = 2
) -> str:
    quotas = [0] * len(groups)
    slots = max(most, len(groups))
    while slots and any(quotas[i] < len(found) for i, (_, found) in enumerate(groups)):
        for i, (_, found) in enumerate(groups):
            if slots and quotas[i] < len(found):
                quotas[i] += 1
                slots -= 1
    blocks, said = [], set[str]()
    for (title, found), quota in zip(groups, quotas, strict=True):
        shown = found if len(found) <= quota else found[: max(quota - 1, 1)]
        items = [w.factor(f, quote=quote, said=said, brief=brief, limit=evidence) for f in shown]
        rest = found[len(shown) :]
        if rest:
            items.append("Also: " + ", ".join(md(f.label.split(" (", 1)[0]) for f in rest))
        heading = f"**{title}:**\n" if title else ""
        blocks.append(heading + bullets(items))
    return "\n".join(blocks)


def missing(assessment: Assessment, w: Words) -> Part:
    """The one line of what could change the answer: the most important missing data first."""
    items = w.missing(assessment)
    if not items:
        return Part.of("")
    return Part.steps(
        (f"**Could change this:** {listed(items, 3)}.", 50), (f"**Could change this:** {listed(items, 1)}.", 0)
    )


def not_evaluated(bleeding: BleedingRisk | None, ctx: CardContext, w: Words) -> Part:
    """What could not be evaluated, in one line naming the most important items: shortened, never dropped."""
    items = w.not_evaluated(bleeding, lead=ctx.facts.anticoagulation_unchecked)
    if not items:
        return Part.of("")
    line = "**Could not be evaluated:** {}."
    return Part.steps(
        (line.format(listed(items, 5)), 55), (line.format(listed(items, 3)), 76), (line.format(listed(items, 1)), 0)
    )


def caveats(assessment: Assessment, w: Words) -> Part:
    items = [w.plain(c.rstrip(".")) for c in assessment.caveats if not c.startswith(UNCHECKED)]
    if not items:
        return Part.of("")
    return Part.steps((f"**Caveats:** {listed(items, 3)}.", 60), (f"**Caveats:** {listed(items, 1)}.", 0))


def notes(w: Words) -> Part:
    items = w.notes()
    if not items:
        return Part.of("")
    return Part.steps(
        (f"**Data notes:** {listed(items, 2)}.", 20), (f"**Data notes:** {listed(items, 1)}.", 28), ("", 0)
    )


def bleeding(risk: BleedingRisk | None) -> Part:
    """The bleeding-risk category in one line, for cards that recommend anticoagulation."""
    if risk is None:
        return Part.of("")
    found = ", ".join(md(f.label) for f in risk.factors[:3]) + (" and more" if len(risk.factors) > 3 else "")
    # docs/clinical/RULES.md R-BLEED-10: the scheme is not validated (its own footnote) — said wherever its estimate is.
    estimate = f"{risk.estimate[:-1]}; the scheme is not validated)" if risk.estimate.endswith(")") else risk.estimate
    text = f"**Bleeding risk:** {risk.category.value} — {found or 'no bleeding-risk factor found'}; {estimate}."
    return Part.steps((text, 25), ("", 0))


def regimen(assessment: Assessment, *, title: str = "Anticoagulation", alternative: bool = False) -> Part:
    """The regimen and its duration; as the alternative to serial imaging it may shrink to the agent and duration
    (the suggestion carries the whole order)."""
    r = assessment.regimen
    if r is None:
        return Part.of("")
    line = f"**{title}:** {md(r.summary)}; {md(r.duration_text)}."
    notes = " ".join(md(n) for n in r.notes)
    compact = f"**{title}:** {md(r.agent)}, {md(r.duration_text)}."
    if not alternative:
        return Part.steps((f"{line} {notes}" if notes else line, 35), (line, 0))
    return Part.steps((f"{line} {notes}" if notes else line, 35), (line, 64), (compact, 0))


def imaging(assessment: Assessment, ctx: CardContext, *, title: str = "Serial imaging") -> Part:
    first, second = serial_imaging_days(ctx)
    w_first, w_second = day(first, ctx.today), day(second, ctx.today)
    legs = legs_of(assessment.imaging_side)
    scans = f"**{title}:** whole-leg venous duplex of {legs} on {w_first} (day 7) and {w_second} (day 14)"
    rules = (
        "; no anticoagulation if the thrombus does not extend (CHEST 1B), anticoagulate if it extends into the "
        "proximal veins (1B), consider it if it extends within the calf (2C)."
    )
    why = (
        " Both legs: in muscular calf vein thrombosis further DVT, some in the other leg, is reported within weeks "
        "(Kret 2013, a study)."
        if assessment.bilateral_imaging
        else ""
    )
    compact = f"**{title}:** whole-leg duplex of {legs} on {w_first} and {w_second}."
    return Part.steps(
        (scans + rules + why, 32),
        (scans + rules, 42),
        (scans + "; anticoagulate if it extends.", 48),
        (scans + ".", 80),
        (compact, 0),
    )


def evidence(assessment: Assessment | None, citations: list[Citation], grade: str | None = None) -> Part:
    return Part.of(citation_line(assessment, citations, grade))


def sentence(text: str) -> Part:
    """A block said whole, whatever the length of the rest."""
    return Part.of(text)
