"""EHR dialects: how the cards a hook built are shaped for the EHR that called (DVT_CDS_EHR_PROFILE, or an
issuer's ``ehr_profile``)."""

from __future__ import annotations

from cds_service.clinical.topics import Topic
from cds_service.profiles.base import Profile, ShapeContext
from cds_service.profiles.catalog import CatalogError, OrderCatalog
from cds_service.profiles.epic import EpicProfile
from cds_service.profiles.oracle import OracleProfile

PROFILES: dict[str, Profile] = {p.name: p for p in (Profile(), EpicProfile(), OracleProfile())}


def profile(name: str) -> Profile:
    return PROFILES[name]


_STANDARD = {t.value for t in Topic}


def canonical_topic(code: str) -> str:
    """The project's topic code for a card topic spelled by any profile (a tester replaying fixtures against a
    service run with DVT_CDS_EHR_PROFILE=epic compares with the same manifest)."""
    for each in PROFILES.values():
        standard = each.topic_from_code(code)
        if standard in _STANDARD:
            return standard
    return code


__all__ = ["PROFILES", "CatalogError", "OrderCatalog", "Profile", "ShapeContext", "canonical_topic", "profile"]
