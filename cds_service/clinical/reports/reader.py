"""Report text → what the report says about each deep vein (docs/clinical/RULES.md R-TEXT-*), conservatively.

The medspaCy pipeline (``nlp.py``) marks veins, thrombus words and measurements, and ConText tells which of them
are negated, hypothetical, uncertain, chronic, on which side. This module turns that into statements:

* a vein **with thrombus**: a deep vein named in a sentence that asserts thrombus (a thrombus word neither
  negated, hypothetical nor uncertain), the vein itself not cleared ("patent", "compressible"), not a landmark
  ("2 cm below the popliteal vein") and not unseen;
* a vein **free of thrombus**: the vein is negated ("no DVT in the femoral or popliteal veins", "patent");
* thrombus **without a vein** ("acute DVT of the left leg"), and "no DVT" said of a whole leg;
* superficial-vein thrombosis (never DVT), uncertain findings ("possible thrombus"), an incomplete study ("calf
  veins not visualized"), and what a repeat study says changed (extension, unchanged, resolved).

INDICATION and COMPARISON never hold findings of this study. When IMPRESSION disagrees with FINDINGS the
impression decides and the disagreement is reported. Anything the reader cannot place (a measurement with no
stated dimension) is reported as not read, never guessed. Every statement keeps the sentence it came from.
"""

from __future__ import annotations

import copy
import re
from bisect import bisect_left
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from cds_service.clinical.model import Side, Vein, VeinClass
from cds_service.clinical.reports import lexicon as lx
from cds_service.clinical.reports import nlp

QUOTE_MAX = 160
_VEINS = {term.key: term for term in lx.DEEP_VEINS}
_SIDE_HEADER = re.compile(
    r"(?im)^[ \t]*(right|left|bilateral)(?:[ \t]+(?:leg|lower[ \t]+extremity|lower[ \t]+limb|side|le|calf))?[ \t]*:"
)
_SIDE_OF = {"RIGHT": Side.RIGHT, "LEFT": Side.LEFT, "BILATERAL": Side.BILATERAL}
_ANCHOR = r"(?:the\s+)?(?:level\s+of\s+the\s+)?(?:popliteal|trifurcation|tibio-?peroneal|tibioperoneal)"
_DISTANCE_AFTER = re.compile(rf"^\s*(?:below|from|of|distal\s+to|inferior\s+to|short\s+of)\s+{_ANCHOR}", re.I)
_LENGTH_AFTER = re.compile(
    r"^\s*(?:in\s+length|long\b|length\b|in\s+(?:longitudinal\s+)?extent|segment|in\s+craniocaudal)", re.I
)
_LENGTH_BEFORE = re.compile(
    r"(?:length\s+of|long\s+segment\s+of|extending\s+(?:for\s+|over\s+)?|extends\s+(?:for\s+|over\s+)?"
    r"|over\s+(?:a\s+)?|spanning\s+|extent\s+of|measuring\s+(?:approximately\s+|about\s+)?(?=[^.]*\blength\b)"
    r"|length\s+(?:is\s+|measures\s+)?(?:approximately\s+|about\s+)?|(?:approximately|about)\s+(?=[^.]*long\b))"
    r"(?:approximately\s+|about\s+|up\s+to\s+)?$",
    re.I,
)
_DIAMETER_AFTER = re.compile(r"^\s*(?:in\s+diameter|diameter\b|wide\b|in\s+width|in\s+caliber|in\s+calibre)", re.I)
_DIAMETER_BEFORE = re.compile(
    r"(?:diameter\s+(?:of\s+|is\s+|measures\s+)?|diameter\s+up\s+to\s+|width\s+of\s+|caliber\s+of\s+)"
    r"(?:approximately\s+|about\s+|up\s+to\s+)?$",
    re.I,
)
_WITHIN_BEFORE = re.compile(r"within\s+(?:approximately\s+|about\s+)?$", re.I)
_WITHIN_AFTER = re.compile(rf"^\s*of\s+{_ANCHOR}", re.I)
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)\s*(cm|mm|centimeters?|millimeters?)", re.I)


@dataclass(frozen=True)
class VeinStatement:
    """What one sentence says about one deep vein (``vein`` None: thrombus said of no particular vein)."""

    vein: str | None
    vein_class: VeinClass
    specific: bool
    side: Side
    thrombus: bool  # False: the vein is stated free of thrombus
    section: str
    quote: str
    chronic: bool | None = None  # True chronic, False stated acute, None not stated
    occlusive: bool | None = None
    length_cm: float | None = None
    diameter_mm: float | None = None
    distance_cm: float | None = None


