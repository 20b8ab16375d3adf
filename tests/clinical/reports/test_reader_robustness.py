"""Report text from anywhere: any string is read without an error, hostile HTML and RTF included, and a record with
many reports reads only the newest few."""

from __future__ import annotations

import base64
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.clinical.reports import lexicon as lx
from cds_service.clinical.reports import nlp
from cds_service.clinical.reports.narrative import html_to_text, report_narrative, rtf_to_text
from cds_service.clinical.reports.reader import QUOTE_MAX, read_report
from cds_service.clinical.thrombosis import MAX_TEXT_REPORTS, read_imaging
from tests.builders import TODAY, narrative_report

_WORDS = st.sampled_from(
    [
        *(t.stems[0] for t in lx.DEEP_VEINS),
        *lx.THROMBUS_WORDS[:8],
        *lx.NEGATION_FORWARD[:8],
        *lx.NEGATION_BACKWARD[:8],
        *lx.CHRONIC[:5],
        "vein",
        "veins",
        "left",
        "right",
        "IMPRESSION:",
        "FINDINGS:",
        "INDICATION:",
        "RIGHT:",
        "4.1 cm",
        "9 mm",
        "x",
        ",",
        ";",
        ".",
        "\n",
        "\n\n",
    ]
)
_REPORT_LIKE = st.lists(_WORDS, max_size=60).map(" ".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_REPORT_LIKE, st.text(max_size=400)))
def test_any_text_is_read_without_an_error(text: str) -> None:
    reading = read_report(text)
    for statement in reading.statements:
        assert len(statement.quote) <= QUOTE_MAX
        assert statement.length_cm is None or statement.length_cm >= 0


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
def test_any_html_or_rtf_becomes_text_without_an_error(text: str) -> None:
    assert isinstance(html_to_text(f"<p>{text}</p><script>{text}</script>"), str)
    assert isinstance(rtf_to_text("{\\rtf1 " + text + "\\par}"), str)
    data = base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()
    narrative = report_narrative({"presentedForm": [{"contentType": "text/html", "data": data}]}, {})
    assert narrative.readable == bool(narrative.text.strip())


def test_a_very_long_text_is_cut_before_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cost is bounded by what reaches the pipeline, not timed here (make bench measures reading)."""
    text = f"Study {uuid.uuid4()}. " + "Acute occlusive thrombus in the left peroneal vein. " * 2000  # 104 kB, unread
    seen: list[int] = []
    pipeline = nlp.pipeline()
    monkeypatch.setattr(nlp, "pipeline", lambda: lambda chunk: seen.append(len(chunk)) or pipeline(chunk))
    reading = read_report(text)
    assert seen
    assert max(seen) <= nlp.MAX_TEXT_CHARS
    assert reading.truncated
    assert any(s.vein == "peroneal vein" and s.thrombus for s in reading.statements)


def test_only_the_newest_reports_are_read_from_their_text() -> None:
    def report(days: int) -> dict:
        return narrative_report(f"Nonocclusive thrombus in the left peroneal vein ({days} days ago).", days=days)

    reports = [report(200 - 3 * i) for i in range(2 * MAX_TEXT_REPORTS)]
    studies, notes = read_imaging([], reports, today=TODAY)
    read = [s for s in studies if s.text_read]
    assert len(read) == MAX_TEXT_REPORTS
    newest = sorted(studies, key=lambda s: s.when, reverse=True)[:MAX_TEXT_REPORTS]
    assert {s.source.reference for s in read} == {s.source.reference for s in newest}
    assert any("older venous duplex report(s) were not read" in n for n in notes)
