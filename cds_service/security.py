"""Who may call us (the EHR's JWT) and whom we may call with its access token (the fhirServer allowlist).

JWT checks follow CDS Hooks 2.0 "Trusting CDS Clients" and the best-practice steps (CONFORMANCE.md §1.9):
allowlisted ``iss``; a ``jku`` honoured only if allowlisted for that issuer; keys from the issuer's JWKS
(trusted for ``JWKS_LIFETIME_S``, refetched once on an unknown ``kid`` with a floor on how often); a fixed
algorithm allowlist (never ``none`` or HMAC, whatever the header says); ``aud`` equal to our public URL of the
endpoint called; ``exp`` required, ``iat``/``nbf`` with leeway; ``jti`` required and remembered until the token
expires. A failure is a bare 401; the reason goes to the log only.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests

from cds_service.egress import DIRECT, Egress
from cds_service.errors import ServiceUnavailable, Unauthorized
from cds_service.hosts import is_loopback_host
from cds_service.settings import Settings, TrustedIssuer
from cds_service.store import Store

log = logging.getLogger(__name__)

# RS384 and ES384 are what the specification recommends and what Epic and the sandbox use; the rest of the
# RSA / ECDSA / RSASSA-PSS family is accepted for clients that need it. Never HMAC, never "none".
ALLOWED_ALGORITHMS: tuple[str, ...] = (
    "RS384",
    "ES384",
    "RS256",
    "RS512",
    "ES256",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
)
_MAX_JWKS_BYTES = 256 * 1024
# How long a fetched JWKS is trusted (PyJWKClient's default lifespan): a key the issuer withdrew is not honoured past
# this, and a set is refetched at least this often while calls arrive. Not a setting: the refetch floor
# (DVT_CDS_JWKS_MIN_REFETCH_S) is the knob operators turn; SECURITY.md explains the choice.
JWKS_LIFETIME_S = 300.0
_MAX_TOKEN_BYTES = 16 * 1024


# ----------------------------------------------------------------------------------------------------------------
# fhirServer allowlist
# ------------------------------------------------------------------------------------------------------------------
def fhir_server_policy(settings: Settings, issuer: TrustedIssuer | None = None):
    """Decide whether a request's ``fhirServer`` may be contacted (and receive the access token): the calling
    issuer's own ``fhir_servers`` when it has them, else DVT_CDS_FHIR_SERVER_ALLOWLIST."""
    own = issuer.fhir_servers if issuer is not None and issuer.fhir_servers else None
    prefixes = [p.rstrip("/") for p in (own or settings.fhir_server_allowlist)]
    development = settings.auth == "off"

    listed_in = (
        f"issuer {issuer.label}'s fhir_servers" if own and issuer is not None else "DVT_CDS_FHIR_SERVER_ALLOWLIST"
    )

    def allowed(url: str) -> tuple[bool, str]:
        parts = urlsplit(url)
        host = parts.hostname or ""
        on_list = any(url == p or url.startswith(p + "/") for p in prefixes)
        if parts.scheme not in ("http", "https") or parts.username or parts.password:
            return False, "fhirServer URL not acceptable; not contacted"
        if prefixes and not on_list:
            return False, f"fhirServer not on {listed_in}; not contacted"
        explicitly_allowed_http = settings.fhir_allow_http and on_list  # plain http only for a listed prefix
        if parts.scheme == "http" and not (development and is_loopback_host(host)) and not explicitly_allowed_http:
            return False, "fhirServer is not https; not contacted"
        if prefixes or development:
            return True, ""
        return False, "DVT_CDS_FHIR_SERVER_ALLOWLIST is empty; fhirServer not contacted"

    return allowed


# ----------------------------------------------------------------------------------------------------------------
# JWT
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CallerIdentity:
    iss: str
    sub: str | None
    tenant: str | None
    jti: str
    issuer: TrustedIssuer | None = None


