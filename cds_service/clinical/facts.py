"""ClinicalFacts from a PatientRecord: everything the rules read, each with the resource it came from.

Resources are selected on the raw JSON by type and code first; only those selected are validated against
FHIR R4 (``record.typed``) and an invalid one is skipped and reported. Resource types the record could not
obtain make their facts "not assessed".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from cds_service.clinical import terminology as tx
from cds_service.clinical.config import RuleConfig
from cds_service.clinical.ddimer import DDIMER_SETS, newest_ddimer
from cds_service.clinical.factors import facts_read_from, valuesets_read
from cds_service.clinical.fhirdata import (
    age_on,
    listed,
    parse_date,
    period_end,
    period_start,
    procedure_date,
    reference_of,
)
from cds_service.clinical.labs import read_labs
from cds_service.clinical.lookback import encounter_procedure_days
from cds_service.clinical.medications import (
    AGENT_CLASS,
    MedicationLookup,
    anticoagulant_of,
    current_uses,
    is_current,
    other_drug_of,
)
from cds_service.clinical.model import (
    ClinicalFacts,
    Finding,
    ImagingStudy,
    Patient,
    Side,
    SourceRef,
    Thrombosis,
    Verification,
)
from cds_service.clinical.riskfactors import (
    condition_finding,
    covid19,
    dialysis,
    inpatient,
    inpatient_recognition,
    is_active,
    is_inpatient_encounter,
    is_surgical,
    matching_conditions,
    prefers_no_anticoagulation,
    pregnancy,
    provoking_factors,
    recent_hospitalization,
    severe_symptoms,
    surgeries,
    unknown,
)
from cds_service.clinical.serial import planned_imaging
from cds_service.clinical.thresholds import PROVOKING_WINDOW_DAYS
from cds_service.clinical.thrombosis import (
    CONDITION_SETS,
    IGNORED_VERIFICATION,
    classify_dvt_code,
    duplex_recognition,
    is_venous_duplex,
    read_conditions,
    read_imaging,
)
from cds_service.fhir.record import PatientRecord

# Bleeding-risk conditions (docs/clinical/RULES.md R-BLEED-2) and the value set each is read from.
BLEEDING_CONDITION_SETS = {
    "renal-failure": "condition-renal-failure",
    "liver-failure": "condition-liver-failure",
    "previous-stroke": "condition-stroke",
    "diabetes": "condition-diabetes",
    "anaemia": "condition-anaemia",
    "alcohol-abuse": "condition-alcohol-abuse",
    "frequent-falls": "condition-falls",
}
# What is selected before validation: the factors' own reads (factors.py) and what the rest of the rules read —
# the DVT itself (docs/clinical/RULES.md R-DX-*), pregnancy and postpartum (R-PREG-*), bleeding risk (R-BLEED-*).
CONDITION_READS = tuple(
    dict.fromkeys(
        (
            *(vs for vs, _ in CONDITION_SETS),
            "condition-dvt-chronic",
            *valuesets_read("Condition"),
            "condition-metastatic-cancer",
            "condition-delivery-puerperium",
            "condition-hemorrhage",
            "condition-bleeding-disorder",
            *BLEEDING_CONDITION_SETS.values(),
            "condition-heparin-induced-thrombocytopenia",
        )
    )
)
# Observations, in the groups the prefetch templates ask for them (hooks/templates.py).
ULTRASOUND_SETS = ("venous-duplex-lower-extremity", "venous-ultrasound-limited")
_LAB_INPUTS = (
    "observation-body-weight",
    "observation-creatinine",
    "observation-egfr",
    "observation-platelets",
    "observation-hemoglobin",
    "observation-pregnancy-status",
)
LAB_SETS = tuple(
    dict.fromkeys(
        (*_LAB_INPUTS, *(vs for vs in valuesets_read("Observation") if vs not in (*DDIMER_SETS, *ULTRASOUND_SETS)))
    )
)
OBSERVATION_READS = (*DDIMER_SETS, *ULTRASOUND_SETS, *LAB_SETS)
MEDICATION_READS = (
    *(f"anticoagulant-{agent}" for agent in AGENT_CLASS),
    "medication-antiplatelet",
    "medication-nsaid",
    "medication-estrogen",
    "medication-interacting-doac",
)
PROCEDURE_READS = ("procedure-delivery", "procedure-dialysis")


def build_facts(
    record: PatientRecord,
    *,
    today: date,
    config: RuleConfig,
    context_encounter_id: str | None = None,
    extra_medications: list[dict[str, Any]] | None = None,
) -> ClinicalFacts:
    notes: list[str] = []
    unavailable = {gap.resource_type: gap for gap in record.gaps if not gap.partial}
    for gap in record.gaps:
        if gap.partial:
            notes.append(gap.describe())

    def select(resource_type: str, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [r for r in record.resources(resource_type) if keep(r) and record.typed(r) is not None]

    # --- patient -------------------------------------------------------------------------------------------------
    raw_patient = record.patient
    patient_ref = reference_of(raw_patient) if raw_patient else f"Patient/{record.patient_id}"
    birth = parse_date(raw_patient.get("birthDate")) if raw_patient and record.typed(raw_patient) else None
    gender = raw_patient.get("gender") if raw_patient and isinstance(raw_patient.get("gender"), str) else None
    patient = Patient(age=age_on(birth, today) if birth else None, sex=gender, reference=patient_ref)

    # --- conditions ----------------------------------------------------------------------------------------------
    coded = [c for c in record.resources("Condition") if tx.match_any(c.get("code"), CONDITION_READS) is not None]
    conditions = [c for c in coded if record.typed(c) is not None]
    dvt = read_conditions(conditions, today=today, config=config)
    notes.extend(dvt.notes)
    # A DVT-coded Condition that is not valid R4 (a DSTU2 or STU3 server, a broken feed) is said, never skipped.
    unreadable_dvt = [
        reference_of(c)
        for c in coded
        if record.typed(c) is None
        and classify_dvt_code(c.get("code")) is not None
        and _raw_status(c.get("verificationStatus")) not in IGNORED_VERIFICATION
    ]

    # --- observations and reports --------------------------------------------------------------------------------
    observation_sets = OBSERVATION_READS
    observations = select("Observation", lambda o: tx.match_any(o.get("code"), observation_sets) is not None)
    reports = select("DiagnosticReport", lambda r: is_venous_duplex(r.get("code")))
    imaging, imaging_notes = read_imaging(
        observations,
        reports,
        today=today,
        attachments=record.attachments,
        acute_window_days=config.acute_window_days,
    )
    notes.extend(imaging_notes)
    _residual_thrombus(imaging, notes)

    thromboses: list[Thrombosis] = list(dvt.acute)
    suspected: list[Thrombosis] = list(dvt.suspected)
    earlier_episodes: list[SourceRef] = list(dvt.prior)
    for study in imaging:
        thromboses.extend(t for t in study.thromboses if t.acute)
        earlier_episodes.extend(t.source for t in study.thromboses if not t.acute)  # chronic or older thrombus
        suspected.extend(_suspected(study, source) for source in study.uncertain)
    index = index_date(dvt.acute, imaging, today)
    labs = read_labs(observations, patient, today=today, notes=notes)

    # --- medications ---------------------------------------------------------------------------------------------
    lookup = MedicationLookup(record.resources("Medication") + list(extra_medications or []))
    requests = select(
        "MedicationRequest", lambda m: is_current(m) and tx.match_any(lookup.concept(m), MEDICATION_READS) is not None
    )
    weight = labs.weight.value if labs.weight else None
    anticoagulants = current_uses(requests, lookup, anticoagulant_of, weight_kg=weight)
    antiplatelets = current_uses(
        requests, lookup, lambda c: other_drug_of(c, "medication-antiplatelet", "antiplatelet"), weight_kg=weight
    )
    nsaids = current_uses(requests, lookup, lambda c: other_drug_of(c, "medication-nsaid", "nsaid"), weight_kg=weight)
    estrogen_uses = current_uses(
        requests, lookup, lambda c: other_drug_of(c, "medication-estrogen", "estrogen"), weight_kg=weight
    )
    interacting = current_uses(
        requests, lookup, lambda c: other_drug_of(c, "medication-interacting-doac", "interacting"), weight_kg=weight
    )
    for use in anticoagulants + antiplatelets + nsaids:
        if use.matched_by_text:
            notes.append(f"{use.source.reference}: {use.agent} recognised from the drug name, not from a code")
    unidentified = unidentified_medications(record, lookup, notes)

    # --- encounters, procedures, orders --------------------------------------------------------------------------
    # The window the service's own Encounter and Procedure queries are bounded by (lookback.py): the same one.
    oldest = today - timedelta(days=encounter_procedure_days(config))
    encounters = select(
        "Encounter",
        lambda e: (
            is_inpatient_encounter(e)
            and (period_end(e.get("period")) or period_start(e.get("period")) or oldest) >= oldest
        ),
    )
    provoking_start = index - timedelta(days=PROVOKING_WINDOW_DAYS.int_value)
    procedures = select(
        "Procedure",
        lambda p: (
            p.get("status") == "completed"
            and (procedure_date(p) or oldest) >= oldest
            and (is_surgical(p) is not None or tx.match_any(p.get("code"), PROCEDURE_READS) is not None)
        ),
    )
    service_requests = select("ServiceRequest", lambda s: is_venous_duplex(s.get("code")))
    _local_codes_by_text(encounters, service_requests, notes)

    pregnant, postpartum = pregnancy(conditions, observations, procedures, today=today)
    provoking = provoking_factors(
        conditions=conditions,
        encounters=encounters,
        procedures=procedures,
        estrogen=[u.source for u in estrogen_uses],
        pregnant=pregnant,
        postpartum=postpartum,
        start=provoking_start,
        end=index,
    )
    recent_surgery_list = surgeries(procedures, start=today - timedelta(days=config.recent_surgery_days), end=today)

    dvt_condition_resources = [
        c for c in conditions if any(t.source.reference == reference_of(c) for t in dvt.acute + dvt.suspected)
    ]
    ddimer = newest_ddimer(observations, diagnosis=index, today=today)
    if ddimer is not None and ddimer.source.how.startswith("text "):
        notes.append(f"{ddimer.source.reference}: a local code, recognised as a D-dimer by its text")
    facts = ClinicalFacts(
        patient=patient,
        thromboses=thromboses,
        suspected=suspected,
        imaging=imaging,
        ddimer=ddimer,
        anticoagulants=anticoagulants,
        antiplatelets=antiplatelets,
        nsaids=nsaids,
        planned_imaging=planned_imaging(service_requests, imaging, index=index, today=today, notes=notes),
        provoking=provoking,
        active_cancer=condition_finding(conditions, "condition-active-cancer"),
        metastatic_cancer=condition_finding(conditions, "condition-metastatic-cancer"),
        prior_vte=_prior_vte(conditions, earlier_episodes, today=today, config=config),
        inpatient=inpatient(encounters, context_encounter_id),
        recent_hospitalization=recent_hospitalization(encounters, today=today, days=config.recent_hospitalization_days),
        recent_surgery=Finding(True, recent_surgery_list) if recent_surgery_list else Finding.absent(),
        severe_symptoms=severe_symptoms(dvt_condition_resources, observations, today=today),
        covid19=covid19(conditions, today=today),
        pregnant=pregnant,
        postpartum=postpartum,
        prefers_no_anticoagulation=prefers_no_anticoagulation(observations),
        labs=labs,
        bleeding_conditions=_bleeding_conditions(conditions, procedures, today=today, config=config),
        pulmonary_embolism=_acute_pe(conditions, today=today, config=config),
        interacting_drugs=interacting,
        unreadable_dvt=unreadable_dvt,
        unidentified_medications=unidentified,
        data_notes=notes + record.notes,
    )
    _mark_unavailable(facts, unavailable)
    return facts


_DRUG_PRODUCT = re.compile(r"\d\s*(?:mg|mcg|µg|g|unit|units|iu|ml|%)\b", re.IGNORECASE)


def unidentified_medications(record: PatientRecord, lookup: MedicationLookup, notes: list[str]) -> list[str]:
    """Current orders whose Medication could not be read (not contained, not included, not fetched) and whose
    display does not name a drug product: it may be an anticoagulant, so anticoagulation status is unknown."""
    unknown: list[str] = []
    for request in record.resources("MedicationRequest"):
        if not is_current(request):
            continue
        missing = lookup.unresolved(request)
        if missing is None:
            continue
        concept, _ = lookup.resolve(request)
        display = concept.get("text") if isinstance(concept, dict) else None
        if display and (tx.match_any(concept, MEDICATION_READS) is not None or _DRUG_PRODUCT.search(display)):
            continue  # named by a drug product ("LISINOPRIL 10 MG TABLET"): read from its name
        what = display or missing
        unknown.append(what)
        notes.append(f"anticoagulant status unknown for {what} (its Medication could not be read)")
    return unknown


def _local_codes_by_text(
    encounters: list[dict[str, Any]], service_requests: list[dict[str, Any]], notes: list[str]
) -> None:
    """Say which local codes were recognised by their words (no site ConceptMap mapped them)."""
    for encounter in encounters:
        if inpatient_recognition(encounter) == "text":
            notes.append(f"{reference_of(encounter)}: a local code, recognised as an inpatient stay by its text")
    for request in service_requests:
        if duplex_recognition(request.get("code")) == "title":
            notes.append(f"{reference_of(request)}: a local code, recognised as a venous duplex order by its title")


def _residual_thrombus(imaging: list[ImagingStudy], notes: list[str]) -> None:
    """A vein read from text with thrombus, acuity not stated, that an earlier (older) study already showed on
    the same leg may be residual thrombus: not read as a new episode (docs/clinical/RULES.md R-TEXT-6)."""
    older = [(v.name, t.side) for s in imaging for t in s.thromboses if not t.acute for v in t.veins]
    for study in imaging:
        for thrombosis in study.thromboses:
            if not thrombosis.acute or not thrombosis.from_report_text or "acute" in thrombosis.evidence:
                continue
            if any((v.name, side) in older for v in thrombosis.veins for side in (thrombosis.side, Side.UNKNOWN)):
                thrombosis.acute = False
                notes.append(
                    f"{study.source.reference}: thrombus in a vein an earlier study already showed, acuity not "
                    "stated: read as possibly residual, not as a new episode"
                )


def _suspected(study: ImagingStudy, source: SourceRef) -> Thrombosis:
    return Thrombosis(
        veins=(),
        side=study.legs_examined if study.legs_examined in (Side.RIGHT, Side.LEFT) else Side.UNKNOWN,
        onset=study.when,
        verification=Verification.SUSPECTED,
        acute=True,
        source=source,
        from_imaging=True,
        from_report_text=True,
    )


def index_date(acute: list[Thrombosis], imaging: list[Any], today: date) -> date:
    """The diagnosis date of the current episode: the earliest acute DVT onset or positive study."""
    dates = [t.onset for t in acute if t.onset] + [
        s.when for s in imaging if s.when and any(t.acute for t in s.thromboses)
    ]
    return min(dates) if dates else today


def _prior_vte(
    conditions: list[dict[str, Any]], prior_dvt: list[SourceRef], *, today: date, config: RuleConfig
) -> Finding:
    sources = list(prior_dvt)
    for condition, match in matching_conditions(conditions, "condition-vte-history", active_only=False):
        sources.append(SourceRef(reference_of(condition), None, f"history of VTE ({match.label()})"))
    cutoff = today - timedelta(days=config.acute_window_days)
    for condition, match in matching_conditions(conditions, "condition-pulmonary-embolism", active_only=False):
        onset = parse_date(condition.get("onsetDateTime")) or parse_date(condition.get("recordedDate"))
        if (onset is not None and onset < cutoff) or not is_active(condition):
            sources.append(SourceRef(reference_of(condition), onset, f"earlier pulmonary embolism ({match.label()})"))
    return Finding(True, sources) if sources else Finding.absent()


def _acute_pe(conditions: list[dict[str, Any]], *, today: date, config: RuleConfig) -> Finding:
    return condition_finding(
        conditions, "condition-pulmonary-embolism", since=today - timedelta(days=config.acute_window_days)
    )


def _bleeding_conditions(
    conditions: list[dict[str, Any]], procedures: list[dict[str, Any]], *, today: date, config: RuleConfig
) -> dict[str, Finding]:
    hemorrhage = condition_finding(conditions, "condition-hemorrhage", active_only=False)
    disorder = condition_finding(conditions, "condition-bleeding-disorder", active_only=False)
    found: dict[str, Finding] = {
        "previous-bleeding": Finding(True, [*hemorrhage.sources, *disorder.sources])
        if hemorrhage.present or disorder.present
        else Finding.absent(),
        "active-bleeding": condition_finding(
            conditions, "condition-hemorrhage", since=today - timedelta(days=config.acute_window_days)
        ),
    }
    for factor, vs_id in BLEEDING_CONDITION_SETS.items():
        # A history of stroke or falls counts whatever its status; the others only while active.
        found[factor] = condition_finding(
            conditions, vs_id, active_only=factor not in ("previous-stroke", "frequent-falls")
        )
    on_dialysis = dialysis(procedures, today=today)
    if on_dialysis:
        renal = found["renal-failure"]
        found["renal-failure"] = Finding(True, [*renal.sources, *on_dialysis])
    found["heparin-induced-thrombocytopenia"] = condition_finding(
        conditions, "condition-heparin-induced-thrombocytopenia", active_only=False
    )
    return found


# Findings read from a resource type besides the factors' own (factors.py): pregnancy status is an Observation.
_OTHER_FINDINGS_READ = {"Observation": ("pregnant",)}


def _mark_unavailable(facts: ClinicalFacts, unavailable: dict[str, Any]) -> None:
    """Findings whose source resource type could not be read become 'not assessed' (never 'absent'); one found
    present from another source stays present."""
    for resource_type, gap in unavailable.items():
        facts.not_assessed.append(gap.describe())
        for attribute in (*facts_read_from(resource_type), *_OTHER_FINDINGS_READ.get(resource_type, ())):
            if getattr(facts, attribute).present is not True:
                setattr(facts, attribute, unknown(resource_type))


def _raw_status(value: Any) -> str | None:
    """A status as sent, whatever its shape: an R4 CodeableConcept or the plain string of DSTU2 and STU3."""
    if isinstance(value, str):
        return value.strip().lower()
    codes = [c.get("code") for c in listed(value, "coding") if isinstance(c, dict)]
    return str(codes[0]).lower() if codes and codes[0] else None