@dataclass
class ReportReading:
    statements: list[VeinStatement] = field(default_factory=list)  # the deciding ones (impression first)
    negative_sides: list[tuple[Side, str]] = field(default_factory=list)  # "no DVT" said of a whole leg
    superficial: list[str] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)
    limited: str | None = None
    change: str | None = None  # extension | unchanged | resolved
    change_quote: str | None = None
    not_read: list[str] = field(default_factory=list)  # what was seen but could not be placed, in words
    disagreements: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def thrombosed(self) -> list[VeinStatement]:
        return [s for s in self.statements if s.thrombus]

    @property
    def says_anything(self) -> bool:
        return bool(self.statements or self.negative_sides or self.superficial or self.uncertain or self.limited)


def quote(text: str) -> str:
    """The sentence as shown in a card: one line, at most QUOTE_MAX characters, cut at a word boundary."""
    flat = " ".join(text.split())
    if len(flat) <= QUOTE_MAX:
        return flat
    cut = flat[: QUOTE_MAX - 1]
    if " " in cut:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:") + "…"


def read_report(text: str) -> ReportReading:
    """Read one report's narrative (cached: the same report is read again on every hook of a chart)."""
    return copy.deepcopy(_read_cached(text))


@lru_cache(maxsize=512)
def _read_cached(text: str) -> ReportReading:
    doc = nlp.process(text)
    reading = ReportReading(truncated=len(text) > nlp.MAX_TEXT_CHARS)
    by_section: dict[str, list[VeinStatement]] = {}
    negatives: dict[str, list[tuple[Side, str]]] = {}
    changes: dict[str, list[tuple[str, str]]] = {}
    index = _DocIndex(doc)
    previous: list[VeinStatement] = []
    previous_section = None
    for sent in doc.sents:
        if not sent.text.strip():
            continue
        section = sent[0]._.section_category or "unlabelled"
        if section != previous_section:
            previous, previous_section = [], section
        if section in lx.NOT_FINDINGS:
            continue
        said = _Sentence(sent, section, index)
        statements = said.statements(reading, follows_a_finding=any(s.thrombus for s in previous))
        if statements:
            by_section.setdefault(section, []).extend(statements)
        for side in said.negative_sides():
            negatives.setdefault(section, []).append((side, quote(sent.text)))
        # A measurement in a sentence of its own ("The thrombus measures 6 cm in length.") belongs to the
        # thrombosed veins of the sentence before it.
        targets = [s for s in statements if s.thrombus] or ([] if statements else [s for s in previous if s.thrombus])
        measured = said.measure(targets, reading)
        if measured is not None:
            _replace_measured(by_section.setdefault(section, []), targets, measured)
            updated = dict(zip(map(id, targets), measured, strict=True))
            statements = [updated.get(id(s), s) for s in statements]
            previous = [updated.get(id(s), s) for s in previous]
        for change in said.changes():
            changes.setdefault(section, []).append((change, quote(sent.text)))
        if statements:
            previous = statements
    _decide(reading, by_section, negatives)
    _decide_change(reading, changes)
    return reading


def _replace_measured(section: list[VeinStatement], old: list[VeinStatement], new: list[VeinStatement]) -> None:
    for before, after in zip(old, new, strict=True):
        for i, statement in enumerate(section):
            if statement is before:
                section[i] = after