class JwksCache:
    """Public keys per JWKS URL: fetched with a timeout, https only, at most ``_MAX_JWKS_BYTES``, through the egress
    proxy; trusted for ``lifetime_s`` after the fetch that returned them.

    - A key is used only while the set it came in is younger than ``lifetime_s``: a key the issuer removed stops
      being trusted at the latest ``lifetime_s`` after it was last seen, without a restart.
    - An unknown ``kid`` (key rotation) refetches the set at once, but at most once per ``min_refetch_s`` per URL:
      a stream of bogus kids costs the issuer one request per period. A refetch replaces the set, so a removed key
      is dropped at once too.
    - A set past its lifetime is refetched on the next call (at most once per ``min(min_refetch_s, lifetime_s)``
      while the issuer fails). A failed fetch (unreachable, not 200, too large, not a JWKS) keeps the last good set
      until *its* lifetime ends — never longer: an attacker who can block the issuer's endpoint must not extend the
      trust in a key the issuer has withdrawn. Past that, calls signed by that issuer are 401 until a fetch succeeds.
    - Callers that need a fetch while one is running for the same URL wait for it rather than fetch again.
    """

    def __init__(
        self,
        *,
        timeout_s: float,
        min_refetch_s: float,
        allow_http_loopback: bool,
        egress: Egress = DIRECT,
        lifetime_s: float = JWKS_LIFETIME_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        if lifetime_s <= 0:
            raise ValueError("lifetime_s must be positive")
        self._timeout_s = timeout_s
        self._min_refetch_s = min_refetch_s
        self._lifetime_s = lifetime_s
        self._allow_http_loopback = allow_http_loopback
        self._clock = clock
        self._keys: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}  # url -> (fetched at, keys by kid)
        self._attempted_at: dict[str, float] = {}  # url (or "list:" + url) -> last fetch attempt, good or bad
        self._lists: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()
        self._fetching: dict[str, threading.Lock] = {}  # one fetch per URL at a time
        self._session = egress.session()  # nothing from the environment; DVT_CDS_HTTPS_PROXY when set

    def key(self, url: str, kid: str) -> dict[str, Any] | None:
        """The key ``kid`` of the JWKS at ``url``, or None (unknown, withdrawn, or no live set)."""
        with self._lock:
            found, fetch = self._consult(url, kid, mark=False)
            fetching = self._fetching.setdefault(url, threading.Lock())
        if found is not None or not (fetch or fetching.locked()):
            return found
        with fetching:  # a fetch of this URL may be running: wait for it, then look again
            with self._lock:
                found, fetch = self._consult(url, kid, mark=True)
            if not fetch:
                return found
            fetched = self._fetch(url)
            with self._lock:
                if fetched is not None:
                    self._keys[url] = (self._clock(), fetched)
                found, _ = self._consult(url, kid, mark=False)
                return found

    def _consult(self, url: str, kid: str, *, mark: bool) -> tuple[dict[str, Any] | None, bool]:
        """(the live key, whether to fetch now); with ``mark``, a fetch decided on is recorded as attempted."""
        now = self._clock()
        fetched_at, keys = self._keys.get(url, (None, {}))
        live = fetched_at is not None and now - fetched_at < self._lifetime_s
        if live and kid in keys:
            return keys[kid], False
        floor = self._min_refetch_s if live else min(self._min_refetch_s, self._lifetime_s)
        last = self._attempted_at.get(url)
        if last is not None and now - last < floor:
            return None, False
        if mark:
            self._attempted_at[url] = now
        return None, True

    def jku_list(self, url: str) -> frozenset[str]:
        """The jku URLs an issuer publishes as its own (Oracle Health): fetched like a JWKS, refetched at most once
        per ``min_refetch_s``, trusted for ``lifetime_s`` after the last good fetch (a URL the issuer withdrew stops
        being honoured). A JSON list of URLs, or an object holding one under ``jku``/``jkus``."""
        key = "list:" + url
        with self._lock:
            now = self._clock()
            fetched_at, cached = self._lists.get(url, (None, frozenset[str]()))
            live = fetched_at is not None and now - fetched_at < self._lifetime_s
            last = self._attempted_at.get(key)
            if last is not None and now - last < min(self._min_refetch_s, self._lifetime_s):
                return cached if live else frozenset()
            self._attempted_at[key] = now
        body = self._fetch_json(url)
        if isinstance(body, dict):
            body = body.get("jkus", body.get("jku"))
        with self._lock:
            if isinstance(body, list):
                found = frozenset(u for u in body if isinstance(u, str) and u.startswith("https://"))
                self._lists[url] = (self._clock(), found)
            fetched_at, cached = self._lists.get(url, (None, frozenset[str]()))
            live = fetched_at is not None and self._clock() - fetched_at < self._lifetime_s
            return cached if live else frozenset()

    def _fetch(self, url: str) -> dict[str, dict[str, Any]] | None:
        body = self._fetch_json(url)
        if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
            if body is not None:
                log.warning("jwks fetch failed: not a JWKS")
            return None  # a failure: the last good set stays until its lifetime ends
        return keys_by_kid(body)

    def _fetch_json(self, url: str) -> Any:
        parts = urlsplit(url)
        if parts.scheme != "https" and not (
            self._allow_http_loopback and parts.scheme == "http" and is_loopback_host(parts.hostname or "")
        ):
            log.warning("jwks url refused: not https")
            return None
        try:
            with self._session.get(url, timeout=self._timeout_s, allow_redirects=False, stream=True) as response:
                if response.status_code != 200:
                    log.warning("jwks fetch failed", extra={"status": response.status_code})
                    return None
                raw = response.raw.read(_MAX_JWKS_BYTES + 1, decode_content=True)
            if len(raw) > _MAX_JWKS_BYTES:
                log.warning("jwks fetch failed: larger than the cap")
                return None
            return json.loads(raw)
        except (requests.RequestException, ValueError, RecursionError) as exc:
            log.warning("jwks fetch failed: %s", type(exc).__name__)
            return None


