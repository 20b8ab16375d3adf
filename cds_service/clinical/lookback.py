"""How far back each rule reads: the service's own FHIR queries ask only for what these windows can use.

Every window here is one the rules apply (``thresholds.py`` and the settings in ``RuleConfig``); none is invented
for the queries. ``None`` means the whole history counts (an old ultrasound is an earlier episode, the newest
pregnancy status decides however old it is), so such a query gets no date bound. The selection in ``facts.py``
applies the same encounter and procedure window, so the query and the rule cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable

from cds_service.clinical.config import RuleConfig
from cds_service.clinical.ddimer import DDIMER_SETS
from cds_service.clinical.thresholds import DDIMER_WINDOW_DAYS, LAB_WINDOW_DAYS, PAIN_WINDOW_DAYS, PROVOKING_WINDOW_DAYS

ALL_HISTORY = None


def _ddimer(config: RuleConfig) -> int:
    # The newest result within 14 days of a diagnosis, and a diagnosis is acute (within the acute window of today).
    return config.acute_window_days + DDIMER_WINDOW_DAYS.int_value


# Observation value set -> days before today its rule reads (labs.py, ddimer.py, riskfactors.py, thrombosis.py).
OBSERVATION_WINDOWS: dict[str, Callable[[RuleConfig], int | None]] = {
    **dict.fromkeys(DDIMER_SETS, _ddimer),
    # Earlier studies are earlier episodes (prior VTE) and tell residual thrombus from new: all of them count.
    "venous-duplex-lower-extremity": lambda config: ALL_HISTORY,
    "venous-ultrasound-limited": lambda config: ALL_HISTORY,
    "observation-body-weight": lambda config: LAB_WINDOW_DAYS.int_value,
    "observation-creatinine": lambda config: LAB_WINDOW_DAYS.int_value,
    "observation-egfr": lambda config: LAB_WINDOW_DAYS.int_value,
    "observation-platelets": lambda config: LAB_WINDOW_DAYS.int_value,
    "observation-hemoglobin": lambda config: LAB_WINDOW_DAYS.int_value,
    "observation-pain-score": lambda config: PAIN_WINDOW_DAYS.int_value,
    # The newest status or preference decides, however old it is.
    "observation-pregnancy-status": lambda config: ALL_HISTORY,
    "preference-avoid-anticoagulation": lambda config: ALL_HISTORY,
}


def observation_days(valuesets: tuple[str, ...], config: RuleConfig) -> int | None:
    """The longest window over the value sets (``None`` when any of them reads the whole history)."""
    windows = [OBSERVATION_WINDOWS[vs](config) for vs in valuesets]
    if not windows or any(w is None for w in windows):
        return ALL_HISTORY
    return max(w for w in windows if w is not None)


def windowed(valuesets: tuple[str, ...]) -> tuple[str, ...]:
    """The value sets whose rules read a window (under the default configuration's windows, which only widen)."""
    return tuple(vs for vs in valuesets if OBSERVATION_WINDOWS[vs](RuleConfig()) is not None)


def whole_history(valuesets: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(vs for vs in valuesets if vs not in windowed(valuesets))


def encounter_procedure_days(config: RuleConfig) -> int:
    """No encounter or procedure rule looks further back than the provoking window before an acute episode (an
    acute episode began within the acute window), recent surgery or recent hospitalization."""
    return max(
        PROVOKING_WINDOW_DAYS.int_value + config.acute_window_days,
        config.recent_surgery_days,
        config.recent_hospitalization_days,
    )


def query_lookbacks(config: RuleConfig, observation_groups: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Days back for each named query window: ``encounters``, ``procedures`` and each Observation group (a name
    for the value sets one query asks for). A group reading the whole history gets no entry: no bound."""
    days = {"encounters": encounter_procedure_days(config), "procedures": encounter_procedure_days(config)}
    for name, valuesets in observation_groups.items():
        window = observation_days(valuesets, config)
        if window is not None:
            days[name] = window
    return days
