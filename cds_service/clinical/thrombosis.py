"""Deep vein thromboses from Conditions and from venous ultrasound results.

Conditions: the vein class comes from the code (ICD-10-CM I82.4- per vein, docs/clinical/RULES.md R-DX-1); with SNOMED
or text-only coding the veins come from ``bodySite`` (or, failing that, vein names in the text). Side comes
from the ICD-10-CM sixth character, else from a laterality ``bodySite``, else from words in the text.

Ultrasound: Observations coded with a venous-duplex code, components in the project system
``urn:distal-dvt-cds:venous-ultrasound`` (docs/clinical/RULES.md R-US-1), grouped into one study by a DiagnosticReport
``result`` where present. A report with a DVT ``conclusionCode`` and no coded components still counts; a
narrative-only report is read from its text (``reports/``: docs/clinical/RULES.md R-TEXT-*) and one whose text cannot
be read is kept as unreadable so the card can say so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from typing import Any

from cds_service.clinical import terminology as tx
from cds_service.clinical.config import RuleConfig
from cds_service.clinical.fhirdata import (
    concept_text,
    condition_abatement,
    condition_onset,
    listed,
    observation_date,
    parse_date,
    reference_of,
    status_code,
)
from cds_service.clinical.model import (
    ImagingStudy,
    Side,
    SourceRef,
    Thrombosis,
    Vein,
    VeinClass,
    Verification,
    distinct_veins,
)
from cds_service.clinical.reports.findings import read_text_findings, study_date_is_recent
from cds_service.clinical.reports.narrative import FetchedAttachment
from cds_service.clinical.reports.titles import is_duplex_title

US_SYSTEM = "urn:distal-dvt-cds:venous-ultrasound"

CONDITION_SETS: tuple[tuple[str, VeinClass], ...] = (
    ("condition-dvt-proximal", VeinClass.PROXIMAL),
    ("condition-dvt-distal-axial", VeinClass.DISTAL_AXIAL),
    ("condition-dvt-distal-muscular", VeinClass.DISTAL_MUSCULAR),
    ("condition-dvt-distal-unspecified", VeinClass.DISTAL_UNSPECIFIED),
    ("condition-dvt-unspecified-site", VeinClass.UNKNOWN),
)
BODYSITE_SETS: tuple[tuple[str, VeinClass], ...] = (
    ("bodysite-proximal-vein", VeinClass.PROXIMAL),
    ("bodysite-distal-axial-vein", VeinClass.DISTAL_AXIAL),
    ("bodysite-distal-muscular-vein", VeinClass.DISTAL_MUSCULAR),
)
_ACTIVE = {"active", "recurrence", "relapse"}
IGNORED_VERIFICATION = {"refuted", "entered-in-error"}
_SUSPECTED_VERIFICATION = {"differential", "unconfirmed"}
_FINAL = {"final", "amended", "corrected"}
_ICD_SIDE = {"1": Side.RIGHT, "2": Side.LEFT, "3": Side.BILATERAL, "9": Side.UNKNOWN}
MAX_TEXT_REPORTS = 12  # venous duplex reports read from their text per call, newest first


@dataclass
class ConditionThromboses:
    acute: list[Thrombosis] = field(default_factory=list)
    suspected: list[Thrombosis] = field(default_factory=list)
    prior: list[SourceRef] = field(default_factory=list)  # chronic or older DVT episodes
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------------
# veins and sides
# ------------------------------------------------------------------------------------------------------------------
def _vein_from_concept(concept: dict[str, Any], vein_class: VeinClass) -> Vein:
    return Vein(concept.get("display", concept["code"]).lower(), vein_class, concept["code"])


def veins_from_sites(sites: Any) -> list[Vein]:
    """Veins named by ``bodySite`` CodeableConcepts: by SNOMED body-structure code, else by words."""
    veins: list[Vein] = []
    for site in sites if isinstance(sites, list) else []:
        found = False
        for vs_id, vein_class in BODYSITE_SETS:
            match = tx.valueset(vs_id).match(site)
            if match is not None and not match.by_text:
                concept = next(c for c in tx.valueset(vs_id).concepts(match.system) if c["code"] == match.code)
                veins.append(_vein_from_concept(concept, vein_class))
                found = True
        if not found:
            veins.extend(veins_from_text(concept_text(site)))
    return _unique(veins)


def veins_from_text(text: str) -> list[Vein]:
    """Vein names in free text ("thrombus in the peroneal and soleal veins"), longest names first so
    "common femoral" is not also read as "femoral"."""
    remaining = text.lower()
    candidates: list[tuple[str, dict[str, Any], VeinClass]] = []
    for vs_id, vein_class in BODYSITE_SETS:
        for concept in tx.valueset(vs_id).concepts(tx.SNOMED):
            for designation in concept.get("designation", []):
                if designation.get("use", {}).get("code") == "keywords":
                    candidates.extend((word, concept, vein_class) for word in designation["value"].split("|"))
    veins = []
    for word, concept, vein_class in sorted(candidates, key=lambda c: -len(c[0])):
        pattern = re.compile(r"(?<![a-z])" + re.escape(word) + r"(?![a-z])")
        if pattern.search(remaining):
            veins.append(_vein_from_concept(concept, vein_class))
            remaining = pattern.sub(" ", remaining)
    return _unique(veins)


def _unique(veins: list[Vein]) -> list[Vein]:
    return distinct_veins(veins)


def side_from_icd(code: str) -> Side:
    return _ICD_SIDE.get(code[-1:], Side.UNKNOWN) if len(code) >= 7 else Side.UNKNOWN


def side_from_concepts(concepts: list[Any]) -> Side:
    for concept in concepts:
        if tx.valueset("laterality-bilateral").match(concept):
            return Side.BILATERAL
        if tx.valueset("laterality-right").match(concept):
            return Side.RIGHT
        if tx.valueset("laterality-left").match(concept):
            return Side.LEFT
    return side_from_text(" ".join(concept_text(c) for c in concepts))


def side_from_text(text: str) -> Side:
    words = set(re.findall(r"[a-z]+", text.lower()))
    right, left = "right" in words, "left" in words
    if "bilateral" in words or "both" in words or (right and left):
        return Side.BILATERAL
    if right:
        return Side.RIGHT
    if left:
        return Side.LEFT
    return Side.UNKNOWN


# ----------------------------------------------------------------------------------------------------------------
# Conditions
# ------------------------------------------------------------------------------------------------------------------
def classify_dvt_code(concept: Any) -> tuple[tx.Match, VeinClass] | None:
    for vs_id, vein_class in CONDITION_SETS:
        match = tx.valueset(vs_id).match(concept)
        if match is not None:
            return match, vein_class
    return None


def read_conditions(conditions: list[dict[str, Any]], *, today: date, config: RuleConfig) -> ConditionThromboses:
    found = ConditionThromboses()
    window = timedelta(days=config.acute_window_days)
    for condition in conditions:
        code = condition.get("code")
        verification = status_code(condition, "verificationStatus")
        if verification in IGNORED_VERIFICATION:
            continue
        onset = condition_onset(condition)
        ref = reference_of(condition)
        chronic = tx.valueset("condition-dvt-chronic").match(code)
        if chronic is not None:
            found.prior.append(SourceRef(ref, onset, f"chronic DVT, {chronic.label()}"))
            continue
        classified = classify_dvt_code(code)
        if classified is None:
            continue
        if tx.valueset("condition-pulmonary-embolism").match(code) is not None:
            # Codings of one concept that disagree (seen in the CMS190 test deck: I26.09 beside a popliteal-DVT
            # SNOMED code): read as the pulmonary embolism, never as a DVT nobody diagnosed, and say so.
            found.notes.append(f"{ref} codes both pulmonary embolism and DVT; read as pulmonary embolism")
            continue
        match, vein_class = classified
        clinical = status_code(condition, "clinicalStatus")
        active = (clinical in _ACTIVE or clinical is None) and condition_abatement(condition) is None
        recent = onset is None or today - onset <= window
        if onset is None:
            found.notes.append(f"{ref} has no onset or recorded date; treated as current")

        sites = condition.get("bodySite") if isinstance(condition.get("bodySite"), list) else []
        site_veins = veins_from_sites(sites)
        if vein_class == VeinClass.UNKNOWN and match.by_text and not site_veins:
            site_veins = veins_from_text(match.display)
        veins = _veins_for(match, vein_class, site_veins)
        side = side_from_icd(match.code) if match.system == tx.ICD10CM else Side.UNKNOWN
        if side == Side.UNKNOWN:
            side = side_from_concepts(sites) if sites else side_from_text(match.display if match.by_text else "")
        how = match.label() + (f"; bodySite {', '.join(v.name for v in site_veins)}" if site_veins else "")
        thrombosis = Thrombosis(
            veins=tuple(veins),
            side=side,
            onset=onset,
            verification=_verification(verification),
            acute=active and recent,
            source=SourceRef(ref, onset, how),
            from_text=match.by_text,
        )
        if match.by_text:
            found.notes.append(f"{ref}: DVT recognised from text, not from a code")
        if not thrombosis.acute:
            if not active or not recent:
                found.prior.append(thrombosis.source)
            continue
        if thrombosis.verification == Verification.SUSPECTED:
            found.suspected.append(thrombosis)
        else:
            found.acute.append(thrombosis)
    return found


def _veins_for(match: tx.Match, vein_class: VeinClass, site_veins: list[Vein]) -> list[Vein]:
    if vein_class == VeinClass.UNKNOWN:
        return site_veins
    # A bodySite consistent with the code names the vein more precisely (I82.46- + gastrocnemius).
    consistent = [v for v in site_veins if v.vein_class == vein_class]
    if vein_class == VeinClass.DISTAL_UNSPECIFIED:
        consistent = [v for v in site_veins if v.vein_class.is_distal]
    if consistent:
        return consistent
    name = match.designations.get("vein", match.display.lower() or "deep vein")
    return [Vein(name, vein_class, match.code, specific=name in body_site_names())]


@cache
def body_site_names() -> frozenset[str]:
    """Names of the individual deep veins (body structures); any other vein name is a group."""
    return frozenset(
        concept.get("display", "").lower()
        for vs_id, _ in BODYSITE_SETS
        for concept in tx.valueset(vs_id).concepts(tx.SNOMED)
    )


def _verification(code: str | None) -> Verification:
    if code in _SUSPECTED_VERIFICATION:
        return Verification.SUSPECTED
    if code == "provisional":
        return Verification.PROVISIONAL
    return Verification.CONFIRMED


# ----------------------------------------------------------------------------------------------------------------
# Ultrasound
# ------------------------------------------------------------------------------------------------------------------
def is_venous_duplex(concept: Any) -> bool:
    return duplex_recognition(concept) is not None


def duplex_recognition(concept: Any) -> str | None:
    """ "code" when a code says venous duplex of the leg; "title" when only the words do (a local code)."""
    if tx.valueset("venous-duplex-lower-extremity").match(concept) is not None:
        return "code"
    limited = tx.valueset("venous-ultrasound-limited").match(concept)
    if limited is not None and not limited.by_text:
        return "code"
    title = concept_text(concept)
    texts = (
        [title]
        + [
            c["display"]
            for c in (listed(concept, "coding"))
            if isinstance(c, dict) and isinstance(c.get("display"), str)
        ]
        if isinstance(concept, dict)
        else []
    )
    if any(is_duplex_title(t) for t in texts if t):
        return "title"
    return None


def is_limited_ultrasound(concept: Any) -> bool:
    return tx.valueset("venous-ultrasound-limited").match(concept) is not None


def legs_examined(concept: Any) -> Side:
    match = tx.valueset("venous-duplex-lower-extremity").match(concept)
    if match is not None and match.how == "code":
        side = match.designations.get("side", "unspecified")
        return {"bilateral": Side.BILATERAL, "right": Side.RIGHT, "left": Side.LEFT}.get(side, Side.UNKNOWN)
    limited = tx.valueset("venous-ultrasound-limited").match(concept)
    if limited is not None and limited.how == "code":
        return Side.BILATERAL  # 46301-8 is the bilateral limited study
    return side_from_text(concept_text(concept))


def _component(component: dict[str, Any]) -> str | None:
    code = component.get("code")
    for coding in listed(code, "coding"):
        if isinstance(coding, dict) and coding.get("system") == US_SYSTEM:
            return coding.get("code")
    return None


def _length_cm(quantity: Any) -> float | None:
    return _convert(quantity, {"cm": 1.0, "mm": 0.1, "m": 100.0})


def _diameter_mm(quantity: Any) -> float | None:
    return _convert(quantity, {"mm": 1.0, "cm": 10.0})


def _convert(quantity: Any, factors: dict[str, float]) -> float | None:
    if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), int | float):
        return None
    unit = str(quantity.get("code") or quantity.get("unit") or "").strip().lower()
    factor = factors.get(unit)
    return None if factor is None else float(quantity["value"]) * factor


@dataclass
class _Reading:
    veins: list[Vein] = field(default_factory=list)
    sides: list[Any] = field(default_factory=list)
    length_cm: float | None = None
    diameter_mm: float | None = None
    distance_cm: float | None = None
    no_thrombus: bool = False
    coded: bool = False


def _read_observation(observation: dict[str, Any], reading: _Reading, notes: list[str]) -> None:
    for component in listed(observation, "component"):
        if not isinstance(component, dict):
            continue
        kind = _component(component)
        if kind is None:
            continue
        reading.coded = True
        if kind == "thrombosed-vein":
            veins = veins_from_sites([component.get("valueCodeableConcept")])
            if not veins:
                notes.append(f"{reference_of(observation)}: a thrombosed-vein component names no known deep vein")
            reading.veins.extend(veins)
        elif kind == "side":
            reading.sides.append(component.get("valueCodeableConcept"))
        elif kind == "thrombus-length":
            reading.length_cm = _max(reading.length_cm, _length_cm(component.get("valueQuantity")))
        elif kind == "thrombus-diameter":
            reading.diameter_mm = _max(reading.diameter_mm, _diameter_mm(component.get("valueQuantity")))
        elif kind == "distance-to-popliteal":
            distance = _length_cm(component.get("valueQuantity"))
            if distance is not None:
                reading.distance_cm = distance if reading.distance_cm is None else min(reading.distance_cm, distance)
        elif kind == "no-thrombus":
            reading.no_thrombus = reading.no_thrombus or component.get("valueBoolean") is True
    # Some systems put the finding in the value itself (a DVT code or a vein).
    value = observation.get("valueCodeableConcept")
    if isinstance(value, dict):
        classified = classify_dvt_code(value)
        if classified is not None:
            reading.coded = True
            match, vein_class = classified
            site = observation.get("bodySite")
            reading.veins.extend(
                _veins_for(match, vein_class, veins_from_sites([site] if isinstance(site, dict) else []))
            )
            if match.system == tx.ICD10CM and side_from_icd(match.code) != Side.UNKNOWN:
                reading.sides.append({"text": side_from_icd(match.code).value})


def _max(current: float | None, new: float | None) -> float | None:
    if new is None:
        return current
    return new if current is None else max(current, new)


def read_imaging(
    observations: list[dict[str, Any]],
    reports: list[dict[str, Any]],
    *,
    today: date,
    attachments: Mapping[str, FetchedAttachment] | None = None,
    acute_window_days: int = 30,
) -> tuple[list[ImagingStudy], list[str]]:
    """Venous duplex studies, oldest first, with the thromboses each one shows (from codes, else report text)."""
    notes: list[str] = []
    attachments = attachments or {}
    by_ref = {reference_of(o): o for o in observations if o.get("status") in _FINAL and is_venous_duplex(o.get("code"))}
    grouped: set[str] = set()
    studies: list[ImagingStudy] = []
    duplex_reports = [r for r in reports if r.get("status") in _FINAL and is_venous_duplex(r.get("code"))]
    # Text is read for the newest reports only: a record of hundreds of old studies must not cost a second.
    duplex_reports.sort(key=lambda r: _report_date(r) or date.min, reverse=True)
    if len(duplex_reports) > MAX_TEXT_REPORTS:
        notes.append(
            f"{len(duplex_reports) - MAX_TEXT_REPORTS} older venous duplex report(s) were not read from their text "
            f"(the newest {MAX_TEXT_REPORTS} are)"
        )
    for position, report in enumerate(duplex_reports):
        members = []
        for result in listed(report, "result"):
            ref = result.get("reference") if isinstance(result, dict) else None
            if isinstance(ref, str):
                key = ref.split("/_history")[0]
                key = "/".join(key.split("/")[-2:])
                if key in by_ref:
                    members.append(by_ref[key])
                    grouped.add(key)
        when = _report_date(report)
        recent = study_date_is_recent(when, today, acute_window_days)
        read_text = position < MAX_TEXT_REPORTS
        studies.append(_study(report, members, when, notes, attachments if read_text else None, recent))
    for ref, observation in by_ref.items():
        if ref not in grouped:
            when = observation_date(observation)
            recent = study_date_is_recent(when, today, acute_window_days)
            studies.append(_study(observation, [observation], when, notes, attachments, recent))
    studies = [s for s in studies if s.when is None or s.when <= today]
    studies.sort(key=lambda s: s.when or date.min)
    return studies, notes


def _report_date(report: dict[str, Any]) -> date | None:
    return parse_date(report.get("effectiveDateTime")) or observation_date(report)


def _study(
    head: dict[str, Any],
    members: list[dict[str, Any]],
    when: date | None,
    notes: list[str],
    attachments: Mapping[str, FetchedAttachment] | None,
    recent: bool,
) -> ImagingStudy:
    """One study; its report text is read unless ``attachments`` is None (a study beyond the newest few)."""
    code = head.get("code")
    legs = legs_examined(code)
    reading = _Reading()
    for observation in members:
        _read_observation(observation, reading, notes)
    components_read = reading.coded
    conclusion_veins: list[Vein] = []
    conclusions = head.get("conclusionCode") if head.get("resourceType") == "DiagnosticReport" else None
    for concept in conclusions if isinstance(conclusions, list) else []:
        classified = classify_dvt_code(concept)
        if classified is not None:
            match, vein_class = classified
            conclusion_veins.extend(_veins_for(match, vein_class, []))
            if match.system == tx.ICD10CM:
                reading.sides.append({"text": side_from_icd(match.code).value})
    code_match = tx.valueset("venous-duplex-lower-extremity").match(code)
    source = SourceRef(reference_of(head), when, code_match.label() if code_match else concept_text(code))
    if duplex_recognition(code) == "title":
        notes.append(f"{source.reference}: a local code, recognised as a venous duplex study by its title")
    if not components_read and attachments is not None:
        text = _text_findings(head, source, legs, attachments, recent)
        if text is not None and (text.read or not conclusion_veins):
            notes.extend(text.notes)
            if text.read:
                return _text_study(source, when, legs, code, text, recent)
    if not reading.veins and conclusion_veins:
        reading.veins, reading.coded = conclusion_veins, True
    study = ImagingStudy(
        source=source,
        when=when,
        legs_examined=legs,
        coded=reading.coded,
        limited=is_limited_ultrasound(code),
        no_thrombus=reading.no_thrombus and not reading.veins,
    )
    if not reading.coded:
        notes.append(f"{source.reference}: ultrasound findings are narrative only (no coded veins or measurements)")
        return study
    if reading.veins:
        side = side_from_concepts(reading.sides) if reading.sides else Side.UNKNOWN
        if side == Side.UNKNOWN and legs in (Side.RIGHT, Side.LEFT):
            side = legs
        study.thromboses.append(
            Thrombosis(
                veins=tuple(_unique(reading.veins)),
                side=side,
                onset=when,
                verification=Verification.CONFIRMED,
                acute=recent,
                source=source,
                length_cm=reading.length_cm,
                diameter_mm=reading.diameter_mm,
                distance_to_popliteal_cm=reading.distance_cm,
                from_imaging=True,
            )
        )
    return study


def _text_findings(
    head: dict[str, Any], source: SourceRef, legs: Side, attachments: Mapping[str, FetchedAttachment], recent: bool
) -> Any:
    """The report text's findings, for a DiagnosticReport (or a narrative ``valueString`` Observation)."""
    if head.get("resourceType") == "DiagnosticReport":
        report = head
    elif isinstance(head.get("valueString"), str):
        report = {"conclusion": head["valueString"]}
    else:
        return None
    return read_text_findings(report, source=source, legs=legs, attachments=attachments, recent=recent)


def _text_study(source: SourceRef, when: date | None, legs: Side, code: Any, text: Any, recent: bool) -> ImagingStudy:
    return ImagingStudy(
        source=source,
        when=when,
        legs_examined=legs,
        thromboses=[*text.thromboses, *text.earlier],
        no_thrombus=text.negative,
        coded=False,
        text_read=True,
        limited=is_limited_ultrasound(code) or text.limited is not None,
        change=text.change,
        change_source=text.change_source,
        chronic=list(text.chronic),
        uncertain=list(text.uncertain) if recent else [],
        notes=list(text.notes),
    )
