"""The facts of one card in clinical words: each resource named by what it is and its date ("D-dimer 14 Mar",
"ultrasound 15 Mar"), never by its id; each report sentence quoted once; what could not be evaluated in one line.

Only wording lives here. What the facts mean — the factors, the decision, why an option was favoured, the grade —
comes decided from the clinical core (``clinical/assessment.py``).
"""

from __future__ import annotations

import re
from datetime import date

from cds_service.cards.markdown import capital, day, days_in_words, md, shorten
from cds_service.clinical import thresholds as th
from cds_service.clinical.assessment import Assessment, Option
from cds_service.clinical.bleeding import BleedingRisk
from cds_service.clinical.evidence import Citation
from cds_service.clinical.factors import Factor, words
from cds_service.clinical.model import ClinicalFacts, SourceRef, Thrombosis

UNCHECKED = "Current anticoagulation could not be checked"
QUOTE_MAX = 160  # a report sentence is quoted whole (the reader keeps at most 160 characters of it)

# A FHIR reference ("Observation/dd-1"): what a card must never show a clinician.
REFERENCE = re.compile(r"(?<![\w/.:])([A-Z][a-z]+(?:[A-Z][a-z]+)*)/([A-Za-z0-9\-._~+=]{1,512})")
_TYPE_WORDS = {
    "Condition": "diagnosis",
    "Observation": "result",
    "DiagnosticReport": "report",
    "Encounter": "encounter",
    "Procedure": "procedure",
    "MedicationRequest": "medication order",
    "MedicationStatement": "medication record",
    "Medication": "medication",
    "ServiceRequest": "order",
    "Patient": "patient record",
    "Binary": "report document",
}
# What a data gap of each resource type leaves unread, in words (facts.not_assessed: "Condition data not available").
_GAP_WORDS = {
    "Condition": "diagnoses",
    "Observation": "results (labs, D-dimer, ultrasound)",
    "DiagnosticReport": "imaging reports",
    "Encounter": "hospital stays",
    "Procedure": "procedures",
    "MedicationRequest": "medication orders",
    "ServiceRequest": "imaging orders",
    "Patient": "patient details",
}
_GAP = re.compile(r"^(\w+) data (not available|incomplete)\b")
# Bleeding-risk factors that could not be assessed, by the data they lack ("Could not read: creatinine, platelets").
_BLEEDING_UNREAD = (
    ("renal failure", "creatinine (renal function)"),
    ("thrombocytopenia", "platelets"),
    ("anaemia (no haemoglobin", "haemoglobin"),
    ("anaemia (sex not recorded", "sex (for the haemoglobin limit)"),
    ("age (", "birth date (age)"),
    ("poor anticoagulant control", "INR history"),
)
# Data notes a clinician must see (what was not read, skipped or uncertain), before the merely informative ones.
_MUST_SEE = (
    "could not",
    "unknown",
    "not read",
    "cannot",
    "disagree",
    "not counted",
    "incomplete",
    "not available",
    "failed",
    "ignored",
    "skipped",
)


def must_see(note: str) -> bool:
    return any(word in note for word in _MUST_SEE)


def _head(label: str) -> str:
    """A label without its parenthesis: "unprovoked (no transient provoking factor)" → "unprovoked"."""
    return label.split(" (", 1)[0]