class _DocIndex:
    """What every sentence of a report looks up, computed once per report: entities, ConText modifiers and the
    words naming a leg by token position, section starts, and the legs "RIGHT:"/"LEFT:" lines set."""

    def __init__(self, doc: Any):
        self.doc = doc
        self.ents = list(doc.ents)  # spaCy makes new Span objects on every access: keep one set
        self.ent_starts = [e.start for e in self.ents]
        graph = getattr(doc._, "context_graph", None)
        self.modifiers = sorted(graph.modifiers if graph is not None else [], key=lambda m: m.modifier_span[0])
        self.modifier_starts = [m.modifier_span[0] for m in self.modifiers]
        self.sides = _side_words([t.lower_ for t in doc])
        self.side_starts = [start for start, _, _ in self.sides]
        sections = getattr(doc._, "sections", []) or []
        self.section_titles = [(s.title_span[0], s.title_span[1]) for s in sections]
        self.section_starts = sorted(doc[s.section_span[0] : s.section_span[1]].start_char for s in sections)
        self.side_headers = [(m.start(), _SIDE_OF[m.group(1).upper()]) for m in _SIDE_HEADER.finditer(doc.text)]

    def _between(self, starts: list[int], items: list[Any], sent: Any) -> list[Any]:
        return items[bisect_left(starts, sent.start) : bisect_left(starts, sent.end)]

    def ents_of(self, sent: Any) -> list[Any]:
        return self._between(self.ent_starts, self.ents, sent)

    def modifiers_of(self, sent: Any) -> list[Any]:
        return self._between(self.modifier_starts, self.modifiers, sent)

    def sides_of(self, sent: Any) -> list[tuple[int, int, Side]]:
        return self._between(self.side_starts, self.sides, sent)

    def context_side(self, sent: Any) -> Side | None:
        """The leg a "RIGHT:"/"LEFT:" line put the following lines under, until the next section header."""
        start = sent.start_char
        section_start = max((begin for begin in self.section_starts if begin <= start), default=0)
        side = None
        for offset, header_side in self.side_headers:
            if section_start <= offset <= start:
                side = header_side
        return side


