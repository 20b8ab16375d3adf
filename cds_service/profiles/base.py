"""What every EHR profile does to the cards on their way out, and the profile interface.

A profile reshapes the cards a hook built for the EHR that called (docs/integration/): the HL7 profile is the
specification as written; ``epic`` and ``oracle`` follow those vendors' published constraints. Every profile puts
the site's own order codes first (the order catalog). The clinical content of a card never depends on the profile.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.profiles.catalog import OrderCatalog
from cds_service.protocol import Action, Card, Suggestion


@dataclass(frozen=True)
class ShapeContext:
    hook: str
    catalog: OrderCatalog


class Profile:
    """The HL7 profile: the cards as the specification says them, with the site's order codes."""

    name = "hl7"
    description = "the CDS Hooks 2.0 specification as written"

    def shape(self, cards: list[Card], ctx: ShapeContext) -> list[Card]:
        return [self.shape_card(with_site_codes(card, ctx.catalog), ctx) for card in cards]

    def shape_card(self, card: Card, ctx: ShapeContext) -> Card:
        return card

    def topic_code(self, code: str) -> str:
        """How this EHR spells a card topic code (``source.topic.code``)."""
        return code

    def topic_from_code(self, code: str) -> str:
        """The project's topic code for this EHR's spelling (feedback, configuration)."""
        return code


def with_site_codes(card: Card, catalog: OrderCatalog) -> Card:
    """Each suggested order whose key the site mapped carries the site's codings first."""
    if not card.suggestions or not catalog.orders:
        return card
    suggestions = [
        suggestion.model_copy(update={"actions": [_site_coded(a, catalog) for a in suggestion.actions or []] or None})
        for suggestion in card.suggestions
    ]
    return card.model_copy(update={"suggestions": suggestions})


def _site_coded(action: Action, catalog: OrderCatalog) -> Action:
    if action.resource is None or not catalog.has(action.order_key):
        return action
    resource = dict(action.resource)
    element = "medicationCodeableConcept" if resource.get("resourceType") == "MedicationRequest" else "code"
    concept = dict(resource.get(element) or {})
    concept["coding"] = catalog.codings(action.order_key) + list(concept.get("coding") or [])
    resource[element] = concept
    return action.model_copy(update={"resource": resource})


def split_actions(suggestion: Suggestion) -> list[Suggestion]:
    """One suggestion per action, each labelled by what its action does."""
    actions = suggestion.actions or []
    if len(actions) <= 1:
        return [suggestion]
    return [
        Suggestion(label=action.description, isRecommended=suggestion.isRecommended, actions=[action])
        for action in actions
    ]
