"""What every card built for one call needs besides the assessment, and the card itself: topic, indicator, source,
override reasons, and the link to the pathway view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from cds_service.cards.markdown import fit
from cds_service.clinical.evidence import Citation
from cds_service.clinical.model import ClinicalFacts
from cds_service.clinical.topics import INDICATOR, TOPIC_DISPLAY, TOPIC_SYSTEM, Indicator, Topic
from cds_service.protocol import OVERRIDE_REASON_SYSTEM, OVERRIDE_REASONS, Card, Coding, Link, Source, Suggestion

OVERRIDE_CODINGS = [Coding(system=OVERRIDE_REASON_SYSTEM, code=c, display=d) for c, d in OVERRIDE_REASONS.items()]

# The full explanation — every factor for and against with its source, the bleeding risk, what was not assessed,
# the evidence grade and the references — is one click away: the SMART pathway view (docs/clinical/RULES.md R-CARD-3).
PATHWAY_LABEL = "Open the DVT pathway view"
PATHWAY_PATH = "/smart/launch"
PATHWAY_TOPICS = frozenset(
    {
        Topic.ANTICOAGULATE,
        Topic.SERIAL_IMAGING,
        Topic.SHARED_DECISION,
        Topic.EXTENSION,
        Topic.SURVEILLANCE_GAP,
        Topic.BILATERAL_SURVEILLANCE,
    }
)


@dataclass
class CardContext:
    """What every card built for one call needs besides the assessment."""

    patient_id: str
    encounter_id: str | None
    now: datetime
    facts: ClinicalFacts
    base_url: str | None = None  # the service's public base URL (DVT_CDS_PUBLIC_BASE_URL): the pathway view's home

    @property
    def today(self) -> date:
        return self.now.date()

    @property
    def pathway_url(self) -> str | None:
        return f"{self.base_url.rstrip('/')}{PATHWAY_PATH}" if self.base_url else None


def pathway_links(topic: Topic, ctx: CardContext | None) -> list[Link] | None:
    url = ctx.pathway_url if ctx is not None else None
    if url is None or topic not in PATHWAY_TOPICS:
        return None
    return [Link(label=PATHWAY_LABEL, url=url, type="smart")]


def make_card(
    topic: Topic,
    summary: str,
    detail: str,
    citation: Citation,
    ctx: CardContext | None,
    *,
    indicator: Indicator | None = None,
    suggestions: list[Suggestion] | None = None,
) -> Card:
    return Card(
        summary=fit(summary),
        detail=detail,
        indicator=indicator or INDICATOR[topic],
        source=Source(
            label=f"Distal DVT CDS — {citation.label}",
            url=citation.url,
            topic=Coding(system=TOPIC_SYSTEM, code=topic.value, display=TOPIC_DISPLAY[topic]),
        ),
        suggestions=suggestions or None,
        selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=list(OVERRIDE_CODINGS),
        links=pathway_links(topic, ctx),
    )
