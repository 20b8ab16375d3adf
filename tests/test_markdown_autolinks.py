"""Resource text never becomes a live link on a card (issue 17): ``md()`` neutralises CommonMark autolinks
(``<https://…>``, ``<name@host>``) and GFM's extended autolinks (``https://…``, ``http://…``, ``ftp://…``, ``www.…``,
``name@host.tld``, ``mailto:``/``xmpp:``) and linkify's fuzzy ``host.tld`` links, while the rendered text reads as
written.

Checked with real renderers: markdown-it-py (CommonMark, a dependency) always; markdown-it-py with linkify
(linkify-it-py) and cmark-gfm (GitHub's own renderer, the ``cmarkgfm`` bindings) when they are installed. The
escaped source is also checked against the autolink grammars themselves, so the guarantee holds without them."""

from __future__ import annotations

import html
import importlib.util
import re
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from cds_service.cards.markdown import md
from tests.builders import distal_dvt, medication_request, provoked_by_surgery

WORD_JOINER = "\u2060"


def _renderers() -> dict[str, Callable[[str], str]]:
    found: dict[str, Callable[[str], str]] = {"commonmark (markdown-it-py)": MarkdownIt("commonmark").render}
    if importlib.util.find_spec("linkify_it") is not None:
        found["markdown-it-py + linkify"] = MarkdownIt("commonmark", {"linkify": True}).enable("linkify").render
    if importlib.util.find_spec("cmarkgfm") is not None:
        import cmarkgfm

        found["cmark-gfm"] = cmarkgfm.github_flavored_markdown_to_html
    return found


RENDERERS = _renderers()


def rendered_text(html_out: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", html_out)).replace(WORD_JOINER, "").strip()


def assert_inert(text: str) -> None:
    """``md(text)`` within a sentence renders, in every renderer, with no link and as the text itself."""
    source = f"Text: {md(text)}."
    expected = f"Text: {' '.join(text.replace(WORD_JOINER, '').split())}."
    for name, render in RENDERERS.items():
        out = render(source)
        assert "<a " not in out, (name, text, source, out)
        assert rendered_text(out) == expected, (name, text, source, out)
    assert_no_autolink_in_source(md(text))


def assert_no_autolink_in_source(escaped: str) -> None:
    """The grammars, on the escaped source. CommonMark autolink: ``<`` scheme ``:`` … ``>`` or ``<`` email ``>`` —
    every ``<`` is escaped. GFM extended autolinks: ``www.`` (a literal run of the source), ``http://``, ``https://``,
    ``ftp://`` (found at an unescaped ``:`` after the scheme's letters), an e-mail address (found at ``@`` with
    ``[A-Za-z0-9.+_-]`` right before it, after escapes are undone) and ``mailto:``/``xmpp:`` before one."""
    assert not re.search(r"(?<!\\)<", escaped), escaped
    assert not re.search(r"(?i)www\.", escaped), escaped
    assert not re.search(r"[A-Za-z]:\S", escaped), escaped  # every scheme colon escaped
    assert not re.search(r"[^\u2060]@|^@", escaped), escaped  # no e-mail name part can end right before an @


EXAMPLES = {
    "https URL": ("see https://evil.com/x now", "see https\\://evil\\.com/x now"),
    "http URL with query": ("http://evil.com/?a=1&b=2", "http\\://evil\\.com/?a=1&amp;b=2"),
    "ftp URL": ("ftp://evil.com/f", "ftp\\://evil\\.com/f"),
    "CommonMark autolink": ("<https://evil.com>", "\\<https\\://evil\\.com\\>"),
    "www": ("(www.evil.com)", "(www\\.evil\\.com)"),
    "WWW with a digit": ("WWW.1.com", "WWW\\.1\\.com"),
    "e-mail": ("ask john.smith@evil.com", "ask john\\.smith\u2060@evil\\.com"),
    "e-mail autolink": ("<john@evil.com>", "\\<john\u2060@evil\\.com\\>"),
    "mailto": ("mailto:a@b.com", "mailto\\:a\u2060@b\\.com"),
    "bare domain (linkify)": ("evil.com/path", "evil\\.com/path"),
    "medication and times untouched": ("Apixaban 2.5 mg e.g. at 10:30", "Apixaban 2.5 mg e.g. at 10:30"),
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_escape_as_documented_and_render_without_a_link(name: str) -> None:
    text, escaped = EXAMPLES[name]
    assert md(text) == escaped
    assert_inert(text)


def test_before_this_fix_gfm_linked_a_url_md_had_escaped() -> None:
    """What the old escaping left live: ``\\<https://x\\>`` is no CommonMark autolink, but GFM's extended autolink
    still links the URL inside (cmark-gfm even put the ``\\>`` into the href)."""
    old = "\\<https://evil.com\\>"
    if "cmark-gfm" in RENDERERS:
        assert "<a " in RENDERERS["cmark-gfm"](old)
    assert "<a " not in RENDERERS["commonmark (markdown-it-py)"](md("<https://evil.com>"))


FRAGMENTS = st.sampled_from(
    [
        "https://",
        "http://",
        "ftp://",
        "HTTPS://",
        "mailto:",
        "xmpp:",
        "www.",
        "WWW.",
        "evil",
        "example",
        ".com",
        ".org",
        ".co.uk",
        ".рф",
        "пример",
        "@",
        "john.smith",
        "/path?q=1&r=2",
        "<",
        ">",
        ":",
        "//",
        "\\",
        "&",
        "&#58;",
        "_",
        "*",
        "~",
        "(",
        ")",
        " ",
        ".",
        "-",
        "1",
    ]
)
PRINTABLE = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8)


@settings(max_examples=500)
@given(st.lists(st.one_of(FRAGMENTS, PRINTABLE), max_size=12).map("".join))
@example("Report: clot at https://pacs.example.org/study?id=1, call rx@hospital.org or www.hospital.org")
@example("<mailto:x@y.com> <https://a.b.com/c> <john@evil.com>")
def test_no_resource_text_becomes_a_link(text: str) -> None:
    assert_inert(text)


def test_card_text_from_a_resource_has_no_live_link_and_the_services_own_link_stays() -> None:
    from tests.test_cards import BASE_URL, build

    order = medication_request("0", "x", per_day=None)
    del order["medicationCodeableConcept"]
    hostile = "Unknown drug, see https://evil.com/x, www.evil.com, rx@evil.com or <https://evil.com>"
    order["medicationReference"] = {"reference": "Medication/not-sent", "display": hostile}
    card, _ = build([distal_dvt(), provoked_by_surgery(), order], base_url=BASE_URL + "/")
    assert "evil" in card.detail  # the text is shown...
    for name, render in RENDERERS.items():
        out = render(card.detail)
        assert "<a " not in out, (name, out)  # ...and nothing in it is a link
        assert "https://evil.com/x, www.evil.com, rx@evil.com or &lt;https://evil.com&gt;" in out.replace(
            WORD_JOINER, ""
        ), (name, out)
    assert card.to_json()["links"] == [  # the service's own link (the SMART pathway view) is untouched
        {"label": "Open the DVT pathway view", "url": f"{BASE_URL}/smart/launch", "type": "smart"}
    ]
