"""The settings the clinical rules read, as plain data (the core never sees the Settings object)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cds_service.clinical import thresholds


@dataclass(frozen=True)
class RuleConfig:
    profile: Literal["seed", "chest"] = "seed"
    acute_window_days: int = thresholds.ACUTE_WINDOW_DAYS.int_value
    recent_hospitalization_days: int = thresholds.RECENT_HOSPITALIZATION_DAYS.int_value
    recent_surgery_days: int = thresholds.RECENT_SURGERY_DAYS.int_value
    close_to_popliteal_cm: float = thresholds.CLOSE_TO_POPLITEAL_CM.value
