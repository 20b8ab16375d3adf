"""Vein keys and sides shared by the report-reader tests (the keys ``read_report`` uses, RULES.md R-DX-1, R-TEXT-4)."""

from __future__ import annotations

from cds_service.clinical.model import Side
from cds_service.clinical.reports.reader import ReportReading

CFV = "common femoral vein"
FV = "femoral vein"  # the "superficial femoral vein": deep and proximal
PFV = "profunda femoris vein"
POP = "popliteal vein"
CIV = "common iliac vein"
EIV = "external iliac vein"
IIV = "internal iliac vein"
ILIAC = "iliac vein"
PROXIMAL = "proximal veins"
PER = "peroneal vein"
PTV = "posterior tibial vein"
ATV = "anterior tibial vein"
TIBIAL = "tibial vein"
GAS = "gastrocnemius vein"
SOL = "soleal vein"
MUSCULAR = "calf muscular vein"
CALF = "calf veins"

R, L, B, U = Side.RIGHT, Side.LEFT, Side.BILATERAL, Side.UNKNOWN


def thrombosed(vein: str | None, side: Side) -> tuple[str | None, Side, bool]:
    return (vein, side, True)


def cleared(vein: str, side: Side) -> tuple[str, Side, bool]:
    return (vein, side, False)


def triples(reading: ReportReading) -> set[tuple[str | None, Side, bool]]:
    return {(s.vein, s.side, s.thrombus) for s in reading.statements}


def flat(text: str) -> str:
    return " ".join(text.split())
