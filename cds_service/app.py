"""create_app(settings) → the Flask application. Routes only: discovery, invoke, feedback, health.

Everything a call does after its JSON is read lives in pipeline.py; security.py decides who may call;
errors.py decides how a failure looks. Every non-2xx answer is a JSON OperationOutcome.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from flask import Flask, Response, g, jsonify, request
from flask.json.provider import JSONProvider
from flask_cors import CORS
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from cds_service import metrics
from cds_service.admission import arrival
from cds_service.egress import Egress
from cds_service.errors import (
    BadRequest,
    CdsError,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    operation_outcome,
)
from cds_service.fhir.client import FhirClient
from cds_service.fhir.conceptmaps import SiteConceptMaps
from cds_service.hosts import is_loopback_host
from cds_service.jsonbody import read_json
from cds_service.logs import log_fields
from cds_service.pipeline import Caller, CallPipeline, validation_details
from cds_service.profiles import OrderCatalog
from cds_service.protocol import FeedbackRequest
from cds_service.security import ClientAuthenticator, JwksCache, fhir_server_policy
from cds_service.settings import Settings, unknown_variables
from cds_service.smart import register_pathway_view
from cds_service.store import Store
from cds_service.warmup import warm_up
from hooks import BY_ID, HookService, site_services

log = logging.getLogger("cds_service")
_JSON_TYPES = {"application/json", "application/fhir+json"}


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    fhir_client: FhirClient | None = None,
    store: Store | None = None,
    jwks_cache: JwksCache | None = None,
) -> Flask:
    settings = settings or Settings()
    store = store or Store.from_settings(settings)
    client = fhir_client or FhirClient(
        request_timeout_s=settings.fhir_request_timeout_s,
        max_pages=settings.fhir_max_pages,
        max_response_bytes=settings.fhir_max_response_bytes,
        max_entries=settings.max_bundle_entries,
        max_parallel=settings.fhir_max_parallel,
        call_max_bytes=settings.fhir_call_max_bytes,
        egress=Egress.from_settings(settings),
        batch=settings.fhir_batch == "auto",
    )
    authenticator = ClientAuthenticator(settings, store, jwks_cache) if settings.auth == "jwt" else None
    concept_maps = SiteConceptMaps.load(settings.concept_maps)
    catalog = OrderCatalog.load(settings.order_catalog)
    services = site_services(concept_maps, settings.prefetch)
    by_id = {service.id: service for service in services}
    default_policy = fhir_server_policy(settings)
    callers = {
        issuer.iss: Caller(
            profile=issuer.ehr_profile or settings.ehr_profile,
            issuer=issuer.label,
            server_allowed=fhir_server_policy(settings, issuer),
        )
        for issuer in settings.trusted_issuers
    }
    anonymous = Caller(profile=settings.ehr_profile, server_allowed=default_policy)
    pipeline = CallPipeline(
        settings,
        client=client,
        store=store,
        clock=clock or (lambda: datetime.now(UTC)),
        server_allowed=default_policy,
        concept_maps=concept_maps,
        catalog=catalog,
    )

    def caller() -> Caller:
        identity = g.get("caller")
        return callers.get(identity.iss, anonymous) if identity is not None else anonymous

    app = Flask("cds_service")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json = OrjsonProvider(app)
    app.extensions["dvt_cds"] = {"settings": settings, "store": store, "fhir_client": client, "audit": pipeline.audit}
    CORS(
        app,
        resources={r"/cds-services.*": {}},
        origins=settings.cors_origins,
        allow_headers=["Authorization", "Content-Type"],
        methods=["GET", "POST", "OPTIONS"],
        max_age=600,
        # A public page (the CDS Hooks sandbox) calling a service on a private address: Chrome asks first
        # (Private Network Access). Granted only to origins named in DVT_CDS_CORS_ORIGINS, never to "*".
        allow_private_network="*" not in settings.cors_origins,
    )
    register_pathway_view(app, settings, client=client, concept_maps=concept_maps, clock=clock)
    discovery = {"services": [service.descriptor().to_json() for service in services]}
    warm_up()
    _warn_at_start(settings)

    # --- authentication ------------------------------------------------------------------------------------------
    @app.before_request
    def _admit_and_authenticate() -> None:
        came = arrival(request.headers, now_wall=time.time(), now_monotonic=time.monotonic())
        g.started = came.started  # the call deadline counts from arrival
        if request.method == "OPTIONS" or not request.path.startswith("/cds-services"):
            return  # CORS preflight carries no JWT; health needs none
        if request.method == "POST" and came.queued_s > settings.max_queue_wait_s:
            _shed(came.queued_s)
        if authenticator is None:
            log_fields(
                log,
                logging.WARNING,
                "authentication is off: request not authenticated",
                auth="off",
                method=request.method,
                path=_path_shape(request.path),
            )
            return
        identity = authenticator.authenticate(request.headers.get("Authorization"), request.path)
        g.caller = identity

    # --- routes --------------------------------------------------------------------------------------------------
    @app.get("/cds-services", strict_slashes=False)
    def discover() -> Response:
        return jsonify(discovery)

    @app.post("/cds-services/<service_id>")
    def invoke(service_id: str) -> Response:
        service = _service(service_id, by_id)
        body = _json_body(settings)
        return jsonify(pipeline.invoke(service, body, started=g.started, caller=caller()))

    @app.post("/cds-services/<service_id>/feedback")
    def feedback(service_id: str) -> Response:
        service = _service(service_id, by_id)
        body = _json_body(settings)
        try:
            parsed = FeedbackRequest.model_validate(body)
        except ValidationError as error:
            raise BadRequest("The body is not valid CDS Hooks feedback", details=validation_details(error)) from None
        try:
            result = store.record_feedback(service.id, parsed.feedback)
        except Exception:
            log.exception("feedback store failed")
            raise ServiceUnavailable("Feedback could not be stored; retry later", retry_after_s=5) from None
        log_fields(
            log,
            logging.INFO,
            "feedback",
            event="feedback",
            service=service.id,
            stored=result.stored,
            duplicates=result.duplicates,
        )
        return jsonify({"stored": result.stored, "duplicates": result.duplicates})

    @app.get("/healthz")
    def healthz() -> Response:
        """Liveness: the process answers. Whether it can serve calls is /readyz."""
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        """Readiness: 503 while draining or while the store cannot be reached (load balancers send elsewhere)."""
        if settings.drain_file and os.path.exists(settings.drain_file):
            return _not_ready("draining")
        if not store.ping():
            return _not_ready("store unreachable")
        return jsonify({"status": "ready"}), 200

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body, content_type = metrics.render(settings.metrics_dir)
        return Response(body, content_type=content_type)

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("started")
        if started is not None and request.method != "OPTIONS":
            issuer = caller().issuer if request.path.startswith("/cds-services") else metrics.NO_ISSUER
            metrics.REQUEST_SECONDS.labels(_route_label(request.path), str(response.status_code), issuer).observe(
                time.monotonic() - started
            )
        return response

    # --- errors --------------------------------------------------------------------------------------------------
    @app.errorhandler(CdsError)
    def _cds_error(error: CdsError) -> Response:
        if isinstance(error, Unauthorized):
            metrics.JWT_REJECTIONS.labels(error.category, error.issuer or metrics.UNKNOWN_ISSUER).inc()
            log_fields(
                log,
                logging.WARNING,
                "request rejected",
                event="auth-rejected",
                reason=error.reason,
                issuer=error.issuer,
                path=_path_shape(request.path),
            )
            response = jsonify(operation_outcome(401, "Unauthorized"))
            response.status_code = 401
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        response = jsonify(operation_outcome(error.status, error.message, error.details))
        response.status_code = error.status
        if isinstance(error, ServiceUnavailable):
            response.headers["Retry-After"] = str(error.retry_after_s)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 500
        messages = {
            404: "No such endpoint",
            405: "Method not allowed on this endpoint",
            413: f"Request body larger than {settings.max_body_bytes} bytes",
        }
        response = jsonify(operation_outcome(status, messages.get(status, error.name)))
        if status == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return response, status

    @app.errorhandler(Exception)
    def _bug(error: Exception) -> tuple[Response, int]:
        log.error("unhandled error", exc_info=error)
        return jsonify(operation_outcome(500, "Internal error; the incident was logged")), 500

    return app


class OrjsonProvider(JSONProvider):
    """Flask's JSON on orjson (bench/results: JSON handling is a large share of a large record's cost)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = args[0] if len(args) == 1 else (args or kwargs)
        # werkzeug takes bytes bodies; its stub's first parameter is typed for str only.
        return cast(Response, self._app.response_class(orjson.dumps(obj), mimetype="application/json"))  # type: ignore[arg-type]


