"""A body is read as JSON once: nesting depth and duplicate keys are checked on what the parse saw."""

from __future__ import annotations

import json
import time

import orjson
import pytest
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.errors import BadRequest
from cds_service.jsonbody import read_json
from tests.builders import condition, hook_request

PATIENT_VIEW = "/cds-services/distal-dvt-patient-view"


def walk(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((walk(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((walk(v) for v in value), default=0)
    return 0


def refusal(raw: bytes, max_depth: int = 64) -> str | None:
    try:
        read_json(raw, max_depth=max_depth)
    except BadRequest as error:
        return error.message
    return None


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('"[[["', 0),
        ("{}", 1),
        ('{"a": [1, {"b": "]]}"}]}', 3),
        ('["\\"[", [[]]]', 3),
        ('{"a": "\\\\", "b": [["\\\\\\"]"]]}', 3),
        ("[" * 64 + "]" * 64, 64),
    ],
)
def test_depth_at_the_limit_is_read_and_one_more_is_refused(text: str, depth: int) -> None:
    assert refusal(text.encode(), max_depth=depth) is None
    if depth:
        assert refusal(text.encode(), max_depth=depth - 1) == f"JSON nested deeper than {depth - 1} levels"


def test_a_hostile_15_mib_nesting_is_refused_without_burning_cpu() -> None:
    """Before: the byte pre-scan peeled one level per pass, 2.9–4.4 s on this body (8 such bodies stalled ordinary
    calls for 21 s). Now the parser refuses it; the bound here is generous, the figure is in the closing note."""
    half = 15 * 1024 * 1024 // 2
    hostile = b"[" * half + b"]" * half
    started = time.perf_counter()
    assert refusal(hostile) == "JSON nested deeper than 64 levels"
    assert time.perf_counter() - started < 0.5
    mixed = b"[" + b",".join([b"[" * 1000 + b"1" + b"]" * 1000] * 5000) + b"]"  # under the parser's own limit
    assert refusal(mixed) == "JSON nested deeper than 64 levels"


@pytest.mark.parametrize(
    "text",
    [
        '{"hook": "patient-view", "hook": "order-sign"}',
        '{"context": {"patientId": "a", "userId": "b", "patientId": "c"}}',
        '[{"a": 1}, {"b": {"c": 1, "c": 1}}]',
        '{"a:": 1, "a:": 2}',
    ],
)
def test_a_duplicate_key_anywhere_is_refused(text: str) -> None:
    assert refusal(text.encode()) == "The body has an object with the same key twice"


@pytest.mark.parametrize(
    "text",
    ['{"a": "x:y", "b": {"c": "\\":"}}', '{"a": 1, "b": {"a": 1}}', '{":": ":", "\\\\": [":"]}', '{"": 1}'],
)
def test_colons_and_quotes_inside_strings_are_not_members(text: str) -> None:
    assert refusal(text.encode()) is None


def test_invalid_json_is_named() -> None:
    assert refusal(b'{"a": ') == "The body is not valid JSON"
    assert refusal(b"") == "The body is not valid JSON"


KEYS = st.text(alphabet='ab\\":{}[] é', max_size=4)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(alphabet='ab\\":{}[] é\n', max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(KEYS, c, max_size=3),
    max_leaves=30,
)


@settings(max_examples=300, database=None)
@given(JSON)
def test_any_json_reads_back_with_its_depth(value: object) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
        depth = walk(value)
        assert read_json(text.encode(), max_depth=max(depth, 1)) == value
        if depth > 1:
            assert refusal(text.encode(), max_depth=depth - 1) is not None


@settings(max_examples=200, database=None)
@given(st.dictionaries(KEYS, st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=4), st.data())
def test_any_repeated_key_is_found(obj: dict[str, int], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(obj)))
    members = [f"{json.dumps(k)}: {v}" for k, v in obj.items()] + [f"{json.dumps(key)}: 0"]
    assert refusal(("{" + ", ".join(members) + "}").encode()) == "The body has an object with the same key twice"


def test_duplicate_hook_is_a_400_through_the_app(client: FlaskClient) -> None:
    body = orjson.dumps(hook_request("patient-view", [condition("I82.452", onset=2)]))
    doubled = body.replace(b'"hook":"patient-view"', b'"hook":"order-sign","hook":"patient-view"', 1)
    assert doubled != body
    response = client.post(PATIENT_VIEW, data=doubled, content_type="application/json")
    assert response.status_code == 400
    assert response.json["issue"][0]["diagnostics"] == "The body has an object with the same key twice"
