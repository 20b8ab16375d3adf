"""Patient cards (patient-view, encounter-discharge): the recommendation for an isolated distal DVT, extension on
repeat imaging, an untreated proximal DVT, a DVT whose veins are not documented (or cannot be read), the other leg
in muscular-vein thrombosis, and the surveillance gap at discharge.

Each card reads in seconds (docs/clinical/RULES.md R-CARD-1): the recommendation in one sentence, the deciding
factors, what could change it, what could not be evaluated, the regimen or scan dates and one evidence line. The full
explanation is in the pathway view the recommendation, extension and surveillance cards link to.
"""

from __future__ import annotations

from cds_service.cards import sections as sec
from cds_service.cards.context import CardContext, make_card
from cds_service.cards.markdown import compose, day, md
from cds_service.cards.orders import (
    anticoagulation_suggestion,
    both_options,
    duplex_key,
    legs_of,
    serial_imaging_days,
    service_request,
)
from cds_service.cards.words import Words, option_name
from cds_service.clinical.assessment import Assessment, Option
from cds_service.clinical.model import Side
from cds_service.clinical.topics import Topic
from cds_service.protocol import Action, Card, Suggestion


def _plans(assessment: Assessment, ctx: CardContext) -> list[sec.Part]:
    """The regimen and the scan dates of the options offered, the recommended one first."""
    anticoagulation = assessment.offer_anticoagulation and assessment.regimen is not None
    serial = assessment.offer_serial_imaging
    if assessment.recommended == Option.SERIAL_IMAGING:
        return [
            sec.imaging(assessment, ctx) if serial else sec.Part.of(""),
            sec.regimen(assessment, title="Alternative, anticoagulation", alternative=True)
            if anticoagulation
            else sec.Part.of(""),
        ]
    return [
        sec.regimen(assessment) if anticoagulation else sec.Part.of(""),
        sec.imaging(assessment, ctx, title="Alternative, serial imaging") if serial else sec.Part.of(""),
    ]


def recommendation_card(assessment: Assessment, ctx: CardContext) -> Card:
    topic = assessment.recommendation
    if topic not in (Topic.ANTICOAGULATE, Topic.SERIAL_IMAGING, Topic.SHARED_DECISION):
        raise ValueError(f"no recommendation card for {topic}")
    w = Words(ctx.facts, ctx.today)
    episode = assessment.episode
    where = "muscular calf vein" if episode is not None and episode.muscular_only else "calf"
    what, origin = w.episode(episode) if episode else ("acute distal DVT", "")
    reason = md(assessment.favoured_reason)
    if topic == Topic.SERIAL_IMAGING:
        summary = (
            f"Isolated {where} DVT, no risk factor for extension: repeat duplex at 1 and 2 weeks, no anticoagulation"
        )
        short = "isolated calf DVT: serial duplex at 1 and 2 weeks rather than anticoagulation"
        head = f"**Serial imaging, no anticoagulation now:** {what}; {reason}."
    elif topic == Topic.ANTICOAGULATE:
        course = (
            f" ({assessment.regimen.agent}, 3 months)" if assessment.regimen and assessment.regimen.total_days else ""
        )
        factors = w.factor_words(assessment.for_anticoagulation)
        summary = f"Anticoagulate{course}: isolated {where} DVT — {factors}"
        short = (
            f"anticoagulation recommended for isolated calf DVT ({w.factor_words(assessment.for_anticoagulation, 2)})"
        )
        head = f"**Anticoagulate:** {what}; {reason}."
    else:
        favoured = option_name(assessment.recommended)
        summary = f"Isolated {where} DVT: anticoagulation and serial imaging both reasonable; {favoured} favoured"
        short = f"isolated calf DVT, shared decision: {favoured} favoured"
        head = f"**Shared decision, {favoured} favoured:** {what} with factors on both sides. Why {favoured}: {reason}."
    two_sides = bool(assessment.for_anticoagulation and assessment.for_serial_imaging)
    detail = compose(
        [
            sec.lead(assessment, ctx, w),
            sec.sentence(head),
            sec.sentence(origin),
            sec.factors(
                w,
                [
                    ("For anticoagulation" if two_sides else "", assessment.for_anticoagulation),
                    ("For serial imaging" if two_sides else "", assessment.for_serial_imaging),
                ],
            ),
            sec.missing(assessment, w),
            sec.not_evaluated(assessment.bleeding, ctx, w),
            *_plans(assessment, ctx),
            sec.bleeding(assessment.bleeding) if assessment.recommended == Option.ANTICOAGULATION else sec.Part.of(""),
            sec.caveats(assessment, w),
            sec.notes(w),
            sec.evidence(assessment, assessment.citations),
        ]
    )
    return make_card(
        topic,
        sec.unchecked_summary(summary, ctx, short),
        detail,
        assessment.citations[0],
        ctx,
        suggestions=both_options(assessment, ctx),
    )


