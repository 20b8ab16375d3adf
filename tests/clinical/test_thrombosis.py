"""Thromboses from Conditions and from venous ultrasound: vein class, side, status, dates, measurements."""

from __future__ import annotations

import pytest

from cds_service.clinical.config import RuleConfig
from cds_service.clinical.model import Side, VeinClass, Verification
from cds_service.clinical.thrombosis import read_conditions, read_imaging
from tests.builders import (
    GASTROCNEMIUS,
    ICD,
    LEFT,
    PERONEAL,
    POPLITEAL,
    POSTERIOR_TIBIAL,
    RIGHT,
    SCT,
    SOLEAL,
    TODAY,
    concept,
    condition,
    duplex,
    facts_of,
    observation,
)

CONFIG = RuleConfig()


def one(conditions: list[dict]):
    return read_conditions(conditions, today=TODAY, config=CONFIG)


@pytest.mark.parametrize(
    ("code", "vein_class", "vein", "side"),
    [
        ("I82.441", VeinClass.DISTAL_AXIAL, "tibial vein", Side.RIGHT),
        ("I82.452", VeinClass.DISTAL_AXIAL, "peroneal vein", Side.LEFT),
        ("I82.463", VeinClass.DISTAL_MUSCULAR, "calf muscular vein", Side.BILATERAL),
        ("I82.4Z9", VeinClass.DISTAL_UNSPECIFIED, "distal deep veins (unspecified)", Side.UNKNOWN),
        ("I82.431", VeinClass.PROXIMAL, "popliteal vein", Side.RIGHT),
        ("I82.412", VeinClass.PROXIMAL, "femoral vein", Side.LEFT),
        ("I82.423", VeinClass.PROXIMAL, "iliac vein", Side.BILATERAL),
        ("I82.4Y1", VeinClass.PROXIMAL, "proximal deep veins (unspecified)", Side.RIGHT),
    ],
)
def test_icd10_vein_class_and_side(code: str, vein_class: VeinClass, vein: str, side: Side) -> None:
    [t] = one([condition(code)]).acute
    assert t.vein_class == vein_class
    assert [v.name for v in t.veins] == [vein]
    assert t.side == side


@pytest.mark.parametrize("code", ["I82.401", "I82.409", "I82.491"])
def test_unspecified_site_codes_have_unknown_location(code: str) -> None:
    [t] = one([condition(code)]).acute
    assert t.vein_class == VeinClass.UNKNOWN
    assert t.veins == ()


def test_snomed_dvt_takes_the_veins_from_body_site() -> None:
    [t] = one([condition("404223003", system=SCT, body_sites=[SOLEAL, GASTROCNEMIUS, LEFT])]).acute
    assert t.vein_class == VeinClass.DISTAL_MUSCULAR
    assert {v.name for v in t.veins} == {"soleal vein", "gastrocnemius vein"}
    assert t.side == Side.LEFT
    assert t.vein_count == 2


def test_snomed_dvt_without_body_site_is_location_unknown() -> None:
    [t] = one([condition("128053003", system=SCT)]).acute
    assert t.vein_class == VeinClass.UNKNOWN


def test_proximal_body_site_wins_over_distal() -> None:
    [t] = one([condition("404223003", system=SCT, body_sites=[PERONEAL, POPLITEAL])]).acute
    assert t.vein_class == VeinClass.PROXIMAL
    assert not t.is_distal


def test_icd_code_with_consistent_body_site_names_the_vein() -> None:
    [t] = one([condition("I82.462", body_sites=[SOLEAL])]).acute
    assert [v.name for v in t.veins] == ["soleal vein"]


def test_text_only_condition() -> None:
    found = one([condition(text="DVT of the left soleal vein", onset=3)])
    [t] = found.acute
    assert t.from_text
    assert t.vein_class == VeinClass.DISTAL_MUSCULAR
    assert t.side == Side.LEFT
    assert any("recognised from text" in n for n in found.notes)


def test_body_site_by_text_only() -> None:
    cond = condition("404223003", system=SCT)
    cond["bodySite"] = [{"text": "right posterior tibial vein"}]
    [t] = one([cond]).acute
    assert [v.name for v in t.veins] == ["posterior tibial vein"]


def test_common_femoral_is_not_also_femoral() -> None:
    [t] = one([condition(text="DVT of the common femoral vein")]).acute
    assert [v.name for v in t.veins] == ["common femoral vein"]


@pytest.mark.parametrize(("onset", "acute"), [(29, True), (30, True), (31, False)])
def test_acute_window_is_30_days(onset: int, acute: bool) -> None:
    found = one([condition("I82.452", onset=onset)])
    assert bool(found.acute) is acute
    assert bool(found.prior) is not acute  # an older episode is prior VTE


def test_acute_window_is_a_setting() -> None:
    found = read_conditions([condition("I82.452", onset=40)], today=TODAY, config=RuleConfig(acute_window_days=45))
    assert found.acute


def test_recorded_date_is_used_without_onset() -> None:
    cond = condition("I82.452", onset=None)
    cond["recordedDate"] = "2026-01-01"
    assert one([cond]).prior


def test_no_date_at_all_is_current_and_reported() -> None:
    found = one([condition("I82.452", onset=None)])
    assert found.acute
    assert any("no onset or recorded date" in n for n in found.notes)