def keys_by_kid(jwks: Any) -> dict[str, dict[str, Any]]:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    found: dict[str, dict[str, Any]] = {}
    for key in keys if isinstance(keys, list) else []:
        if isinstance(key, dict) and isinstance(key.get("kid"), str):
            found[key["kid"]] = key
    return found


# ----------------------------------------------------------------------------------------------------------------
# jti replay cache
# ------------------------------------------------------------------------------------------------------------------
OUTAGE_JTI_CAPACITY = 10_000  # token ids one worker process remembers by itself while the store is unreachable
_OUTAGE_RETRY_AFTER_S = 5


class ReplayCache:
    """Has this token id been seen before? The store answers across workers and instances; while it cannot be
    reached, this process answers alone (SECURITY.md, "The jti replay cache during a store outage").

    Policy: when a store write fails or times out, the store is taken as down and calls stop waiting for it; each
    token id is remembered here until its token expires, and a replay of one seen here is rejected as always. When
    ``capacity`` ids are held and none has expired, a call fails closed: 503 + Retry-After, not an unchecked token.
    A background thread retries the store with capped backoff; when it answers, the ids held here are written to it
    (a replay after recovery is still caught, by any worker) and the store is used again. The limit: during the
    outage a token replayed to *another* worker process (or instance) is not recognised there.
    """

    def __init__(
        self, store: Store, *, capacity: int = OUTAGE_JTI_CAPACITY, retry_s: float = 0.25, retry_cap_s: float = 5.0
    ):
        self._store = store
        self._capacity = capacity
        self._retry_s = retry_s
        self._retry_cap_s = retry_cap_s
        self._held: dict[tuple[str, str], datetime] = {}  # seen here, not yet in the store
        self._store_down = False
        self._lock = threading.Lock()
        self._syncer: threading.Thread | None = None

    def remember(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """True for a token id not seen before (now remembered); False for a replay. ServiceUnavailable when the
        store is down and this process cannot remember one more."""
        key = (iss, jti)
        with self._lock:
            if key in self._held:
                return False
            store_down = self._store_down
        if not store_down:
            try:
                return self._store.remember_jti(iss, jti, expires_at)
            except Exception as error:  # down, hung, refusing: this process answers until it is back
                self._went_down(error)
        with self._lock:
            if key in self._held:
                return False
            if len(self._held) >= self._capacity:
                self._forget_expired()
            if len(self._held) >= self._capacity:
                raise ServiceUnavailable(
                    "Token replay check unavailable; retry later", retry_after_s=_OUTAGE_RETRY_AFTER_S
                )
            self._held[key] = expires_at
            return True

    def _went_down(self, error: Exception) -> None:
        with self._lock:
            if not self._store_down:
                log.warning(
                    "jti store unreachable: replay check held in this process until it is back",
                    extra={"fields": {"error": type(error).__name__}},
                )
            self._store_down = True
            if self._syncer is None or not self._syncer.is_alive():
                self._syncer = threading.Thread(target=self._sync_until_back, name="jti-sync", daemon=True)
                self._syncer.start()

    def _sync_until_back(self) -> None:
        attempt = 0
        while True:
            time.sleep(min(self._retry_cap_s, self._retry_s * 2**attempt))
            with self._lock:
                self._forget_expired()
                pending = list(self._held.items())
            try:
                if pending:
                    self._store.remember_jtis([(iss, jti, expires) for (iss, jti), expires in pending])
                elif not self._store.ping():
                    raise ConnectionError("store still unreachable")
            except Exception as error:
                attempt = min(attempt + 1, 30)
                log.debug("jti store still unreachable", extra={"fields": {"error": type(error).__name__}})
                continue
            with self._lock:
                for key, _ in pending:
                    self._held.pop(key, None)
                if self._store_down:
                    log.info("jti store reachable again", extra={"fields": {"count": len(pending)}})
                # From now on calls ask the store; ids still held here (remembered while this write ran) are checked
                # here first, and written on the next round.
                self._store_down = False
                if not self._held:
                    self._syncer = None
                    return
            attempt = 0

    def _forget_expired(self) -> None:
        now = datetime.now(UTC)
        for key in [k for k, expires in self._held.items() if expires < now]:
            del self._held[key]


class ClientAuthenticator:
    def __init__(self, settings: Settings, store: Store, jwks_cache: JwksCache | None = None):
        self._settings = settings
        self._replay = ReplayCache(store)
        self._issuers: dict[str, TrustedIssuer] = {i.iss: i for i in settings.trusted_issuers}
        self._jwks = jwks_cache or JwksCache(
            timeout_s=settings.jwks_timeout_s,
            min_refetch_s=settings.jwks_min_refetch_s,
            allow_http_loopback=is_loopback_host(settings.host),
            egress=Egress.from_settings(settings),
        )

    def authenticate(self, authorization: str | None, path: str) -> CallerIdentity:
        """The verified caller of ``path``; ``aud`` must be the issuer's audience base (or ours) + the path."""
        token = _bearer_token(authorization)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed token ({type(exc).__name__})", "malformed") from exc
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise Unauthorized(f"algorithm not allowed ({str(alg)[:16]})", "algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("no kid", "kid")
        iss = unverified.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Unauthorized("issuer not trusted", "issuer")
        try:
            return self._verify(token, header, issuer, path)
        except Unauthorized as error:
            error.issuer = issuer.label  # which EHR's calls fail, for its operators (metrics, logs)
            raise

    def _verify(self, token: str, header: dict[str, Any], issuer: TrustedIssuer, path: str) -> CallerIdentity:
        alg, kid = header["alg"], header["kid"]
        audience = (issuer.audience or self._settings.base_url).rstrip("/") + path
        jwk = self._find_key(issuer, header, kid)
        if jwk is None:
            raise Unauthorized("signing key not found", "unknown-key")
        if jwk.get("alg") not in (None, alg):
            raise Unauthorized("key algorithm does not match token", "algorithm")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=audience,
                issuer=issuer.iss,
                leeway=self._settings.jwt_leeway_s,
                options={"require": ["exp", "iat", "jti", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"token rejected ({type(exc).__name__})", _category(exc)) from exc

        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise Unauthorized("jti not acceptable", "claims")
        expires_at = datetime.fromtimestamp(float(claims["exp"]) + self._settings.jwt_leeway_s, UTC)
        if not self._replay.remember(issuer.iss, jti, expires_at):
            raise Unauthorized("jti replayed", "replay")
        sub = claims.get("sub")
        tenant = claims.get("tenant")
        return CallerIdentity(
            iss=issuer.iss,
            sub=sub if isinstance(sub, str) else None,
            tenant=tenant if isinstance(tenant, str) else None,
            jti=jti,
            issuer=issuer,
        )

    def _find_key(self, issuer: TrustedIssuer, header: dict[str, Any], kid: str) -> dict[str, Any] | None:
        jku = header.get("jku")
        pinned = keys_by_kid(issuer.jwks).get(kid) if issuer.jwks is not None else None
        if jku is not None:
            if pinned is not None:
                return pinned  # the issuer's key is configured here: trusted without fetching (offline testers)
            if not isinstance(jku, str) or not self._jku_allowed(issuer, jku):
                raise Unauthorized("jku not allowlisted", "jku")
            return self._jwks.key(jku, kid)
        if issuer.jwks is not None:
            return keys_by_kid(issuer.jwks).get(kid)
        if issuer.jwks_url is not None:
            return self._jwks.key(issuer.jwks_url, kid)
        raise Unauthorized("issuer requires a jku header", "jku")

    def _jku_allowed(self, issuer: TrustedIssuer, jku: str) -> bool:
        if jku in issuer.jku_allowed:
            return True
        if issuer.jku_list_url is not None:
            return jku in self._jwks.jku_list(issuer.jku_list_url)
        return False


def _category(exc: jwt.PyJWTError) -> str:
    return {
        jwt.ExpiredSignatureError: "expired",
        jwt.ImmatureSignatureError: "not-yet-valid",
        jwt.InvalidAudienceError: "audience",
        jwt.InvalidIssuerError: "issuer",
        jwt.MissingRequiredClaimError: "claims",
        jwt.InvalidSignatureError: "signature",
    }.get(type(exc), "invalid")


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("no Authorization header", "missing")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Authorization is not a Bearer token", "malformed")
    if len(token) > _MAX_TOKEN_BYTES:
        raise Unauthorized("token too large", "malformed")
    return token
