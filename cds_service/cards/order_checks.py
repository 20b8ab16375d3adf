"""Order-check cards (order-select, order-sign, and Epic's order triggers): warfarin or a DOAC drafted in pregnancy,
a treatment duration that differs from the recommendation, renal/platelet/weight/interaction cautions, serial imaging
as the alternative to a drafted anticoagulant, a limited ultrasound that skips the calf, and a drafted order that
could not be read. The drafted order is named by what it orders, never by its id."""

from __future__ import annotations

from typing import Any

from cds_service.cards import sections as sec
from cds_service.cards.context import CardContext, make_card
from cds_service.cards.markdown import bullets, compose, md
from cds_service.cards.orders import (
    delete_action,
    duplex_key,
    medication_request,
    serial_imaging_suggestion,
    service_request,
)
from cds_service.cards.words import Words
from cds_service.clinical.assessment import Assessment
from cds_service.clinical.evidence import CHEST_AT9_DIAGNOSIS, PREGNANCY_BLOOD_2020
from cds_service.clinical.model import Side
from cds_service.clinical.topics import Topic
from cds_service.protocol import Action, Card, Suggestion


def _episode(assessment: Assessment, w: Words) -> sec.Part:
    if assessment.episode is None:
        return sec.Part.of("")
    what, origin = w.episode(assessment.episode)
    return sec.sentence(f"Episode: {what}. {origin}".strip())


def pregnancy_anticoagulant_card(draft_reference: str, agent: str, assessment: Assessment, ctx: CardContext) -> Card:
    w = Words(ctx.facts, ctx.today)
    regimen = assessment.regimen
    summary = f"{agent.capitalize()} drafted in pregnancy: use therapeutic LMWH (enoxaparin) instead"
    recorded = w.sources(ctx.facts.pregnant.sources, limit=3)
    detail = compose(
        [
            sec.sentence(
                f"**Stop:** {md(agent)} is drafted for a pregnant patient. Warfarin is teratogenic and DOACs are not "
                "recommended in pregnancy; therapeutic-dose LMWH is the treatment of choice."
            ),
            sec.sentence(f"**Pregnancy recorded:** {recorded}." if recorded else ""),
            sec.regimen(assessment, title="Instead"),
            _episode(assessment, w),
            sec.evidence(
                None, [c for c in assessment.citations if c.key == "blood-2020-pregnancy"] + assessment.citations
            ),
        ]
    )
    actions = [delete_action(draft_reference, agent)]
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
    return make_card(
        Topic.PREGNANCY_ANTICOAGULANT, summary, detail, PREGNANCY_BLOOD_2020, ctx, suggestions=[suggestion]
    )


def duration_card(draft_reference: str, agent: str, problem: str, assessment: Assessment, ctx: CardContext) -> Card:
    w = Words(ctx.facts, ctx.today)
    regimen = assessment.regimen
    recommended = regimen.duration_text if regimen else "3 months"
    summary = f"{agent.capitalize()} duration differs from the recommended {recommended}"
    detail = compose(
        [
            sec.sentence(
                f"**Duration:** {md(agent)} {w.plain(problem)}. CHEST 2016 prefers 3 months over shorter or extended "
                "courses for a provoked or first unprovoked isolated distal DVT."
            ),
            _episode(assessment, w),
            sec.sentence(
                "ESC working groups (2017) allow shorter courses for low-risk distal DVT: a guideline disagreement."
            ),
            sec.evidence(None, assessment.citations),
        ]
    )
    return make_card(Topic.ANTICOAGULATION_DURATION, summary, detail, assessment.citations[0], ctx)


def caution_card(draft_reference: str, agent: str, found: list[str], assessment: Assessment, ctx: CardContext) -> Card:
    w = Words(ctx.facts, ctx.today)
    heads = [f.split(" (", 1)[0].split(":", 1)[0] for f in found]
    summary = f"Caution with drafted {agent}: " + "; ".join(dict.fromkeys(_lower_first(h) for h in heads))
    items = [w.plain(f) for f in found]
    detail = compose(
        [
            sec.sentence(f"**Cautions for the drafted {md(agent)}:**"),
            sec.Part.steps((bullets(items), 65), (bullets(items[:4]), 0)),
            sec.bleeding(assessment.bleeding),
            sec.not_evaluated(assessment.bleeding, ctx, w),
            sec.evidence(None, assessment.citations),
        ]
    )
    return make_card(Topic.ANTICOAGULANT_CAUTION, summary, detail, assessment.citations[0], ctx)


