"""The words of a venous duplex report, from docs/clinical/RULES.md R-TEXT-*: veins, findings and the cues around them.

One table per kind of word, so a site that writes "PTV" or "gastroc" is one line here. The medspaCy pipeline
(``nlp.py``) is built from these tables: veins and findings become target rules, the cues ConText rules and
the headers section rules. Sources: Needleman L et al., Circulation 2018;137:1505 (report vocabulary, the
complete duplex including the calf veins); Harkema H et al., J Biomed Inform 2009;42:839 (ConText).
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.clinical.model import VeinClass

# ----------------------------------------------------------------------------------------------------------------
# Veins. The key is the SNOMED body-structure display the coded path uses (bodysite-*-vein value sets), so a vein
# read from text and the same vein from a code are one vein. Groups ("calf veins") are not individual veins.
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VeinTerm:
    key: str  # "posterior tibial vein"
    vein_class: VeinClass
    stems: tuple[str, ...]  # how reports name it, without "vein(s)": "posterior tibial", "ptv"
    specific: bool = True  # False for a group ("calf veins")
    with_vein_word: bool = True  # the stems also appear followed by "vein"/"veins"


DEEP_VEINS: tuple[VeinTerm, ...] = (
    VeinTerm("common femoral vein", VeinClass.PROXIMAL, ("common femoral", "cfv", "cfvs")),
    # The superficial femoral vein is a deep, proximal vein despite its name (Bundens WP et al., JAMA 1995).
    VeinTerm("femoral vein", VeinClass.PROXIMAL, ("femoral", "superficial femoral", "sfv", "fv", "mid femoral")),
    VeinTerm(
        "profunda femoris vein",
        VeinClass.PROXIMAL,
        ("deep femoral", "profunda femoris", "profunda femoral", "profunda", "pfv", "dfv"),
    ),
    VeinTerm("popliteal vein", VeinClass.PROXIMAL, ("popliteal", "pop", "popv")),
    VeinTerm("common iliac vein", VeinClass.PROXIMAL, ("common iliac",)),
    VeinTerm("external iliac vein", VeinClass.PROXIMAL, ("external iliac", "eiv")),
    VeinTerm("internal iliac vein", VeinClass.PROXIMAL, ("internal iliac",)),
    VeinTerm("iliac vein", VeinClass.PROXIMAL, ("iliac",), specific=False),
    # "No proximal DVT" clears the proximal veins, not the calf: a group, so it never hides a calf finding.
    VeinTerm(
        "proximal veins",
        VeinClass.PROXIMAL,
        ("proximal", "above-knee", "above knee", "above the knee", "femoropopliteal", "femoral-popliteal"),
        specific=False,
    ),
    VeinTerm("peroneal vein", VeinClass.DISTAL_AXIAL, ("peroneal", "fibular")),
    VeinTerm("posterior tibial vein", VeinClass.DISTAL_AXIAL, ("posterior tibial", "ptv", "ptvs")),
    VeinTerm("anterior tibial vein", VeinClass.DISTAL_AXIAL, ("anterior tibial", "atv", "atvs")),
    VeinTerm("tibial vein", VeinClass.DISTAL_AXIAL, ("tibial",), specific=False),
    VeinTerm(
        "gastrocnemius vein",
        VeinClass.DISTAL_MUSCULAR,
        ("gastrocnemius", "gastrocnemial", "gastroc", "medial gastrocnemius", "lateral gastrocnemius"),
    ),
    VeinTerm("soleal vein", VeinClass.DISTAL_MUSCULAR, ("soleal", "soleus", "soleal sinus")),
    VeinTerm(
        "calf muscular vein",
        VeinClass.DISTAL_MUSCULAR,
        ("muscular calf", "calf muscular", "calf muscle", "intramuscular calf", "muscular", "intramuscular"),
        specific=False,
    ),
    VeinTerm(
        "calf veins",
        VeinClass.DISTAL_UNSPECIFIED,
        ("calf", "deep calf", "infrapopliteal", "infra-popliteal", "below-knee", "below knee", "below the knee"),
        specific=False,
    ),
)

# Not deep veins: thrombus here is superficial thrombophlebitis, not DVT (docs/clinical/RULES.md R-TEXT-4).
SUPERFICIAL_VEINS: tuple[str, ...] = (
    "great saphenous vein",
    "great saphenous veins",
    "greater saphenous vein",
    "great saphenous",
    "greater saphenous",
    "long saphenous vein",
    "small saphenous vein",
    "small saphenous",
    "lesser saphenous vein",
    "lesser saphenous",
    "short saphenous vein",
    "saphenous vein",
    "saphenous",
    "gsv",
    "ssv",
    "lsv",
    "superficial vein",
    "superficial veins",
    "superficial venous",
    "superficial system",
    "varicose vein",
    "varicose veins",
    "varicosity",
    "varicosities",
    "perforator",
    "perforators",
    "perforating vein",
    "perforating veins",
    "cephalic vein",
    "basilic vein",
)
# Superficial-vein thrombosis named as a diagnosis: reported as such, never as DVT.
SUPERFICIAL_THROMBOSIS: tuple[str, ...] = (
    "superficial thrombophlebitis",
    "thrombophlebitis",
    "superficial thrombosis",
    "superficial vein thrombosis",
    "superficial venous thrombosis",
    "superficial phlebitis",
    "svt",
)

# Words that look like a vein stem but name an artery or something else: matched so the longer phrase wins.
NOT_VEINS: tuple[str, ...] = (
    "femoral artery",
    "popliteal artery",
    "tibial artery",
    "peroneal artery",
    "popliteal fossa",
    "popliteal cyst",
    "baker's cyst",
    "bakers cyst",
    "baker cyst",
    "calf pain",
    "calf swelling",
    "calf tenderness",
    "muscular strain",
    "tibial plateau",
    "tibioperoneal trunk",
    "tibio-peroneal trunk",
    "tibioperoneal",
    "trifurcation",
    "pop-off",
)

# ----------------------------------------------------------------------------------------------------------------
# Findings: words that assert thrombus in the veins they are said of.
# ------------------------------------------------------------------------------------------------------------------
THROMBUS_WORDS: tuple[str, ...] = (
    "thrombus",
    "thrombi",
    "thrombosis",
    "thromboses",
    "thrombosed",
    "clot",
    "clots",
    "dvt",
    "dvts",
    "deep vein thrombosis",
    "deep venous thrombosis",
    "venous thrombosis",
    "venous thrombus",
    "thromboembolic disease",
    "noncompressible",
    "non-compressible",
    "non compressible",
    "not compressible",
    "incompressible",
    "not fully compressible",
    "incompletely compressible",
    "partially compressible",
    "only partially compressible",
    "absent compressibility",
    "lack of compressibility",
    "loss of compressibility",
    "filling defect",
    "filling defects",
    "absent flow",
    "absence of flow",
    "no flow",
    "lack of flow",
    "intraluminal echoes",
    "intraluminal echogenic material",
    "echogenic thrombus",
)

# ----------------------------------------------------------------------------------------------------------------
# ConText modifiers: (phrase, category, direction, max_scope). Categories beyond medspaCy's defaults are ours.
# ------------------------------------------------------------------------------------------------------------------
Cue = tuple[str, str, str, int | None]

NEGATION_FORWARD = (
    "no",
    "without",
    "negative for",
    "no evidence of",
    "no sonographic evidence of",
    "no ultrasound evidence of",
    "no duplex evidence of",
    "no evidence for",
    "no residual",
    "free of",
    "absence of",
    "absent",
    "not",
    "neither",
    "nor",
    "resolution of",
    "interval resolution of",
    "sparing",
    "spares",
    "rules out",
    "ruled out",
)
NEGATION_BACKWARD = (
    "patent",
    "remain patent",
    "remains patent",
    "fully compressible",
    "completely compressible",
    "normally compressible",
    "compressible",
    "compress normally",
    "compresses normally",
    "compress fully",
    "compresses fully",
    "are normal",
    "is normal",
    "appear normal",
    "appears normal",
    "unremarkable",
    "negative",
    "resolved",
    "has resolved",
    "have resolved",
    "no longer identified",
    "is no longer seen",
    "are no longer seen",
    "no longer visualized",
    "no longer seen",
    "is not seen",
    "are not seen",
    "was not seen",
    "were not seen",
    "not identified",
    "is not identified",
    "was not identified",
    "not demonstrated",
    "is excluded",
    "excluded",
    "ruled out",
)
# Normality said before or after the veins: "normal compressibility of the CFV" / "the CFV shows normal flow".
NEGATION_BOTH_WAYS = (
    "normal compressibility",
    "normal compressibility and augmentation",
    "normal compressibility, color flow and augmentation",
    "normal compression",
    "normal flow",
    "normal color flow",
    "normal augmentation",
    "normal phasicity",
    "normal phasic flow",
    "normal spontaneous flow",
)
# Phrases that contain a cue but mean something else: ConText's PSEUDO keeps the cue from firing.
PSEUDO = (
    "non-compressible",
    "noncompressible",
    "non compressible",
    "not compressible",
    "not fully compressible",
    "incompletely compressible",
    "partially compressible",
    "no longer",
    "no flow",
    "absent flow",
    "absence of flow",
    "lack of flow",
    "absent compressibility",
    "lack of compressibility",
    "loss of compressibility",
    "not occlusive",
    "not completely occlusive",
    "not totally occlusive",
    "only partially compressible",
    "year old",
    "years old",
    "year-old",
)
HYPOTHETICAL = (
    "rule out",
    "r/o",
    "to rule out",
    "evaluate for",
    "evaluation for",
    "eval for",
    "assess for",
    "to exclude",
    "if",
    "should",
    "recommend",
    "recommended",
    "to evaluate for",
)
UNCERTAIN = (
    "possible",
    "possibly",
    "probable",
    "probably",
    "questionable",
    "question of",
    "may represent",
    "may be",
    "might represent",
    "could represent",
    "cannot be excluded",
    "can not be excluded",
    "cannot exclude",
    "can't exclude",
    "not excluded",
    "suspicious for",
    "suspected",
    "suspect",
    "equivocal",
    "indeterminate",
    "concern for",
    "concerning for",
    "versus",
    "vs",
    "likely artifact",
    "artifact",
)
HISTORICAL = ("history of", "h/o", "hx of", "known history of", "past history of")
CHRONIC = (
    "chronic",
    "old",
    "residual",
    "post-thrombotic",
    "postthrombotic",
    "post thrombotic",
    "recanalized",
    "recanalised",
    "partially recanalized",
    "recanalization",
    "recanalisation",
    "synechiae",
    "synechia",
    "wall thickening",
    "thickened wall",
    "thickened walls",
    "thickening of the wall",
    "collaterals",
    "collateral",
    "scarring",
    "organized",
    "organised",
    "echogenic with collaterals",
    "chronic-appearing",
    "chronic appearing",
)
ACUTE = (
    "acute",
    "acute-appearing",
    "acute appearing",
    "new",
    "expanded",
    "expands",
    "distended",
    "distends",
    "dilated",
    "hypoechoic",
    "anechoic",
    "acute on chronic",
    "subacute",
)
OCCLUSIVE = ("occlusive", "occluding", "occluded", "totally occlusive", "completely occlusive", "occludes")
NONOCCLUSIVE = (
    "nonocclusive",
    "non-occlusive",
    "non occlusive",
    "partially occlusive",
    "partially occluding",
    "partial occlusion",
)
# The vein named next is where the thrombus ends or a landmark, not a vein with thrombus.
LANDMARK_FORWARD = (
    "below the",
    "just below the",
    "distal to the",
    "inferior to the",
    "approaching the",
    "approaches the",
    "short of the",
    "near the",
    "adjacent to the",
    "below the level of the",
    "above the",
    "proximal to the",
)
SIDES = {
    "RIGHT": ("right", "rt", "rle", "r leg", "right-sided"),
    "LEFT": ("left", "lt", "lle", "l leg", "left-sided"),
    "BILATERAL": ("bilateral", "bilaterally", "both legs", "both lower extremities", "b/l"),
}
EXTENSION = (
    "now extends",
    "now extending",
    "now involves",
    "now involving",
    "now seen in",
    "now present in",
    "has extended",
    "have extended",
    "has propagated",
    "have propagated",
    "propagated",
    "propagation",
    "interval propagation",
    "interval extension",
    "progression",
    "progressed",
    "interval progression",
    "increased in extent",
    "increase in extent",
    "interval increase",
    "interval development",
    "new thrombus",
    "new clot",
    "new dvt",
    "newly",
    "interval worsening",
    "more extensive",
)
UNCHANGED = (
    "unchanged",
    "stable",
    "no change",
    "no significant change",
    "no interval change",
    "not significantly changed",
    "similar",
    "similar in appearance",
    "similar in extent",
    "again seen",
    "again noted",
    "again demonstrated",
    "persistent",
    "persists",
    "no propagation",
    "no extension",
    "without propagation",
    "without extension",
    "without interval propagation",
    "no interval propagation",
)
# Negation cues that also say a thrombus seen before is gone: the study shows resolution.
RESOLVED = frozenset(
    {
        "resolved",
        "has resolved",
        "have resolved",
        "resolution of",
        "interval resolution of",
        "no residual",
        "is no longer seen",
        "are no longer seen",
        "no longer seen",
        "no longer visualized",
        "no longer identified",
    }
)
# The vein was not (fully) seen: an incomplete study cannot exclude distal DVT
# (docs/clinical/RULES.md R-TEXT-8, R-PITFALL-1).
NOT_SEEN = (
    "not visualized",
    "not well visualized",
    "not well seen",
    "not seen well",
    "not imaged",
    "not evaluated",
    "not assessed",
    "not well evaluated",
    "not adequately visualized",
    "not adequately evaluated",
    "poorly visualized",
    "poorly seen",
    "suboptimally visualized",
    "could not be visualized",
    "could not be evaluated",
    "could not be imaged",
    "could not be assessed",
    "incompletely visualized",
    "incompletely evaluated",
    "obscured",
)
LIMITED_STUDY = (
    "limited evaluation",
    "limited exam",
    "limited examination",
    "limited study",
    "limited visualization",
    "limited assessment",
    "limited by",
    "technically limited",
    "suboptimal evaluation",
    "suboptimal visualization",
    "suboptimal study",
    "proximal veins only",
    "proximal only",
    "proximal-only",
    "2-point",
    "two-point",
    "2 point",
    "3-point",
    "three-point",
)
TERMINATORS = (
    "but",
    "however",
    "although",
    "though",
    "except",
    "with the exception of",
    "otherwise",
    "whereas",
    "while",
    ";",
    "which",
)
# Words that refer a finding to an earlier study: with "new" they say the thrombus is new since then.
COMPARISON_WORDS = frozenset({"since", "prior", "previous", "previously", "interval", "compared", "comparison", "last"})

# Report section headers (medspaCy sectionizer). IMPRESSION decides; INDICATION and COMPARISON never hold findings.
SECTIONS: dict[str, tuple[str, ...]] = {
    "impression": ("impression", "impressions", "conclusion", "conclusions", "summary", "interpretation", "opinion"),
    "findings": ("findings", "finding", "results", "result", "report", "description"),
    "indication": (
        "indication",
        "indications",
        "clinical indication",
        "clinical history",
        "history",
        "reason for exam",
        "reason for examination",
        "reason for study",
        "reason",
        "clinical information",
        "clinical data",
        "symptoms",
    ),
    "comparison": ("comparison", "comparisons", "prior studies", "prior study", "prior exam", "previous study"),
    "technique": ("technique", "procedure", "exam", "examination", "study", "protocol", "procedure details"),
}
# Sections whose sentences never count as findings of this study.
NOT_FINDINGS = frozenset({"indication", "comparison"})

# The title of a report that is a venous duplex / compression ultrasound / venous Doppler of the leg.
DUPLEX_TITLE_MODALITY = (
    "duplex",
    "doppler",
    "ultrasound",
    "ultrasonography",
    "sonogram",
    "sonography",
    "us",
    "u/s",
    "compression",
    "vas",
    "vascular",
    "dvt study",
    "dvt scan",
)
DUPLEX_TITLE_VENOUS = ("venous", "vein", "veins", "dvt", "deep vein", "thrombosis")
DUPLEX_TITLE_LEG = (
    "lower extremity",
    "lower extremities",
    "lower limb",
    "lower limbs",
    "leg",
    "legs",
    "le",
    "les",
    "rle",
    "lle",
    "ble",
    "bilateral lower",
    "calf",
    "lower ext",
    "lower extrem",
    "low ext",
)
DUPLEX_TITLE_NOT = ("arterial", "artery", "abi", "ankle-brachial", "upper extremity", "upper limb", "arm", "carotid")
