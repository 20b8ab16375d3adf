"""The narrative of a DiagnosticReport as plain text: ``conclusion`` and ``presentedForm``.

The rule: docs/clinical/RULES.md R-TEXT-2.

``presentedForm`` attachments come inline (base64 ``data``) or as a ``url`` to a ``Binary`` that the fetch layer
has already read (``attachments``, keyed by the URL as the report wrote it). Plain text, HTML/XHTML and RTF are
read; a PDF is not (said in a note when it is the only form). What could not be read is said, never skipped
silently.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Protocol

from cds_service.clinical.fhirdata import listed

MAX_ATTACHMENT_BYTES = 512 * 1024  # a venous duplex report is a few kB: anything larger is not a report text


class FetchedAttachment(Protocol):
    """What the fetch layer read for a ``presentedForm.url`` (``cds_service.fhir.record.Attachment``)."""

    @property
    def content_type(self) -> str: ...
    @property
    def data(self) -> bytes | None: ...
    @property
    def reason(self) -> str | None: ...


@dataclass
class Narrative:
    text: str = ""
    parts: list[str] = field(default_factory=list)  # which elements the text came from
    problems: list[str] = field(default_factory=list)  # what could not be read, in words

    @property
    def readable(self) -> bool:
        return bool(self.text.strip())


_TEXT_TYPES = ("text/plain", "text/html", "application/xhtml", "application/xhtml+xml", "text/xhtml", "text/rtf")
_HEADER = re.compile(r"(?im)^\s*(?:impression|conclusion|findings|result)s?\s*:")


def report_narrative(report: dict[str, Any], attachments: Mapping[str, FetchedAttachment]) -> Narrative:
    narrative = Narrative()
    pieces: list[str] = []
    forms = [f for f in listed(report, "presentedForm") if isinstance(f, dict)]
    readable_forms = [f for f in forms if _media_type(f) in _TEXT_TYPES]
    for form in readable_forms:
        text, problem = _attachment_text(form, attachments)
        if problem:
            narrative.problems.append(problem)
        if text:
            raw_title = form.get("title")
            title = raw_title if isinstance(raw_title, str) else ""
            if title.strip().lower() in ("impression", "conclusion") and not _HEADER.search(text):
                text = "IMPRESSION:\n" + text
            pieces.append(text)
            narrative.parts.append(f"presentedForm ({_media_type(form)})")
    conclusion = report.get("conclusion")
    if isinstance(conclusion, str) and conclusion.strip():
        # The conclusion is the report's impression, whether or not it says so.
        pieces.append(conclusion if _HEADER.search(conclusion) else "IMPRESSION:\n" + conclusion)
        narrative.parts.append("conclusion")
    if not pieces:
        others = sorted({_media_type(f) or "an unnamed type" for f in forms if f not in readable_forms})
        if others:
            narrative.problems.append(f"its text is only in a form not read here ({', '.join(others)})")
        elif not narrative.problems:
            narrative.problems.append("it has no report text (no conclusion, no presentedForm)")
    narrative.text = "\n\n".join(pieces)
    return narrative


def _media_type(form: dict[str, Any]) -> str:
    value = form.get("contentType")
    return value.split(";")[0].strip().lower() if isinstance(value, str) else ""


def _attachment_text(form: dict[str, Any], attachments: Mapping[str, FetchedAttachment]) -> tuple[str, str | None]:
    media = _media_type(form)
    raw: bytes | None = None
    if isinstance(form.get("data"), str):
        try:
            raw = base64.b64decode("".join(form["data"].split()), validate=True)
        except (binascii.Error, ValueError):
            return "", "its inline report text is not valid base64"
    elif isinstance(form.get("url"), str):
        fetched = attachments.get(form["url"])
        if fetched is None:
            return "", "its report text was not fetched"
        if fetched.data is None:
            return "", f"its report text could not be fetched ({fetched.reason or 'unknown reason'})"
        raw = fetched.data
        media = fetched.content_type.split(";")[0].strip().lower() or media
    if raw is None:
        return "", None
    if len(raw) > MAX_ATTACHMENT_BYTES:
        return "", "its report text is larger than a report (not read)"
    text = raw.decode("utf-8", errors="replace")
    if media in ("text/html", "application/xhtml", "application/xhtml+xml", "text/xhtml") or text.lstrip().startswith(
        "<"
    ):
        return html_to_text(text), None
    if media == "text/rtf" or text.lstrip().startswith("{\\rtf"):
        return rtf_to_text(text), None
    if media in ("text/plain", ""):
        return text, None
    return "", f"its report text is in a form not read here ({media})"


class _TextExtractor(HTMLParser):
    _BLOCKS = frozenset(
        {"p", "div", "br", "li", "tr", "table", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "section", "pre", "hr"}
    )
    _SKIP = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.out.append("\n")
        elif tag in ("td", "th"):
            self.out.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.out.append(data)


def html_to_text(html: str) -> str:
    """Visible text of an HTML/XHTML report, one line per block element."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.out).replace("\xa0", " ")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in lines if line)


_RTF_GROUP = re.compile(r"\{\\\*[^{}]*\}|\{\\(?:fonttbl|colortbl|stylesheet|info|pict)[^{}]*(?:\{[^{}]*\}[^{}]*)*\}")
_RTF_HEX = re.compile(r"\\'([0-9a-fA-F]{2})")
_RTF_CONTROL = re.compile(r"\\([a-zA-Z]+)(-?\d+)? ?")


def rtf_to_text(rtf: str) -> str:
    """The text of a simple RTF document (paragraph marks kept as lines; tables, fonts and pictures dropped)."""
    text = _RTF_GROUP.sub("", rtf)
    text = _RTF_HEX.sub(lambda m: bytes([int(m.group(1), 16)]).decode("cp1252", errors="replace"), text)

    def control(match: re.Match[str]) -> str:
        word = match.group(1)
        if word in ("par", "line", "row", "sect", "page"):
            return "\n"
        if word == "tab":
            return " "
        return ""

    text = _RTF_CONTROL.sub(control, text)
    text = text.replace("\\{", "{").replace("\\}", "}").replace("\\\\", "\\").replace("{", "").replace("}", "")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in lines if line)
