"""Reading one page of a FHIR search result, wherever it came from (prefetch or our own query).

Real clients put OperationOutcomes inside searchsets (Epic: ``total: 0`` with an outcome entry whose
``search.mode`` is ``outcome``), so entries are filtered by type and mode, never counted blindly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_ERROR_SEVERITIES = frozenset({"error", "fatal"})


@dataclass
class OutcomeIssue:
    """One issue of an OperationOutcome, reduced to what is safe to log (no free text: it may hold PHI)."""

    severity: str
    code: str

    @property
    def is_error(self) -> bool:
        return self.severity in _ERROR_SEVERITIES


@dataclass
class BundlePage:
    resources: list[dict[str, Any]] = field(default_factory=list)
    issues: list[OutcomeIssue] = field(default_factory=list)
    next_url: str | None = None

    @property
    def has_error(self) -> bool:
        return any(issue.is_error for issue in self.issues)


def outcome_issues(outcome: dict[str, Any]) -> list[OutcomeIssue]:
    issues = outcome.get("issue")
    if not isinstance(issues, list):
        return [OutcomeIssue("error", "unknown")]
    found = []
    for issue in issues:
        if isinstance(issue, dict):
            found.append(OutcomeIssue(str(issue.get("severity", "error")), str(issue.get("code", "unknown"))))
    return found or [OutcomeIssue("error", "unknown")]


def is_operation_outcome(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


def read_bundle_page(bundle: dict[str, Any]) -> BundlePage:
    """Split a Bundle into matched resources, outcome issues and the ``next`` link."""
    page = BundlePage()
    entries = bundle.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        resource = entry.get("resource")
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            continue
        search = entry.get("search")
        mode = search.get("mode") if isinstance(search, dict) else None
        if resource["resourceType"] == "OperationOutcome":
            page.issues.extend(outcome_issues(resource))
        elif mode != "outcome":
            page.resources.append(resource)
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            page.next_url = link["url"]
            break
    return page