@pytest.mark.parametrize(
    ("clinical", "verification", "bucket"),
    [
        ("active", "confirmed", "acute"),
        ("recurrence", "confirmed", "acute"),
        ("relapse", "provisional", "acute"),
        (None, None, "acute"),
        ("active", "differential", "suspected"),
        ("active", "unconfirmed", "suspected"),
        ("active", "refuted", None),
        ("active", "entered-in-error", None),
        ("resolved", "confirmed", "prior"),
        ("inactive", "confirmed", "prior"),
    ],
)
def test_clinical_and_verification_status(clinical: str | None, verification: str | None, bucket: str | None) -> None:
    found = one([condition("I82.452", clinical=clinical, verification=verification)])
    buckets = {"acute": found.acute, "suspected": found.suspected, "prior": found.prior}
    for name, items in buckets.items():
        assert bool(items) is (name == bucket), name


def test_abatement_makes_it_prior() -> None:
    assert one([condition("I82.452", abatement=1)]).prior


def test_chronic_codes_are_prior_vte() -> None:
    found = one([condition("I82.542")])
    assert not found.acute
    assert found.prior[0].how.startswith("chronic DVT")


def test_provisional_is_kept_as_provisional() -> None:
    [t] = one([condition("I82.452", verification="provisional")]).acute
    assert t.verification == Verification.PROVISIONAL


# --- ultrasound -------------------------------------------------------------------------------------------------
def test_ultrasound_components_are_read() -> None:
    studies, notes = read_imaging(
        [duplex([GASTROCNEMIUS, SOLEAL], side=RIGHT, length=(45, "mm"), diameter=(0.8, "cm"), distance_cm=4, days=1)],
        [],
        today=TODAY,
    )
    [study] = studies
    [t] = study.thromboses
    assert {v.name for v in t.veins} == {"gastrocnemius vein", "soleal vein"}
    assert t.side == Side.RIGHT
    assert t.length_cm == pytest.approx(4.5)
    assert t.diameter_mm == pytest.approx(8)
    assert t.distance_to_popliteal_cm == 4
    assert study.legs_examined == Side.BILATERAL
    assert notes == []


def test_one_leg_study_gives_the_side() -> None:
    studies, _ = read_imaging([duplex([PERONEAL], code="39432-0")], [], today=TODAY)
    assert studies[0].legs_examined == Side.LEFT
    assert studies[0].thromboses[0].side == Side.LEFT


def test_negative_study() -> None:
    studies, _ = read_imaging([duplex(no_thrombus=True)], [], today=TODAY)
    assert studies[0].no_thrombus
    assert studies[0].thromboses == []


def test_narrative_only_study_is_reported_not_guessed() -> None:
    studies, notes = read_imaging([duplex()], [], today=TODAY)
    assert not studies[0].coded
    assert any("narrative only" in n for n in notes)


def test_unknown_units_are_not_guessed() -> None:
    obs = duplex([PERONEAL], length=(3, "in"))
    studies, _ = read_imaging([obs], [], today=TODAY)
    assert studies[0].thromboses[0].length_cm is None


def test_preliminary_and_other_observations_are_ignored() -> None:
    studies, _ = read_imaging(
        [duplex([PERONEAL], status="preliminary"), observation("718-7", value=12)], [], today=TODAY
    )
    assert studies == []


def test_diagnostic_report_groups_its_observations() -> None:
    vein = duplex([POSTERIOR_TIBIAL], resource_id="o1", days=2)
    size = duplex(length=(6, "cm"), resource_id="o2", days=2)
    report = {
        "resourceType": "DiagnosticReport",
        "id": "dr1",
        "status": "final",
        "code": concept("http://loinc.org", "39443-7"),
        "effectiveDateTime": "2026-03-14",
        "result": [{"reference": "Observation/o1"}, {"reference": "Observation/o2"}],
    }
    studies, _ = read_imaging([vein, size], [report], today=TODAY)
    [study] = studies
    assert study.source.reference == "DiagnosticReport/dr1"
    [t] = study.thromboses
    assert t.length_cm == 6
    assert t.side == Side.RIGHT


def test_report_conclusion_code_counts_without_components() -> None:
    report = {
        "resourceType": "DiagnosticReport",
        "id": "dr2",
        "status": "final",
        "code": concept("http://www.ama-assn.org/go/cpt", "93971"),
        "effectiveDateTime": "2026-03-15",
        "conclusionCode": [concept(ICD, "I82.462")],
    }
    studies, _ = read_imaging([], [report], today=TODAY)
    [t] = studies[0].thromboses
    assert t.vein_class == VeinClass.DISTAL_MUSCULAR
    assert t.side == Side.LEFT


def test_condition_and_ultrasound_of_the_same_thrombus_count_one_vein() -> None:
    facts = facts_of([condition("I82.462"), duplex([GASTROCNEMIUS], side=LEFT)])
    from cds_service.clinical.model import distinct_veins

    veins = distinct_veins(v for t in facts.thromboses for v in t.veins)
    assert [v.name for v in veins] == ["gastrocnemius vein"]


def test_contradictory_codings_are_read_as_pulmonary_embolism() -> None:
    cond = condition("I26.09")
    cond["code"]["coding"].append({"system": SCT, "code": "132251000119101"})
    found = one([cond])
    assert found.acute == []
    assert any("both pulmonary embolism and DVT" in n for n in found.notes)
