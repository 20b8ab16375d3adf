"""Assessments and order findings → CDS Hooks cards, with suggestions that are real, valid R4 orders.

By job: ``markdown`` (escaping, summaries cut at a word, dates in words, a detail composed within its limit),
``words`` (facts and their sources in clinical words), ``sections`` (the blocks of a detail), ``orders`` (the
MedicationRequest and ServiceRequest builders and the suggestions carrying them), ``patient`` (patient-view and
discharge cards), ``order_checks`` (order-select/order-sign cards) and ``context`` (the card itself: topic from
``clinical/topics.py``, indicator, source, override reasons, the link to the pathway view).

Every card (docs/clinical/RULES.md R-CARD-1): a ``source.topic`` from R-TOPIC-1, a uuid, a summary under 140
characters cut only at a word boundary, and a detail of at most 1,000 characters without tables — the
recommendation in one sentence, the deciding factors as at most five bullets naming their evidence and date, the one
line of what could change the answer, what could not be evaluated, the regimen or scan dates and one evidence line.
The full explanation is in the pathway view.
"""

from cds_service.cards.context import PATHWAY_LABEL, PATHWAY_PATH, PATHWAY_TOPICS, CardContext, make_card
from cds_service.cards.markdown import DETAIL_MAX, SUMMARY_MAX, bullets, compose, fit, md
from cds_service.cards.order_checks import (
    caution_card,
    draft_not_checked_card,
    duration_card,
    limited_ultrasound_card,
    pregnancy_anticoagulant_card,
    serial_alternative_card,
)
from cds_service.cards.orders import (
    DUPLEX,
    anticoagulation_suggestion,
    both_options,
    duplex_key,
    medication_request,
    serial_imaging_days,
    serial_imaging_suggestion,
    service_request,
)
from cds_service.cards.patient import (
    bilateral_card,
    extension_card,
    location_unknown_card,
    proximal_card,
    recommendation_card,
    surveillance_gap_card,
    unreadable_dvt_card,
)
from cds_service.cards.words import UNCHECKED

__all__ = [
    "DETAIL_MAX",
    "DUPLEX",
    "PATHWAY_LABEL",
    "PATHWAY_PATH",
    "PATHWAY_TOPICS",
    "SUMMARY_MAX",
    "UNCHECKED",
    "CardContext",
    "anticoagulation_suggestion",
    "bilateral_card",
    "both_options",
    "bullets",
    "caution_card",
    "compose",
    "draft_not_checked_card",
    "duplex_key",
    "duration_card",
    "extension_card",
    "fit",
    "limited_ultrasound_card",
    "location_unknown_card",
    "make_card",
    "md",
    "medication_request",
    "pregnancy_anticoagulant_card",
    "proximal_card",
    "recommendation_card",
    "serial_alternative_card",
    "serial_imaging_days",
    "serial_imaging_suggestion",
    "service_request",
    "surveillance_gap_card",
    "unreadable_dvt_card",
]