def extension_card(assessment: Assessment, ctx: CardContext) -> Card:
    ext = assessment.extension
    if ext is None:
        raise ValueError("an extension card needs the assessment's extension")
    w = Words(ctx.facts, ctx.today)
    regimen = assessment.regimen
    suggestions = [anticoagulation_suggestion(regimen, ctx, assessment.episode, True)] if regimen else []
    seen = f"on the repeat ultrasound of {w.seen_on(ext.study)}"
    if ext.proximal:
        summary = "Calf DVT has extended into the proximal veins on repeat ultrasound: start anticoagulation now"
        head = f"**Anticoagulate now:** {md(assessment.favoured_reason)} {seen}."
    else:
        summary = "Calf DVT extended on repeat ultrasound (still below the knee): anticoagulation suggested"
        head = f"**Anticoagulation suggested:** {md(assessment.favoured_reason)} {seen}."
    episode = assessment.episode
    what, origin = w.episode(episode) if episode else ("", "")
    detail = compose(
        [
            sec.lead(assessment, ctx, w),
            sec.sentence(head),
            sec.sentence(f"First found: {what}." if what else ""),
            sec.sentence(origin),
            sec.not_evaluated(assessment.bleeding, ctx, w),
            sec.regimen(assessment),
            sec.bleeding(assessment.bleeding),
            sec.caveats(assessment, w),
            sec.notes(w),
            sec.evidence(assessment, assessment.citations),
        ]
    )
    return make_card(
        Topic.EXTENSION,
        sec.unchecked_summary(summary, ctx),
        detail,
        assessment.citations[0],
        ctx,
        indicator="critical" if ext.proximal else "warning",
        suggestions=suggestions,
    )


def proximal_card(assessment: Assessment, ctx: CardContext) -> Card:
    w = Words(ctx.facts, ctx.today)
    episode = assessment.episode
    regimen = assessment.regimen
    where = episode.describe() if episode else "proximal veins"
    summary = f"Proximal DVT ({where}) with no anticoagulation ordered: anticoagulate"
    short = "proximal DVT with no anticoagulation ordered: anticoagulate"
    what, origin = w.episode(episode) if episode else ("proximal DVT", "")
    detail = compose(
        [
            sec.lead(assessment, ctx, w),
            sec.sentence(f"**Anticoagulate:** {what}; {md(assessment.favoured_reason)}."),
            sec.sentence(origin),
            sec.not_evaluated(assessment.bleeding, ctx, w),
            sec.regimen(assessment),
            sec.bleeding(assessment.bleeding),
            sec.caveats(assessment, w),
            sec.notes(w),
            sec.evidence(assessment, assessment.citations),
        ]
    )
    suggestions = [anticoagulation_suggestion(regimen, ctx, episode, True)] if regimen else []
    return make_card(
        Topic.PROXIMAL_DVT,
        sec.unchecked_summary(summary, ctx, short),
        detail,
        assessment.citations[0],
        ctx,
        suggestions=suggestions,
    )


def location_unknown_card(assessment: Assessment, ctx: CardContext) -> Card:
    episode = assessment.episode
    if episode is None:
        return unreadable_dvt_card(assessment, ctx)
    w = Words(ctx.facts, ctx.today)
    summary = "DVT recorded without the veins involved: document the vein, or get a whole-leg duplex ultrasound"
    first = ctx.today
    what, origin = w.episode(episode)
    detail = compose(
        [
            sec.sentence(
                f"**Document the vein, or image the whole leg including the calf veins,** for this {what}: the veins "
                "decide between anticoagulation (proximal, or distal with risk factors) and serial imaging "
                "(isolated distal without risk factors)."
            ),
            sec.sentence(origin),
            sec.not_evaluated(assessment.bleeding, ctx, w),
            sec.caveats(assessment, w),
            sec.notes(w),
            sec.evidence(None, assessment.citations),
        ]
    )
    side = episode.side if episode.side in (Side.RIGHT, Side.LEFT) else Side.BILATERAL
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
    return make_card(Topic.LOCATION_UNKNOWN, summary, detail, assessment.citations[0], ctx, suggestions=[suggestion])


