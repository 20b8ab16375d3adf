"""``dvt-cds ehr-config``: what an EHR analyst enters to connect the service — per EHR profile.

The services and the hooks (or Epic trigger actions) that call them, each service's prefetch templates (with the
site's ConceptMap-mapped local codes, as the running service advertises them), the FHIR scopes each needs, the card
topic codes as that EHR sees them, the override reason codes, and the order keys a site maps in its order catalog.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from cds_service.clinical.regimens import ORDER_KEYS
from cds_service.clinical.topics import TOPIC_DISPLAY, TOPIC_SYSTEM, Topic
from cds_service.fhir.conceptmaps import SiteConceptMaps
from cds_service.profiles import PROFILES, OrderCatalog
from cds_service.protocol import OVERRIDE_REASON_SYSTEM, OVERRIDE_REASONS
from cds_service.settings import Settings
from hooks import site_services

# How each EHR reaches each service (docs/integration/).
TRIGGERS: dict[str, dict[str, str]] = {
    "hl7": {
        "distal-dvt-patient-view": "patient-view (chart open)",
        "distal-dvt-order-select": "order-select",
        "distal-dvt-order-sign": "order-sign",
        "distal-dvt-encounter-discharge": "encounter-discharge",
    },
    "epic": {
        "distal-dvt-patient-view": (
            "patient-view; also Epic's native triggers sent as patient-view with "
            "com.epic.cdshooks.request.bpa-trigger-action: 27 (inpatient discharge) runs the discharge checks, "
            "18 (enter order) and 23 (sign orders) the order checks on the draft orders sent"
        ),
        "distal-dvt-order-select": "order-select",
        "distal-dvt-order-sign": "order-sign",
        "distal-dvt-encounter-discharge": "not an Epic hook: use patient-view with trigger action 27",
    },
    "oracle": {
        "distal-dvt-patient-view": (
            "patient-view (Oracle Health's only hook); runs the discharge checks too when the context encounter "
            "is being discharged"
        ),
        "distal-dvt-order-select": "not offered by Oracle Health",
        "distal-dvt-order-sign": "not offered by Oracle Health",
        "distal-dvt-encounter-discharge": "not offered by Oracle Health: patient-view covers it",
    },
}
# Read after the prefetch: report text in Binary resources, and Medications neither contained nor included.
_FOLLOW_UP_TYPES = ("Binary", "Medication")


def scopes(templates: dict[str, str]) -> list[str]:
    """SMART scopes (v2 and v1 spellings) for the resource types a service's templates and follow-ups read."""
    kinds = sorted({m.group(0) for t in templates.values() if (m := re.match(r"[A-Za-z]+", t))} | set(_FOLLOW_UP_TYPES))
    return [f"patient/{kind}.rs (v1: patient/{kind}.read)" for kind in kinds]


def describe(profile_name: str, settings: Settings) -> dict[str, Any]:
    profile = PROFILES[profile_name]
    catalog = OrderCatalog.load(settings.order_catalog)
    services = site_services(SiteConceptMaps.load(settings.concept_maps), settings.prefetch)
    return {
        "profile": profile_name,
        "description": profile.description,
        "base_url": settings.base_url,
        "services": [
            {
                "id": service.id,
                "endpoint": f"{settings.base_url}/cds-services/{service.id}",
                "hook": service.hook,
                "how_called": TRIGGERS[profile_name][service.id],
                "prefetch": {key.name: key.template for key in service.prefetch},
                # Under DVT_CDS_PREFETCH=lean the rest of the record is read with the token: its scopes too.
                "fhir_scopes": scopes({key.name: key.template for key in (*service.prefetch, *service.rest)}),
            }
            for service in services
        ],
        "topic_system": TOPIC_SYSTEM,
        "topics": [
            {"code": profile.topic_code(topic.value), "standard_code": topic.value, "display": TOPIC_DISPLAY[topic]}
            for topic in Topic
        ],
        "override_reason_system": OVERRIDE_REASON_SYSTEM,
        "override_reasons": [{"code": code, "display": display} for code, display in OVERRIDE_REASONS.items()],
        "order_keys": [{"key": key, "order": words, "mapped": catalog.has(key)} for key, words in ORDER_KEYS.items()],
    }


def print_text(config: dict[str, Any]) -> None:
    out = sys.stdout
    out.write(f"EHR profile: {config['profile']} — {config['description']}\nBase URL: {config['base_url']}\n")
    for service in config["services"]:
        out.write(f"\nService {service['id']}\n  endpoint: {service['endpoint']}\n")
        out.write(f"  hook:     {service['hook']}\n  called:   {service['how_called']}\n  prefetch:\n")
        for key, template in service["prefetch"].items():
            out.write(f"    {key}: {template}\n")
        out.write("  FHIR scopes:\n" + "".join(f"    {s}\n" for s in service["fhir_scopes"]))
    out.write(f"\nCard topic codes ({config['topic_system']}):\n")
    for topic in config["topics"]:
        out.write(f"  {topic['code']:40} {topic['display']}\n")
    out.write(f"\nOverride reasons ({config['override_reason_system']}):\n")
    for reason in config["override_reasons"]:
        out.write(f"  {reason['code']:24} {reason['display']}\n")
    out.write("\nOrder keys for the site's order catalog (DVT_CDS_ORDER_CATALOG):\n")
    for order in config["order_keys"]:
        out.write(f"  {order['key']:46} {'mapped  ' if order['mapped'] else 'unmapped'}  {order['order']}\n")


def run(profile_name: str, settings: Settings, *, as_json: bool) -> int:
    config = describe(profile_name, settings)
    if as_json:
        json.dump(config, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_text(config)
    return 0
