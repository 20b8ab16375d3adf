"""Prometheus metrics: request latency by service and status, cards by topic, FHIR fetches by outcome, JWT
rejections by reason. Labels are low-cardinality by construction (service ids, topic codes, fixed words).

Under gunicorn with several workers, set DVT_CDS_METRICS_DIR (``dvt-cds serve --production`` does it for you): it
becomes prometheus_client's multiprocess directory, so /metrics aggregates every worker.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUEST_SECONDS = Histogram(
    "dvt_cds_request_duration_seconds",
    "Time to answer a request, by service (or route), HTTP status and calling issuer (its configured short name)",
    ["service", "status", "issuer"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)
CARDS = Counter("dvt_cds_cards_total", "Cards returned, by card topic and calling issuer", ["topic", "issuer"])
NO_ISSUER = "none"  # authentication off: no issuer to name
FHIR_FETCHES = Counter("dvt_cds_fhir_fetches_total", "Queries to the EHR's FHIR server, by outcome", ["outcome"])
FHIR_BATCHES = Counter(
    "dvt_cds_fhir_batches_total", "First rounds of queries sent as one FHIR batch, by outcome", ["outcome"]
)
SHED = Counter("dvt_cds_shed_total", "Calls answered 503 at once because they waited too long for a thread")
JWT_REJECTIONS = Counter(
    "dvt_cds_jwt_rejections_total",
    "Calls refused with 401, by reason and trusted issuer (unknown: no trusted issuer named)",
    ["reason", "issuer"],
)
UNKNOWN_ISSUER = "unknown"


def render(multiprocess_dir: str | None) -> tuple[bytes, str]:
    if multiprocess_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