def unreadable_dvt_card(assessment: Assessment, ctx: CardContext) -> Card:
    """A DVT diagnosis is recorded but its Condition is not valid FHIR R4: the veins, dates and status cannot be
    read, so nothing is recommended from it — the card says what was not read."""
    w = Words(ctx.facts, ctx.today)
    count = len(ctx.facts.unreadable_dvt)
    summary = "A DVT diagnosis could not be read (not valid FHIR R4): check the record and the veins involved"
    records = "a DVT diagnosis" if count == 1 else f"{count} DVT diagnoses"
    detail = compose(
        [
            sec.sentence(
                f"**Not evaluated:** the record holds {records} this service could not read (not valid FHIR R4: a "
                "DSTU2 or STU3 record, or a broken interface), so it could not tell which veins, when, or whether it "
                "is current; no recommendation is built on it. Check the problem list and the ultrasound reports."
            ),
            sec.not_evaluated(assessment.bleeding, ctx, w),
            sec.notes(w),
            sec.evidence(None, assessment.citations),
        ]
    )
    return make_card(Topic.LOCATION_UNKNOWN, summary, detail, assessment.citations[0], ctx)


def bilateral_card(assessment: Assessment, ctx: CardContext) -> Card:
    w = Words(ctx.facts, ctx.today)
    episode = assessment.episode
    if episode is None:
        raise ValueError("a bilateral card needs the assessment's episode")
    other = episode.side.other
    first, _ = serial_imaging_days(ctx)
    summary = f"Muscular calf vein DVT under surveillance: the {other.value} leg has not been imaged"
    what, origin = w.episode(episode)
    planned = [
        f"duplex of {legs_of(p.legs)}" + (f", {'done' if p.done else 'due'} {day(p.due, ctx.today)}" if p.due else "")
        for p in ctx.facts.planned_imaging
    ]
    detail = compose(
        [
            sec.sentence(
                f"**Include the {other.value} leg in the surveillance scans** for this {what}: in isolated calf "
                "muscular vein thrombosis, further DVT (19 %) including DVT in the other leg (≈5 %) was reported "
                "within weeks (Kret 2013, a study, not a guideline recommendation)."
            ),
            sec.sentence(origin),
            sec.sentence(f"**Scans found:** {'; '.join(dict.fromkeys(planned))}." if planned else ""),
            sec.notes(w),
            sec.evidence(None, assessment.citations),
        ]
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
    return make_card(
        Topic.BILATERAL_SURVEILLANCE, summary, detail, assessment.citations[0], ctx, suggestions=[suggestion]
    )


def surveillance_gap_card(assessment: Assessment, ctx: CardContext) -> Card:
    w = Words(ctx.facts, ctx.today)
    summary = "Calf DVT with no anticoagulation and no repeat ultrasound arranged: arrange duplex at 1 and 2 weeks"
    episode = assessment.episode
    what, origin = w.episode(episode) if episode else ("distal DVT", "")
    favoured = option_name(assessment.recommended)
    detail = compose(
        [
            sec.lead(assessment, ctx, w),
            sec.sentence(
                f"**Before discharge:** this {what} is neither anticoagulated nor under surveillance: arrange repeat "
                f"whole-leg duplex at about 1 and 2 weeks, or anticoagulate; {favoured} is favoured "
                f"({md(assessment.favoured_reason)})."
            ),
            sec.sentence(origin),
            sec.factors(
                w,
                [
                    ("For anticoagulation", assessment.for_anticoagulation),
                    ("For serial imaging", assessment.for_serial_imaging),
                ],
            ),
            sec.missing(assessment, w),
            sec.not_evaluated(assessment.bleeding, ctx, w),
            *_plans(assessment, ctx),
            sec.caveats(assessment, w),
            sec.notes(w),
            sec.evidence(assessment, assessment.citations),
        ]
    )
    return make_card(
        Topic.SURVEILLANCE_GAP,
        sec.unchecked_summary(
            summary, ctx, "calf DVT with no repeat ultrasound arranged: arrange duplex at 1 and 2 weeks"
        ),
        detail,
        assessment.citations[0],
        ctx,
        suggestions=both_options(assessment, ctx),
    )
