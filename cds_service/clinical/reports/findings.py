"""A venous duplex report's narrative → the facts the coded path produces (docs/clinical/RULES.md R-US-1, R-TEXT-*).

Thrombosed deep veins become one ``Thrombosis`` per leg (vein class, side, occlusive, length, diameter, distance
to the popliteal vein); chronic thrombus becomes prior VTE; "possible thrombus" a suspected DVT; an incomplete
study is limited; a repeat study's "now extends" / "unchanged" / "resolved" is kept as what changed. Every fact
carries the sentence it came from. A leg the text does not name takes the study's side when only one leg was
examined; a finding whose acuity is not stated is acute when the study is recent (the caller checks earlier
episodes of the same vein).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from cds_service.clinical.model import Side, SourceRef, Thrombosis, Vein, Verification, distinct_veins
from cds_service.clinical.reports.narrative import FetchedAttachment, report_narrative
from cds_service.clinical.reports.reader import ReportReading, VeinStatement, read_report


@dataclass
class TextFindings:
    read: bool = False  # the narrative was read and said something about the veins or the study
    thromboses: list[Thrombosis] = field(default_factory=list)  # acute: this episode
    earlier: list[Thrombosis] = field(default_factory=list)  # chronic, or in a study older than the acute window
    chronic: list[SourceRef] = field(default_factory=list)
    uncertain: list[SourceRef] = field(default_factory=list)
    limited: SourceRef | None = None
    negative: bool = False
    change: str | None = None
    change_source: SourceRef | None = None
    notes: list[str] = field(default_factory=list)


def read_text_findings(
    report: dict,
    *,
    source: SourceRef,
    legs: Side,
    attachments: Mapping[str, FetchedAttachment],
    recent: bool,
) -> TextFindings:
    found = TextFindings()
    narrative = report_narrative(report, attachments)
    label = _label(source)
    for problem in narrative.problems:
        if narrative.readable and "not read here" in problem:
            continue  # the PDF beside an HTML or text form adds nothing
        found.notes.append(f"{label}: {problem}")
    if not narrative.readable:
        return found
    reading = read_report(narrative.text)
    found.read = reading.says_anything or reading.change is not None
    if not found.read:
        found.notes.append(f"{label}: its text names no vein and no finding the service could read")
        return found
    _thromboses(found, reading, source=source, legs=legs, recent=recent)
    found.negative = (
        not found.thromboses
        and not found.earlier
        and bool(reading.negative_sides or any(not s.thrombus for s in reading.statements))
    )
    found.uncertain = [SourceRef(source.reference, source.when, "possible thrombus", q) for q in reading.uncertain]
    if reading.limited:
        found.limited = SourceRef(source.reference, source.when, "incomplete study", reading.limited)
        found.notes.append(f'{label}: an incomplete study ("{reading.limited}"): it cannot exclude a calf DVT')
    if reading.change:
        found.change = reading.change
        found.change_source = SourceRef(
            source.reference, source.when, f"report states {reading.change}", reading.change_quote
        )
    for said in reading.superficial:
        found.notes.append(f'{label}: superficial-vein thrombosis, not DVT ("{said}")')
    for said in reading.uncertain:
        found.notes.append(f'{label}: a possible thrombus, not read as a DVT ("{said}")')
    for what in reading.not_read:
        found.notes.append(f"{label}: not read: {what}")
    for what in reading.disagreements:
        found.notes.append(f"{label}: {what}")
    if reading.truncated:
        found.notes.append(f"{label}: only the first part of a very long text was read")
    return found


def _label(source: SourceRef) -> str:
    when = f" of {source.when.isoformat()}" if source.when else ""
    return f"ultrasound report{when} ({source.reference})"


def _thromboses(found: TextFindings, reading: ReportReading, *, source: SourceRef, legs: Side, recent: bool) -> None:
    one_leg = legs if legs in (Side.RIGHT, Side.LEFT) else None
    groups: dict[tuple[bool, Side], list[VeinStatement]] = {}
    for statement in reading.thrombosed:
        side = statement.side if statement.side != Side.UNKNOWN else (one_leg or Side.UNKNOWN)
        earlier = statement.chronic is True or not recent
        if statement.chronic is True:
            found.chronic.append(SourceRef(source.reference, source.when, "chronic thrombus", statement.quote))
        groups.setdefault((earlier, side), []).append(statement)
    for (earlier, side), statements in groups.items():
        located = [s for s in statements if s.vein is not None]
        veins = distinct_veins(Vein(s.vein, s.vein_class, None, s.specific) for s in located if s.vein)
        evidence: dict[str, str] = {}
        if located:
            evidence["veins"] = located[0].quote
        else:
            evidence["veins"] = statements[0].quote
        length = _pick(statements, "length_cm", max, evidence, "length")
        diameter = _pick(statements, "diameter_mm", max, evidence, "diameter")
        distance = _pick(statements, "distance_cm", min, evidence, "distance")
        occlusive = next((s.occlusive for s in statements if s.occlusive is not None), None)
        stated_acute = next((s for s in statements if s.chronic is False), None)
        if stated_acute is not None:
            evidence["acute"] = stated_acute.quote
        how = "venous duplex report text"
        if earlier:
            how = "chronic thrombus" if any(s.chronic for s in statements) else "thrombus in an earlier study"
        (found.earlier if earlier else found.thromboses).append(
            Thrombosis(
                veins=tuple(sorted(veins)),
                side=side,
                onset=source.when,
                verification=Verification.CONFIRMED,
                acute=not earlier,
                source=SourceRef(source.reference, source.when, how, evidence["veins"]),
                length_cm=length,
                diameter_mm=diameter,
                distance_to_popliteal_cm=distance,
                from_imaging=True,
                from_report_text=True,
                occlusive=occlusive,
                evidence=evidence,
            )
        )


def _pick(statements: list[VeinStatement], attribute: str, choose, evidence: dict[str, str], fact: str):
    values = [(getattr(s, attribute), s) for s in statements if getattr(s, attribute) is not None]
    if not values:
        return None
    value, statement = choose(values, key=lambda item: item[0])
    evidence[fact] = statement.quote
    return value


def study_date_is_recent(when: date | None, today: date, acute_window_days: int) -> bool:
    return when is None or (today - when).days <= acute_window_days
