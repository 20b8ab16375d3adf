"""The pathway view's model: what the page shows, built from the clinical core's facts and assessment only.

Nothing here decides anything clinical: the situation, the factors, the bleeding risk, the extension, the grade and
the citations are the core's (``assess``); this arranges them for a page — veins per leg, an episode timeline, the
day 7 and day 14 scans — and names each source in clinical words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from cds_service.clinical import thresholds as th
from cds_service.clinical.assessment import Assessment, Situation
from cds_service.clinical.bleeding import BleedingRisk
from cds_service.clinical.ddimer import interpret, is_ddimer
from cds_service.clinical.evidence import Citation
from cds_service.clinical.factors import Factor, Option, same_leg, words
from cds_service.clinical.fhirdata import observation_date, parse_date
from cds_service.clinical.model import (
    ClinicalFacts,
    DoseIntensity,
    ImagingStudy,
    PlannedImaging,
    Side,
    SourceRef,
    Thrombosis,
    Vein,
    distinct_veins,
)
from cds_service.clinical.topics import TOPIC_DISPLAY
from cds_service.fhir.record import PatientRecord
from cds_service.smart.legs import Mark, drawn_as
from cds_service.smart.sources import SourceWording, SourceWords, day

_SITUATION_WORDS = {
    Situation.NO_DVT: "No acute DVT was found in the record.",
    Situation.SUSPECTED: "A DVT is suspected but not confirmed.",
    Situation.PROXIMAL_UNTREATED: "Proximal DVT, not anticoagulated.",
    Situation.PROXIMAL_TREATED: "Proximal DVT, anticoagulated.",
    Situation.LOCATION_UNKNOWN: "DVT whose veins are not documented.",
    Situation.LOCATION_UNKNOWN_TREATED: "DVT whose veins are not documented, anticoagulated.",
    Situation.DISTAL_ANTICOAGULATED: "Isolated distal DVT, anticoagulated.",
    Situation.DISTAL_SURVEILLANCE: "Isolated distal DVT under serial imaging.",
    Situation.EXTENSION_PROXIMAL: "Distal DVT that extended into the proximal veins.",
    Situation.EXTENSION_DISTAL: "Distal DVT that extended within the calf.",
    Situation.DISTAL_DECISION: "Isolated distal DVT, neither anticoagulated nor under serial imaging.",
}
_OPTION_WORDS = {Option.ANTICOAGULATION: "anticoagulation", Option.SERIAL_IMAGING: "serial imaging"}
_SURVEILLED = (Situation.DISTAL_SURVEILLANCE, Situation.EXTENSION_DISTAL, Situation.EXTENSION_PROXIMAL)
_REFERENCE = re.compile(r"\b[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}")
_LEADING_REFERENCE = re.compile(r"^([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}): ")
_NAMED_REFERENCE = re.compile(r" \([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}\)")
_FINAL = {"final", "amended", "corrected"}


@dataclass
class Banner:
    name: str
    birth_date: date | None
    sex: str
    age: int | None


@dataclass
class Leg:
    side: str  # right | left
    imaged: bool
    marks: list[Mark] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.side.capitalize()} leg"

    def mark(self, drawn: str) -> Mark | None:
        return next((m for m in self.marks if m.drawn == drawn), None)

    @property
    def regions(self) -> list[Mark]:
        return [m for m in self.marks if m.is_region]


@dataclass
class Diagram:
    legs: list[Leg]
    unplaced: list[str]  # thrombi that cannot be drawn: leg or veins not recorded, in words
    extension: str | None

    @property
    def marks(self) -> list[Mark]:
        return [mark for leg in self.legs for mark in leg.marks]

    @property
    def description(self) -> str:
        """The diagram in one paragraph: its text alternative."""
        parts = []
        for leg in self.legs:
            if leg.marks:
                veins = "; ".join(_mark_words(m) for m in leg.marks)
                parts.append(f"{leg.label}: {veins}.")
            else:
                parts.append(f"{leg.label}: no thrombus recorded{'' if leg.imaged else ' (never imaged)'}.")
        if self.unplaced:
            parts.append(f"Not drawn: {'; '.join(self.unplaced)}.")
        return " ".join(parts)


@dataclass
class Event:
    when: date | None
    kind: str  # diagnosis | ultrasound | d-dimer | anticoagulant | scan
    title: str
    details: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # shown as badges: "extension", "day 7 scan", "counted", ...
    status: str = ""  # for a scan: done | ordered | overdue | not-ordered | proposed | superseded


@dataclass
class Scan:
    day: int
    target: date
    status: str
    words: str


@dataclass
class Schedule:
    scans: list[Scan]
    note: str


@dataclass
class FactorView:
    label: str
    detail: str
    guideline: str
    sources: list[SourceWords]


@dataclass
class BleedingView:
    category: str
    estimate: str
    factors: list[FactorView]
    not_assessed: list[str]
    caveat: str


@dataclass
class Pathway:
    as_of: date
    banner: Banner | None
    situation: str
    recommendation: str | None
    recommended: str | None
    favoured_reason: str
    grade: str
    regimen: str | None
    caveats: list[str]
    diagram: Diagram
    timeline: list[Event]
    schedule: Schedule
    for_anticoagulation: list[FactorView]
    for_serial_imaging: list[FactorView]
    factors_apply: bool
    bleeding: BleedingView | None
    not_assessed: list[str]
    could_not_read: list[str]
    data_notes: list[str]
    citations: list[Citation]


# ----------------------------------------------------------------------------------------------------------------
def build_pathway(
    record: PatientRecord, facts: ClinicalFacts, assessment: Assessment, *, today: date, banner: bool
) -> Pathway:
    wording = SourceWording(record, facts)
    recommendation = TOPIC_DISPLAY.get(assessment.recommendation) if assessment.recommendation else None
    regimen = assessment.regimen
    distal = assessment.isolated_distal
    schedule = surveillance(facts, assessment, today)
    gaps = [gap.describe() for gap in record.gaps]
    return Pathway(
        as_of=today,
        banner=_banner(record.patient, facts) if banner else None,
        situation=_SITUATION_WORDS.get(assessment.situation, assessment.situation.value),
        recommendation=recommendation,
        recommended=_OPTION_WORDS.get(assessment.recommended) if assessment.recommended else None,
        favoured_reason=getattr(assessment, "favoured_reason", "") or "",
        grade=assessment.grade,
        regimen=(
            f"{regimen.summary}; {regimen.duration_text}"
            if regimen is not None and distal and not facts.anticoagulated
            else None
        ),
        caveats=list(dict.fromkeys(assessment.caveats)),
        diagram=diagram(facts, assessment, wording),
        timeline=timeline(record, facts, assessment, wording, schedule, today),
        schedule=schedule,
        for_anticoagulation=[_factor(f, wording) for f in assessment.for_anticoagulation],
        for_serial_imaging=[_factor(f, wording) for f in assessment.for_serial_imaging],
        factors_apply=distal,
        bleeding=_bleeding(assessment.bleeding, wording),
        not_assessed=_not_assessed(assessment, facts, gaps),
        could_not_read=gaps,
        data_notes=[_reworded(note, wording) for note in dict.fromkeys(facts.data_notes) if note not in gaps],
        citations=list(dict.fromkeys(assessment.citations)),
    )


# --- the legs ---------------------------------------------------------------------------------------------------
def diagram(facts: ClinicalFacts, assessment: Assessment, wording: SourceWording) -> Diagram:
    baseline = assessment.episode.onset if assessment.episode is not None else None
    by_side: dict[str, list[tuple[Vein, Thrombosis]]] = {"right": [], "left": []}
    unplaced: list[str] = []

    def unplace(words: str) -> None:
        if words not in unplaced:
            unplaced.append(words)

    for thrombosis in (t for t in facts.thromboses if t.acute):
        sides = {Side.RIGHT: ["right"], Side.LEFT: ["left"], Side.BILATERAL: ["right", "left"]}.get(thrombosis.side)
        if not thrombosis.veins:
            unplace(f"{_legs_words(thrombosis.side)}: veins not documented")
            continue
        if not sides:
            for vein in thrombosis.veins:
                unplace(f"leg not recorded: {vein.name}")
            continue
        for side in sides:
            by_side[side].extend((vein, thrombosis) for vein in thrombosis.veins)
    extension = assessment.extension
    grown = _grown_veins(facts, assessment)
    legs = []
    for side in ("right", "left"):
        pairs = by_side[side]
        marks = []
        for vein in sorted(distinct_veins(v for v, _ in pairs)):
            drawn = drawn_as(vein.name, vein.vein_class, vein.specific)
            if drawn is None:
                unplace(f"{side} leg: {vein.name}")
                continue
            named = [t for v, t in pairs if v.name == vein.name]
            covering = [t for v, t in pairs if v.name != vein.name and v.covers(vein)]
            first = min((t.onset for t in named if t.onset is not None), default=None)
            # Drawn as an extension only where the core found one: a later vein of the same leg as the episode.
            later = (
                extension is not None
                and assessment.episode is not None
                and baseline is not None
                and first is not None
                and first > baseline
                and same_leg(Side(side), assessment.episode.side)
            )
            sources = list(dict.fromkeys(t.source_for("veins") for t in named + covering))
            marks.append(
                Mark(
                    drawn=drawn,
                    side=side,
                    name=vein.name,
                    vein_class=vein.vein_class,
                    first_seen=first,
                    state="extension" if later else "thrombus",
                    grew=(side, vein.name) in grown,
                    sources=wording.many(sources),
                )
            )
        imaged = any(study.legs_examined.covers(Side(side)) for study in facts.imaging)
        legs.append(Leg(side, imaged, marks))
    if any(mark.state == "extension" for leg in legs for mark in leg.marks):
        for mark in (m for leg in legs for m in leg.marks):
            mark.grew = False  # the extension is the new vein, drawn as such
    return Diagram(legs, unplaced, extension.detail if extension is not None else None)


def _grown_veins(facts: ClinicalFacts, assessment: Assessment) -> set[tuple[str, str]]:
    """The veins of the study that showed an extension: where no new vein was found (a longer thrombus, or the
    report's word), they are drawn as extended where they are."""
    extension = assessment.extension
    if extension is None:
        return set()
    found: set[tuple[str, str]] = set()
    for thrombosis in facts.thromboses:
        if thrombosis.source.reference != extension.study.reference:
            continue
        sides = ["right", "left"] if thrombosis.side == Side.BILATERAL else [thrombosis.side.value]
        found.update((side, vein.name) for side in sides for vein in thrombosis.veins)
    return found


def _mark_words(mark: Mark) -> str:
    when = f", first seen {day(mark.first_seen)}" if mark.first_seen else ""
    state = "extension" if mark.state == "extension" else "thrombus"
    grew = ", longer on a later study" if mark.grew else ""
    return f"{mark.name} ({mark.class_words}): {state}{when}{grew}"


# --- the timeline -----------------------------------------------------------------------------------------------
def timeline(
    record: PatientRecord,
    facts: ClinicalFacts,
    assessment: Assessment,
    wording: SourceWording,
    schedule: Schedule,
    today: date,
) -> list[Event]:
    events: list[Event] = []
    extension = assessment.extension
    episode_source = assessment.episode.source.reference if assessment.episode is not None else None
    scan_of = _scan_of_study(facts, assessment)
    for thrombosis in facts.thromboses:
        if thrombosis.acute and thrombosis.source.reference.startswith("Condition/"):
            events.append(
                Event(thrombosis.onset, "diagnosis", "DVT diagnosis recorded", _diagnosis_words(thrombosis, wording))
            )
    for study in facts.imaging:
        event = Event(study.when, "ultrasound", f"Venous duplex ultrasound, {_legs_words(study.legs_examined)}")
        event.details = _findings(study)
        if study.source.reference == episode_source:
            event.flags.append("diagnosis")
        if study.source.reference in scan_of:
            event.flags.append(f"day {scan_of[study.source.reference]} scan")
        if extension is not None and extension.study.reference == study.source.reference:
            event.flags.append("extension")
            event.details.append(f"Extension: {extension.detail}.")
        events.append(event)
    events.extend(_ddimers(record, facts, assessment, today))
    for use in facts.anticoagulants:
        intensity = {
            DoseIntensity.TREATMENT: "treatment dose",
            DoseIntensity.PROPHYLACTIC: "prophylactic dose: does not count as treatment",
            DoseIntensity.UNKNOWN: "dose not readable: counted as treatment",
        }[use.intensity]
        dose = f"{use.daily_dose_mg:g} mg a day, " if use.daily_dose_mg is not None else ""
        events.append(
            Event(
                use.source.when,
                "anticoagulant",
                f"{use.agent.capitalize()} ordered",
                [wording.what(use.source), f"{dose}{intensity}"],
            )
        )
    for scan in schedule.scans:
        if scan.status not in ("done", "proposed"):  # a proposed scan is a choice, not yet part of the episode
            events.append(Event(scan.target, "scan", f"Day {scan.day} scan", [scan.words], status=scan.status))
    order = {"diagnosis": 0, "ultrasound": 1, "d-dimer": 2, "anticoagulant": 3, "scan": 4}
    events.sort(key=lambda e: (e.when or date.max, order[e.kind]))
    return events


def _diagnosis_words(thrombosis: Thrombosis, wording: SourceWording) -> list[str]:
    """The diagnosis as recorded, and where the core places it when the record's words do not say so already."""
    recorded = wording.what(thrombosis.source)
    placed = thrombosis.describe()
    return [recorded] if placed.lower() in recorded.lower() else [recorded, f"Read as: {placed}."]


def _legs_words(side: Side) -> str:
    return {Side.RIGHT: "right leg", Side.LEFT: "left leg", Side.BILATERAL: "both legs"}.get(side, "leg not recorded")


def _findings(study: ImagingStudy) -> list[str]:
    found = []
    for thrombosis in study.thromboses:
        where = _legs_words(thrombosis.side)
        veins = ", ".join(sorted(v.name for v in thrombosis.veins)) or "veins not named"
        size = []
        if thrombosis.length_cm is not None:
            size.append(f"{thrombosis.length_cm:g} cm long")
        if thrombosis.diameter_mm is not None:
            size.append(f"{thrombosis.diameter_mm:g} mm wide")
        old = "" if thrombosis.acute else " (not acute)"
        found.append(f"Thrombus, {where}: {veins}{' (' + ', '.join(size) + ')' if size else ''}{old}.")
    if study.no_thrombus and not study.thromboses:
        found.append("No thrombus.")
    if study.chronic:
        found.append("Old (chronic) thrombus described.")
    if study.uncertain:
        found.append("Possible thrombus described (suspected, not confirmed).")
    if study.limited:
        found.append("Limited study: it cannot exclude a calf DVT.")
    if not study.readable:
        found.append("The findings could not be read.")
    elif study.text_read:
        found.append("Read from the report text.")
    if study.change == "unchanged":
        found.append("The report says: unchanged.")
    elif study.change == "resolved":
        found.append("The report says: resolved.")
    return found


def _ddimers(record: PatientRecord, facts: ClinicalFacts, assessment: Assessment, today: date) -> list[Event]:
    index = assessment.episode.onset if assessment.episode is not None and assessment.episode.onset else today
    window = timedelta(days=th.DDIMER_WINDOW_DAYS.int_value)
    counted = facts.ddimer.source.reference if facts.ddimer is not None else None
    events = []
    for observation in record.resources("Observation"):
        if observation.get("status") not in _FINAL or not is_ddimer(observation):
            continue
        when = observation_date(observation)
        reading = interpret(observation)
        if reading is None or when is None or when > today or when < index - window:
            continue
        result = {True: "positive", False: "negative", None: "could not be interpreted"}[reading.positive]
        event = Event(
            when,
            "d-dimer",
            f"D-dimer {reading.value_text}".strip(),
            [f"{result.capitalize()}: {words(reading.reason)}."],
        )
        if reading.source.reference == counted:
            event.flags.append("the one the assessment used")
        events.append(event)
    return events


# --- the day 7 and day 14 scans ---------------------------------------------------------------------------------
def surveillance(facts: ClinicalFacts, assessment: Assessment, today: date) -> Schedule:
    days = (th.SERIAL_IMAGING_FIRST_DAY.int_value, th.SERIAL_IMAGING_SECOND_DAY.int_value)
    episode = assessment.episode
    situation = assessment.situation
    if situation == Situation.DISTAL_DECISION:
        scans = [
            Scan(
                n,
                today + timedelta(days=n),
                "proposed",
                f"not ordered; if serial imaging is chosen: {day(today + timedelta(days=n))}",
            )
            for n in days
        ]
        return Schedule(scans, "No repeat scan is ordered yet.")
    if situation not in _SURVEILLED or episode is None:
        note = {
            Situation.DISTAL_ANTICOAGULATED: "Anticoagulated: no serial imaging schedule.",
            Situation.PROXIMAL_TREATED: "Proximal DVT: serial imaging does not apply.",
            Situation.PROXIMAL_UNTREATED: "Proximal DVT: serial imaging does not apply.",
        }.get(situation, "No isolated distal DVT: no serial imaging schedule.")
        return Schedule([], note)
    index = episode.onset or today
    slots = _fill_slots(facts, assessment, index, days)
    extension = assessment.extension
    stopped = extension.study.when if extension is not None else None
    scans = []
    for n in days:
        target = index + timedelta(days=n)
        item = slots.get(n)
        if isinstance(item, ImagingStudy):
            unread = "" if item.readable else " (the findings could not be read)"
            scans.append(Scan(n, target, "done", f"done {day(item.when)}{unread}"))
        elif stopped is not None:
            scans.append(Scan(n, target, "superseded", f"not done: the thrombus extended on {day(stopped)}"))
        elif isinstance(item, PlannedImaging):
            if item.due is not None and item.due < today:
                scans.append(Scan(n, target, "overdue", f"overdue: ordered for {day(item.due)}, not done"))
            else:
                when = f"ordered for {day(item.due)}" if item.due else "ordered (no date on the order)"
                scans.append(Scan(n, target, "ordered", when))
        elif target < today:
            scans.append(Scan(n, target, "overdue", f"overdue: due {day(target)}, not done and not ordered"))
        else:
            scans.append(Scan(n, target, "not-ordered", f"due {day(target)}, not ordered"))
    return Schedule(scans, f"Days counted from the diagnosis on {day(index)}.")


def _fill_slots(
    facts: ClinicalFacts, assessment: Assessment, index: date, days: tuple[int, ...]
) -> dict[int, ImagingStudy | PlannedImaging]:
    """Repeat studies first, then open orders, each to the free day (7 or 14) nearest its date."""
    slots: dict[int, Any] = {}
    diagnosing = assessment.episode.source.reference if assessment.episode is not None else None
    done = sorted(
        (s for s in facts.imaging if s.when is not None and s.when > index and s.source.reference != diagnosing),
        key=lambda s: s.when or date.min,  # the filter above keeps only dated studies
    )
    orders = sorted((p for p in facts.planned_imaging if not p.done), key=lambda p: p.due or date.max)
    for item, when in [(s, s.when) for s in done] + [(p, p.due) for p in orders]:
        free = [n for n in days if n not in slots]
        if not free:
            break
        chosen = free[0] if when is None else min(free, key=lambda n: abs((index + timedelta(days=n) - when).days))
        slots[chosen] = item
    return slots


def _scan_of_study(facts: ClinicalFacts, assessment: Assessment) -> dict[str, int]:
    episode = assessment.episode
    if episode is None or assessment.situation not in _SURVEILLED:
        return {}
    days = (th.SERIAL_IMAGING_FIRST_DAY.int_value, th.SERIAL_IMAGING_SECOND_DAY.int_value)
    slots = _fill_slots(facts, assessment, episode.onset or date.min, days)
    return {item.source.reference: n for n, item in slots.items() if isinstance(item, ImagingStudy)}


# --- factors, bleeding, what was not assessed -------------------------------------------------------------------
def _factor(factor: Factor, wording: SourceWording) -> FactorView:
    guideline = "CHEST" if factor.chest else "the project's source summary only (not in CHEST)"
    return FactorView(factor.label, words(factor.detail), guideline, wording.many(factor.sources))


def _bleeding(bleeding: BleedingRisk | None, wording: SourceWording) -> BleedingView | None:
    if bleeding is None:
        return None
    factors = [
        FactorView(
            f.label,
            "severe: on its own it makes the risk high" if f.severe else "",
            "CHEST bleeding-risk table; its place in the 2016 table is unverified"
            if f.uncertain_source
            else "CHEST AT9/2016 bleeding-risk table",
            wording.many(f.sources),
        )
        for f in bleeding.factors
    ]
    return BleedingView(
        bleeding.category.value, bleeding.estimate, factors, list(bleeding.not_assessed), bleeding.caveat
    )


def _not_assessed(assessment: Assessment, facts: ClinicalFacts, gaps: list[str]) -> list[str]:
    """Each once: the bleeding factors not assessed are in the bleeding section, the data not read at the top."""
    items = [m for m in assessment.missing if not m.startswith("bleeding factor not assessed")]
    items += [n for n in facts.not_assessed if n not in gaps]
    return list(dict.fromkeys(items))


def _reworded(note: str, wording: SourceWording) -> str:
    """A data note as the core writes it (for the log and the cards), with each resource id replaced by what the
    resource is: "Observation/abc: …" names it, "report of 2026-03-15 (DiagnosticReport/x)" already does."""
    note = _NAMED_REFERENCE.sub("", note)
    match = _LEADING_REFERENCE.match(note)
    if match is not None:
        what = wording.what(SourceRef(match.group(1)))
        note = f"{what[:1].upper()}{what[1:]}: {note[match.end() :]}"
    return _REFERENCE.sub(lambda m: wording.what(SourceRef(m.group(0))), note)


def _banner(patient: dict[str, Any] | None, facts: ClinicalFacts) -> Banner | None:
    if patient is None:
        return None
    raw_names = patient.get("name")
    names = raw_names if isinstance(raw_names, list) else []
    name = ""
    for entry in names:
        if isinstance(entry, dict):
            if isinstance(entry.get("text"), str) and entry["text"].strip():
                name = entry["text"].strip()
            else:
                given = " ".join(g for g in entry.get("given", []) if isinstance(g, str))
                name = f"{given} {entry.get('family', '') if isinstance(entry.get('family'), str) else ''}".strip()
            if name:
                break
    gender = patient.get("gender")
    sex = gender if isinstance(gender, str) else ""
    return Banner(name or "name not recorded", parse_date(patient.get("birthDate")), sex, facts.patient.age)
