"""The pathway view's routes: ``/smart/launch``, ``/smart/callback``, ``/smart/pathway/<page id>``.

Every answer is an HTML page (no JSON, no stack trace): a refused launch says why in words, with its status and no
redirect; the page itself says what could not be read. Every response carries a CSP with no script and no inline
style, ``no-store`` (patient data), ``no-referrer`` (the callback URL holds a code). Logs get fixed messages and
whitelisted fields: never the token, the code, the state, the patient or a URL with a query.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from cds_service.clinical.assessment import assess
from cds_service.clinical.config import RuleConfig
from cds_service.clinical.facts import build_facts
from cds_service.logs import log_fields
from cds_service.smart.cookies import LAUNCH_TTL_S, CookiePolicy
from cds_service.smart.launch import LaunchError, SmartClient, new_state, pkce_pair
from cds_service.smart.legs import OUTLINE, REGIONS, SEGMENTS, VIEW_HEIGHT, VIEW_WIDTH
from cds_service.smart.pathway import Pathway, build_pathway
from cds_service.smart.reader import RecordReader
from cds_service.smart.session import MAX_COOKIE_BYTES, SessionBox
from cds_service.smart.sources import day

log = logging.getLogger("cds_service.smart")
_PAGE_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
_MAX_PARAM = 2048
MAX_OPEN_PAGES = 3  # pathway pages one browser keeps a session for; opening another ends the oldest
_STATUS_WORDS = {
    "done": "done",
    "ordered": "ordered",
    "overdue": "overdue",
    "not-ordered": "not ordered",
    "proposed": "not ordered",
    "superseded": "not done",
}


@dataclass
class PathwayConfig:
    client_id: str | None
    scopes: str
    redirect_uri: str
    box: SessionBox | None
    cookies: CookiePolicy
    session_max_s: int
    frame_ancestors: list[str]
    rules: RuleConfig
    iss_allowed: Callable[[str], tuple[bool, str]]
    clock: Callable[[], datetime]


def blueprint(config: PathwayConfig, oauth: SmartClient, reader: RecordReader) -> Blueprint:
    bp = Blueprint(
        "smart_pathway",
        __name__,
        url_prefix="/smart",
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )

    @bp.get("/launch")
    def launch() -> Response:
        started = time.monotonic()
        iss, launch_id = request.args.get("iss", ""), request.args.get("launch", "")
        try:
            box, client_id = _configured(config)
            if not iss or not launch_id or len(iss) > _MAX_PARAM or len(launch_id) > _MAX_PARAM:
                raise LaunchError(
                    400,
                    "Open the DVT pathway view from the EHR",
                    "This address is opened by the EHR with the patient's launch context (iss and launch); "
                    "it cannot be opened on its own.",
                    "no-launch-context",
                )
            allowed, why = config.iss_allowed(iss)
            if not allowed:
                raise LaunchError(
                    400,
                    "This EHR is not one this service may read from",
                    f"The FHIR server that launched the view is not allowed ({why}). Nothing was sent to it.",
                    "iss-refused",
                )
            endpoints = oauth.discover(iss)
            state = new_state()
            verifier, challenge = pkce_pair()
            name = config.cookies.launch_name(state)
            pending = {"iss": iss, "state": state, "verifier": verifier, "token_endpoint": endpoints.token}
            target = oauth.authorize_url(
                endpoints,
                client_id=client_id,
                redirect_uri=config.redirect_uri,
                scope=config.scopes,
                launch=launch_id,
                state=state,
                challenge=challenge,
                aud=iss,
            )
        except LaunchError as error:
            _log("smart-launch", error.status, started, iss=iss, reason=error.reason)
            return _error_page(error)
        response = redirect(target, 302)
        config.cookies.set(response, name, box.seal(name, pending, LAUNCH_TTL_S), LAUNCH_TTL_S)
        _log("smart-launch", 302, started, iss=iss)
        return response

    @bp.get("/callback")
    def callback() -> Response:
        started = time.monotonic()
        state = request.args.get("state", "")
        pending: dict[str, Any] | None = None
        name = ""
        try:
            box, client_id = _configured(config)
            if state and len(state) <= _MAX_PARAM:
                name = config.cookies.launch_name(state)
                pending = box.open(name, request.cookies.get(name))
            if pending is None or not hmac.compare_digest(str(pending.get("state", "")), state):
                raise LaunchError(
                    400,
                    "This sign-in does not match a launch from this browser",
                    "The sign-in answer's state is unknown here or expired, so it was not used. Open the view "
                    "again from the card.",
                    "bad-state",
                )
            if request.args.get("error"):
                raise LaunchError(
                    403,
                    "The EHR did not authorize the DVT pathway view",
                    "Its authorization server answered with an error instead of a sign-in code. Ask your EHR "
                    "team whether this app is enabled for you.",
                    "authorize-refused",
                )
            code = request.args.get("code", "")
            if not code or len(code) > _MAX_PARAM:
                raise LaunchError(400, "The sign-in answer holds no code", "Open the view again from the card.", "code")
            grant = oauth.exchange(
                str(pending["token_endpoint"]),
                code=code,
                client_id=client_id,
                redirect_uri=config.redirect_uri,
                verifier=str(pending["verifier"]),
            )
            page_id = secrets.token_urlsafe(16)
            session_name = config.cookies.session_name(page_id)
            lifetime = min(grant.expires_in or config.session_max_s, config.session_max_s)
            session = {
                "page": page_id,
                "iss": pending["iss"],
                "patient": grant.patient,
                "token": grant.access_token,
                "banner": grant.need_patient_banner,
            }
            sealed = box.seal(session_name, session, lifetime)
            if len(session_name) + len(sealed) > MAX_COOKIE_BYTES:
                raise LaunchError(
                    502,
                    "The EHR's access token is too large for this app",
                    "It cannot be kept for the page's lifetime, so the record cannot be read.",
                    "token-too-large",
                )
        except LaunchError as error:
            iss = pending.get("iss") if pending else None
            _log("smart-callback", error.status, started, iss=iss, reason=error.reason)
            response = _error_page(error)
            if pending is not None:
                config.cookies.clear(response, name)
            return response
        # Relative: the page is under the same /smart/ as this callback, whatever prefix a proxy adds before it.
        response = redirect(f"pathway/{page_id}", 303)
        config.cookies.clear(response, name)  # a launch is used once
        for older in _sessions_beyond(box, config.cookies, keep=MAX_OPEN_PAGES - 1):
            config.cookies.clear(response, older)
        config.cookies.set(response, session_name, sealed, lifetime)
        _log("smart-callback", 303, started, iss=pending["iss"])
        return response

    @bp.get("/pathway/<page_id>")
    def pathway(page_id: str) -> Response:
        started = time.monotonic()
        session = None
        if config.box is not None and _PAGE_ID.match(page_id):
            name = config.cookies.session_name(page_id)
            session = config.box.open(name, request.cookies.get(name))
        if session is None or session.get("page") != page_id:
            error = LaunchError(
                401,
                "This view's session has ended",
                "A pathway view lasts as long as the EHR's access for it. Open it again from the card.",
                "no-session",
            )
            _log("smart-pathway", 401, started, reason=error.reason)
            return _error_page(error)
        iss, patient, token = str(session["iss"]), str(session["patient"]), str(session["token"])
        allowed, why = config.iss_allowed(iss)
        if not allowed:  # the allowlist changed since the launch
            error = LaunchError(403, "This EHR is no longer one this service may read from", why, "iss-refused")
            _log("smart-pathway", 403, started, iss=iss, reason=error.reason)
            return _error_page(error)
        now = config.clock()
        today = now.date()
        reading = reader.read(
            fhir_server=iss, patient_id=patient, access_token=token, today=today, server_allowed=config.iss_allowed
        )
        if not reading.complete_enough:
            error = LaunchError(
                502,
                "The patient's record could not be read",
                "The EHR's FHIR server did not give the data the assessment needs, so none is shown. "
                "What could not be read:",
                "record-unreadable",
            )
            _log(
                "smart-pathway",
                502,
                started,
                iss=iss,
                reason=error.reason,
                fetch_ms=reading.fetch_ms,
                gaps=[gap.describe() for gap in reading.record.gaps],
            )
            return _error_page(error, items=[gap.describe() for gap in reading.record.gaps] or None)
        facts = build_facts(reading.record, today=today, config=config.rules)
        assessment = assess(facts, today=today, config=config.rules)
        model = build_pathway(reading.record, facts, assessment, today=today, banner=bool(session.get("banner", True)))
        _log(
            "smart-pathway",
            200,
            started,
            iss=iss,
            fetch_ms=reading.fetch_ms,
            decision=assessment.decision_code,
            gaps=[gap.describe() for gap in reading.record.gaps],
        )
        return Response(render_pathway(model, static=_static()), 200, mimetype="text/html")

    @bp.after_request
    def _headers(response: Response) -> Response:
        ancestors = " ".join(config.frame_ancestors) if config.frame_ancestors else "'none'"
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
            f"frame-ancestors {ancestors}"
        )
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if not config.frame_ancestors:
            response.headers["X-Frame-Options"] = "DENY"
        if request.path.startswith("/smart/static/"):
            response.headers["Cache-Control"] = "public, max-age=3600"
        else:
            response.headers["Cache-Control"] = "no-store"
        return response

    @bp.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        page = LaunchError(status, error.name, "This address does not answer that request.", f"http-{status}")
        return _error_page(page)

    @bp.errorhandler(Exception)
    def _bug(error: Exception) -> Response:
        log.error("pathway view failed", exc_info=error)  # the exception's type and frames, never its message
        page = LaunchError(
            500, "The DVT pathway view failed", "The incident was logged. Open the view again from the card.", "bug"
        )
        return _error_page(page)

    return bp


def _configured(config: PathwayConfig) -> tuple[SessionBox, str]:
    if config.box is None or not config.client_id:
        raise LaunchError(
            503,
            "The DVT pathway view is not set up on this service",
            "It needs the client id the EHR registered for it (DVT_CDS_SMART_CLIENT_ID) and a session key "
            "(DVT_CDS_SMART_SESSION_KEY).",
            "not-configured",
        )
    return config.box, config.client_id


def _sessions_beyond(box: SessionBox, cookies: CookiePolicy, *, keep: int) -> list[str]:
    """The session cookies this browser sent beyond the ``keep`` that expire last, and any that no longer open:
    every open page adds one, and all of them come with every request to /smart (a proxy's header limit, the
    browser's cookie limit)."""
    prefix = cookies.session_name("")
    held = []
    for name, value in request.cookies.items():
        if name.startswith(prefix):
            payload = box.open(name, value)
            held.append((payload["exp"] if payload else 0.0, name))
    held.sort(reverse=True)
    return [name for expires, name in held[keep:]] + [name for expires, name in held[:keep] if not expires]


def render_pathway(model: Pathway, *, static: str) -> str:
    """The page (inside an app context with this blueprint registered)."""
    return render_template(
        "pathway.html",
        page=model,
        static=static,
        day=day,
        status_words=_STATUS_WORDS,
        segments=SEGMENTS,
        regions=REGIONS,
        outline=OUTLINE,
        view_width=VIEW_WIDTH,
        view_height=VIEW_HEIGHT,
    )


def _static() -> str:
    """The stylesheet's folder relative to this page: relative, so a path prefix a proxy adds is kept."""
    depth = max(0, request.path.count("/") - 2)
    return "../" * depth + "static/"


def _error_page(error: LaunchError, *, items: list[str] | None = None) -> Response:
    html = render_template("pathway_error.html", error=error, items=items or [], static=_static())
    return Response(html, error.status, mimetype="text/html")


def _log(event: str, status: int, started: float, *, iss: Any = None, **fields: Any) -> None:
    host = urlsplit(iss).hostname if isinstance(iss, str) else None  # the EHR, never a path or a query
    log_fields(
        log,
        logging.INFO if status < 500 else logging.WARNING,
        "pathway view",
        event=event,
        status=status,
        host=host,
        duration_ms=round((time.monotonic() - started) * 1000, 1),
        **fields,
    )
