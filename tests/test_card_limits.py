"""Every card of every fixture scenario, under every EHR profile, reads in seconds (docs/clinical/RULES.md R-CARD-1,
R-CARD-3, R-TOPIC-1; issue 13): detail ≤ 1,000 characters without tables, no resource ids or project jargon, nothing
said twice, a summary under 140 characters cut only at a word boundary, and the recommendation, extension and
surveillance cards link to the pathway view. The limits are checked here; the clinical answer of each scenario is
checked by its manifest (tests/test_scenarios.py, tests/profiles/test_conformance.py)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds_service.cards import DETAIL_MAX, SUMMARY_MAX, fit, markdown
from cds_service.cards.markdown import Part, compose, day, days_in_words
from cds_service.cards.words import Words
from cds_service.clinical.model import SourceRef
from cds_service.clinical.topics import INDICATOR, TOPIC_DISPLAY, TOPIC_TABLE, Topic
from cds_service.profiles import canonical_topic
from tests.builders import TODAY, distal_dvt, facts_of
from tests.inprocess import BASE_URL, library_outcomes

PATHWAY = {
    Topic.ANTICOAGULATE,
    Topic.SERIAL_IMAGING,
    Topic.SHARED_DECISION,
    Topic.EXTENSION,
    Topic.SURVEILLANCE_GAP,
    Topic.BILATERAL_SURVEILLANCE,
}
RESOURCE_ID = re.compile(r"\b[A-Z][a-z]+(?:[A-Z][a-z]+)*/[A-Za-z0-9\-.]+")
JARGON = re.compile(r"Listed by|\bseed\b|seed[- ]only|" + "|".join(re.escape(t.value) for t in Topic), re.IGNORECASE)


@pytest.fixture(scope="module", params=["hl7", "epic", "oracle"])
def every_card(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """(profile, [(scenario/hook, card), ...]) for every card every scenario's calls get under the profile."""
    store = tmp_path_factory.mktemp(f"limits-{request.param}") / "store.sqlite3"
    last_resort = markdown._cut_longest_lines
    cards: list[tuple[str, dict[str, Any]]] = []

    def watched(text: str, limit: int) -> str:
        cards.append(("last resort", {"cut": text}))
        return last_resort(text, limit)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(markdown, "_cut_longest_lines", watched)
        for scenario, outcome in library_outcomes(request.param, store):
            cards += [(f"{scenario.id}/{outcome.call.hook}", card) for card in outcome.cards]
    return request.param, cards


def sentences(detail: str) -> list[str]:
    """Each bullet and each sentence of the detail, markup removed, long enough to mean something on its own."""
    found = []
    for line in detail.splitlines():
        line = line.strip().removeprefix("- ").replace("**", "")
        found += [s.strip() for s in re.split(r"(?<=[.;])\s+(?=[A-Z])", line) if len(s.strip()) >= 25]
    return found


def problems(card: dict[str, Any]) -> list[str]:
    found = []
    summary, detail = card["summary"], card.get("detail") or ""
    topic = canonical_topic(card["source"]["topic"]["code"])
    if len(detail) > DETAIL_MAX:
        found.append(f"detail {len(detail)} characters")
    if any(line.lstrip().startswith("|") for line in detail.splitlines()):
        found.append("a table in the detail")
    for text in (summary, detail):
        found += [f"resource id {m}" for m in RESOURCE_ID.findall(text)]
        found += [f"jargon {m!r}" for m in JARGON.findall(text)]
    said = sentences(detail)
    found += [f"said twice: {s!r}" for s in {s for s in said if said.count(s) > 1}]
    if len(summary) > SUMMARY_MAX:
        found.append(f"summary {len(summary)} characters")
    if summary != fit(summary) or (summary.endswith("…") and not re.search(r"[\w).%]…$", summary)):
        found.append(f"summary not cut at a word: {summary!r}")
    links = card.get("links") or []
    if topic in PATHWAY:
        expected = {"label": "Open the DVT pathway view", "url": f"{BASE_URL}/smart/launch", "type": "smart"}
        if expected not in links:
            found.append(f"no pathway link: {links}")
    return found


