"""Expected readings of whole reports and how a ``ReportReading`` is compared with them (docs/clinical/RULES.md
"Reading venous duplex report text")."""

from __future__ import annotations

from dataclasses import dataclass, field
from textwrap import dedent
from typing import Any

import pytest

from cds_service.clinical.model import Side
from cds_service.clinical.reports.reader import ReportReading
from tests.clinical.reports.vocabulary import U

Place = tuple[str, Side]


@dataclass(frozen=True)
class Expected:
    thrombosed: set[Place]
    cleared: set[Place]
    study_side: Side | None = None  # one-leg study: a statement naming no leg is of this leg
    negative: set[Side] | None = None  # "no DVT" of a whole leg; None: not asserted
    limited: bool = False
    change: str | None = None
    superficial: bool = False
    uncertain: bool = False
    disagreement: bool = False
    chronic: dict[Place, bool] = field(default_factory=dict)
    occlusive: dict[Place, bool] = field(default_factory=dict)
    length_cm: dict[Place, float] = field(default_factory=dict)
    diameter_mm: dict[Place, float] = field(default_factory=dict)
    distance_cm: dict[Place, float] = field(default_factory=dict)


def _side(side: Side, expected: Expected) -> Side:
    return expected.study_side if side == U and expected.study_side else side


def observe(reading: ReportReading, expected: Expected) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the reading says and what the report means, in the same shape (only what ``expected`` asserts)."""

    def where(statement: Any) -> Place:
        return (statement.vein, _side(statement.side, expected))

    positive = reading.thrombosed

    def stated(attribute: str, keys: Any = None) -> dict[Place, list[Any]]:
        found: dict[Place, list[Any]] = {}
        for s in positive:
            value = getattr(s, attribute)
            if value is not None and (keys is None or where(s) in keys):
                found.setdefault(where(s), [])
                if value not in found[where(s)]:
                    found[where(s)].append(value)
        return found

    got: dict[str, Any] = {
        "thrombosed": {where(s) for s in positive},
        "cleared": {where(s) for s in reading.statements if not s.thrombus},
        "limited": reading.limited is not None,
        "change": reading.change,
        "superficial": bool(reading.superficial),
        "uncertain": bool(reading.uncertain),
        "disagreement": bool(reading.disagreements),
        "chronic": stated("chronic", expected.chronic),
        "occlusive": stated("occlusive", expected.occlusive),
        "length_cm": stated("length_cm"),
        "diameter_mm": stated("diameter_mm"),
        "distance_cm": stated("distance_cm"),
    }
    want: dict[str, Any] = {
        "thrombosed": expected.thrombosed,
        "cleared": expected.cleared,
        "limited": expected.limited,
        "change": expected.change,
        "superficial": expected.superficial,
        "uncertain": expected.uncertain,
        "disagreement": expected.disagreement,
        "chronic": {k: [v] for k, v in expected.chronic.items()},
        "occlusive": {k: [v] for k, v in expected.occlusive.items()},
        "length_cm": {k: [pytest.approx(v)] for k, v in expected.length_cm.items()},
        "diameter_mm": {k: [pytest.approx(v)] for k, v in expected.diameter_mm.items()},
        "distance_cm": {k: [pytest.approx(v)] for k, v in expected.distance_cm.items()},
    }
    if expected.negative is not None:
        got["negative"] = {_side(side, expected) for side, _ in reading.negative_sides}
        want["negative"] = expected.negative
    return got, want


def report_text(block: str) -> str:
    """The report as an EHR sends it: one line per header or paragraph (an indented line continues the last)."""
    lines: list[str] = []
    for line in dedent(block).strip().splitlines():
        if line.startswith((" ", "\t")) and lines:
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return "\n".join(lines)
