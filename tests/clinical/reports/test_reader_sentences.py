"""One sentence at a time: what a venous duplex report sentence says, read as docs/clinical/RULES.md
"Reading venous duplex report text" (R-TEXT-3 to R-TEXT-9) defines it.

Each case is a sentence (optionally under a section header) and what it means clinically: the deep veins it says
have thrombus or are free of thrombus, on which leg, and the chronicity, occlusion, measurements, superficial-vein
thrombosis, uncertainty, incomplete study, change since the last study and "no DVT" said of a whole leg. Anything
a case does not list is expected absent (no superficial finding, no uncertainty, study not limited, no change).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from cds_service.clinical.model import Side, VeinClass
from cds_service.clinical.reports.reader import QUOTE_MAX, read_report
from tests.clinical.reports.vocabulary import (
    ATV,
    CALF,
    CFV,
    CIV,
    EIV,
    FV,
    GAS,
    MUSCULAR,
    PER,
    PFV,
    POP,
    PROXIMAL,
    PTV,
    SOL,
    TIBIAL,
    B,
    L,
    R,
    U,
    flat,
    triples,
)
from tests.clinical.reports.vocabulary import cleared as F
from tests.clinical.reports.vocabulary import thrombosed as T

UNSET: Any = object()  # chronic / occlusive not asserted by the case


@dataclass(frozen=True)
class Case:
    text: str
    veins: frozenset[tuple[str | None, Side, bool]]
    header: str = ""  # with its separator: "INDICATION: ", "FINDINGS:\n"
    chronic: Any = UNSET
    occlusive: Any = UNSET
    length_cm: float | None = None
    diameter_mm: float | None = None
    distance_cm: float | None = None
    superficial: bool = False
    uncertain: bool = False
    limited: bool = False
    change: str | None = None
    negative: frozenset[Side] = field(default_factory=frozenset)
    not_read: bool = False
    section: str | None = None


def case(case_id: str, text: str, veins: Any = (), **expected: Any) -> Any:
    if "negative" in expected:
        expected["negative"] = frozenset(expected["negative"])
    return pytest.param(Case(text, frozenset(veins), **expected), id=case_id)


FINDING_CUES = [
    case("thrombus", "Thrombus is seen in the right posterior tibial vein.", {T(PTV, R)}, chronic=None),
    case("thrombosis", "There is thrombosis of the left peroneal vein.", {T(PER, L)}),
    case("clot", "Clot in the right gastrocnemius vein.", {T(GAS, R)}),
    case("thrombus within the vein", "Thrombus is present within the right gastrocnemius vein.", {T(GAS, R)}),
    case("DVT", "Left soleal vein DVT.", {T(SOL, L)}),
    case("non-compressible", "The right popliteal vein is non-compressible.", {T(POP, R)}),
    case("noncompressible", "The left posterior tibial veins are noncompressible.", {T(PTV, L)}),
    case("occlusive thrombus", "Occlusive thrombus in the right peroneal vein.", {T(PER, R)}, occlusive=True),
    case("occlusive alone (worksheet)", "Right peroneal vein: occlusive.", {T(PER, R)}, occlusive=True),
    case(
        "nonocclusive thrombus", "Nonocclusive thrombus in the left common femoral vein.", {T(CFV, L)}, occlusive=False
    ),
    case("nonocclusive alone (worksheet)", "Left popliteal vein: nonocclusive.", {T(POP, L)}, occlusive=False),
    case("non-occlusive hyphen", "Non-occlusive clot in the right soleal vein.", {T(SOL, R)}, occlusive=False),
    case("filling defect", "Filling defect in the right anterior tibial vein.", {T(ATV, R)}),
    case("absent flow", "Absent flow in the left peroneal veins.", {T(PER, L)}),
    case("two veins, one cue", "Thrombus in the left posterior tibial and peroneal veins.", {T(PTV, L), T(PER, L)}),
]

NEGATION_CUES = [
    case("no", "No thrombus in the right popliteal vein.", {F(POP, R)}),
    case("without", "The left femoral vein demonstrates normal flow without thrombus.", {F(FV, L)}),
    case("negative for", "The right posterior tibial veins are negative for thrombus.", {F(PTV, R)}),
    case("no evidence of", "No evidence of thrombus in the left peroneal veins.", {F(PER, L)}),
    case("free of", "The right common femoral vein is free of thrombus.", {F(CFV, R)}),
    case("patent", "The left popliteal vein is patent.", {F(POP, L)}),
    case(
        "fully compressible",
        "The right posterior tibial and peroneal veins are fully compressible.",
        {F(PTV, R), F(PER, R)},
    ),
    case(
        "normal compressibility and augmentation",
        "Normal compressibility and augmentation of the left common femoral vein.",
        {F(CFV, L)},
    ),
    case("normal compressibility after", "The right femoral vein shows normal compressibility.", {F(FV, R)}),
    case(
        "resolved",
        "The previously seen left soleal vein thrombus has resolved.",
        {F(SOL, L)},
        change="resolved",
    ),
    case("no residual", "No residual thrombus in the right peroneal veins.", {F(PER, R)}, change="resolved"),
    case("list: femoral or popliteal", "No DVT in the femoral or popliteal veins.", {F(FV, U), F(POP, U)}),
    case(
        "list: five veins",
        "No thrombus in the left common femoral, femoral, popliteal, posterior tibial or peroneal veins.",
        {F(CFV, L), F(FV, L), F(POP, L), F(PTV, L), F(PER, L)},
    ),
    case(
        "list: free of",
        "The right femoral and popliteal veins are free of thrombus.",
        {F(FV, R), F(POP, R)},
    ),
    case(
        "negation after a semicolon clears only its vein",
        "Thrombus in the left peroneal vein; the popliteal vein is patent.",
        {T(PER, L), F(POP, L)},
    ),
    case(
        "but no thrombus clears only the later vein",
        "Thrombus in the right posterior tibial vein, but no thrombus in the popliteal vein.",
        {T(PTV, R), F(POP, R)},
    ),
    case(
        "normal compressibility, flow and augmentation of a list",
        "Normal compressibility, color flow and augmentation in the right common femoral, femoral and popliteal veins.",
        {F(CFV, R), F(FV, R), F(POP, R)},
    ),
]

WHOLE_LEG_NEGATIVE = [
    case("no DVT right leg", "No DVT in the right lower extremity.", negative={R}),
    case(
        "no evidence of DVT bilateral",
        "No evidence of deep venous thrombosis in the bilateral lower extremities.",
        negative={B},
    ),
    case("no DVT, no side", "No deep venous thrombosis.", negative={U}),
    case("no proximal DVT clears only the proximal veins", "No proximal DVT on the left.", {F(PROXIMAL, L)}),
    case("left negative for DVT", "Left lower extremity negative for DVT.", negative={L}),
    case(
        "DVT one leg, other leg negative",
        "Right peroneal vein thrombosis; no DVT in the left lower extremity.",
        {T(PER, R)},
        negative={L},
    ),
]

CHRONICITY = [
    case("chronic", "Chronic thrombus in the right popliteal vein.", {T(POP, R)}, chronic=True),
    case("old", "Old thrombus in the left femoral vein.", {T(FV, L)}, chronic=True),
    case("residual", "Residual thrombus in the right posterior tibial vein.", {T(PTV, R)}, chronic=True),
    case(
        "post-thrombotic",
        "The left popliteal vein is partially compressible with post-thrombotic changes.",
        {T(POP, L)},
        chronic=True,
    ),
    case("recanalized", "Recanalized thrombus in the right peroneal vein.", {T(PER, R)}, chronic=True),
    case("partially recanalized", "Partially recanalized thrombus in the left femoral vein.", {T(FV, L)}, chronic=True),
    case("synechiae", "Partially compressible right popliteal vein with synechiae.", {T(POP, R)}, chronic=True),
    case(
        "wall thickening",
        "Wall thickening and nonocclusive thrombus in the left common femoral vein.",
        {T(CFV, L)},
        chronic=True,
        occlusive=False,
    ),
    case(
        "echogenic with collaterals",
        "The right femoral vein thrombus is echogenic with collaterals.",
        {T(FV, R)},
        chronic=True,
    ),
    case("acute", "Acute thrombus in the left peroneal vein.", {T(PER, L)}, chronic=False),
    case(
        "new (acute, and an extension)",
        "New thrombus in the right soleal vein.",
        {T(SOL, R)},
        chronic=False,
        change="extension",
    ),
    case(
        "expanded vein",
        "The right posterior tibial vein is expanded and filled with thrombus.",
        {T(PTV, R)},
        chronic=False,
    ),
    case("distended vein", "Distended, noncompressible left popliteal vein.", {T(POP, L)}, chronic=False),
    case("hypoechoic", "Hypoechoic thrombus in the right gastrocnemius vein.", {T(GAS, R)}, chronic=False),
    case(
        "neither acute nor chronic stated",
        "Nonocclusive thrombus in the left soleal vein.",
        {T(SOL, L)},
        chronic=None,
        occlusive=False,
    ),
]

VEINS = [
    case("CFV", "Thrombus in the right CFV.", {T(CFV, R)}),
    case("SFV is the (deep) femoral vein", "Thrombus in the left SFV.", {T(FV, L)}),
    case(
        "superficial femoral vein is deep, not superficial",
        "The right superficial femoral vein is noncompressible.",
        {T(FV, R)},
    ),
    case("deep femoral", "Thrombus in the left deep femoral vein.", {T(PFV, L)}),
    case("profunda femoris", "Thrombus in the right profunda femoris vein.", {T(PFV, R)}),
    case("POP", "Thrombus in the left POP vein.", {T(POP, L)}),
    case("PTV", "Thrombus in the right PTV.", {T(PTV, R)}),
    case("ATV", "Thrombus in the left ATV.", {T(ATV, L)}),
    case("fibular = peroneal", "Thrombus in the right fibular vein.", {T(PER, R)}),
    case("gastroc", "Thrombus in the left gastroc vein.", {T(GAS, L)}),
    case("soleus", "Thrombus in the right soleus vein.", {T(SOL, R)}),
    case("calf veins", "Thrombus in the left calf veins.", {T(CALF, L)}),
    case("infrapopliteal", "Infrapopliteal DVT on the right.", {T(CALF, R)}),
    case("muscular veins", "Thrombus in the left muscular veins of the calf.", {T(MUSCULAR, L)}),
    case("tibial veins (group)", "Thrombus in the right tibial veins.", {T(TIBIAL, R)}),
    case("common iliac", "Occlusive thrombus in the right common iliac vein.", {T(CIV, R)}, occlusive=True),
    case("external iliac", "Thrombus in the left external iliac vein.", {T(EIV, L)}),
    case("no vein named", "Acute DVT of the left lower extremity.", {T(None, L)}, chronic=False),
]

SUPERFICIAL = [
    case("great saphenous", "Thrombus in the right great saphenous vein.", superficial=True),
    case("small saphenous", "Occlusive thrombus in the left small saphenous vein.", superficial=True),
    case("GSV", "Thrombus in the left GSV.", superficial=True),
    case("superficial veins", "Nonocclusive thrombus in the superficial veins of the left thigh.", superficial=True),
    case("perforator", "Thrombus in a right perforator vein.", superficial=True),
    case("thrombophlebitis", "Superficial thrombophlebitis of the right lower leg.", superficial=True),
    case(
        "superficial and deep in one sentence",
        "Thrombus in the right great saphenous vein and in the right posterior tibial vein.",
        {T(PTV, R)},
        superficial=True,
    ),
]

SIDES = [
    case("RLE", "Occlusive DVT of the RLE peroneal veins.", {T(PER, R)}, occlusive=True),
    case("LLE", "LLE soleal vein thrombosis.", {T(SOL, L)}),
    case("bilateral", "Bilateral peroneal vein thrombosis.", {T(PER, B)}),
    case(
        "two legs in one sentence",
        "Thrombus in the right posterior tibial vein and in the left peroneal vein.",
        {T(PTV, R), T(PER, L)},
    ),
    case(
        "LEFT: sub-header", "LEFT: The posterior tibial veins are noncompressible.", {T(PTV, L)}, header="FINDINGS:\n"
    ),
    case("RIGHT: sub-header line", "RIGHT:\nNo thrombus in the popliteal vein.", {F(POP, R)}, header="FINDINGS:\n"),
    case("no side stated", "Thrombus in the peroneal vein.", {T(PER, U)}),
]

MEASUREMENTS = [
    case("cm in length", "Thrombus in the right peroneal vein, 4.1 cm in length.", {T(PER, R)}, length_cm=4.1),
    case("extending 6 cm", "Thrombus in the left posterior tibial vein extending 6 cm.", {T(PTV, L)}, length_cm=6.0),
    case(
        "over a 45 mm segment",
        "Nonocclusive thrombus in the right soleal vein over a 45 mm segment.",
        {T(SOL, R)},
        length_cm=4.5,
        occlusive=False,
    ),
    case("cm long", "The thrombus in the left soleal vein measures 5.5 cm long.", {T(SOL, L)}, length_cm=5.5),
    case(
        "mm diameter",
        "The left peroneal vein is distended by thrombus, 9 mm diameter.",
        {T(PER, L)},
        diameter_mm=9.0,
        chronic=False,
    ),
    case(
        "cm in diameter", "Thrombus in the right gastrocnemius vein, 0.6 cm in diameter.", {T(GAS, R)}, diameter_mm=6.0
    ),
    case(
        "length and diameter",
        "Thrombus in the left peroneal vein, 35 mm in length and 5 mm in diameter.",
        {T(PER, L)},
        length_cm=3.5,
        diameter_mm=5.0,
    ),
    case(
        "cm below the trifurcation",
        "Thrombus in the left posterior tibial vein ends 2 cm below the trifurcation.",
        {T(PTV, L)},
        distance_cm=2.0,
    ),
    case(
        "mm below the tibioperoneal trunk",
        "Thrombus in the right posterior tibial vein, 15 mm below the tibioperoneal trunk.",
        {T(PTV, R)},
        distance_cm=1.5,
    ),
    case(
        "within cm of the popliteal vein (a landmark, not thrombosed)",
        "Right gastrocnemius vein thrombus within 3 cm of the popliteal vein.",
        {T(GAS, R)},
        distance_cm=3.0,
    ),
    case(
        "cm below the popliteal vein (a landmark)",
        "Thrombus in the left peroneal vein begins 4 cm below the popliteal vein.",
        {T(PER, L)},
        distance_cm=4.0,
    ),
    case(
        "no dimension stated: not read",
        "Thrombus in the right peroneal vein measuring 1.2 cm.",
        {T(PER, R)},
        not_read=True,
    ),
]

NOT_THIS_STUDY = [
    case("indication: rule out DVT", "Rule out DVT. Left calf pain and swelling.", header="INDICATION: "),
    case("history: earlier DVT", "Right peroneal vein DVT diagnosed 3 weeks ago.", header="HISTORY: "),
    case("reason for exam", "Evaluate for left popliteal vein thrombosis.", header="REASON FOR EXAM: "),
    case(
        "comparison: earlier thrombus",
        "Left lower extremity venous duplex of 01/02/2025 showed thrombus in the posterior tibial vein.",
        header="COMPARISON: ",
    ),
    case("rule out, no header", "Rule out DVT."),
    case("history of, no header", "History of right femoral vein DVT."),
]

INCOMPLETE = [
    case("calf veins not visualized", "The calf veins were not visualized.", limited=True),
    case("calf veins not well visualized", "The right calf veins are not well visualized due to edema.", limited=True),
    case("limited evaluation of the calf", "Limited evaluation of the calf due to body habitus.", limited=True),
    case("proximal veins only", "Compression ultrasound of the left proximal veins only.", limited=True),
    case("peroneal veins not visualized", "The left peroneal veins were not visualized.", limited=True),
    case(
        "proximal negative, calf not seen",
        "No DVT in the right femoral or popliteal veins; the calf veins were not well visualized.",
        {F(FV, R), F(POP, R)},
        limited=True,
    ),
]

REPEAT_STUDY = [
    case("now extends into", "Thrombus now extends into the right popliteal vein.", {T(POP, R)}, change="extension"),
    case(
        "interval propagation",
        "Interval propagation of thrombus into the left popliteal vein.",
        {T(POP, L)},
        change="extension",
    ),
    case(
        "new thrombus in",
        "New thrombus in the left posterior tibial vein compared with the prior study.",
        {T(PTV, L)},
        chronic=False,
        change="extension",
    ),
    case(
        "unchanged",
        "Unchanged nonocclusive thrombus in the left posterior tibial vein.",
        {T(PTV, L)},
        occlusive=False,
        change="unchanged",
    ),
    case("stable", "Stable thrombus in the right peroneal vein.", {T(PER, R)}, change="unchanged"),
    case(
        "unchanged in extent",
        "The right gastrocnemius vein thrombus is unchanged in extent.",
        {T(GAS, R)},
        change="unchanged",
    ),
    case(
        "resolution",
        "Interval resolution of the right posterior tibial vein thrombus.",
        {F(PTV, R)},
        change="resolved",
    ),
]

UNCERTAINTY = [
    case("possible", "Possible thrombus in the right peroneal vein.", uncertain=True),
    case("cannot be excluded", "Nonocclusive thrombus in the left soleal vein cannot be excluded.", uncertain=True),
    case(
        "possible, with a patent vein",
        "Possible nonocclusive thrombus in the right gastrocnemius vein; the popliteal vein is patent.",
        {F(POP, R)},
        uncertain=True,
    ),
]

SECTIONS = [
    case(
        "impression",
        "Acute occlusive DVT of the right posterior tibial vein.",
        {T(PTV, R)},
        header="IMPRESSION: ",
        chronic=False,
        occlusive=True,
        section="impression",
    ),
    case(
        "numbered impression item",
        "1. Acute nonocclusive thrombus in the left peroneal vein.",
        {T(PER, L)},
        header="IMPRESSION:\n",
        chronic=False,
        occlusive=False,
        section="impression",
    ),
    case(
        "findings header on the same line",
        "The left popliteal vein is noncompressible with thrombus.",
        {T(POP, L)},
        header="FINDINGS: ",
        section="findings",
    ),
    case("no header: unlabelled counts", "Thrombus in the right soleal vein.", {T(SOL, R)}, section="unlabelled"),
]

CASES = [
    *FINDING_CUES,
    *NEGATION_CUES,
    *WHOLE_LEG_NEGATIVE,
    *CHRONICITY,
    *VEINS,
    *SUPERFICIAL,
    *SIDES,
    *MEASUREMENTS,
    *NOT_THIS_STUDY,
    *INCOMPLETE,
    *REPEAT_STUDY,
    *UNCERTAINTY,
    *SECTIONS,
]


def _per_statement(expected: float | None, count: bool) -> list[Any]:
    if not count:
        return []
    return [None if expected is None else pytest.approx(expected)]


@pytest.mark.parametrize("c", CASES)
def test_sentence(c: Case) -> None:
    text = c.header + c.text  # the header carries its own separator: "INDICATION: " or "FINDINGS:\n"
    reading = read_report(text)
    positive = reading.thrombosed
    any_positive = any(thrombus for _, _, thrombus in c.veins)
    got: dict[str, Any] = {
        "veins": triples(reading),
        "superficial": bool(reading.superficial),
        "uncertain": bool(reading.uncertain),
        "limited": reading.limited is not None,
        "change": reading.change,
        "negative": {side for side, _ in reading.negative_sides},
        "not_read": bool(reading.not_read),
        "disagreements": reading.disagreements,
        "length_cm": list(dict.fromkeys(s.length_cm for s in positive)),
        "diameter_mm": list(dict.fromkeys(s.diameter_mm for s in positive)),
        "distance_cm": list(dict.fromkeys(s.distance_cm for s in positive)),
    }
    want: dict[str, Any] = {
        "veins": set(c.veins),
        "superficial": c.superficial,
        "uncertain": c.uncertain,
        "limited": c.limited,
        "change": c.change,
        "negative": set(c.negative),
        "not_read": c.not_read,
        "disagreements": [],
        "length_cm": _per_statement(c.length_cm, any_positive),
        "diameter_mm": _per_statement(c.diameter_mm, any_positive),
        "distance_cm": _per_statement(c.distance_cm, any_positive),
    }
    if c.chronic is not UNSET:
        got["chronic"] = {s.chronic for s in positive}
        want["chronic"] = {c.chronic}
    if c.occlusive is not UNSET:
        got["occlusive"] = {s.occlusive for s in positive}
        want["occlusive"] = {c.occlusive}
    if c.section is not None:
        got["section"] = {s.section for s in reading.statements}
        want["section"] = {c.section}
    assert got == want
    for statement in reading.statements:  # every fact carries the sentence it came from
        assert len(statement.quote) <= QUOTE_MAX
        assert statement.quote.rstrip("…") in flat(text)


@pytest.mark.parametrize(
    ("sentence", "vein_class"),
    [
        pytest.param("Thrombus in the left superficial femoral vein.", VeinClass.PROXIMAL, id="SFV proximal"),
        pytest.param("Thrombus in the left SFV.", VeinClass.PROXIMAL, id="SFV abbreviation proximal"),
        pytest.param("Thrombus in the right deep femoral vein.", VeinClass.PROXIMAL, id="deep femoral proximal"),
        pytest.param("Thrombus in the right popliteal vein.", VeinClass.PROXIMAL, id="popliteal proximal"),
        pytest.param("Thrombus in the right external iliac vein.", VeinClass.PROXIMAL, id="iliac proximal"),
        pytest.param("Thrombus in the left peroneal vein.", VeinClass.DISTAL_AXIAL, id="peroneal axial"),
        pytest.param("Thrombus in the left PTV.", VeinClass.DISTAL_AXIAL, id="PTV axial"),
        pytest.param("Thrombus in the left anterior tibial vein.", VeinClass.DISTAL_AXIAL, id="ATV axial"),
        pytest.param("Thrombus in the right gastrocnemius vein.", VeinClass.DISTAL_MUSCULAR, id="gastroc muscular"),
        pytest.param("Thrombus in the right soleal vein.", VeinClass.DISTAL_MUSCULAR, id="soleal muscular"),
        pytest.param("Thrombus in the left infrapopliteal veins.", VeinClass.DISTAL_UNSPECIFIED, id="infrapopliteal"),
    ],
)
def test_vein_class(sentence: str, vein_class: VeinClass) -> None:
    assert [s.vein_class for s in read_report(sentence).thrombosed] == [vein_class]


def test_long_sentence_quote_is_cut_at_a_word_boundary() -> None:
    sentence = (
        "There is acute occlusive thrombus in the right posterior tibial veins beginning at the ankle and continuing "
        "proximally for most of their length, with expansion of the vein lumen and no flow on color Doppler imaging."
    )
    assert len(flat(sentence)) > QUOTE_MAX
    statements = read_report(sentence).thrombosed
    assert PTV in {s.vein for s in statements}
    for statement in statements:
        assert len(statement.quote) <= QUOTE_MAX
        assert statement.quote.endswith("…")
        assert flat(sentence).startswith(statement.quote.rstrip("…"))