def _service(service_id: str, by_id: dict[str, HookService]) -> HookService:
    service = by_id.get(service_id)
    if service is None:
        raise NotFound(f"No CDS service with id {service_id[:64]!r}")
    return service


def _json_body(settings: Settings) -> Any:
    if request.mimetype not in _JSON_TYPES:
        raise UnsupportedMediaType("Content-Type must be application/json")
    return read_json(_body_bytes(settings.max_body_bytes), max_depth=settings.max_json_depth)


def _body_bytes(limit: int) -> bytes:
    """The whole body, or 413 past ``limit``. A chunked body has no Content-Length: werkzeug would cut it at the
    limit without a word (then it is "not JSON", a 400 that hides the cause), so it is read here, counted."""
    if request.content_length is not None:
        return request.get_data(cache=False)  # 413 past MAX_CONTENT_LENGTH, before reading
    if not request.environ.get("wsgi.input_terminated"):
        return b""
    stream = request.environ["wsgi.input"]
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(65536):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


_shed_count = 0


def _shed(queued_s: float) -> None:
    """Admission control (cds_service/admission.py): answer at once rather than compute for nobody."""
    global _shed_count
    _shed_count += 1
    metrics.SHED.inc()
    if _shed_count % 100 == 1:  # under overload a line per call would flood the log
        log_fields(
            log,
            logging.WARNING,
            "call shed: waited too long for a thread",
            event="shed",
            waited_ms=round(queued_s * 1000, 1),
            count=_shed_count,
        )
    raise ServiceUnavailable("The service is busy; retry shortly", retry_after_s=1)


