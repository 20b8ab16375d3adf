"""The medspaCy pipeline that reads venous duplex reports, built once per process from ``lexicon.py``.

Components, in order: a sentence splitter that also breaks at line ends (reports are written in lines), the
target matcher (veins, superficial veins, thrombus words, measurements), ConText (negation, hypothetical,
uncertain, historical, and this project's categories: chronic, acute, occlusive, side, landmark, not seen,
limited, extension, unchanged) and the sectionizer (IMPRESSION, FINDINGS, INDICATION, COMPARISON, TECHNIQUE).

No statistical model is used (``spacy.blank``): nothing is downloaded at run time and the result of a report
depends only on these rules. Building takes ~0.3 s and is done once per worker (``warmup.py``); a call then
costs ~1-3 ms per report. spaCy does not promise that one pipeline may be used from several threads at once,
so calls go through a lock (the work holds the GIL anyway).
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from collections.abc import Iterable
from functools import cache
from typing import Any

from cds_service.clinical.reports import lexicon as lx

MAX_TEXT_CHARS = 20_000  # a venous duplex report is 0.5-3 kB; beyond this the text is cut (and the card says so)

_LOCK = threading.Lock()
_NUMBER = r"\d+(?:\.\d+)?"
MEASUREMENT_PATTERN = rf"(?<![\w.]){_NUMBER}(?:\s*(?:x|by|×)\s*{_NUMBER})*\s*(?:cm|mm|centimeters?|millimeters?)\b"


def _quiet_pyrush() -> None:
    """medspaCy imports PyRuSH, which logs every sentence at DEBUG through loguru (report text, i.e. PHI)."""
    try:
        from loguru import logger

        logger.disable("PyRuSH")
    except ImportError:  # pragma: no cover - loguru is a medspaCy dependency
        logging.getLogger(__name__).debug("loguru not installed")


def _variants(term: lx.VeinTerm) -> list[str]:
    forms = []
    for stem in term.stems:
        forms.append(stem)
        if term.with_vein_word:
            forms.extend((f"{stem} vein", f"{stem} veins", f"{stem} venous"))
    return forms


def _line_sentences(doc: Any) -> Any:
    """Sentence starts: after . ! ? and at line breaks that end a line of the report (a header, a numbered item,
    a line ending in punctuation, a blank line). A line that was only wrapped at a fixed width ("occlusive
    thrombus in / the right peroneal veins") continues its sentence."""
    texts = [t.text for t in doc]
    for i, token in enumerate(doc):
        if i == 0:
            token.is_sent_start = True
            continue
        previous = texts[i - 1]
        if previous in (".", "!", "?"):
            token.is_sent_start = True
        elif "\n" in previous or "\n" in doc[i - 1].whitespace_:
            token.is_sent_start = _line_ends_sentence(doc, i)
        else:
            token.is_sent_start = False
    return doc


def _line_ends_sentence(doc: Any, i: int) -> bool:
    """Whether the line break before token ``i`` ends a sentence rather than wrapping one."""
    newline = doc[i - 1]
    if newline.text.count("\n") + newline.whitespace_.count("\n") > 1:
        return True  # a blank line
    before = next((doc[j] for j in range(i - 1, -1, -1) if doc[j].text.strip()), None)
    if before is None or before.text[-1:] in ".:;!?" or before.text.isupper():
        return True
    token = doc[i] if doc[i].text.strip() else (doc[i + 1] if i + 1 < len(doc) else doc[i])
    return not token.text[:1].islower()


def _context_rules(ConTextRule: Any) -> list[Any]:
    rules: list[Any] = []

    def add(phrases: Iterable[str], category: str, direction: str, **kwargs: Any) -> None:
        rules.extend(ConTextRule(p, category, direction=direction, **kwargs) for p in phrases)

    add(lx.NEGATION_FORWARD, "NEGATED_EXISTENCE", "FORWARD")
    add(lx.NEGATION_BACKWARD, "NEGATED_EXISTENCE", "BACKWARD")
    add(lx.NEGATION_BOTH_WAYS, "NEGATED_EXISTENCE", "BIDIRECTIONAL")
    add(lx.PSEUDO, "PSEUDO", "PSEUDO")
    add(lx.HYPOTHETICAL, "HYPOTHETICAL", "FORWARD")
    add(lx.UNCERTAIN, "POSSIBLE_EXISTENCE", "BIDIRECTIONAL")
    add(lx.HISTORICAL, "HISTORICAL", "FORWARD")
    add(lx.CHRONIC, "CHRONIC", "BIDIRECTIONAL")
    add(lx.ACUTE, "ACUTE", "BIDIRECTIONAL")
    add(lx.OCCLUSIVE, "OCCLUSIVE", "BIDIRECTIONAL")
    add(lx.NONOCCLUSIVE, "NONOCCLUSIVE", "BIDIRECTIONAL")
    add(lx.LANDMARK_FORWARD, "LANDMARK", "FORWARD", max_scope=4)
    rules.append(
        ConTextRule(
            "distance",
            "LANDMARK",
            pattern=rf"{_NUMBER}\s*(?:cm|mm)\s+(?:below|from|of|distal to|inferior to|above|proximal to)(?:\s+the)?",
            direction="FORWARD",
            max_scope=4,
        )
    )
    rules.append(
        ConTextRule(
            "within a distance of",
            "LANDMARK",
            pattern=rf"within\s+(?:approximately\s+|about\s+)?{_NUMBER}\s*(?:cm|mm)\s+of(?:\s+the)?",
            direction="FORWARD",
            max_scope=4,
        )
    )
    add(lx.EXTENSION, "EXTENSION", "BIDIRECTIONAL")
    add(lx.UNCHANGED, "UNCHANGED", "BIDIRECTIONAL")
    add(lx.NOT_SEEN, "NOT_SEEN", "BACKWARD")
    add(lx.LIMITED_STUDY, "LIMITED", "BIDIRECTIONAL")
    add(lx.TERMINATORS, "TERMINATE", "TERMINATE")
    # A comma that starts a new clause ("thrombus in the peroneal vein, the popliteal vein is patent") ends every
    # cue's scope; a comma inside a list of veins ("the common femoral, femoral and popliteal veins") does not.
    rules.append(
        ConTextRule(
            "clause comma",
            "TERMINATE",
            pattern=r",(?=\s+(?:the|a|an|there|it|this|these|which|with|while|whereas|and the|but)\b)",
            direction="TERMINATE",
        )
    )
    return rules


def _section_rules(SectionRule: Any) -> list[Any]:
    """One rule per section kind, its headers in one alternation (each rule is a scan of the whole text)."""
    rules = []
    for category, headers in lx.SECTIONS.items():
        ordered = sorted(headers, key=len, reverse=True)
        words = "|".join(r"[ \t]+".join(re.escape(w) for w in header.split()) for header in ordered)
        # A header starts a line and ends with a colon (or ends the line): "IMPRESSION:", "Findings".
        pattern = rf"(?im)^[ \t]*(?:[0-9]+[.)][ \t]*)?(?:{words})[ \t]*(?::|-(?=[ \t])|$)"
        rules.append(SectionRule(category, category, pattern=pattern))
    return rules


@cache
def pipeline() -> Any:
    """The report pipeline (cached for the process)."""
    _quiet_pyrush()
    import medspacy
    from medspacy.context import ConTextRule
    from medspacy.ner import TargetRule
    from medspacy.section_detection import SectionRule
    from spacy.language import Language

    # medspaCy keeps a token matcher beside its phrase and regex matchers; with rules of those two kinds only, spaCy
    # warns on every document that the token matcher has no patterns (W036). Nothing is wrong: silence that one.
    warnings.filterwarnings("ignore", message=r"\[W036\]")
    if "dvt_line_sentences" not in Language.factories:
        Language.component("dvt_line_sentences", func=_line_sentences)
    nlp = medspacy.load(medspacy_enable=["medspacy_target_matcher"])
    nlp.add_pipe("dvt_line_sentences", first=True)
    nlp.add_pipe("medspacy_context", config={"rules": None, "span_attrs": "default"})
    nlp.add_pipe("medspacy_sectionizer", config={"rules": None})

    targets: list[Any] = []
    for term in lx.DEEP_VEINS:
        targets.extend(
            TargetRule(form, "VEIN", attributes=None, metadata={"vein": term.key}) for form in _variants(term)
        )
    targets.extend(TargetRule(p, "SUPERFICIAL") for p in lx.SUPERFICIAL_VEINS)
    targets.extend(TargetRule(p, "SUPERFICIAL_THROMBUS") for p in lx.SUPERFICIAL_THROMBOSIS)
    targets.extend(TargetRule(p, "NOT_VEIN") for p in lx.NOT_VEINS)
    targets.extend(TargetRule(p, "THROMBUS") for p in lx.THROMBUS_WORDS)
    targets.append(TargetRule("measurement", "MEASUREMENT", pattern=MEASUREMENT_PATTERN))
    nlp.get_pipe("medspacy_target_matcher").add(targets)
    nlp.get_pipe("medspacy_context").add(_context_rules(ConTextRule))
    nlp.get_pipe("medspacy_sectionizer").add(_section_rules(SectionRule))
    return nlp


def vein_key(span: Any) -> str | None:
    """The lexicon key of a VEIN span (its target rule's metadata)."""
    rule = getattr(span._, "target_rule", None)
    metadata = getattr(rule, "metadata", None) or {}
    return metadata.get("vein")


def process(text: str) -> Any:
    nlp = pipeline()
    with _LOCK:
        return nlp(text[:MAX_TEXT_CHARS])
