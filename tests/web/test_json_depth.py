"""The byte-level JSON depth measure agrees with the structure it measures."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.app import json_depth


def walk(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((walk(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((walk(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('"[[["', 0),
        ("{}", 1),
        ('{"a": [1, {"b": "]]}"}]}', 3),
        ('["\\"[", [[]]]', 3),
        ("[" * 70 + "]" * 70, 70),
        ('{"a": "\\\\", "b": [["\\\\\\"]"]]}', 3),
        ("[" * 100, 100),
    ],
)
def test_examples(text: str, depth: int) -> None:
    assert json_depth(text.encode()) == depth


def test_a_hostile_depth_stops_being_measured_past_the_limit() -> None:
    deep = ("[" * 200_000 + "]" * 200_000).encode()
    assert json_depth(deep, stop_after=64) == 65
    assert json_depth(("[" * 64 + "]" * 64).encode(), stop_after=64) == 64


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3),
    max_leaves=30,
)


@settings(max_examples=300)
@given(JSON)
def test_matches_a_walk_of_the_parsed_value(value: object) -> None:
    assert json_depth(json.dumps(value).encode()) == walk(value)
    assert json_depth(json.dumps(value, ensure_ascii=False).encode()) == walk(value)