def _not_ready(reason: str) -> tuple[Response, int]:
    response = jsonify({"status": "not ready", "reason": reason})
    response.headers["Retry-After"] = "5"
    return response, 503


def _route_label(path: str) -> str:
    """A metrics label: the service id, or the route's name (never anything taken from the request)."""
    parts = path.strip("/").split("/")
    if parts[0] != "cds-services":
        return parts[0] if parts[0] in ("healthz", "readyz", "metrics") else "other"
    if len(parts) == 1 or parts[1] == "":
        return "discovery"
    service = parts[1] if parts[1] in BY_ID else "unknown"
    return f"{service}/feedback" if len(parts) > 2 and parts[2] == "feedback" else service


def _path_shape(path: str) -> str:
    """The route, not the raw path: service ids are ours, anything else is collapsed."""
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[0] == "cds-services":
        parts[1] = parts[1] if parts[1] in BY_ID else "<unknown>"
    return "/" + "/".join(parts[:3])


def _warn_at_start(settings: Settings) -> None:
    unknown = unknown_variables()
    if unknown:
        log_fields(
            log,
            logging.WARNING,
            "environment variables that name no setting (a typo?) are ignored: " + ", ".join(unknown[:20]),
            event="unknown-settings",
            variables=unknown[:20],
        )
    if settings.auth == "off":
        log_fields(
            log,
            logging.WARNING,
            "AUTHENTICATION IS OFF (DVT_CDS_AUTH=off): any local process can call this service and read the cards. "
            "Development only; set DVT_CDS_AUTH=jwt with DVT_CDS_TRUSTED_ISSUERS for anything else.",
            event="auth-off",
            host=settings.host,
        )
    elif not settings.trusted_issuers:
        log_fields(
            log,
            logging.WARNING,
            "DVT_CDS_TRUSTED_ISSUERS is empty: every call will be rejected with 401",
            event="no-issuers",
        )
    unlisted = [i.label for i in settings.trusted_issuers if not i.fhir_servers]
    if settings.auth == "jwt" and not settings.fhir_server_allowlist and (unlisted or not settings.trusted_issuers):
        log_fields(
            log,
            logging.WARNING,
            "DVT_CDS_FHIR_SERVER_ALLOWLIST is empty: no fhirServer will be contacted for "
            + (", ".join(unlisted) if unlisted else "any issuer")
            + " (an issuer's own fhir_servers still apply)",
            event="no-fhir-allowlist",
        )
    if not is_loopback_host(settings.host) and settings.public_base_url is None:
        log_fields(
            log,
            logging.WARNING,
            f"DVT_CDS_PUBLIC_BASE_URL is not set: JWT aud is compared with http://{settings.host}:{settings.port}",
            event="no-public-url",
        )