class _Sentence:
    """One sentence's entities, sorted by kind, with the ConText modifiers of each."""

    def __init__(self, sent: Any, section: str, index: _DocIndex):
        self.sent = sent
        self.section = section
        self.context_side = index.context_side(sent)
        self.quote = quote(_without_header(sent, index.section_titles))
        ents = index.ents_of(sent)
        self.veins = [e for e in ents if e.label_ == "VEIN"]
        self.superficial = [e for e in ents if e.label_ in ("SUPERFICIAL", "SUPERFICIAL_THROMBUS")]
        self.superficial_diagnoses = [e for e in ents if e.label_ == "SUPERFICIAL_THROMBUS"]
        self.thrombi = [e for e in ents if e.label_ == "THROMBUS"]
        self.measurements = [e for e in ents if e.label_ == "MEASUREMENT"]
        self.modifiers = {_key(e): e._.modifiers for e in ents}
        self.sentence_modifiers = index.modifiers_of(sent)
        self.sentence_cues = {m.category for m in self.sentence_modifiers}
        self.side_words = index.sides_of(sent)

    # --- what ConText says of one entity -------------------------------------------------------------------------
    def cats(self, ent: Any) -> set[str]:
        """The categories modifying ``ent``; a negation is dropped when a thrombus asserted between the cue and
        the vein belongs to another clause ("the peroneal vein is thrombosed with normal compressibility of the
        posterior tibial veins" clears only the posterior tibial veins)."""
        found: set[str] = set()
        for modifier in self.modifiers[_key(ent)]:
            category = modifier.category
            start, end = modifier.modifier_span
            if category == "UNCHANGED":
                text = ent.doc[start:end].text.lower()
                if text.startswith(("no ", "without ")) and end <= ent.start:
                    found.add("NEGATED_EXISTENCE")  # "without extension into the popliteal vein"
            if category == "NEGATED_EXISTENCE" and ent.label_ == "VEIN" and self._asserted_between(ent, start, end):
                continue
            found.add(category)
        return found

    def _asserted_between(self, ent: Any, start: int, end: int) -> bool:
        low, high = (end, ent.start) if end <= ent.start else (ent.end, start)
        for thrombus in self.thrombi:
            if low <= thrombus.start and thrombus.end <= high and self._kind(thrombus) == "positive":
                return True
        return False

    def _kind(self, ent: Any) -> str:
        cats = {m.category for m in self.modifiers[_key(ent)]}
        if "NEGATED_EXISTENCE" in cats or "NOT_SEEN" in cats:
            return "negated"
        if "HYPOTHETICAL" in cats:
            return "hypothetical"
        if "POSSIBLE_EXISTENCE" in cats:
            return "uncertain"
        if "HISTORICAL" in cats:
            return "historical"
        return "positive"

    @property
    def positive_thrombi(self) -> list[Any]:
        return [t for t in self.thrombi if self._kind(t) == "positive"]

    # --- statements ----------------------------------------------------------------------------------------------
    def statements(self, reading: ReportReading, *, follows_a_finding: bool = False) -> list[VeinStatement]:
        positive = self.positive_thrombi
        uncertain = [t for t in self.thrombi if self._kind(t) == "uncertain"]
        negated = [t for t in self.thrombi if self._kind(t) == "negated"]
        # "Interval propagation into the popliteal vein" (a repeat study's extension cue) and a worksheet's
        # "Right peroneal vein: occlusive." assert thrombus without a thrombus word.
        implied = not negated and not uncertain and not self.thrombi
        asserts = bool(positive) or (implied and bool({"EXTENSION", "OCCLUSIVE", "NONOCCLUSIVE"} & self.sentence_cues))
        found: list[VeinStatement] = []
        deep_thrombosed = False
        for vein in self.veins:
            key = nlp.vein_key(vein)
            cats = self.cats(vein)
            if key is None or "LANDMARK" in cats:
                continue
            if "NOT_SEEN" in cats and not asserts:
                reading.limited = reading.limited or self.quote
                continue
            if "NEGATED_EXISTENCE" in cats:
                found.append(self._statement(vein, key, thrombus=False))
                continue
            if "HYPOTHETICAL" in cats or "HISTORICAL" in cats:
                continue
            if "POSSIBLE_EXISTENCE" in cats or (uncertain and not asserts):
                if self.quote not in reading.uncertain:
                    reading.uncertain.append(self.quote)
                continue
            if asserts:
                found.append(self._statement(vein, key, thrombus=True))
                deep_thrombosed = True
            elif self._cleared_after(vein, negated):
                found.append(self._statement(vein, key, thrombus=False))  # "X is free of thrombus"
        found = _fold_groups(found)
        superficial_said = any(
            not {"NEGATED_EXISTENCE", "HYPOTHETICAL", "POSSIBLE_EXISTENCE"} & self.cats(e)
            for e in self.superficial_diagnoses
        ) or (positive and any("NEGATED_EXISTENCE" not in self.cats(e) for e in self.superficial))
        if superficial_said and self.quote not in reading.superficial:
            reading.superficial.append(self.quote)
        if positive and not deep_thrombosed and not self.superficial and not follows_a_finding:
            # Thrombus said of no deep vein: "acute DVT of the left lower extremity". A sentence that only goes on
            # about a thrombus just named ("The thrombus measures 5 cm") adds to that one instead.
            found.append(self._unlocated(positive))
        elif uncertain and not asserts and not self.veins and self.quote not in reading.uncertain:
            reading.uncertain.append(self.quote)
        if "LIMITED" in self.sentence_cues and reading.limited is None:
            reading.limited = self.quote
        return found

    def _cleared_after(self, vein: Any, negated: list[Any]) -> bool:
        """The vein is the subject a later negation speaks of: "the right PTVs are negative for thrombus"."""
        stops = [m.modifier_span[0] for m in self._terminators()]
        for thrombus in negated:
            for modifier in self.modifiers[_key(thrombus)]:
                start = modifier.modifier_span[0]
                if (
                    modifier.category == "NEGATED_EXISTENCE"
                    and vein.end <= start
                    and not any(vein.end <= stop < start for stop in stops)
                ):
                    return True
        return False

    def _terminators(self) -> list[Any]:
        return [m for m in self.sentence_modifiers if m.category == "TERMINATE"]

    def negative_sides(self) -> list[Side]:
        """ "No DVT" said of a leg or the whole study: a negated thrombus word whose cue clears no vein."""
        sides: list[Side] = []
        negated = [t for t in self.thrombi if self._kind(t) == "negated"]
        if any("NEGATED_EXISTENCE" in self.cats(v) or self._cleared_after(v, negated) for v in self.veins):
            return sides  # "the femoral vein shows normal flow without thrombus": said of the veins named
        for thrombus in self.thrombi:
            if self._kind(thrombus) == "negated":
                sides.append(self._side(thrombus) or Side.UNKNOWN)
        return sides

    def _statement(self, vein: Any, key: str, *, thrombus: bool) -> VeinStatement:
        term = _VEINS[key]
        related = [vein, *self.positive_thrombi] if thrombus else [vein]
        return VeinStatement(
            vein=key,
            vein_class=term.vein_class,
            specific=term.specific,
            side=self._side(vein) or Side.UNKNOWN,
            thrombus=thrombus,
            section=self.section,
            quote=self.quote,
            chronic=self._chronic(related) if thrombus else None,
            occlusive=self._occlusive(related) if thrombus else None,
        )

    def _unlocated(self, positive: list[Any]) -> VeinStatement:
        return VeinStatement(
            vein=None,
            vein_class=VeinClass.UNKNOWN,
            specific=False,
            side=self._side(*positive) or Side.UNKNOWN,
            thrombus=True,
            section=self.section,
            quote=self.quote,
            chronic=self._chronic(positive),
            occlusive=self._occlusive(positive),
        )

    def _side(self, *ents: Any) -> Side | None:
        """The side word nearest the entity in its sentence; else the leg a "RIGHT:" line set."""
        best: tuple[int, Side] | None = None
        for ent in ents:
            for start, end, side in self.side_words:
                distance = ent.start - end if end <= ent.start else (start - ent.end if start >= ent.end else 0)
                if best is None or distance < best[0]:
                    best = (distance, side)
            if best is not None:
                return best[1]
        return self.context_side

    def _chronic(self, ents: list[Any]) -> bool | None:
        cats = {c for e in ents for c in self.cats(e)}
        if "ACUTE" in cats or "EXTENSION" in cats:
            return False
        if "CHRONIC" in cats:
            return True
        return None

    def _occlusive(self, ents: list[Any]) -> bool | None:
        cats = {c for e in ents for c in self.cats(e)}
        if "NONOCCLUSIVE" in cats:
            return False
        if "OCCLUSIVE" in cats:
            return True
        return None

    # --- measurements --------------------------------------------------------------------------------------------
    def measure(self, targets: list[VeinStatement], reading: ReportReading) -> list[VeinStatement] | None:
        """Length, diameter and distance to the popliteal vein said in this sentence, applied to ``targets``."""
        if not self.measurements or not targets:
            return None
        length = diameter = distance = None
        text = self.sent.doc.text
        for ent in self.measurements:
            before = text[max(self.sent.start_char, ent.start_char - 60) : ent.start_char]
            after = text[ent.end_char : min(self.sent.end_char, ent.end_char + 60)]
            values = _values(ent.text)
            if values is None:
                continue
            if _DISTANCE_AFTER.match(after) or (_WITHIN_BEFORE.search(before) and _WITHIN_AFTER.match(after)):
                if len(values) == 1:
                    distance = _min(distance, values[0])
                    continue
            elif len(values) == 1 and (_LENGTH_AFTER.match(after) or _LENGTH_BEFORE.search(before)):
                length = _max(length, values[0])
                continue
            elif len(values) == 1 and (_DIAMETER_AFTER.match(after) or _DIAMETER_BEFORE.search(before)):
                diameter = _max(diameter, values[0] * 10)
                continue
            reading.not_read.append(f'a measurement with no stated dimension ("{quote(ent.text)}" in: {self.quote})')
        if length is None and diameter is None and distance is None:
            return None
        return [
            replace(
                s,
                length_cm=_max(s.length_cm, length),
                diameter_mm=_max(s.diameter_mm, diameter),
                distance_cm=_min(s.distance_cm, distance),
            )
            if s.thrombus
            else s
            for s in targets
        ]

    # --- what changed since the last study -----------------------------------------------------------------------
    def changes(self) -> list[str]:
        found = []
        cats = self.sentence_cues
        negated = any(self._kind(t) == "negated" for t in self.thrombi)
        texts = self.sentence_cue_texts
        new_since = (
            "new" in texts and "UNCHANGED" not in cats and bool({t.lower_ for t in self.sent} & lx.COMPARISON_WORDS)
        )
        if ("EXTENSION" in cats or new_since) and not negated:
            found.append("extension")
        if "UNCHANGED" in cats:
            found.append("unchanged")
        if texts & lx.RESOLVED:
            found.append("resolved")
        return found

    @property
    def sentence_cue_texts(self) -> set[str]:
        doc = self.sent.doc
        return {doc[m.modifier_span[0] : m.modifier_span[1]].text.lower() for m in self.sentence_modifiers}