class Words:
    """Wording for one card: built per card, it remembers which report sentences the card already quotes."""

    def __init__(self, facts: ClinicalFacts, today: date):
        self.facts = facts
        self.today = today
        self.quoted: set[str] = set()
        self._kinds = _kinds(facts)
        self._refs = _sources_by_reference(facts)

    # --- sources ------------------------------------------------------------------------------------------------
    def kind(self, source: SourceRef) -> str:
        if source.reference.startswith("Patient/"):
            return source.how  # "age 66"
        known = self._kinds.get(source.reference)
        return known or _TYPE_WORDS.get(source.reference.split("/", 1)[0], "record")

    def date(self, when: date | None) -> str:
        return day(when, self.today)

    def source(self, source: SourceRef, *, quote: int = QUOTE_MAX, said: set[str] | None = None) -> str:
        """ "ultrasound 15 Mar", with the report sentence it came from (at most ``quote`` characters) unless the card
        quotes it already (``said``: the sentences quoted so far by the block being written); with ``quote`` 0,
        only that it was read from report text."""
        text = " ".join(part for part in (self.kind(source), self.date(source.when)) if part)
        sentence = source.quote
        if not sentence or sentence in self.quoted or (said is not None and sentence in said):
            return text
        if quote <= 0:
            return f"{text}, from report text"
        if said is not None:
            said.add(sentence)
        return f'{text}, report text: "{md(shorten(sentence, quote))}"'

    def sources(self, sources: list[SourceRef], *, quote: int = QUOTE_MAX, limit: int = 2) -> str:
        said: set[str] = set()
        named = [self.source(s, quote=quote, said=said) for s in sources[:limit]]
        return "; ".join(dict.fromkeys(s for s in named if s))

    def plain(self, text: str) -> str:
        """Text from the clinical core, with every resource reference written as what it is and its date, every
        ISO date in words, and escaped for markdown."""
        for known in sorted(self._refs.values(), key=lambda k: -len(k.describe())):
            if known.reference in text:  # "Observation/x, 2026-03-14, LOINC 777-3" → "platelet count 14 Mar"
                text = text.replace(known.describe(), self.source(known, quote=0))
        text = re.sub(r"\s*\(" + REFERENCE.pattern + r"\)", "", text)  # "(DiagnosticReport/x)" adds nothing
        text = re.sub(r"^" + REFERENCE.pattern + r": (?=.*\d{4}-\d{2}-\d{2})", "", text)  # the note dates it itself

        def one(match: re.Match[str]) -> str:
            reference = f"{match[1]}/{match[2]}"
            known = self._refs.get(reference)
            if known is not None:
                return " ".join(p for p in (self.kind(known), self.date(known.when)) if p)
            when = self.date(date.fromisoformat(match[3])) if match[3] else ""
            return " ".join(p for p in (_TYPE_WORDS.get(match[1], "record"), when) if p)

        text = re.sub(REFERENCE.pattern + r"(?:, (\d{4}-\d{2}-\d{2}))?", one, text)
        text = re.sub(r" \(RxNorm \d+\)", "", text)
        return md(days_in_words(text, self.today))

    def seen_on(self, source: SourceRef) -> str:
        """ "15 Mar", with the report sentence (the kind is said already); the card quotes it here, once."""
        kind, text = self.kind(source), self.source(source)
        if source.quote:
            self.quoted.add(source.quote)
        return text[len(kind) :].lstrip(" ,") if kind and text.startswith(kind) else text

    # --- the episode --------------------------------------------------------------------------------------------
    def episode(self, episode: Thrombosis) -> tuple[str, str]:
        """("acute DVT of the left peroneal vein (diagnosis 14 Mar)", origin sentence or ""): the DVT in words, and
        for a DVT known only from an ultrasound report, where it was read (with the report's sentence)."""
        kind = "suspected acute DVT" if episode.verification.value == "suspected" else "acute DVT"
        veins = episode.describe()
        what = f"{kind} of the {md(veins)}" if episode.veins else f"{kind}, {md(veins)}"
        off_list = episode.from_imaging and not any(not t.from_imaging for t in self.facts.thromboses)
        quote = episode.source.quote or episode.evidence.get("veins")
        if off_list:
            when = self.date(episode.onset) or "an undated study"
            origin = f"From the ultrasound report of {when} (not on the problem list)"
            if quote and quote not in self.quoted:
                self.quoted.add(quote)
                origin += f', report text: "{md(quote)}"'
            return what, origin + "."
        source = self.source(episode.source, quote=0 if quote else QUOTE_MAX)
        if quote and source.endswith(", from report text"):
            source = source.removesuffix(", from report text")
        if quote and quote not in self.quoted:
            self.quoted.add(quote)
            source += f', report text: "{md(quote)}"'
        return f"{what} ({source})", ""

    # --- factors ------------------------------------------------------------------------------------------------
    def factor(
        self,
        factor: Factor,
        *,
        quote: int = QUOTE_MAX,
        said: set[str] | None = None,
        limit: int = 2,
        brief: bool = False,
    ) -> str:
        """One deciding factor as a short bullet: what it is, its evidence in words, and the date. ``brief``: without
        the explanation a factor's name already carries ("confined to the muscular calf veins")."""
        label = capital(words(_head(factor.label)) if factor.code in _SHORT_LABEL else words(factor.label))
        detail = _DETAIL.get(factor.code, lambda f: f.detail)(factor)
        if brief and factor.code in _BRIEF:
            detail = _BRIEF[factor.code]
        head = f"{md(label)}: {md(words(detail))}" if detail else md(label)
        named = []
        for source in factor.sources[:limit]:
            kind, text = self.kind(source), self.source(source, quote=quote, said=said)
            if kind and kind.lower() in head.lower() and text.startswith(kind):
                text = text[len(kind) :].lstrip(" ,")  # "Positive D-dimer: 1.4 mg/L FEU (14 Mar)"
            named.append(text)
        evidence = "; ".join(dict.fromkeys(t for t in named if t))
        if not evidence:
            return head
        return f"{head}, {evidence}" if head.endswith(")") else f"{head} ({evidence})"

    def factor_words(self, factors: list[Factor], limit: int = 3) -> str:
        """The factors for a summary: "positive D-dimer, unprovoked +2"."""
        named = [_head(f.label) for f in factors[:limit]]
        return ", ".join(named) + (f" +{len(factors) - limit}" if len(factors) > limit else "")

    # --- what could not be evaluated ----------------------------------------------------------------------------
    def not_evaluated(self, bleeding: BleedingRisk | None, *, lead: bool = False) -> list[str]:
        """What the card could not evaluate, most important first: data the EHR did not give, what was not read
        (a report only in PDF, a drug that could not be identified), then bleeding-risk data missing from the
        record. ``lead``: the card already leads with "current anticoagulation could not be checked", which names
        the medication orders."""
        items: list[str] = []
        for gap in self.facts.not_assessed:
            match = _GAP.match(gap)
            if match is None:
                items.append(self.plain(gap))
            elif not (lead and match[1] == "MedicationRequest"):
                items.append(f"{_GAP_WORDS.get(match[1], md(match[1]))} ({match[2]})")
        for note in self.facts.data_notes:
            if must_see(note) and not (lead and note.startswith("anticoagulant status unknown")):
                items.append(self.plain(note.rstrip(". ")))
        for unread in bleeding.not_assessed if bleeding else []:
            if "data not available" in unread or "data incomplete" in unread:
                continue  # said by the data gap above
            named = next((name for prefix, name in _BLEEDING_UNREAD if unread.startswith(prefix)), None)
            if named:
                items.append(named)
        return list(dict.fromkeys(items))

    def notes(self) -> list[str]:
        """Data notes that are informative, not alarming (what was recognised from text, a local code read by its
        words). That the site's ConceptMap was used is for the pathway view, not a clinician's card."""
        informative = [n for n in self.facts.data_notes if not must_see(n) and "ConceptMap" not in n]
        return list(dict.fromkeys(self.plain(n.rstrip(". ")) for n in informative))

    def missing(self, assessment: Assessment) -> list[str]:
        """What the record did not say that could change the answer (the clinical core's list, in its order);
        bleeding-risk data is in the "could not be evaluated" line."""
        return [self.plain(m) for m in assessment.missing if not m.startswith("bleeding factor not assessed")]


