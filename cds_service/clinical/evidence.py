"""The guideline and study citations the service quotes, one place for all of them.

Every card cites one of these; every threshold in ``thresholds.py`` names one. Each rule of
``docs/clinical/RULES.md`` names its source among these (R-CARD-2). Study figures are labelled as studies, never
as recommendations.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Citation:
    key: str
    label: str  # short, shown as card source.label
    reference: str  # full bibliographic reference, shown in card detail
    url: str | None  # absolute URL for card source.url; None where no verified address is known


CHEST_2016 = Citation(
    key="chest-2016",
    label="CHEST 2016 (Kearon et al.)",
    reference="Kearon C, Akl EA, Ornelas J, et al. Antithrombotic Therapy for VTE Disease: CHEST Guideline "
    "and Expert Panel Report. Chest 2016;149(2):315-352. doi:10.1016/j.chest.2015.11.026",
    url="https://doi.org/10.1016/j.chest.2015.11.026",
)
CHEST_2021 = Citation(
    key="chest-2021",
    label="CHEST 2021 (Stevens et al.)",
    reference="Stevens SM, Woller SC, Baumann Kreuziger L, et al. Antithrombotic Therapy for VTE Disease: "
    "Second Update of the CHEST Guideline and Expert Panel Report. Chest 2021;160(6):e545-e608. "
    "doi:10.1016/j.chest.2021.07.055",
    url="https://doi.org/10.1016/j.chest.2021.07.055",
)
CHEST_AT9_BLEEDING = Citation(
    key="chest-at9-table2",
    label="CHEST AT9/2016 bleeding-risk table",
    reference="Kearon C et al. Antithrombotic therapy for VTE disease. Chest 2012;141(2 Suppl):e419S-e494S, "
    "Table 2 (reproduced as Table 2 in CHEST 2016). The categorization scheme has not been validated.",
    url="https://eguideline.guidelinecentral.com/i/86135/11",
)
NCCN_CAT = Citation(
    key="nccn-cat",
    label="NCCN Cancer-Associated VTE",
    reference="NCCN Clinical Practice Guidelines in Oncology: Cancer-Associated Venous Thromboembolic Disease "
    "(summary table in PMC11057512).",
    url="https://pmc.ncbi.nlm.nih.gov/articles/PMC11057512/",
)
PREGNANCY_BLOOD_2020 = Citation(
    key="blood-2020-pregnancy",
    label="Blood 2020;136:2133 (VTE in pregnancy)",
    reference="How I treat venous thromboembolism in pregnancy. Blood 2020;136(19):2133.",
    url=None,
)
KRET_2013 = Citation(
    key="kret-2013",
    label="Kret et al. 2013 (study)",
    reference="Kret MR, Liem TK, Mitchell EL, Landry GJ, Moneta GL. Isolated calf muscular vein thrombosis "
    "is associated with pulmonary embolism. J Vasc Surg Venous Lymphat Disord 2013;1(1):33-38 "
    "(study, not a guideline).",
    url="https://ohsu.pure.elsevier.com/en/publications/isolated-calf-muscular-vein-thrombosis-is-associated-with-pulmona-2",
)
CHEST_AT9_DIAGNOSIS = Citation(
    key="chest-at9-diagnosis",
    label="CHEST AT9 DVT diagnosis (Bates et al.)",
    reference="Bates SM et al. Diagnosis of DVT: Antithrombotic Therapy and Prevention of Thrombosis, 9th ed. "
    "Chest 2012;141(2 Suppl):e351S-e418S.",
    url="https://pmc.ncbi.nlm.nih.gov/articles/PMC3278048",
)
FDA_LABELS = Citation(
    key="fda-labels",
    label="FDA prescribing information",
    reference="US FDA prescribing information for apixaban (Eliquis) and rivaroxaban (Xarelto): DVT treatment "
    "regimens.",
    url="https://dailymed.nlm.nih.gov/",
)
SEED = Citation(
    key="seed",
    label="Project source document",
    reference="Distal DVT guideline summary the project was created from (seed document); items not in CHEST "
    "are marked seed-only.",
    url=None,
)
PROJECT = Citation(
    key="project",
    label="Project setting",
    reference="Project-defined setting: no guideline gives a number for this; configurable.",
    url=None,
)
