"""Every tunable of the service, read once from the environment (prefix ``DVT_CDS_``).

Nothing else in the code base reads ``os.environ``: a setting is added here, documented in the README table,
and passed down. Any setting may instead be given as ``DVT_CDS_<NAME>_FILE``, the path of a file holding the value
(secrets mounted as files, the convention of the official PostgreSQL image). Clinical thresholds that are settings
(windows in days) are also named in ``clinical/thresholds.py`` with their citation; the values here only override
those defaults.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from cds_service.clinical import thresholds
from cds_service.hosts import is_loopback_host

EhrProfile = Literal["hl7", "epic", "oracle"]


class TrustedIssuer(BaseModel):
    """One CDS client allowed to call us: its ``iss``, where its public keys are, and how to answer it."""

    model_config = ConfigDict(extra="forbid")

    iss: str
    # A short label for logs and metrics (never a patient detail); by default the issuer's host.
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    jwks_url: str | None = None
    jwks: dict[str, Any] | None = None
    jku_allowed: list[str] = Field(default_factory=list)
    # Oracle Health publishes the list of jku URLs its tokens may name: fetched and cached like a JWKS.
    jku_list_url: str | None = None
    ehr_profile: EhrProfile | None = None  # else DVT_CDS_EHR_PROFILE
    fhir_servers: list[str] = Field(default_factory=list)  # fhirServer prefixes this issuer may send us to
    audience: str | None = None  # the base URL this issuer puts in aud, when not DVT_CDS_PUBLIC_BASE_URL

    @model_validator(mode="after")
    def _one_key_source(self) -> TrustedIssuer:
        if not self.jwks_url and not self.jwks and not self.jku_allowed and not self.jku_list_url:
            raise ValueError(f"trusted issuer {self.iss!r} needs jwks_url, jwks, jku_allowed or jku_list_url")
        return self

    @property
    def label(self) -> str:
        return self.name or (urlsplit(self.iss).hostname or "issuer")[:64]


def _split_list(value: Any) -> Any:
    """Accept a JSON list or a comma-separated string for list settings."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


