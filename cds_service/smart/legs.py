"""The leg diagram: which drawn vein each of the core's vein names is, and where each is drawn.

A schematic anterior view: the patient's right leg on the viewer's left, as in every anatomical drawing, each leg
labelled. The core names veins by their body-structure display ("gastrocnemius vein", "popliteal vein") or, for a
code that names a group, by the group ("calf muscular vein", "tibial vein"); a group is drawn as a dashed outline
around the veins it may be, not as one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from cds_service.clinical.model import VeinClass

LEG_WIDTH = 150  # one leg's drawing, in viewBox units; the left leg is the right one mirrored
VIEW_WIDTH = 2 * LEG_WIDTH + 20
VIEW_HEIGHT = 450
OUTLINE = (
    "M22 34 C26 18 120 14 128 30 L112 196 C110 212 108 222 112 238 C120 280 108 318 94 362 "
    "C94 378 104 392 104 400 C104 410 58 410 58 400 C58 392 66 378 64 362 "
    "C50 322 42 282 50 240 C52 224 48 212 46 196 Z"
)


@dataclass(frozen=True)
class Segment:
    id: str
    name: str  # as a clinician says it
    vein_class: VeinClass
    path: str


# Medial (toward the other leg) is to the right of the right leg's drawing.
SEGMENTS: tuple[Segment, ...] = (
    Segment("iliac", "iliac vein", VeinClass.PROXIMAL, "M108 4 L104 34"),
    Segment("common-femoral", "common femoral vein", VeinClass.PROXIMAL, "M104 34 L100 72"),
    Segment("deep-femoral", "deep femoral vein", VeinClass.PROXIMAL, "M100 72 C84 92 76 122 72 152"),
    Segment("femoral", "femoral vein", VeinClass.PROXIMAL, "M100 72 C98 112 94 160 88 196"),
    Segment("popliteal", "popliteal vein", VeinClass.PROXIMAL, "M88 196 L85 236"),
    Segment("anterior-tibial", "anterior tibial vein", VeinClass.DISTAL_AXIAL, "M85 236 C70 256 64 306 68 356"),
    Segment("peroneal", "peroneal vein", VeinClass.DISTAL_AXIAL, "M85 236 C82 276 78 316 77 352"),
    Segment("posterior-tibial", "posterior tibial vein", VeinClass.DISTAL_AXIAL, "M85 236 C100 266 100 316 88 358"),
    Segment(
        "gastrocnemius",
        "gastrocnemius vein",
        VeinClass.DISTAL_MUSCULAR,
        "M72 244 C58 262 60 290 70 300 M100 244 C112 262 110 290 100 300",
    ),
    Segment(
        "soleal",
        "soleal vein",
        VeinClass.DISTAL_MUSCULAR,
        "M74 306 C64 318 66 336 74 342 M96 306 C104 318 102 336 95 342",
    ),
)
SEGMENT_IDS = {segment.id for segment in SEGMENTS}


@dataclass(frozen=True)
class Region:
    id: str
    name: str
    cx: float
    cy: float
    rx: float
    ry: float


# Where a vein group may be: drawn around the veins it includes.
REGIONS: dict[str, Region] = {
    "proximal-veins": Region("proximal-veins", "proximal deep veins (vein not named)", 88, 130, 34, 112),
    "calf-axial-veins": Region("calf-axial-veins", "axial calf veins (vein not named)", 84, 296, 28, 66),
    "calf-muscular-veins": Region("calf-muscular-veins", "muscular calf veins (vein not named)", 86, 294, 34, 58),
    "calf-veins": Region("calf-veins", "calf deep veins (vein not named)", 85, 296, 38, 70),
}
_GROUP_OF_CLASS = {
    VeinClass.PROXIMAL: "proximal-veins",
    VeinClass.DISTAL_AXIAL: "calf-axial-veins",
    VeinClass.DISTAL_MUSCULAR: "calf-muscular-veins",
    VeinClass.DISTAL_UNSPECIFIED: "calf-veins",
}
# Longest words first: "common femoral" before "femoral", "posterior tibial" before a bare "tibial".
_WORDS: tuple[tuple[str, str], ...] = (
    ("common iliac", "iliac"),
    ("external iliac", "iliac"),
    ("internal iliac", "iliac"),
    ("iliac", "iliac"),
    ("common femoral", "common-femoral"),
    ("profunda", "deep-femoral"),
    ("deep femoral", "deep-femoral"),
    ("femoral", "femoral"),
    ("popliteal", "popliteal"),
    ("posterior tibial", "posterior-tibial"),
    ("anterior tibial", "anterior-tibial"),
    ("peroneal", "peroneal"),
    ("fibular", "peroneal"),
    ("gastrocnemius", "gastrocnemius"),
    ("soleal", "soleal"),
    ("soleus", "soleal"),
)


def drawn_as(name: str, vein_class: VeinClass, specific: bool) -> str | None:
    """The segment or region id a vein is drawn as; None when its place is unknown (veins not documented)."""
    if specific:
        lowered = name.lower()
        for words, segment in _WORDS:
            if words in lowered:
                return segment
    return _GROUP_OF_CLASS.get(vein_class)


@dataclass
class Mark:
    """One thrombosed vein (or vein group) of one leg, as the page shows it."""

    drawn: str  # segment or region id
    side: str  # right | left
    name: str
    vein_class: VeinClass
    first_seen: date | None
    state: str  # thrombus (known at diagnosis) | extension (first seen on a later study)
    grew: bool = False  # the thrombus got longer on a later study
    sources: list = field(default_factory=list)  # SourceWords

    @property
    def is_region(self) -> bool:
        return self.drawn in REGIONS

    @property
    def class_words(self) -> str:
        return {
            VeinClass.PROXIMAL: "proximal",
            VeinClass.DISTAL_AXIAL: "distal, axial",
            VeinClass.DISTAL_MUSCULAR: "distal, muscular",
            VeinClass.DISTAL_UNSPECIFIED: "distal",
        }.get(self.vein_class, "location unknown")
