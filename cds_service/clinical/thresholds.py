"""Every clinical threshold and time window, each with the source it comes from.

A rule never writes a number inline: it names one of these. Where the guideline gives no number the
threshold says so (``PROJECT``) and the value is a setting. Comparisons are spelled out in ``rule`` so a
reader (and the card) can say exactly which side of the line a value fell on.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.clinical import evidence
from cds_service.clinical.evidence import Citation


@dataclass(frozen=True)
class Threshold:
    name: str
    value: float
    unit: str
    rule: str  # how the value is compared, in words: "> 5 cm"
    citation: Citation
    note: str = ""

    @property
    def int_value(self) -> int:
        return int(self.value)


# --- what counts as acute / recent ------------------------------------------------------------------------------
ACUTE_WINDOW_DAYS = Threshold(
    "acute window",
    30,
    "days",
    "onset within 30 days",
    evidence.PROJECT,
    "docs/clinical/RULES.md R-DX-4: default 30 days, a setting (DVT_CDS_ACUTE_WINDOW_DAYS).",
)
PROVOKING_WINDOW_DAYS = Threshold(
    "provoking-factor window",
    90,
    "days",
    "within 90 days before diagnosis",
    evidence.CHEST_2016,
    "Transient provoking factors (surgery, hospitalization, trauma, immobilization) looked for in the 90 days "
    "before diagnosis (docs/clinical/RULES.md R-RISK-5).",
)
RECENT_HOSPITALIZATION_DAYS = Threshold(
    "recent hospitalization",
    90,
    "days",
    "inpatient stay ended within 90 days",
    evidence.SEED,
    "CHEST gives no window; a setting (DVT_CDS_RECENT_HOSPITALIZATION_DAYS).",
)
RECENT_SURGERY_DAYS = Threshold(
    "recent surgery",
    30,
    "days",
    "surgery completed within 30 days",
    evidence.SEED,
    "A setting (DVT_CDS_RECENT_SURGERY_DAYS).",
)
COVID_WINDOW_DAYS = Threshold("COVID-19", 30, "days", "active within 30 days", evidence.SEED)
POSTPARTUM_WEEKS = Threshold("postpartum", 6, "weeks", "delivery within 6 weeks", evidence.PREGNANCY_BLOOD_2020)
LAB_WINDOW_DAYS = Threshold(
    "lab recency",
    30,
    "days",
    "newest result within 30 days",
    evidence.PROJECT,
    "Weight, creatinine, platelets and haemoglobin older than this are not used (docs/clinical/RULES.md R-LAB-1).",
)
PAIN_WINDOW_DAYS = Threshold("pain score recency", 3, "days", "within 3 days", evidence.PROJECT)

# --- D-dimer -----------------------------------------------------------------------------------------------------
DDIMER_WINDOW_DAYS = Threshold(
    "D-dimer window", 14, "days", "newest result within 14 days of diagnosis", evidence.PROJECT
)
DDIMER_FEU_CUTOFF = Threshold(
    "D-dimer cutoff (FEU)",
    500,
    "ng/mL FEU",
    ">= 500 ng/mL FEU is positive",
    evidence.PROJECT,
    "Conventional VTE exclusion cutoff (RESEARCH.md §1.4), used only when the lab gives no interpretation or "
    "reference range; CHEST gives no numeric D-dimer threshold for extension risk.",
)
DDIMER_DDU_CUTOFF = Threshold(
    "D-dimer cutoff (DDU)",
    250,
    "ng/mL DDU",
    ">= 250 ng/mL DDU is positive",
    evidence.PROJECT,
    "DDU assays read about half of FEU; typical DDU cutoffs are 230-250 ng/mL.",
)

# --- thrombus extent (CHEST AT9 §2.3 risk factors for extension, carried into 2016/2021) -------------------------
THROMBUS_LENGTH_CM = Threshold("thrombus length", 5, "cm", "> 5 cm", evidence.CHEST_2016)
THROMBUS_DIAMETER_MM = Threshold("thrombus diameter", 7, "mm", "> 7 mm", evidence.CHEST_2016)
THROMBOSED_VEIN_COUNT = Threshold("veins involved", 2, "veins", ">= 2 veins", evidence.CHEST_2016)
CLOSE_TO_POPLITEAL_CM = Threshold(
    "close to the proximal veins",
    5,
    "cm",
    "<= 5 cm from the popliteal vein/trifurcation",
    evidence.PROJECT,
    "CHEST lists 'close to the proximal veins' without a number; a setting (DVT_CDS_CLOSE_TO_POPLITEAL_CM).",
)

# --- symptoms ----------------------------------------------------------------------------------------------------
SEVERE_PAIN_SCORE = Threshold("severe pain", 7, "/10", ">= 7 on the 0-10 numeric rating scale", evidence.PROJECT)

# --- serial imaging ----------------------------------------------------------------------------------------------
SERIAL_IMAGING_FIRST_DAY = Threshold(
    "first repeat duplex",
    7,
    "days",
    "+7 days",
    evidence.CHEST_2016,
    "CHEST: serial imaging for 2 weeks; weekly is the usual operationalization.",
)
SERIAL_IMAGING_SECOND_DAY = Threshold("second repeat duplex", 14, "days", "+14 days", evidence.CHEST_2016)
IMAGING_PLANNED_WITHIN_DAYS = Threshold(
    "repeat imaging planned", 14, "days", "due within the next 14 days", evidence.CHEST_2016
)

# --- bleeding risk (CHEST AT9/2016 Table 2) ----------------------------------------------------------------------
BLEEDING_AGE_1 = Threshold("age", 65, "years", "> 65 years", evidence.CHEST_AT9_BLEEDING)
BLEEDING_AGE_2 = Threshold("age (second factor)", 75, "years", "> 75 years", evidence.CHEST_AT9_BLEEDING)
RENAL_FAILURE_CRCL = Threshold("renal failure", 30, "mL/min", "CrCl or eGFR < 30", evidence.CHEST_AT9_BLEEDING)
THROMBOCYTOPENIA = Threshold("thrombocytopenia", 100, "10^9/L", "platelets < 100", evidence.CHEST_AT9_BLEEDING)
SEVERE_THROMBOCYTOPENIA = Threshold(
    "severe thrombocytopenia",
    50,
    "10^9/L",
    "platelets < 50",
    evidence.CHEST_AT9_BLEEDING,
    "A single severe factor makes bleeding risk high; also NCCN's absolute contraindication in cancer.",
)
ANAEMIA_HB_FEMALE = Threshold("anaemia (women)", 12, "g/dL", "Hb < 12 g/dL", evidence.CHEST_AT9_BLEEDING)
ANAEMIA_HB_MALE = Threshold("anaemia (men)", 13, "g/dL", "Hb < 13 g/dL", evidence.CHEST_AT9_BLEEDING)
MAJOR_SURGERY_SEVERE_DAYS = Threshold("major surgery", 2, "days", "within the past 2 days", evidence.CHEST_AT9_BLEEDING)
BLEEDING_MODERATE_FACTORS = Threshold("moderate bleeding risk", 1, "factors", "1 factor", evidence.CHEST_AT9_BLEEDING)
BLEEDING_HIGH_FACTORS = Threshold("high bleeding risk", 2, "factors", ">= 2 factors", evidence.CHEST_AT9_BLEEDING)

# --- anticoagulant choice and cautions ---------------------------------------------------------------------------
TREATMENT_DURATION_MONTHS = Threshold(
    "treatment duration", 3, "months", "3 months for isolated distal DVT", evidence.CHEST_2016
)
RENAL_DRUG_CRCL = Threshold(
    "renal caution",
    30,
    "mL/min",
    "CrCl < 30: no dabigatran, edoxaban or fondaparinux",
    evidence.CHEST_2016,
    "Drug labels; docs/clinical/RULES.md R-REGIMEN-3, R-ORDER-3.",
)
HIGH_WEIGHT_KG = Threshold(
    "high body weight",
    120,
    "kg",
    "> 120 kg: avoid dabigatran and edoxaban",
    evidence.PROJECT,
    "ISTH SSC guidance (Martin et al. J Thromb Haemost 2021), per RESEARCH.md §2 [K].",
)
LOW_WEIGHT_EDOXABAN_KG = Threshold("edoxaban low weight", 60, "kg", "<= 60 kg: edoxaban 30 mg", evidence.FDA_LABELS)

# --- prophylactic vs treatment intensity -------------------------------------------------------------------------
# The highest daily dose that is still prophylactic, per agent: anything above is treatment intensity.
# Prophylactic regimens per docs/clinical/RULES.md R-MED-1 (enoxaparin 40 mg daily, apixaban 2.5 mg twice daily) and the
# products of VSAC "Anticoagulants for VTE Prophylaxis" 2.16.840.1.113762.1.4.1147.130 (RESEARCH.md §3.5):
# rivaroxaban 10 mg, dabigatran 110 mg (220 mg/day), enoxaparin 30 mg twice daily, fondaparinux 2.5 mg,
# heparin 5000 units up to three times daily, dalteparin 5000 units daily. Warfarin and edoxaban have no
# prophylactic regimen here and always count as treatment; enoxaparin with a known weight counts as treatment
# from 1 mg/kg/day (the renal treatment dose).
PROPHYLACTIC_DAILY_DOSE: dict[str, Threshold] = {
    agent: Threshold(
        f"{agent} prophylactic dose", value, unit, f"<= {value:g} {unit}/day is prophylactic", evidence.FDA_LABELS
    )
    for agent, value, unit in (
        ("apixaban", 5, "mg"),
        ("rivaroxaban", 10, "mg"),
        ("dabigatran", 220, "mg"),
        ("enoxaparin", 60, "mg"),
        ("fondaparinux", 2.5, "mg"),
        ("heparin", 15000, "units"),
        ("dalteparin", 5000, "units"),
    )
}
RIVAROXABAN_MIN_CRCL = Threshold(
    "rivaroxaban renal limit",
    15,
    "mL/min",
    "CrCl < 15: avoid rivaroxaban for DVT/PE",
    evidence.FDA_LABELS,
    "RESEARCH.md §2 [K]: label knowledge, to verify against DailyMed.",
)
DURATION_TOLERANCE_DAYS = Threshold(
    "3-month tolerance",
    7,
    "days",
    "84-97 days counts as 3 months",
    evidence.PROJECT,
    "Orders are written in days, weeks or months; 12 to 13 weeks and 90 ± 7 days are all '3 months'.",
)
DIALYSIS_WINDOW_DAYS = Threshold(
    "dialysis",
    30,
    "days",
    "a dialysis procedure within 30 days",
    evidence.PROJECT,
    "Ongoing dialysis is read from recent dialysis procedures when no CKD 5 / ESRD code says so.",
)