_SIDE_PHRASES: dict[str, list[tuple[tuple[str, ...], Side]]] = {}
for _category, _phrases in lx.SIDES.items():
    for _phrase in _phrases:
        _words = tuple(_phrase.split())
        _SIDE_PHRASES.setdefault(_words[0], []).append((_words, _SIDE_OF[_category]))


def _side_words(tokens: list[str]) -> list[tuple[int, int, Side]]:
    """Where the text names a leg: (start, end, side) token spans of "right", "LLE", "both legs", in order."""
    found = []
    for i, token in enumerate(tokens):
        for words, side in _SIDE_PHRASES.get(token, ()):
            if tuple(tokens[i : i + len(words)]) == words:
                found.append((i, i + len(words), side))
    return found


def _fold_groups(statements: list[VeinStatement]) -> list[VeinStatement]:
    """A vein group named beside a vein it contains ("the muscular veins of the calf") is that vein."""
    veins = [Vein(s.vein, s.vein_class, specific=s.specific) for s in statements if s.vein]
    kept = []
    for statement in statements:
        if statement.vein and not statement.specific:
            group = Vein(statement.vein, statement.vein_class, specific=False)
            if any(other.name != group.name and group.covers(other) for other in veins):
                continue
        kept.append(statement)
    return kept


def _key(ent: Any) -> tuple[int, int, str]:
    return ent.start, ent.end, ent.label_