def _lower_first(text: str) -> str:
    """ "Antiplatelet therapy" → "antiplatelet therapy"; an abbreviation ("CrCl", "NSAID") stays as written."""
    return text if text[1:2].isupper() else text[:1].lower() + text[1:]


def serial_alternative_card(draft_reference: str, agent: str, assessment: Assessment, ctx: CardContext) -> Card:
    w = Words(ctx.facts, ctx.today)
    summary = "No risk factor for extension of this calf DVT: serial duplex at 1 and 2 weeks is the alternative"
    detail = compose(
        [
            sec.sentence(
                f"**Alternative:** {md(agent)} is drafted, but no factor favouring anticoagulation was found. For "
                "isolated distal DVT without severe symptoms or risk factors for extension, CHEST suggests serial "
                "imaging of the deep veins for 2 weeks over anticoagulation; anticoagulation remains reasonable."
            ),
            _episode(assessment, w),
            sec.factors(w, [("", assessment.for_serial_imaging)]),
            sec.missing(assessment, w),
            sec.not_evaluated(assessment.bleeding, ctx, w),
            sec.imaging(assessment, ctx),
            sec.evidence(assessment, assessment.citations),
        ]
    )
    serial = serial_imaging_suggestion(assessment.imaging_side, ctx, assessment.episode, False)
    serial = Suggestion(
        label=f"Replace the {agent} order with serial imaging",
        isRecommended=False,
        actions=[delete_action(draft_reference, agent), *(serial.actions or [])],
    )
    return make_card(
        Topic.SERIAL_IMAGING, summary, detail, assessment.citations[0], ctx, indicator="info", suggestions=[serial]
    )


def limited_ultrasound_card(
    draft_reference: str, side: Side, reason: str, assessment: Assessment, ctx: CardContext
) -> Card:
    w = Words(ctx.facts, ctx.today)
    summary = "Limited venous ultrasound drafted: it may not image the calf veins; order a whole-leg duplex"
    detail = compose(
        [
            sec.sentence(
                f"**Pitfall:** a limited or proximal-only compression ultrasound is drafted while {w.plain(reason)}. "
                "Limited protocols do not evaluate the calf veins, so a distal DVT can be missed or its extension not "
                "seen; a negative proximal-only study needs a repeat at about 1 week."
            ),
            _episode(assessment, w),
            sec.evidence(None, [CHEST_AT9_DIAGNOSIS]),
        ]
    )
    whole = side if side in (Side.RIGHT, Side.LEFT) else Side.BILATERAL
    suggestion = Suggestion(
        label="Replace with a whole-leg venous duplex",
        isRecommended=True,
        actions=[
            delete_action(draft_reference, "limited ultrasound"),
            Action(
                type="create",
                description=f"Order whole-leg venous duplex ultrasound including the calf veins on {ctx.today}",
                resource=service_request(whole, ctx.today, ctx, assessment.episode, "whole leg"),
                order_key=duplex_key(whole),
            ),
        ],
    )
    return make_card(
        Topic.LIMITED_COMPRESSION_ULTRASOUND, summary, detail, CHEST_AT9_DIAGNOSIS, ctx, suggestions=[suggestion]
    )


def draft_not_checked_card(unread: Any, assessment: Assessment, ctx: CardContext) -> Card:
    """A drafted anticoagulant or venous ultrasound (or a drug that cannot be identified) that could not be read."""
    w = Words(ctx.facts, ctx.today)
    summary = f"Could not check {unread.what}: {unread.why}"
    detail = compose(
        [
            sec.sentence(
                f"**Not checked:** the drafted order ({md(unread.what)}) could not be read — {w.plain(unread.why)} — "
                "so the distal-DVT checks did not run on it: warfarin or a DOAC in pregnancy, renal, platelet and "
                "weight cautions, treatment duration, and a limited ultrasound that skips the calf. Check the order by "
                "hand, or re-enter it."
            ),
            _episode(assessment, w),
        ]
    )
    return make_card(Topic.DRAFT_ORDER_NOT_CHECKED, summary, detail, assessment.citations[0], ctx)