def listed(items: list[str], keep: int) -> str:
    """Items joined, at most ``keep`` of them and how many more."""
    if len(items) <= keep:
        return "; ".join(items)
    return "; ".join(items[:keep]) + f"; and {len(items) - keep} more"


def citation_line(assessment: Assessment | None, citations: list[Citation], grade: str | None = None) -> str:
    """One short line: the evidence grade of the recommendation, and the other sources it rests on by name."""
    grade = assessment.grade if grade is None and assessment is not None else (grade or "")
    chest = ("chest-2016", "chest-2021")
    named = [c.label for c in dict.fromkeys(citations) if not grade or c.key not in chest]
    return "**Evidence:** " + "; ".join(dict.fromkeys([*([grade] if grade else []), *named])) + "."


def option_name(option: Option | None) -> str:
    return "anticoagulation" if option == Option.ANTICOAGULATION else "serial imaging"


# ----------------------------------------------------------------------------------------------------------------
_SHORT_LABEL = {"unprovoked"}
_BRIEF = {
    "unprovoked": "no provoking factor found in the record",
    "muscular-veins-only": "",
    "pulmonary-embolism": "",
}
_DETAIL = {
    "positive-d-dimer": lambda f: "{} ({})".format(*f.detail.split(": ", 1)) if ": " in f.detail else f.detail,
    "unprovoked": lambda f: (
        f"no provoking factor found in the record in the {th.PROVOKING_WINDOW_DAYS.int_value} days before diagnosis"
    ),
    # The threshold's provenance ("a project setting", "in CHEST a surgical trigger …") is in the pathway view.
    "close-to-proximal-veins": lambda f: _head(f.detail),
    "recent-surgery": lambda f: _head(f.detail),
}