def test_every_card_of_every_scenario_reads_in_seconds(every_card: tuple[str, list[tuple[str, dict]]]) -> None:
    profile, cards = every_card
    # The leanest forms of the cards' blocks always fit: lines are never cut to make a detail fit.
    assert not [card["cut"] for where, card in cards if where == "last resort"]
    assert len(cards) >= 80
    failures = {f"{where} {card['source']['topic']['code']}": problems(card) for where, card in cards}
    failures = {k: v for k, v in failures.items() if v}
    assert not failures, (profile, failures)


def test_every_pathway_topic_is_seen_with_its_link(every_card: tuple[str, list[tuple[str, dict]]]) -> None:
    _, cards = every_card
    seen = {canonical_topic(card["source"]["topic"]["code"]) for where, card in cards if card.get("links")}
    assert seen == {t.value for t in PATHWAY}


# --- the helpers the limits rest on -------------------------------------------------------------------------------
@given(st.text(alphabet=st.sampled_from("ab cd,;:—-()"), min_size=0, max_size=400))
def test_fit_cuts_only_at_a_word_boundary(text: str) -> None:
    flat = " ".join(text.split())
    cut = fit(text)
    assert len(cut) <= SUMMARY_MAX
    if len(flat) <= SUMMARY_MAX:
        assert cut == flat
        return
    assert cut.endswith("…")
    kept = cut[:-1]
    assert flat.startswith(kept)
    words = kept.split()
    if len(words) > 1:  # a single word longer than the limit is the only thing ever cut inside
        rest = flat[len(kept) :]
        assert not rest[:1].isalnum() or not kept[-1:].isalnum()


def test_compose_keeps_within_the_limit_and_never_says_a_line_twice() -> None:
    parts = [
        Part.of("**Head** sentence."),
        Part.steps(("- one\n- two\n- three\n- four", 10), ("- one\n- two", 0)),
        Part.steps(("x" * 60, 5), ("", 0)),
        Part.of("- one"),  # said above: never twice
    ]
    assert compose(parts, limit=1000) == "**Head** sentence.\n\n- one\n- two\n- three\n- four\n\n" + "x" * 60
    tight = compose(parts, limit=40)
    assert len(tight) <= 40
    assert tight == "**Head** sentence.\n\n- one\n- two"


def test_resource_references_become_clinical_words() -> None:
    facts = facts_of([distal_dvt()])
    words = Words(facts, TODAY)
    episode = facts.thromboses[0].source
    text = words.plain(f"{episode.describe()}: something; Observation/unknown-1, 2025-11-20; (DiagnosticReport/r-1)")
    assert not RESOURCE_ID.search(text)
    assert text.startswith(f"diagnosis {day(episode.when, TODAY)}: something; result 20 Nov 2025")
    assert words.source(SourceRef("Patient/p", None, "age 66")) == "age 66"


def test_dates_are_written_as_clinicians_read_them() -> None:
    assert day(date(TODAY.year, 11, 28), TODAY) == "28 Nov"
    assert day(date(TODAY.year - 1, 3, 2), TODAY) == f"2 Mar {TODAY.year - 1}"
    assert days_in_words(f"a repeat ultrasound of {TODAY.year}-01-05", TODAY) == "a repeat ultrasound of 5 Jan"


def test_one_topic_table_gives_every_topic_its_display_and_indicator() -> None:
    assert [row.topic for row in TOPIC_TABLE] == list(Topic)
    assert set(TOPIC_DISPLAY) == set(INDICATOR) == set(Topic)
    assert INDICATOR[Topic.SURVEILLANCE_GAP] == "critical"
    assert INDICATOR[Topic.BILATERAL_SURVEILLANCE] == "info"