def _without_header(sent: Any, titles: list[tuple[int, int]]) -> str:
    """The sentence without the section header it may start with ("IMPRESSION: 1.")."""
    doc = sent.doc
    start = sent.start
    for title_start, title_end in titles:
        if title_end > title_start and sent.start <= title_start < sent.end:
            start = max(start, title_end)
    text = doc[start : sent.end].text if start < sent.end else sent.text
    return re.sub(r"^[\s:.\-]*(?:\d+[.)]\s*)?", "", text)


def _values(text: str) -> list[float] | None:
    """The numbers of a measurement in cm: "4.1 cm" → [4.1]; "4 x 0.6 cm" → [4.0, 0.6]; unit applies to all."""
    match = _QUANTITY.search(text)
    if match is None:
        return None
    unit = match.group(2).lower()
    factor = 0.1 if unit.startswith("m") else 1.0
    numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", text)]
    return [n * factor for n in numbers]


def _max(current: float | None, new: float | None) -> float | None:
    if new is None:
        return current
    return new if current is None else max(current, new)


def _min(current: float | None, new: float | None) -> float | None:
    if new is None:
        return current
    return new if current is None else min(current, new)


# ----------------------------------------------------------------------------------------------------------------
# Deciding between sections
# ------------------------------------------------------------------------------------------------------------------
def _same_place(a: VeinStatement, b: VeinStatement) -> bool:
    return a.vein == b.vein and a.side == b.side


def _sided(impression: list[VeinStatement], others: list[VeinStatement]) -> list[VeinStatement]:
    """An impression that names a vein without its leg ("peroneal vein thrombosis, as above") speaks of the leg
    the findings put it in, when they put it in one leg only."""
    sided = []
    for statement in impression:
        if statement.vein is not None and statement.side == Side.UNKNOWN:
            sides = {o.side for o in others if o.vein == statement.vein and o.thrombus == statement.thrombus}
            sides.discard(Side.UNKNOWN)
            if len(sides) == 1:
                statement = replace(statement, side=sides.pop())
        sided.append(statement)
    return sided


def _decide(
    reading: ReportReading,
    by_section: dict[str, list[VeinStatement]],
    negatives: dict[str, list[tuple[Side, str]]],
) -> None:
    impression = by_section.get("impression", [])
    impression_negative = negatives.get("impression", [])
    others = [s for section, found in by_section.items() if section != "impression" for s in found]
    other_negative = [n for section, found in negatives.items() if section != "impression" for n in found]
    if not impression and not impression_negative:
        reading.statements = others
        reading.negative_sides = other_negative
        return
    impression = _sided(impression, others)
    kept = list(impression)
    for statement in others:
        cleared_in_impression = any(
            _same_place(statement, i) and statement.thrombus != i.thrombus for i in impression
        ) or (
            statement.thrombus
            and any(side.covers(statement.side) or side == Side.UNKNOWN for side, _ in impression_negative)
            and not any(i.thrombus and (i.side == statement.side or Side.UNKNOWN in (i.side,)) for i in impression)
        )
        if cleared_in_impression:
            what = statement.vein or "thrombus"
            reading.disagreements.append(
                f"the findings and the impression disagree about the {what}; the impression was followed"
            )
            continue
        kept.append(statement)
    reading.statements = kept
    reading.negative_sides = impression_negative


def _decide_change(reading: ReportReading, changes: dict[str, list[tuple[str, str]]]) -> None:
    found = changes.get("impression") or [c for section, items in changes.items() for c in items]
    for kind in ("extension", "resolved", "unchanged"):
        for change, said in found:
            if change == kind:
                reading.change, reading.change_quote = kind, said
                return