def _sources_by_reference(facts: ClinicalFacts) -> dict[str, SourceRef]:
    found: dict[str, SourceRef] = {}
    for source in _all_sources(facts):
        found.setdefault(source.reference, source)
    return found


def _all_sources(facts: ClinicalFacts) -> list[SourceRef]:
    sources = [t.source for t in facts.thromboses + facts.suspected]
    sources += [s.source for s in facts.imaging]
    sources += [facts.ddimer.source] if facts.ddimer else []
    labs = facts.labs
    measures = (labs.weight, labs.creatinine_mg_dl, labs.crcl_ml_min, labs.egfr, labs.platelets, labs.hemoglobin_g_dl)
    sources += [m.source for m in measures if m is not None]
    uses = facts.anticoagulants + facts.antiplatelets + facts.nsaids + facts.interacting_drugs
    sources += [m.source for m in uses]
    sources += [p.source for p in facts.planned_imaging]
    sources += [p.source for p in facts.provoking]
    for finding in (
        facts.active_cancer,
        facts.prior_vte,
        facts.inpatient,
        facts.recent_hospitalization,
        facts.recent_surgery,
        facts.severe_symptoms,
        facts.covid19,
        facts.pregnant,
        facts.postpartum,
        facts.prefers_no_anticoagulation,
        facts.pulmonary_embolism,
    ):
        sources += finding.sources
    return sources


def _kinds(facts: ClinicalFacts) -> dict[str, str]:
    """Each resource the facts came from, named by what it is to a clinician."""
    kinds: dict[str, str] = {}

    def put(sources: list[SourceRef], word: str) -> None:
        for source in sources:
            kinds.setdefault(source.reference, word)

    put([t.source for t in facts.thromboses + facts.suspected if t.from_imaging], "ultrasound")
    put([s.source for s in facts.imaging], "ultrasound")
    put([facts.ddimer.source] if facts.ddimer else [], "D-dimer")
    labs = facts.labs
    for measure, word in (
        (labs.weight, "weight"),
        (labs.crcl_ml_min, "creatinine clearance"),
        (labs.creatinine_mg_dl, "creatinine"),
        (labs.egfr, "eGFR"),
        (labs.platelets, "platelet count"),
        (labs.hemoglobin_g_dl, "haemoglobin"),
    ):
        put([measure.source] if measure else [], word)
    for use in facts.anticoagulants + facts.antiplatelets + facts.nsaids + facts.interacting_drugs:
        put([use.source], f"{use.agent} order")
    put([p.source for p in facts.planned_imaging], "duplex order")
    put(facts.inpatient.sources + facts.recent_hospitalization.sources, "hospital stay")
    put(facts.recent_surgery.sources, "surgery")
    put([s for s in facts.severe_symptoms.sources if s.reference.startswith("Observation/")], "pain score")
    put([s for s in facts.pregnant.sources if s.reference.startswith("Observation/")], "pregnancy status")
    put(facts.prefers_no_anticoagulation.sources, "recorded preference")
    return kinds
