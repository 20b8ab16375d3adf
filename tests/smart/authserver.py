"""An EHR's SMART side for tests: an authorization server, and a FHIR base that serves the SMART discovery document
and forwards everything else to the real FHIR server (Medplum) behind it.

Medplum's test server (tests/medplum/server.mjs) answers FHIR under ``/fhir`` but has no SMART configuration, and
the specification puts that document at ``{iss}/.well-known/smart-configuration`` where ``iss`` is the FHIR base.
So this server is a small loopback reverse proxy in front of it: ``{root}/fhir/.well-known/smart-configuration``
is answered here, any other ``{root}/fhir/...`` GET is checked for a bearer token this server issued and forwarded
to Medplum with this server's Host (Medplum builds its ``next`` and ``fullUrl`` links from it, so they point back
here). ``iss`` is then ``{root}/fhir``, exactly as an EHR would send it.

``/auth/authorize`` approves at once (no login page) after checking what a real server checks — response type,
client id, registered redirect URI, ``aud`` = the FHIR base, a known ``launch``, ``state``, an S256 challenge — and
redirects with ``code`` and ``state``. ``/auth/token`` checks the code (once), client id, redirect URI and the PKCE
verifier and answers with ``access_token``, ``patient``, ``scope`` and ``expires_in``.

Faults, for the negative tests: ``token_error`` (the token endpoint refuses), ``fhir_down`` (the proxy answers 502,
as a gateway does when the FHIR server behind it is down).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from tests.fastserver import POLL_S

FHIR_JSON = "application/fhir+json"


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    patient: str
    scope: str
    issued: float = field(default_factory=time.monotonic)


class SmartTestServer:
    def __init__(self, fhir_upstream: str, *, client_id: str, code_ttl_s: float = 60.0):
        self.fhir_upstream = fhir_upstream.rstrip("/")  # e.g. http://127.0.0.1:PORT/fhir (Medplum)
        self.client_id = client_id
        self.redirect_uris: set[str] = set()
        self.code_ttl_s = code_ttl_s
        self.token_error: str | None = None
        self.fhir_down = False
        self.need_patient_banner = False
        self.requests: list[tuple[str, str]] = []  # (method, path) seen, for assertions
        self.token_requests: list[dict[str, str]] = []
        self._launches: dict[str, str] = {}
        self._codes: dict[str, _Grant] = {}
        self._tokens: dict[str, str] = {}  # access token -> patient
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._http = requests.Session()
        self._http.trust_env = False

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> SmartTestServer:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": POLL_S}, name="smart-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._http.close()

    def __enter__(self) -> SmartTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        assert self._server is not None, "the SMART test server is not started"
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def fhir_base(self) -> str:
        """What the EHR sends as ``iss``."""
        return f"{self.root_url}/fhir"

    # --- what a test sets up -------------------------------------------------------------------------------------
    def new_launch(self, patient_id: str) -> str:
        """A launch context for a patient, as the EHR creates one when a clinician opens the app from a chart."""
        launch = secrets.token_urlsafe(12)
        with self._lock:
            self._launches[launch] = patient_id
        return launch

    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.root_url,
            "authorization_endpoint": f"{self.root_url}/auth/authorize",
            "token_endpoint": f"{self.root_url}/auth/token",
            "grant_types_supported": ["authorization_code"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["launch", "openid", "fhirUser", "patient/*.rs"],
            "capabilities": ["launch-ehr", "client-public", "context-ehr-patient", "permission-v2"],
        }

    # --- the server ----------------------------------------------------------------------------------------------
    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self._lock:
            self.requests.append((request.method, request.path))
        if request.path == "/fhir/.well-known/smart-configuration":
            response = _json(self.discovery())
        elif request.path == "/auth/authorize":
            response = self._authorize(request)
        elif request.path == "/auth/token" and request.method == "POST":
            response = self._token(request)
        elif request.path.startswith("/fhir/") and request.method == "GET":
            response = self._fhir(request)
        else:
            response = Response("not found", 404)
        return response(environ, start_response)

    def _authorize(self, request: Request) -> Response:
        args = request.args
        redirect_uri = args.get("redirect_uri", "")
        if args.get("client_id") != self.client_id or redirect_uri not in self.redirect_uris:
            return Response("unknown client or redirect_uri", 400)  # never redirect to an unregistered URI
        state = args.get("state", "")
        malformed = (
            args.get("response_type") != "code"
            or not state
            or args.get("aud") != self.fhir_base  # the token is for this FHIR server only
            or args.get("code_challenge_method") != "S256"
            or len(args.get("code_challenge", "")) != 43
        )
        problem = "invalid_request" if malformed else None
        if problem is None and "launch" not in args.get("scope", "").split():
            problem = "invalid_scope"
        with self._lock:
            patient = self._launches.get(args.get("launch", ""))
        if problem is None and patient is None:
            problem = "invalid_request"
        if problem is not None:
            return _redirect(redirect_uri, {"error": problem, "state": state})
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Grant(
                self.client_id, redirect_uri, args["code_challenge"], patient or "", args.get("scope", "")
            )
        return _redirect(redirect_uri, {"code": code, "state": state})

    def _token(self, request: Request) -> Response:
        form = request.form
        with self._lock:
            self.token_requests.append(dict(form))
        if self.token_error is not None:
            return _json({"error": self.token_error, "error_description": "refused by the test"}, 400)
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)  # a code is used once
        if (
            form.get("grant_type") != "authorization_code"
            or grant is None
            or time.monotonic() - grant.issued > self.code_ttl_s
            or form.get("client_id") != grant.client_id
            or form.get("redirect_uri") != grant.redirect_uri
            or _s256(form.get("code_verifier", "")) != grant.challenge
        ):
            return _json({"error": "invalid_grant"}, 400)
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = grant.patient
        body = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": grant.scope,
            "patient": grant.patient,
            "need_patient_banner": self.need_patient_banner,
        }
        response = _json(body)
        response.headers["Cache-Control"] = "no-store"
        return response

    def _fhir(self, request: Request) -> Response:
        authorization = request.headers.get("Authorization", "")
        token = authorization.removeprefix("Bearer ").strip() if authorization.startswith("Bearer ") else ""
        with self._lock:
            known = token in self._tokens
        if not known:
            return _json(_outcome("login", "a bearer token issued by this server is required"), 401, FHIR_JSON)
        if self.fhir_down:
            return _json(_outcome("transient", "the FHIR server behind this gateway is down"), 502, FHIR_JSON)
        query = request.query_string.decode("ascii")
        url = f"{self.fhir_upstream}/{request.path.removeprefix('/fhir/')}" + (f"?{query}" if query else "")
        upstream = self._http.get(
            url, headers={"Accept": FHIR_JSON, "Host": request.host}, timeout=30, allow_redirects=False
        )
        content_type = upstream.headers.get("Content-Type", FHIR_JSON)
        return Response(upstream.content, upstream.status_code, content_type=content_type)


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


def _json(body: Any, status: int = 200, content_type: str = "application/json") -> Response:
    return Response(json.dumps(body), status, content_type=content_type)


def _redirect(uri: str, params: dict[str, str]) -> Response:
    separator = "&" if "?" in uri else "?"
    return Response("", 302, headers={"Location": f"{uri}{separator}{urlencode(params)}"})


def _outcome(code: str, text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}
