"""Oracle Health's dialect (its public CDS Hooks notes, ``cerner/fhir.cerner.com``; CONFORMANCE.md §4).

Cards show in a narrow side panel (about an eighth of the screen) and critical cards as pop-ups:

* no tables in the detail — the service's cards carry none (docs/clinical/RULES.md R-CARD-1); should one ever arrive,
  each table row becomes a bullet;
* links: Oracle Health removes any link not in the registration's allowed links and does not support
  ``appContext`` — the pathway view's SMART link (``/smart/launch``) is sent without it, and must be registered as
  a SMART launch URL (docs/integration/oracle-health.md);
* ``critical`` only where a delay harms: extension into the proximal veins, an untreated proximal DVT, warfarin or a
  DOAC drafted in pregnancy, no follow-up arranged at discharge; any other critical card is a warning.

Oracle Health sends only ``patient-view``: that service also runs the discharge checks when the context encounter
is being discharged (``hooks/patient_view.py``).
"""

from __future__ import annotations

import re

from cds_service.clinical.topics import Topic
from cds_service.profiles.base import Profile, ShapeContext
from cds_service.protocol import Card

CRITICAL_ALLOWED = frozenset(
    {Topic.EXTENSION.value, Topic.PROXIMAL_DVT.value, Topic.PREGNANCY_ANTICOAGULANT.value, Topic.SURVEILLANCE_GAP.value}
)
_ROW = re.compile(r"^\|(.*)\|\s*$")
_RULE = re.compile(r"^\|(\s*:?-{3,}:?\s*\|)+\s*$")


def tables_to_bullets(markdown: str) -> str:
    """Each GFM table row as a bullet "first cell: other cells"; the header row and the rule are dropped."""
    out: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        if _ROW.match(lines[i]) and i + 1 < len(lines) and _RULE.match(lines[i + 1]):
            i += 2
            while i < len(lines) and _ROW.match(lines[i]):
                cells = [c.strip() for c in re.split(r"(?<!\\)\|", lines[i].strip()[1:-1])]
                first, rest = cells[0], [c for c in cells[1:] if c]
                out.append(f"- {first}" + (f" ({'; '.join(rest)})" if rest else ""))
                i += 1
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


class OracleProfile(Profile):
    name = "oracle"
    description = "Oracle Health: no tables in the detail, critical only where a delay harms"

    def shape_card(self, card: Card, ctx: ShapeContext) -> Card:
        update: dict[str, object] = {}
        if card.detail and "|" in card.detail:
            update["detail"] = tables_to_bullets(card.detail)
        topic = card.source.topic.code if card.source.topic else ""
        if card.indicator == "critical" and topic not in CRITICAL_ALLOWED:
            update["indicator"] = "warning"
        if card.links and any(link.appContext for link in card.links):
            update["links"] = [link.model_copy(update={"appContext": None}) for link in card.links]
        return card.model_copy(update=update) if update else card
