"""A report's narrative → the facts of the coded path (``read_text_findings``, docs/clinical/RULES.md
"Reading venous duplex report text")."""

from __future__ import annotations

from datetime import date

import pytest

from cds_service.clinical.model import Side, SourceRef
from cds_service.clinical.reports.findings import read_text_findings
from cds_service.clinical.reports.reader import QUOTE_MAX
from tests.clinical.reports.vocabulary import PER, POP, PTV, SOL, flat

STUDY = SourceRef("DiagnosticReport/duplex-1", date(2026, 3, 14))


def findings(text: str, *, legs: Side, recent: bool = True):
    report = {"resourceType": "DiagnosticReport", "status": "final", "conclusion": text}
    return read_text_findings(report, source=STUDY, legs=legs, attachments={}, recent=recent)


def names(thrombosis) -> set[str]:
    return {v.name for v in thrombosis.veins}


@pytest.mark.parametrize("legs", [Side.LEFT, Side.RIGHT])
def test_one_leg_study_gives_its_side_to_an_unnamed_side(legs: Side) -> None:
    found = findings("Occlusive thrombus in the peroneal veins, 4 cm in length.", legs=legs)
    [thrombosis] = found.thromboses
    assert thrombosis.side == legs
    assert names(thrombosis) == {PER}
    assert thrombosis.length_cm == pytest.approx(4.0)
    assert thrombosis.occlusive is True
    assert thrombosis.from_report_text


def test_bilateral_study_does_not_guess_an_unnamed_side() -> None:
    [thrombosis] = findings("Occlusive thrombus in the peroneal veins.", legs=Side.BILATERAL).thromboses
    assert thrombosis.side == Side.UNKNOWN


def test_named_side_wins_over_the_study_side() -> None:
    [thrombosis] = findings("Thrombus in the left posterior tibial vein.", legs=Side.BILATERAL).thromboses
    assert thrombosis.side == Side.LEFT
    assert names(thrombosis) == {PTV}


def test_chronic_thrombus_is_prior_vte_not_an_acute_thrombosis() -> None:
    sentence = "Chronic partially recanalized thrombus in the left popliteal vein."
    found = findings(sentence, legs=Side.LEFT)
    assert found.thromboses == []
    assert [ref.quote for ref in found.chronic] == [sentence]
    assert found.negative is False


def test_chronic_and_acute_in_one_study_are_kept_apart() -> None:
    found = findings(
        "Chronic nonocclusive thrombus in the left popliteal vein. Acute occlusive thrombus in the left soleal vein.",
        legs=Side.LEFT,
    )
    [thrombosis] = found.thromboses
    assert names(thrombosis) == {SOL}
    assert POP not in names(thrombosis)
    assert [ref.quote for ref in found.chronic] == ["Chronic nonocclusive thrombus in the left popliteal vein."]


def test_old_study_findings_are_not_acute() -> None:
    found = findings("Thrombus in the right posterior tibial vein.", legs=Side.RIGHT, recent=False)
    assert found.thromboses == []
    [earlier] = found.earlier  # an earlier episode (prior VTE), with its vein and side kept for comparison
    assert not earlier.acute
    assert earlier.side == Side.RIGHT
    assert earlier.source.how == "thrombus in an earlier study"
    assert found.chronic == []  # chronicity itself was not stated


def test_every_thrombosis_carries_the_quote_of_its_sentence() -> None:
    long_sentence = (
        "There is acute occlusive thrombus in the left posterior tibial veins beginning at the ankle and continuing "
        "proximally for most of their length, with expansion of the vein lumen and no flow on color Doppler imaging."
    )
    text = f"Thrombus in the right peroneal vein, 3.5 cm in length. {long_sentence}"
    found = findings(text, legs=Side.BILATERAL)
    by_side = {t.side: t for t in found.thromboses}
    assert set(by_side) == {Side.RIGHT, Side.LEFT}
    assert by_side[Side.RIGHT].source.quote == "Thrombus in the right peroneal vein, 3.5 cm in length."
    assert by_side[Side.RIGHT].source_for("length").quote == "Thrombus in the right peroneal vein, 3.5 cm in length."
    left_quote = by_side[Side.LEFT].source.quote
    assert left_quote is not None
    assert len(left_quote) <= QUOTE_MAX
    assert flat(long_sentence).startswith(left_quote.rstrip("…"))
    for thrombosis in found.thromboses:
        assert thrombosis.source.reference == STUDY.reference
        assert thrombosis.source.when == STUDY.when
        assert thrombosis.source.quote
        assert len(thrombosis.source.quote) <= QUOTE_MAX
        assert thrombosis.source.quote.rstrip("…") in flat(text)


def test_negative_study_and_not_read_notes() -> None:
    found = findings("No deep venous thrombosis in the right lower extremity.", legs=Side.RIGHT)
    assert found.read
    assert found.negative
    assert found.thromboses == []
    unsure = findings("Thrombus in the right peroneal vein measuring 1.2 cm.", legs=Side.RIGHT)
    assert any("not read" in note and "1.2 cm" in note for note in unsure.notes)
