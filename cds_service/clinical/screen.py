"""DVT_CDS_PREFETCH=lean: is a DVT in view? Decided on the screen alone (the Patient, the DVT-coded Conditions, the
venous duplex studies); when it is not, the hooks that answer only about a DVT have nothing to say and the rest of
the record is never asked for.

The same readers as the cards decide (``build_facts``): an acute or suspected DVT, a DVT Condition that could not be
read, or a duplex study in the acute window (its text may not have been read yet: a Binary is read only with the
rest) all put a DVT in view. It errs towards reading the record: a wasted read costs a round trip, a missed one a
card.
"""

from __future__ import annotations

from datetime import date

from cds_service.clinical.config import RuleConfig
from cds_service.clinical.facts import build_facts
from cds_service.clinical.reports.findings import study_date_is_recent
from cds_service.fhir.record import PatientRecord


def dvt_in_view(record: PatientRecord, *, today: date, config: RuleConfig) -> bool:
    # A copy: validating here must not add notes to, or cache models on, the record the cards are built from.
    screen = PatientRecord(patient_id=record.patient_id)
    screen.add(r for resources in record.by_type.values() for r in resources)
    screen.attachments = dict(record.attachments)
    facts = build_facts(screen, today=today, config=config)
    if facts.thromboses or facts.suspected or facts.unreadable_dvt:
        return True
    return any(study_date_is_recent(study.when, today, config.acute_window_days) for study in facts.imaging)
