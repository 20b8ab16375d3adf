"""The errors a call can end in, and how each becomes an HTTP status with an OperationOutcome body.

Every non-2xx answer carries a FHIR OperationOutcome (CDS Hooks 3.0 "Returning OperationOutcome"). The
diagnostics say what was wrong with the request in terms the caller can act on; they never echo request
content (it may hold PHI) and never carry a stack trace.
"""

from __future__ import annotations

from typing import Any

# FHIR issue-type codes (http://hl7.org/fhir/issue-type) per HTTP status.
_ISSUE_CODE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    412: "incomplete",
    413: "too-long",
    415: "not-supported",
    429: "throttled",
    500: "exception",
    503: "transient",
}


class CdsError(Exception):
    """An expected failure of a call, with the status it maps to."""

    status: int = 400

    def __init__(self, message: str, *, details: list[str] | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []
        if status is not None:
            self.status = status


class BadRequest(CdsError):
    status = 400


class Unauthorized(CdsError):
    """Deliberately uninformative: the reason is logged, never returned (CDS Hooks best practice)."""

    status = 401

    def __init__(self, reason: str, category: str = "invalid"):
        super().__init__("Unauthorized")
        self.reason = reason
        self.category = category  # a fixed word, for the rejection counter
        # The trusted issuer's short name when the token names one we trust (a wrong aud, an expired or replayed
        # token of a known EHR); None otherwise — an untrusted iss is never a label (anyone could mint them).
        self.issuer: str | None = None


class NotFound(CdsError):
    status = 404


class PreconditionFailed(CdsError):
    """Data the service cannot work without could not be obtained (CDS Hooks 2.0: SHALL respond 412)."""

    status = 412


class UnsupportedMediaType(CdsError):
    status = 415


class PayloadTooLarge(CdsError):
    status = 413


class ServiceUnavailable(CdsError):
    """The service cannot answer this call now but will soon (a store outage, overload, draining): 503 with
    ``Retry-After`` so the EHR retries instead of recording a failure."""

    status = 503

    def __init__(self, message: str, *, retry_after_s: int = 1, details: list[str] | None = None):
        super().__init__(message, details=details)
        self.retry_after_s = max(1, int(retry_after_s))


def operation_outcome(status: int, message: str, details: list[str] | None = None) -> dict[str, Any]:
    severity = "error" if status < 500 else "fatal"
    code = _ISSUE_CODE.get(status, "processing" if status < 500 else "exception")
    issues: list[dict[str, Any]] = [{"severity": severity, "code": code, "diagnostics": message}]
    issues.extend({"severity": severity, "code": code, "diagnostics": d} for d in details or [])
    return {"resourceType": "OperationOutcome", "issue": issues}