class SettingsFileError(ValueError):
    """A ``DVT_CDS_*_FILE`` variable that cannot be used; ``variable`` names it for the one-line refusal."""

    def __init__(self, variable: str, problem: str):
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class _FileVariables(PydanticBaseSettingsSource):
    """``DVT_CDS_<NAME>_FILE``: the file's content is the value of ``DVT_CDS_<NAME>``. Trailing line breaks are
    dropped (an editor's or ``echo``'s newline is not part of a password), nothing else is."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        environ = {name.upper(): value for name, value in os.environ.items()}
        values: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            variable = f"DVT_CDS_{name.upper()}"
            path = environ.get(f"{variable}_FILE")
            if path is None:
                continue
            if variable in environ:
                raise SettingsFileError(f"{variable}_FILE", f"{variable} is set too; give one of them")
            try:
                values[name] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as error:
                reason = getattr(error, "strerror", None) or "not UTF-8 text"
                raise SettingsFileError(f"{variable}_FILE", f"cannot read {path}: {reason}") from None
        return values


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DVT_CDS_", extra="ignore", validate_default=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _FileVariables(settings_cls), dotenv_settings, file_secret_settings

    # --- serving -------------------------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_base_url: str | None = None
    workers: int = Field(default=2, ge=1, le=64)
    threads: int = Field(default=4, ge=1, le=64)
    metrics_dir: str | None = None
    # /metrics on its own port, so the public port does not expose it (the front answers 404 there); empty: on the
    # public port, as under the development server.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # What stands between clients and gunicorn under `serve --production` (cds_service/front/): nginx buffers whole
    # requests so a slow or silent client costs a connection, not one of gunicorn's threads; "none" only when the
    # operator's own buffering proxy is in front.
    front: Literal["nginx", "none"] = "nginx"
    client_timeout_s: float = Field(default=10.0, gt=0, le=300)  # header, body and send timeouts of the front
    keepalive_s: float = Field(default=15.0, ge=0, le=300)  # idle keep-alive connections are closed after this
    max_connections: int = Field(default=4096, ge=64, le=65536)  # open client connections the front holds
    # Admission control: a call that waited longer than this before a thread took it is answered 503 at once.
    max_queue_wait_s: float = Field(default=1.0, gt=0, le=60)
    drain_file: str | None = None  # while this file exists, /readyz answers 503 (set by `serve --production`)
    drain_s: float = Field(default=0.0, ge=0, le=300)  # on SIGTERM, answer for this long with /readyz 503 first

    # --- authentication of the calling EHR -----------------------------------------------------------------------
    auth: Literal["jwt", "off"] = "jwt"
    trusted_issuers: Annotated[list[TrustedIssuer], NoDecode] = Field(default_factory=list)
    jwt_leeway_s: int = Field(default=60, ge=0, le=600)
    jwks_timeout_s: float = Field(default=2.0, gt=0, le=30)
    jwks_min_refetch_s: float = Field(default=60.0, ge=0)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])

    # --- the calling EHR's dialect and the site's order catalog --------------------------------------------------
    ehr_profile: EhrProfile = "hl7"  # hl7 (the specification as written), epic, oracle; per issuer too
    order_catalog: str | None = None  # a JSON file mapping the service's order keys to the site's own codes

    # --- outbound HTTP (FHIR servers, JWKS, SMART) ----------------------------------------------------------------
    # Many hospitals force egress through a proxy: https requests go through it (CONNECT), except to loopback and to
    # the hosts of no_proxy. It may carry credentials, hence secret. Nothing is taken from HTTPS_PROXY itself.
    https_proxy: SecretStr | None = None
    no_proxy: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- the EHR's FHIR server -----------------------------------------------------------------------------------
    fhir_server_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=list)
    call_deadline_s: float = Field(default=2.0, gt=0, le=60)
    fhir_request_timeout_s: float = Field(default=1.5, gt=0, le=60)
    fhir_max_pages: int = Field(default=20, ge=1, le=1000)
    fhir_max_response_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    fhir_max_parallel: int = Field(default=16, ge=1, le=256)
    fhir_call_max_bytes: int = Field(default=48 * 1024 * 1024, ge=1024)  # all FHIR responses of one call
    fhir_allow_http: bool = False  # plain-http fhirServers on the allowlist: closed test networks only
    # A call's first round of queries as one FHIR batch where the server's CapabilityStatement declares it ("auto"),
    # or always as separate parallel GETs ("off"); what a batch cannot answer is asked alone either way.
    fhir_batch: Literal["auto", "off"] = "auto"
    # What a chart open asks of the EHR: "full", the whole record; "lean", the Patient, the DVT Conditions and the
    # venous duplex studies, and the rest from fhirServer only when a DVT is in view (hooks that answer only about one).
    prefetch: Literal["full", "lean"] = "full"

    # --- hostile input -------------------------------------------------------------------------------------------
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(default=64, ge=8, le=512)
    max_bundle_entries: int = Field(default=20_000, ge=1)

    # --- persistence ---------------------------------------------------------------------------------------------
    # An absolute path (var/ beside the cds_service package: this checkout's var/), so `make run`, `dvt-cds db ...`
    # and `dvt-cds feedback-report` use one store whatever folder they are run from.
    database_url: str = f"sqlite:///{Path(__file__).resolve().parents[1] / 'var' / 'dvt-cds.sqlite3'}"
    # Every store operation is bounded (connect, statement, pool checkout, a hung server): feedback answers 503 in
    # about this long instead of hanging, and the jti check falls back to the process (SECURITY.md).
    db_timeout_s: float = Field(default=2.0, gt=0, le=60)
    db_pool_size: int = Field(default=5, ge=1, le=100)
    db_max_overflow: int = Field(default=5, ge=0, le=100)
    # The decision audit's durable local queue (a SQLite file on local disk, one per database): empty means next to
    # a SQLite database, else var/dvt-cds-outbox-<hash of the database>.sqlite3.
    outbox_path: str | None = None
    # `dvt-cds db purge` without --older-than: decision audit, issued cards and feedback older than this go.
    retention_days: int = Field(default=365, ge=1, le=36500)

    # --- clinical ------------------------------------------------------------------------------------------------
    rule_profile: Literal["seed", "chest"] = "seed"
    acute_window_days: int = Field(default=thresholds.ACUTE_WINDOW_DAYS.int_value, ge=1, le=365)
    recent_hospitalization_days: int = Field(default=thresholds.RECENT_HOSPITALIZATION_DAYS.int_value, ge=1, le=365)
    recent_surgery_days: int = Field(default=thresholds.RECENT_SURGERY_DAYS.int_value, ge=1, le=365)
    close_to_popliteal_cm: float = Field(default=thresholds.CLOSE_TO_POPLITEAL_CM.value, gt=0, le=50)
    # FHIR R4 ConceptMap files mapping the site's local codes onto standard ones (cds_service/fhir/conceptmaps.py)
    concept_maps: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- SMART pathway view ---
    # The client id the EHR registered for the pathway view (cds_service/smart/); empty: the view is not offered.
    smart_client_id: str | None = None
    # Scopes asked for at launch; empty: SMART v2 read scopes for what the patient-view prefetch and follow-ups read.
    smart_scopes: str | None = None
    # Encrypts the cookie that holds the access token (AES-256-GCM, key derived by HKDF); every worker and instance
    # needs the same one. Empty: the view is refused, except under DVT_CDS_AUTH=off (a key per process).
    smart_session_key: SecretStr | None = Field(default=None, min_length=32)
    smart_session_max_s: int = Field(default=3600, ge=60, le=86400)  # a session ends then even if the token lasts
    smart_timeout_s: float = Field(default=10.0, gt=0, le=60)  # discovery, token exchange, reading the record
    # Origins that may show the view in a frame (the EHR's); empty: none (CSP frame-ancestors 'none').
    smart_frame_ancestors: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator(
        "smart_client_id", "smart_scopes", "smart_session_key", "https_proxy", "metrics_port", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("smart_frame_ancestors")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        # Written into the CSP header as they are: an origin each, nothing that could end the directive.
        for origin in value:
            if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|'self'", origin):
                raise ValueError(
                    f"DVT_CDS_SMART_FRAME_ANCESTORS: {origin[:80]!r} is not an origin (scheme://host[:port])"
                )
        return value

    @field_validator(
        "fhir_server_allowlist", "cors_origins", "concept_maps", "smart_frame_ancestors", "no_proxy", mode="before"
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("https_proxy")
    @classmethod
    def _proxy_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        parts = urlsplit(value.get_secret_value())
        # Never echo the value: it may hold the proxy's password.
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError("DVT_CDS_HTTPS_PROXY must be a proxy URL: http(s)://[user:password@]host:port")
        return value

    @field_validator("trusted_issuers", mode="before")
    @classmethod
    def _issuers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else []
        return value

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        AnyHttpUrl(value)  # validates scheme and host; we keep the caller's exact string
        return value.rstrip("/")

    @model_validator(mode="after")
    def _metrics_port_is_another_port(self) -> Settings:
        if self.metrics_port is not None and self.metrics_port == self.port:
            raise ValueError("DVT_CDS_METRICS_PORT must differ from DVT_CDS_PORT (it keeps /metrics off that port)")
        return self

    @model_validator(mode="after")
    def _auth_off_only_on_loopback(self) -> Settings:
        if self.auth == "off" and not is_loopback_host(self.host):
            raise ValueError(
                f"DVT_CDS_AUTH=off is for local development only and needs DVT_CDS_HOST on loopback (got {self.host!r})"
            )
        return self

    @property
    def base_url(self) -> str:
        """The public base URL clients call (``aud`` is compared against it)."""
        return self.public_base_url or f"http://{self.host}:{self.port}"


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """``DVT_CDS_*`` variables that name no setting: a typo must not pass silently (a start-up warning names them)."""
    environ = os.environ if environ is None else environ
    known = {f"DVT_CDS_{name.upper()}" for name in Settings.model_fields}
    known |= {f"{name}_FILE" for name in known}
    return sorted(name for name in environ if name.upper().startswith("DVT_CDS_") and name.upper() not in known)
