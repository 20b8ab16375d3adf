"""Whole venous duplex reports, as US radiology and vascular labs write them, read as docs/clinical/RULES.md
"Reading venous duplex report text" says.

Each report lists the deep veins with thrombus and the veins stated free of thrombus per leg, and what else it
says: measurements, chronicity, an incomplete study, a repeat study's change, superficial-vein thrombosis,
uncertainty, and a disagreement between FINDINGS and IMPRESSION (the impression decides). A one-leg study's
sentences that name no leg are of the study's leg (R-TEXT-7: a one-leg study's side comes from its title).
The delivery forms (HTML, RTF, ``conclusion``, a ``Binary`` by URL, PDF, a failed fetch) go through
``report_narrative`` first.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest

from cds_service.clinical.reports.narrative import report_narrative
from cds_service.clinical.reports.reader import ReportReading, read_report
from tests.clinical.reports.expected import Expected, observe, report_text
from tests.clinical.reports.vocabulary import (
    CALF,
    CFV,
    FV,
    GAS,
    PER,
    POP,
    PROXIMAL,
    PTV,
    SOL,
    B,
    L,
    R,
)


def check(reading: ReportReading, expected: Expected) -> None:
    got, want = observe(reading, expected)
    assert got == want


REPORTS = [
    pytest.param(
        """
        EXAM: US DUPLEX VENOUS BILATERAL LOWER EXTREMITIES
        INDICATION: Bilateral leg swelling. Rule out DVT.
        COMPARISON: None.
        TECHNIQUE: Grayscale, color and spectral Doppler imaging with compression of the deep veins of both legs.
        FINDINGS:
        RIGHT: The common femoral, femoral and popliteal veins are fully compressible with normal color flow and
            augmentation. The posterior tibial and peroneal veins are patent.
        LEFT: The common femoral, femoral and popliteal veins are fully compressible with normal color flow and
            augmentation. The posterior tibial and peroneal veins are patent.
        IMPRESSION:
        1. No evidence of deep venous thrombosis in the bilateral lower extremities.
        """,
        Expected(
            thrombosed=set(),
            cleared={(v, s) for v in (CFV, FV, POP, PTV, PER) for s in (R, L)},
            negative={B},
        ),
        id="negative bilateral study",
    ),
    pytest.param(
        """
        EXAM: VAS US DUPLEX VENOUS LOWER EXTREMITY BILATERAL
        INDICATION: Left calf pain for 4 days. Evaluate for DVT.
        COMPARISON: None available.
        FINDINGS:
        RIGHT: The common femoral, femoral, popliteal, posterior tibial and peroneal veins are fully compressible.
        LEFT: The common femoral, femoral and popliteal veins are fully compressible with normal augmentation.
        The peroneal veins are noncompressible and distended with hypoechoic thrombus, 3.8 cm in length and 6 mm in
            diameter. Its upper end is 4 cm below the trifurcation. The posterior tibial veins are patent.
        IMPRESSION:
        1. Acute deep venous thrombosis of the left peroneal veins.
        2. No deep venous thrombosis in the right lower extremity.
        """,
        Expected(
            thrombosed={(PER, L)},
            cleared={(v, R) for v in (CFV, FV, POP, PTV, PER)} | {(CFV, L), (FV, L), (POP, L), (PTV, L)},
            negative={R},
            chronic={(PER, L): False},
            length_cm={(PER, L): 3.8},
            diameter_mm={(PER, L): 6.0},
            distance_cm={(PER, L): 4.0},
        ),
        id="bilateral study, distal DVT in one leg",
    ),
    pytest.param(
        """
        EXAM: US VENOUS DUPLEX RIGHT LOWER EXTREMITY
        INDICATION: Right calf swelling.
        FINDINGS:
        The right common femoral, femoral and popliteal veins are fully compressible with normal augmentation.
        The right soleal vein is noncompressible with thrombus.
        The posterior tibial and peroneal veins are patent.
        IMPRESSION:
        1. No deep venous thrombosis of the right lower extremity.
        """,
        Expected(
            thrombosed=set(),
            cleared={(CFV, R), (FV, R), (POP, R), (PTV, R), (PER, R)},
            study_side=R,
            negative={R},
            disagreement=True,
        ),
        id="impression clears what findings call thrombus",
    ),
    pytest.param(
        """
        EXAM: US VENOUS DUPLEX RIGHT LOWER EXTREMITY
        INDICATION: Right leg pain.
        FINDINGS:
        RIGHT: The common femoral, femoral and popliteal veins are compressible. The posterior tibial veins are
            patent. The peroneal veins are compressible.
        IMPRESSION:
        1. Acute occlusive deep venous thrombosis of the right posterior tibial veins.
        """,
        Expected(
            thrombosed={(PTV, R)},
            cleared={(CFV, R), (FV, R), (POP, R), (PER, R)},
            disagreement=True,
            chronic={(PTV, R): False},
            occlusive={(PTV, R): True},
        ),
        id="impression finds what findings call patent",
    ),
    pytest.param(
        """
        EXAM: US VENOUS DUPLEX LEFT LOWER EXTREMITY
        INDICATION: Left leg swelling. History of left popliteal DVT 2 years ago.
        COMPARISON: Left lower extremity venous duplex 03/14/2023.
        FINDINGS:
        The left common femoral and femoral veins are fully compressible with normal flow and augmentation.
        The left popliteal vein demonstrates wall thickening and partially recanalized nonocclusive thrombus with
            synechiae.
        The left posterior tibial and peroneal veins are fully compressible.
        IMPRESSION:
        1. Chronic nonocclusive thrombus in the left popliteal vein with partial recanalization.
        2. No acute deep venous thrombosis in the left lower extremity.
        """,
        Expected(
            thrombosed={(POP, L)},
            cleared={(CFV, L), (FV, L), (PTV, L), (PER, L)},
            study_side=L,
            chronic={(POP, L): True},
            occlusive={(POP, L): False},
        ),
        id="chronic thrombus only",
    ),
    pytest.param(
        """
        EXAM: US LOWER EXTREMITY VENOUS DUPLEX RIGHT
        INDICATION: Painful cord along the medial right thigh.
        FINDINGS:
        Occlusive thrombus is present in the right great saphenous vein in the mid thigh.
        The right common femoral, femoral and popliteal veins are fully compressible with normal color flow and
            augmentation.
        The right posterior tibial and peroneal veins are compressible.
        IMPRESSION:
        1. Superficial thrombophlebitis of the right great saphenous vein.
        2. No deep venous thrombosis in the right lower extremity.
        """,
        Expected(
            thrombosed=set(),
            cleared={(CFV, R), (FV, R), (POP, R), (PTV, R), (PER, R)},
            negative={R},
            superficial=True,
        ),
        id="superficial vein thrombosis only",
    ),
    pytest.param(
        """
        EXAM: US DUPLEX VENOUS RIGHT LOWER EXTREMITY
        INDICATION: Follow-up of right posterior tibial vein DVT diagnosed 01/06/2025, not anticoagulated.
        COMPARISON: Right lower extremity venous duplex 01/06/2025.
        FINDINGS:
        RIGHT: The common femoral and femoral veins are fully compressible with normal augmentation. Occlusive
            thrombus is again seen in the posterior tibial veins and now extends into the popliteal vein, which is
            noncompressible. The peroneal veins are patent.
        IMPRESSION:
        1. Interval propagation of the right posterior tibial vein thrombus into the popliteal vein.
        """,
        Expected(
            thrombosed={(PTV, R), (POP, R)},
            cleared={(CFV, R), (FV, R), (PER, R)},
            change="extension",
        ),
        id="repeat study: proximal extension",
    ),
    pytest.param(
        """
        EXAM: VAS DUPLEX VENOUS LOWER EXT LEFT
        INDICATION: Left gastrocnemius vein DVT on 01/03/2025, surveillance study.
        COMPARISON: 01/03/2025.
        FINDINGS:
        LEFT: The common femoral, femoral and popliteal veins are fully compressible. Nonocclusive thrombus in a
            medial gastrocnemius vein is unchanged, 2.5 cm in length. New occlusive thrombus in the peroneal veins,
            3 cm in length. The posterior tibial veins are patent.
        IMPRESSION:
        1. New left peroneal vein DVT since the prior study.
        2. Unchanged left gastrocnemius vein thrombus.
        """,
        Expected(
            thrombosed={(GAS, L), (PER, L)},
            cleared={(CFV, L), (FV, L), (POP, L), (PTV, L)},
            change="extension",
            chronic={(PER, L): False},
            occlusive={(GAS, L): False, (PER, L): True},
            length_cm={(GAS, L): 2.5, (PER, L): 3.0},
        ),
        id="repeat study: distal extension (new calf vein)",
    ),
    pytest.param(
        """
        EXAM: US VENOUS DOPPLER RIGHT LEG
        INDICATION: Follow-up right soleal vein DVT.
        COMPARISON: Right lower extremity venous duplex 7 days prior.
        FINDINGS:
        The right common femoral, femoral and popliteal veins are fully compressible with normal flow.
        Nonocclusive thrombus in the right soleal vein is unchanged, measuring 3.2 cm in length.
        No propagation into the popliteal vein.
        The right posterior tibial and peroneal veins are patent.
        IMPRESSION:
        1. Stable nonocclusive right soleal vein thrombus.
        """,
        Expected(
            thrombosed={(SOL, R)},
            cleared={(CFV, R), (FV, R), (POP, R), (PTV, R), (PER, R)},
            study_side=R,
            change="unchanged",
            occlusive={(SOL, R): False},
            length_cm={(SOL, R): 3.2},
        ),
        id="repeat study: unchanged",
    ),
    pytest.param(
        """
        EXAM: US DUPLEX VENOUS LEFT LOWER EXTREMITY
        INDICATION: Follow-up of left peroneal vein DVT after 3 months of anticoagulation.
        COMPARISON: 10/02/2024.
        FINDINGS:
        LEFT: The common femoral, femoral, popliteal and posterior tibial veins are fully compressible with normal
            color flow. The previously seen peroneal vein thrombus has resolved.
        IMPRESSION:
        1. Resolution of the previously seen left peroneal vein thrombus. No residual thrombus.
        """,
        Expected(
            thrombosed=set(),
            cleared={(CFV, L), (FV, L), (POP, L), (PTV, L), (PER, L)},
            change="resolved",
        ),
        id="repeat study: resolved",
    ),
    pytest.param(
        """
        EXAM: US VENOUS DUPLEX RIGHT LOWER EXTREMITY
        INDICATION: Right leg swelling after knee arthroplasty.
        TECHNIQUE: Compression and color Doppler imaging of the right lower extremity deep veins.
        FINDINGS:
        The right common femoral, femoral and popliteal veins are fully compressible with normal color flow and
            augmentation.
        The calf veins were not visualized due to a surgical dressing.
        IMPRESSION:
        1. No deep venous thrombosis in the right common femoral, femoral or popliteal veins.
        2. Limited evaluation of the calf; the calf veins were not visualized.
        """,
        Expected(
            thrombosed=set(),
            cleared={(CFV, R), (FV, R), (POP, R)},
            negative=set(),  # an incomplete study does not clear the whole leg
            limited=True,
        ),
        id="incomplete study: calf not visualized",
    ),
    pytest.param(
        """
        EXAM: US VENOUS DUPLEX LEFT LOWER EXTREMITY
        INDICATION: Left calf pain.
        FINDINGS:
        The left common femoral, femoral and popliteal veins are fully compressible with normal augmentation.
        The left posterior tibial veins are compressible.
        Possible nonocclusive thrombus in a left soleal vein.
        IMPRESSION:
        1. No proximal deep venous thrombosis in the left lower extremity.
        2. Thrombus in a left soleal vein cannot be excluded. Recommend repeat duplex in 1 week.
        """,
        Expected(
            thrombosed=set(),
            cleared={(CFV, L), (FV, L), (POP, L), (PTV, L), (PROXIMAL, L)},
            uncertain=True,
        ),
        id="uncertain calf finding",
    ),
    pytest.param(
        """
        EXAMINATION: DUPLEX ULTRASOUND, BILATERAL LOWER EXTREMITY VEINS
        CLINICAL HISTORY: 64-year-old with right calf pain and elevated D-dimer.
        COMPARISON: None.
        FINDINGS:
        RIGHT:
        Common femoral vein: compressible, normal flow and augmentation.
        Femoral vein: compressible.
        Popliteal vein: compressible.
        Posterior tibial veins: There is occlusive thrombus. The thrombus measures 5.2 cm in length and 7 mm in
            diameter.
        Its proximal end is 1.5 cm below the trifurcation.
        Peroneal veins: compressible.
        LEFT:
        Common femoral vein: compressible, normal flow and augmentation.
        The femoral and popliteal veins are compressible.
        IMPRESSION:
        1. Acute occlusive deep venous thrombosis of the right posterior tibial veins, 5.2 cm in length.
        2. No DVT in the left common femoral, femoral or popliteal veins.
        """,
        Expected(
            thrombosed={(PTV, R)},
            cleared={(CFV, R), (FV, R), (POP, R), (PER, R), (CFV, L), (FV, L), (POP, L)},
            chronic={(PTV, R): False},
            occlusive={(PTV, R): True},
            length_cm={(PTV, R): 5.2},
            diameter_mm={(PTV, R): 7.0},
            distance_cm={(PTV, R): 1.5},
        ),
        id="worksheet with RIGHT:/LEFT: lines, measurements in their own sentences",
    ),
    pytest.param(
        """
        EXAM: US DUPLEX VENOUS LEFT LOWER EXTREMITY
        HISTORY: Prior left femoral vein DVT in 2019. Now left calf pain, rule out DVT.
        COMPARISON: Left lower extremity venous duplex 05/2019 showed occlusive thrombus in the left femoral and
            popliteal veins.
        FINDINGS:
        The left common femoral, femoral, popliteal, posterior tibial and peroneal veins are fully compressible
            with normal color flow and augmentation. The left gastrocnemius and soleal veins are compressible.
        IMPRESSION:
        1. Negative for deep venous thrombosis in the left lower extremity.
        """,
        Expected(
            thrombosed=set(),
            cleared={(v, L) for v in (CFV, FV, POP, PTV, PER, GAS, SOL)},
            negative={L},
        ),
        id="thrombus only in history and comparison",
    ),
    pytest.param(
        """
        EXAM: VENOUS DUPLEX, BILATERAL LOWER EXTREMITIES
        INDICATION: Bilateral leg swelling, metastatic pancreatic cancer.
        FINDINGS:
        RIGHT: The right popliteal vein is noncompressible and distended by acute occlusive thrombus that extends
            into the femoral vein. The common femoral vein is patent.
        LEFT: Nonocclusive thrombus in a left gastrocnemius vein, 2 cm in length. The popliteal, posterior tibial and
            peroneal veins are compressible.
        IMPRESSION:
        1. Acute occlusive deep venous thrombosis of the right popliteal and femoral veins.
        2. Acute nonocclusive left gastrocnemius vein thrombosis.
        """,
        Expected(
            thrombosed={(POP, R), (FV, R), (GAS, L)},
            cleared={(CFV, R), (POP, L), (PTV, L), (PER, L)},
            chronic={(POP, R): False, (FV, R): False, (GAS, L): False},
            occlusive={(POP, R): True, (FV, R): True, (GAS, L): False},
            length_cm={(GAS, L): 2.0},
        ),
        id="bilateral DVT: proximal right, distal left",
    ),
    pytest.param(
        """
        EXAM: LOWER EXTREMITY VENOUS DUPLEX, LEFT
        INDICATION: Left thigh swelling.
        FINDINGS:
        LEFT: Occlusive thrombus fills the superficial femoral vein from the adductor canal to the popliteal vein.
        The popliteal vein is also noncompressible. The common femoral vein is compressible. The great saphenous
            vein is patent. The calf veins are patent.
        IMPRESSION:
        1. Acute occlusive deep venous thrombosis of the left superficial femoral and popliteal veins.
        """,
        Expected(
            thrombosed={(FV, L), (POP, L)},
            cleared={(CFV, L), (CALF, L)},
            superficial=False,  # the superficial femoral vein is a deep vein
            chronic={(FV, L): False, (POP, L): False},
        ),
        id="superficial femoral vein DVT is proximal DVT",
    ),
]


@pytest.mark.parametrize(("text", "expected"), REPORTS)
def test_report(text: str, expected: Expected) -> None:
    check(read_report(report_text(text)), expected)


def test_hard_wrapped_report() -> None:
    """HL7 v2-fed reports arrive wrapped at a fixed width: a sentence can run over two lines."""
    text = (
        "FINDINGS:\n"
        "The right common femoral, femoral and popliteal veins are fully\n"
        "compressible with normal augmentation. There is occlusive thrombus in\n"
        "the right peroneal veins, 4.0 cm in length. The posterior tibial veins\n"
        "are patent.\n"
        "IMPRESSION:\n"
        "1. Acute occlusive deep venous thrombosis of the right peroneal\n"
        "veins.\n"
    )
    check(
        read_report(text),
        Expected(
            thrombosed={(PER, R)},
            cleared={(CFV, R), (FV, R), (POP, R), (PTV, R)},
            study_side=R,
            chronic={(PER, R): False},
            occlusive={(PER, R): True},
            length_cm={(PER, R): 4.0},
        ),
    )


def test_disagreement_is_reported_in_words() -> None:
    text = report_text(REPORTS[2].values[0])
    reading = read_report(text)
    assert reading.disagreements
    assert all("impression" in d for d in reading.disagreements)


# ----------------------------------------------------------------------------------------------------------------
# Delivery forms: HTML, RTF, conclusion, Binary by URL, PDF only, failed fetch
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class Fetched:
    content_type: str
    data: bytes | None
    reason: str | None = None


def _b64(raw: str | bytes) -> str:
    return base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode()


HTML_REPORT = """<html><head><title>US Venous Duplex</title><style>p {margin: 0}</style></head><body>
<p><b>EXAM:</b> US VENOUS DUPLEX RIGHT LOWER EXTREMITY</p>
<p><b>INDICATION:</b> Right calf pain. Rule out DVT.</p>
<p><b>FINDINGS:</b></p>
<p>The right common femoral, femoral and popliteal veins are fully compressible.</p>
<p>The right posterior tibial veins are noncompressible with occlusive thrombus, 4.5&nbsp;cm in length.</p>
<p>The right peroneal veins are patent.</p>
<p><b>IMPRESSION:</b></p>
<ol><li>Acute occlusive DVT of the right posterior tibial veins.</li></ol>
</body></html>"""

RTF_REPORT = (
    r"{\rtf1\ansi\deff0{\fonttbl{\f0 Arial;}}\f0\fs20 {\b EXAM:} US VENOUS DUPLEX LEFT LOWER EXTREMITY\par "
    r"{\b FINDINGS:}\par LEFT: The common femoral, femoral and popliteal veins are compressible.\par "
    r"Acute nonocclusive thrombus in the left peroneal vein, 3 cm in length.\par "
    r"{\b IMPRESSION:}\par 1. Acute left peroneal vein DVT.\par }"
)

URL_REPORT = """FINDINGS:
LEFT: The common femoral, femoral and popliteal veins are fully compressible.
The soleal vein is noncompressible with thrombus over a 30 mm segment.
IMPRESSION:
1. Acute left soleal vein thrombosis."""


def test_html_report() -> None:
    narrative = report_narrative({"presentedForm": [{"contentType": "text/html", "data": _b64(HTML_REPORT)}]}, {})
    assert narrative.parts == ["presentedForm (text/html)"]
    assert narrative.problems == []
    assert "US Venous Duplex" not in narrative.text  # the <title> is not report text
    check(
        read_report(narrative.text),
        Expected(
            thrombosed={(PTV, R)},
            cleared={(CFV, R), (FV, R), (POP, R), (PER, R)},
            chronic={(PTV, R): False},
            occlusive={(PTV, R): True},
            length_cm={(PTV, R): 4.5},
        ),
    )


def test_rtf_report() -> None:
    narrative = report_narrative({"presentedForm": [{"contentType": "text/rtf", "data": _b64(RTF_REPORT)}]}, {})
    assert narrative.parts == ["presentedForm (text/rtf)"]
    assert "rtf1" not in narrative.text
    assert "Arial" not in narrative.text
    check(
        read_report(narrative.text),
        Expected(
            thrombosed={(PER, L)},
            cleared={(CFV, L), (FV, L), (POP, L)},
            chronic={(PER, L): False},
            occlusive={(PER, L): False},
            length_cm={(PER, L): 3.0},
        ),
    )


def test_conclusion_only() -> None:
    report = {
        "conclusion": "Acute occlusive deep venous thrombosis of the right posterior tibial and peroneal veins. "
        "No proximal deep venous thrombosis on the right."
    }
    narrative = report_narrative(report, {})
    assert narrative.parts == ["conclusion"]
    reading = read_report(narrative.text)
    assert {s.section for s in reading.statements} == {"impression"}  # the conclusion is the impression
    check(
        reading,
        Expected(
            thrombosed={(PTV, R), (PER, R)},
            cleared={(PROXIMAL, R)},
            chronic={(PTV, R): False, (PER, R): False},
            occlusive={(PTV, R): True, (PER, R): True},
        ),
    )


def test_presented_form_url_read_through_attachments() -> None:
    report = {"presentedForm": [{"contentType": "text/plain", "url": "Binary/duplex-77", "title": "Report"}]}
    attachments = {"Binary/duplex-77": Fetched("text/plain; charset=utf-8", URL_REPORT.encode())}
    narrative = report_narrative(report, attachments)
    assert narrative.parts == ["presentedForm (text/plain)"]
    assert narrative.problems == []
    check(
        read_report(narrative.text),
        Expected(
            thrombosed={(SOL, L)},
            cleared={(CFV, L), (FV, L), (POP, L)},
            chronic={(SOL, L): False},
            length_cm={(SOL, L): 3.0},
        ),
    )


def test_pdf_only_is_said_not_read() -> None:
    report = {"presentedForm": [{"contentType": "application/pdf", "data": _b64(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")}]}
    narrative = report_narrative(report, {})
    assert not narrative.readable
    assert narrative.parts == []
    assert len(narrative.problems) == 1
    assert "application/pdf" in narrative.problems[0]
    assert "not read" in narrative.problems[0]


def test_pdf_beside_html_adds_nothing() -> None:
    report = {
        "presentedForm": [
            {"contentType": "application/pdf", "data": _b64(b"%PDF-1.4")},
            {"contentType": "text/html", "data": _b64(HTML_REPORT)},
        ]
    }
    narrative = report_narrative(report, {})
    assert narrative.parts == ["presentedForm (text/html)"]
    assert {(s.vein, s.side) for s in read_report(narrative.text).thrombosed} == {(PTV, R)}


def test_binary_fetch_failure_is_said() -> None:
    report = {"presentedForm": [{"contentType": "text/html", "url": "Binary/9"}]}
    narrative = report_narrative(report, {"Binary/9": Fetched("text/html", None, "HTTP 403 Forbidden")})
    assert not narrative.readable
    assert len(narrative.problems) == 1
    assert "could not be fetched" in narrative.problems[0]
    assert "HTTP 403 Forbidden" in narrative.problems[0]


def test_binary_not_fetched_is_said() -> None:
    narrative = report_narrative({"presentedForm": [{"contentType": "text/plain", "url": "Binary/10"}]}, {})
    assert not narrative.readable
    assert narrative.problems == ["its report text was not fetched"]
