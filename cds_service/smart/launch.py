"""SMART App Launch 2.0, EHR launch, as a public client: discovery, PKCE S256, the authorize URL, the token.

Only what the pathway view needs, written against the specification (hl7.org/fhir/smart-app-launch): the EHR
opens ``/smart/launch?iss=…&launch=…``; ``{iss}/.well-known/smart-configuration`` names the authorize and token
endpoints; the browser goes to authorize with a fresh ``state`` and a PKCE challenge; the code comes back to
``/smart/callback`` and is exchanged for an access token whose response names the ``patient``.

Every failure is a ``LaunchError`` whose message is ours (what went wrong, in words, safe to show and log): never
text from the other server, never a code, a token or a URL with a query.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
import requests

from cds_service.egress import DIRECT, Egress
from cds_service.security import fhir_server_policy
from cds_service.settings import Settings

DISCOVERY_PATH = "/.well-known/smart-configuration"
_MAX_JSON_BYTES = 256 * 1024
# RFC 6749 §5.2 error codes are these characters only; anything else from a server is not repeated.
_OAUTH_ERROR = re.compile(r"^[a-z_]{1,64}$")
# FHIR ids (R4 id datatype): the patient context must be one before it goes into a query.
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_FOLLOW_UP_TYPES = ("Binary", "Medication")  # read after the prefetch (report text, drugs not included)


class LaunchError(Exception):
    """A launch that cannot go on: HTTP ``status`` for the page, a ``title`` and ``message`` for the person, a short
    ``reason`` for the log."""

    def __init__(self, status: int, title: str, message: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.title = title
        self.message = message
        self.reason = reason


@dataclass(frozen=True)
class Endpoints:
    authorize: str
    token: str


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    patient: str
    scope: str
    expires_in: int | None
    need_patient_banner: bool


def pkce_pair() -> tuple[str, str]:
    """A fresh code verifier (RFC 7636 §4.1: 43-128 unreserved characters) and its S256 challenge."""
    verifier = secrets.token_urlsafe(64)  # 86 characters from 64 random bytes
    return verifier, s256(verifier)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state() -> str:
    return secrets.token_urlsafe(32)


def default_scopes(templates: list[str]) -> str:
    """``launch`` and SMART v2 read scopes for every resource type the prefetch templates and follow-ups read."""
    kinds = sorted({m.group(0) for t in templates if (m := re.match(r"[A-Za-z]+", t))} | set(_FOLLOW_UP_TYPES))
    return " ".join(["launch", *(f"patient/{kind}.rs" for kind in kinds)])


def iss_policy(settings: Settings) -> Callable[[str], tuple[bool, str]]:
    """Whether a launch's ``iss`` may be used: the same rule as a hook call's ``fhirServer`` — on
    DVT_CDS_FHIR_SERVER_ALLOWLIST or a trusted issuer's ``fhir_servers`` (https; http only where the policy allows
    it). The access token goes to that server and nowhere else."""
    policies = [fhir_server_policy(settings)]
    policies += [fhir_server_policy(settings, issuer) for issuer in settings.trusted_issuers if issuer.fhir_servers]

    def allowed(iss: str) -> tuple[bool, str]:
        reasons = []
        for check in policies:
            ok, why = check(iss)
            if ok:
                return True, ""
            reasons.append(why)
        return False, "; ".join(dict.fromkeys(reasons))

    return allowed


def _endpoint(value: Any, iss: str, name: str) -> str:
    """An endpoint from the discovery document: absolute, https (http only when the iss itself is http, which the
    fhirServer policy allows only on loopback in development or for a listed test server), no credentials."""
    if not isinstance(value, str) or not value:
        raise LaunchError(502, "The EHR's SMART configuration is incomplete", f"It names no {name}.", f"no-{name}")
    parts = urlsplit(value)
    http_ok = urlsplit(iss).scheme == "http"
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not http_ok):
        raise LaunchError(
            502, "The EHR's SMART configuration is not acceptable", f"Its {name} is not an https URL.", f"bad-{name}"
        )
    if not parts.hostname or parts.username or parts.password or parts.fragment:
        raise LaunchError(
            502, "The EHR's SMART configuration is not acceptable", f"Its {name} is not a usable URL.", f"bad-{name}"
        )
    return value


class SmartClient:
    """The HTTP side of a launch. Nothing from the environment (no .netrc; the site's proxy only as ``egress``
    says), no redirects followed: a redirect could carry the code or the verifier to another host."""

    def __init__(self, *, timeout_s: float, egress: Egress = DIRECT):
        self._timeout_s = timeout_s
        self._http = egress.session()

    def close(self) -> None:
        self._http.close()

    # --- discovery ---------------------------------------------------------------------------------------------
    def discover(self, iss: str) -> Endpoints:
        url = iss.rstrip("/") + DISCOVERY_PATH
        document = self._json("GET", url, what="SMART configuration", reason="discovery")
        if not isinstance(document, dict):
            raise LaunchError(
                502, "The EHR's SMART configuration could not be read", "It is not a JSON object.", "discovery-shape"
            )
        methods = document.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise LaunchError(
                502,
                "The EHR's authorization server does not support PKCE",
                "Its SMART configuration does not offer the S256 code challenge this app requires.",
                "no-s256",
            )
        return Endpoints(
            authorize=_endpoint(document.get("authorization_endpoint"), iss, "authorization_endpoint"),
            token=_endpoint(document.get("token_endpoint"), iss, "token_endpoint"),
        )

    # --- authorize ---------------------------------------------------------------------------------------------
    @staticmethod
    def authorize_url(
        endpoints: Endpoints,
        *,
        client_id: str,
        redirect_uri: str,
        scope: str,
        launch: str,
        state: str,
        challenge: str,
        aud: str,
    ) -> str:
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "launch": launch,
                "scope": scope,
                "state": state,
                "aud": aud,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{endpoints.authorize}{'&' if '?' in endpoints.authorize else '?'}{query}"

    # --- token -------------------------------------------------------------------------------------------------
    def exchange(
        self, token_endpoint: str, *, code: str, client_id: str, redirect_uri: str, verifier: str
    ) -> TokenGrant:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "code_verifier": verifier,
        }
        body = self._json("POST", token_endpoint, what="token", reason="token", form=form)
        if not isinstance(body, dict):
            raise LaunchError(
                502, "The EHR did not give this app access", "Its token answer is not JSON.", "token-shape"
            )
        token, kind = body.get("access_token"), body.get("token_type")
        if not isinstance(token, str) or not token or not isinstance(kind, str) or kind.lower() != "bearer":
            raise LaunchError(
                502, "The EHR did not give this app access", "Its token answer holds no bearer token.", "token-missing"
            )
        patient = body.get("patient")
        if not isinstance(patient, str) or not _FHIR_ID.match(patient):
            raise LaunchError(
                502,
                "The EHR did not say which patient",
                "The launch carried no patient context, so there is no record to show. Open the view from a "
                "patient's chart.",
                "no-patient",
            )
        expires = body.get("expires_in")
        return TokenGrant(
            access_token=token,
            patient=patient,
            scope=body["scope"] if isinstance(body.get("scope"), str) else "",
            expires_in=int(expires) if isinstance(expires, int | float) and expires > 0 else None,
            need_patient_banner=body.get("need_patient_banner") is not False,
        )

    # -----------------------------------------------------------------------------------------------------------
    def _json(self, method: str, url: str, *, what: str, reason: str, form: dict[str, str] | None = None) -> Any:
        try:
            response = self._http.request(
                method,
                url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=self._timeout_s,
                allow_redirects=False,
                stream=True,
            )
        except requests.Timeout:
            raise LaunchError(
                504, f"The EHR's {what} endpoint did not answer", "It did not answer in time.", f"{reason}-timeout"
            ) from None
        except requests.RequestException:
            raise LaunchError(
                502,
                f"The EHR's {what} endpoint could not be reached",
                "The connection failed.",
                f"{reason}-unreachable",
            ) from None
        with response:
            raw = response.raw.read(_MAX_JSON_BYTES + 1, decode_content=True)
            status = response.status_code
        if len(raw) > _MAX_JSON_BYTES:
            raise LaunchError(502, f"The EHR's {what} answer is too large", "It was not read.", f"{reason}-too-large")
        try:
            parsed = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = None
        if status == 200:
            if parsed is None:
                raise LaunchError(
                    502, f"The EHR's {what} answer could not be read", "It is not JSON.", f"{reason}-not-json"
                )
            return parsed
        if reason == "token" and status in (400, 401) and isinstance(parsed, dict):
            error = parsed.get("error")
            code = error if isinstance(error, str) and _OAUTH_ERROR.match(error) else "unknown error"
            raise LaunchError(
                502,
                "The EHR did not give this app access",
                f"Its authorization server refused the sign-in code ({code}). Open the view again from the card: "
                "a code works once and only for a few minutes.",
                f"token-refused:{code}",
            )
        answer = "a redirect" if 300 <= status < 400 else f"HTTP {status}"
        raise LaunchError(
            502,
            f"The EHR's {what} endpoint answered with an error",
            f"It answered {answer}.",
            f"{reason}-http-{status}",
        )
