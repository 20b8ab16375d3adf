"""EHR dialects: how the cards a hook built are shaped for the EHR that called (DVT_CDS_EHR_PROFILE, or an
issuer's ``ehr_profile``)."""

from __future__ import annotations

from cds_service.profiles.base import Profile, ShapeContext
from cds_service.profiles.catalog import CatalogError, OrderCatalog
from cds_service.profiles.epic import EpicProfile
from cds_service.profiles.oracle import OracleProfile

PROFILES: dict[str, Profile] = {p.name: p for p in (Profile(), EpicProfile(), OracleProfile())}


def profile(name: str) -> Profile:
    return PROFILES[name]


__all__ = ["PROFILES", "CatalogError", "OrderCatalog", "Profile", "ShapeContext", "profile"]
