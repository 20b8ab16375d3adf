"""Epic's dialect (fhir.epic.com "CDS Hooks" tutorial; CONFORMANCE.md §4).

* ``selectionBehavior``: only ``any`` is supported — every card with suggestions says ``any``.
* A suggestion may carry only one action: serial imaging becomes one suggestion per scan, or one order-set
  suggestion where the site's catalog maps ``orderset.serial-imaging.*``; "replace X with Y" becomes a delete
  suggestion and a create suggestion.
* ``source.topic.code`` must be alphanumeric (≤ 100 characters): the project's codes without hyphens, each word
  capitalised (``distal-dvt-anticoagulate`` → ``DistalDvtAnticoagulate``), mapped back on feedback.
* RxNorm codes are sent under their OID, ``urn:oid:2.16.840.1.113883.6.88``.
* Epic shows ``action.description`` and takes order details from its own records: the description carries the
  whole order in words (dose, schedule, duration, scan dates), as every action of this service already does.
* SMART links show only when the app's launch URL is registered with Epic ("SMART app URLs not pre-registered
  won't appear"): the pathway view's link (``type`` smart, ``/smart/launch``) is sent as the specification writes
  it; the analyst registers the launch URL (docs/integration/epic.md).
"""

from __future__ import annotations

from typing import Any

from cds_service.clinical.topics import Topic
from cds_service.profiles.base import Profile, ShapeContext, split_actions
from cds_service.protocol import Action, Card, Coding, Suggestion

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
RXNORM_OID = "urn:oid:2.16.840.1.113883.6.88"
TOPIC_CODE_MAX = 100


def camel(code: str) -> str:
    return "".join(word[:1].upper() + word[1:] for word in code.split("-"))[:TOPIC_CODE_MAX]


_FROM_CAMEL = {camel(t.value): t.value for t in Topic}


class EpicProfile(Profile):
    name = "epic"
    description = "Epic: selectionBehavior any, one action per suggestion, alphanumeric topics, RxNorm by OID"

    def topic_code(self, code: str) -> str:
        return camel(code)

    def topic_from_code(self, code: str) -> str:
        return _FROM_CAMEL.get(code, code)

    def shape_card(self, card: Card, ctx: ShapeContext) -> Card:
        update: dict[str, Any] = {}
        if card.source.topic is not None:
            topic = card.source.topic
            update["source"] = card.source.model_copy(
                update={"topic": Coding(system=topic.system, code=camel(topic.code), display=topic.display)}
            )
        if card.suggestions:
            suggestions = [s for suggestion in card.suggestions for s in _one_action_each(suggestion, ctx)]
            update["suggestions"] = [_oid_rxnorm(s) for s in suggestions]
            update["selectionBehavior"] = "any"
        return card.model_copy(update=update)


def _one_action_each(suggestion: Suggestion, ctx: ShapeContext) -> list[Suggestion]:
    actions = suggestion.actions or []
    if len(actions) <= 1:
        return [suggestion]
    deletes = [a for a in actions if a.type == "delete"]
    creates = [a for a in actions if a.type != "delete"]
    shaped = [Suggestion(label=a.description, isRecommended=suggestion.isRecommended, actions=[a]) for a in deletes]
    if creates and suggestion.order_set_key and ctx.catalog.has(suggestion.order_set_key):
        shaped.append(_order_set(suggestion, creates, ctx))
    elif creates:
        shaped += split_actions(
            Suggestion(label=suggestion.label, isRecommended=suggestion.isRecommended, actions=creates)
        )
    return shaped


def _order_set(suggestion: Suggestion, creates: list[Action], ctx: ShapeContext) -> Suggestion:
    """The site's order set in place of the scans it contains: one action, the scans' dates in its words."""
    template = dict(creates[0].resource or {})
    template.pop("occurrenceDateTime", None)
    words = "; ".join(a.description.removeprefix("Order ") for a in creates)
    template["code"] = {"coding": ctx.catalog.codings(suggestion.order_set_key), "text": suggestion.label}
    template["note"] = [{"text": words}]
    action = Action(
        type="create",
        description=f"Order set: {words}",
        resource=template,
        order_key=suggestion.order_set_key,
    )
    return Suggestion(label=suggestion.label, isRecommended=suggestion.isRecommended, actions=[action])


def _oid_rxnorm(suggestion: Suggestion) -> Suggestion:
    actions = []
    for action in suggestion.actions or []:
        resource = action.resource
        concept = resource.get("medicationCodeableConcept") if isinstance(resource, dict) else None
        if (
            isinstance(resource, dict)
            and isinstance(concept, dict)
            and any(c.get("system") == RXNORM for c in concept.get("coding") or [])
        ):
            codings = [dict(c, system=RXNORM_OID) if c.get("system") == RXNORM else c for c in concept["coding"]]
            resource = dict(resource, medicationCodeableConcept=dict(concept, coding=codings))
            action = action.model_copy(update={"resource": resource})
        actions.append(action)
    return suggestion.model_copy(update={"actions": actions or None})
