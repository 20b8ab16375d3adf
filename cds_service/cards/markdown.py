"""Markdown for cards: escaping what comes from resources, summaries cut at a word boundary, bullets, dates in
words, and a detail composed within its limit (docs/clinical/RULES.md R-CARD-1: summary < 140 characters, detail
≤ 1,000, no tables, nothing said twice).

Text taken from resources is escaped before it goes into markdown, so a resource cannot inject markup into the EHR.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

SUMMARY_MAX = 139  # "<140-character" (CDS Hooks)
DETAIL_MAX = 1000  # docs/clinical/RULES.md R-CARD-1
_ELLIPSIS = "…"


# Autolinks (issue 17): a URL or an e-mail address in resource text must not become a live link on the card, neither
# as a CommonMark autolink (``<https://…>``: its ``<`` is escaped) nor as a GFM extended autolink, which cmark-gfm
# (GitHub, and the renderers EHRs use) and markdown-it's linkify find in plain text:
# - ``scheme:`` (``https://``, ``ftp://``, ``mailto:``, ``xmpp:``…): a colon after a letter, before a non-space, is
#   escaped: ``https\://``;
# - ``www.`` and ``host.tld`` (linkify's fuzzy links): a dot after ``www`` or before two letters is escaped:
#   ``www\.example\.org``; a backslash escape cuts the text where the autolink scanners look;
# - ``name@host.tld``: cmark-gfm finds e-mail addresses after escapes are undone, so no escape of ``@`` helps; a
#   WORD JOINER (U+2060, invisible, no break) is put before the ``@``, and the scanners find no name before it.
# Every escape renders as the character itself: the clinician reads the text as written, not as a link.
_ESCAPED = re.compile(
    r"[\\`*_\[\]#|<>~]"  # markup and HTML
    r"|(?<=[A-Za-z]):(?=\S)"  # a scheme's colon
    r"|(?i:(?<=www))\.|\.(?=[^\W\d_]{2})"  # www. and host.tld
    r"|[&@]"
)
_WORD_JOINER = "\u2060"


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    if char == "&":
        return "&amp;"
    if char == "@":
        return _WORD_JOINER + "@"
    return "\\" + char


def md(text: Any) -> str:
    """Escape text from a resource for GitHub-flavoured markdown (and the HTML it may carry): no markup, no HTML, no
    autolink; rendered, it reads as the text itself."""
    return _ESCAPED.sub(_escape, " ".join(str(text).split()))


def shorten(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, shortened at a word boundary with "…" when it must be (never
    mid-word; a single word longer than the limit is the only thing ever cut inside)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut and not text[limit - 1].isspace():
        cut = cut[: cut.rfind(" ")]
    cut = cut.rstrip(" ,;:—-(")
    if cut.endswith("\\"):  # never leave half of a markdown escape
        cut = cut[:-1]
    return cut + _ELLIPSIS


def fit(summary: str) -> str:
    """The summary within the limit, shortened at a word boundary with "…" when it must be (never mid-word)."""
    return shorten(summary, SUMMARY_MAX)


def capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def bullets(items: Iterable[str]) -> str:
    """A markdown list, each item once."""
    return "\n".join(f"- {item}" for item in dict.fromkeys(i for i in items if i))


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})(?:T[\d:.]+(?:Z|[+-]\d{2}:\d{2})?)?\b")


def day(when: date | None, today: date) -> str:
    """A date as a clinician reads it: "28 Nov", with the year when it is not this year's."""
    if when is None:
        return ""
    text = f"{when.day} {_MONTHS[when.month - 1]}"
    return text if when.year == today.year else f"{text} {when.year}"


def days_in_words(text: str, today: date) -> str:
    """Every ISO date in ``text`` written as ``day()`` writes it."""

    def one(match: re.Match[str]) -> str:
        try:
            return day(date(int(match[1]), int(match[2]), int(match[3])), today)
        except ValueError:
            return match[0]

    return _ISO_DATE.sub(one, text)


# ----------------------------------------------------------------------------------------------------------------
# A detail within its limit
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Part:
    """One block of a card's detail, in the richest and then leaner forms it can take.

    Each form but the last says how strongly the block holds on to it (``keeps``): when the detail is too long, the
    form held least strongly anywhere in the detail gives way to the next leaner form of its block, one step at a
    time. The last form is final (it may be "": the block can be dropped).
    """

    forms: tuple[str, ...]
    keeps: tuple[int, ...] = ()

    @classmethod
    def of(cls, *forms: str, keep: int = 0) -> Part:
        """A block whose forms all hold with the same strength."""
        return cls.steps(*((form, keep) for form in forms))

    @classmethod
    def steps(cls, *forms: tuple[str, int]) -> Part:
        """A block from (form, how strongly it is held) pairs, richest first; the last form is final."""
        kept: dict[str, int] = {}
        for form, keep in forms:
            kept.setdefault(form, keep)  # a form no leaner than the one before is not a step
        return cls(tuple(kept) or ("",), tuple(kept.values())[:-1])


def compose(parts: Sequence[Part], limit: int = DETAIL_MAX) -> str:
    """The detail: each block in its richest form that lets the whole fit in ``limit`` characters, the forms held
    least strongly giving way first; a line (sentence or bullet) already said is never said again."""
    steps = [0] * len(parts)

    def text() -> str:
        return _join(part.forms[step] for part, step in zip(parts, steps, strict=True))

    while len(text()) > limit:
        leaner = [i for i, part in enumerate(parts) if steps[i] < len(part.forms) - 1]
        if not leaner:
            return _cut_longest_lines(text(), limit)  # never reached by the cards' own blocks (test_card_limits.py)
        weakest = min(leaner, key=lambda i: (parts[i].keeps[steps[i]], -i))
        steps[weakest] += 1
    # Room left by a later step: give it back to what gave way, what is held most strongly first.
    for i in sorted(range(len(parts)), key=lambda i: -max(parts[i].keeps, default=0)):
        while steps[i] > 0:
            steps[i] -= 1
            if len(text()) > limit:
                steps[i] += 1
                break
    return text()


def _cut_longest_lines(text: str, limit: int) -> str:
    """The last resort: the longest lines shortened at a word boundary until the text fits (lines are kept)."""
    lines = text.split("\n")
    while sum(len(line) + 1 for line in lines) - 1 > limit:
        longest = max(range(len(lines)), key=lambda i: len(lines[i]))
        excess = sum(len(line) + 1 for line in lines) - 1 - limit
        if len(lines[longest]) <= 40:
            return shorten(text, limit)
        lines[longest] = shorten(lines[longest], max(len(lines[longest]) - excess, 40))
    return "\n".join(lines)


def _join(blocks: Iterable[str]) -> str:
    seen: set[str] = set()
    out: list[str] = []
    for block in blocks:
        lines = [line for line in block.splitlines() if line.strip()]
        kept = [line for line in lines if _key(line) not in seen]
        seen.update(_key(line) for line in kept)
        if kept:
            out.append("\n".join(kept))
    return "\n\n".join(out)


def _key(line: str) -> str:
    return line.strip().lstrip("-").strip().lower()
