"""The second round of reads: report text in ``Binary`` resources and referenced ``Medication``s, fetched after
the prefetch is resolved, in parallel and under the same call deadline.

Only URLs under ``fhirServer`` are read (a report may point anywhere; the access token goes nowhere else), with
the ``Accept`` header Oracle Health requires for a Binary (``application/fhir+json``: the content comes back
base64 in the Binary's ``data``), and with a byte cap of a report, not of a search. What cannot be read is kept
with the reason, so the card can say which report text is missing and why.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence

from cds_service.fhir.client import ByteBudget, FhirClient, FhirQuery, same_base
from cds_service.fhir.record import Attachment, PatientRecord

BINARY_ACCEPT = "application/fhir+json"


def absolute_url(fhir_server: str, url: str) -> str:
    if url.startswith(("http://", "https://")):
        return url
    return f"{fhir_server.rstrip('/')}/{url.lstrip('/')}"


def read_followups(
    client: FhirClient,
    record: PatientRecord,
    *,
    attachments: Sequence[str],
    medications: Sequence[str],
    fhir_server: str | None,
    access_token: str | None,
    deadline: float,
    server_allowed: Callable[[str], tuple[bool, str]],
    attachment_bytes: int,
    budget: ByteBudget | None = None,
) -> None:
    allowed, why_not = (False, "no fhirServer in the request")
    if fhir_server is not None:
        allowed, why_not = server_allowed(fhir_server)
    queries: list[FhirQuery] = []
    for url in attachments:
        if not allowed or fhir_server is None:
            record.attachments[url] = Attachment(url, reason=why_not)
            continue
        target = absolute_url(fhir_server, url)
        if not same_base(fhir_server, target):
            record.attachments[url] = Attachment(url, reason="it is outside the EHR's FHIR server, so it was not read")
            continue
        queries.append(
            FhirQuery(
                key=f"attachment:{url}",
                url=target,
                resource_type="Binary",
                is_read=True,
                max_bytes=attachment_bytes,
                accept=BINARY_ACCEPT,
            )
        )
    if allowed and fhir_server is not None:
        queries.extend(
            FhirQuery(
                key=f"medication:{ref}", url=absolute_url(fhir_server, ref), resource_type="Medication", is_read=True
            )
            for ref in medications
        )
    if not queries:
        return
    results = client.fetch_many(
        queries, base_url=fhir_server or "", token=access_token, deadline=deadline, budget=budget
    )
    for query in queries:
        result = results.get(query.key)
        if query.resource_type == "Binary":
            url = query.key.removeprefix("attachment:")
            if result is None or not result.ok or result.not_found or not result.resources:
                reason = (
                    "not found"
                    if result is not None and result.not_found
                    else (result.reason if result is not None and result.reason else "not read")
                )
                record.attachments[url] = Attachment(url, reason=reason)
            else:
                record.attachments[url] = _binary(url, result.resources[0])
        elif result is not None and result.ok and result.resources:
            record.add(result.resources)
        else:
            record.notes.append(
                f"{query.key.removeprefix('medication:')} could not be read from the FHIR server"
                + (f" ({result.reason})" if result is not None and result.reason else "")
            )


def _binary(url: str, binary: dict) -> Attachment:
    given_type = binary.get("contentType")
    content_type = given_type if isinstance(given_type, str) else ""
    data = binary.get("data")
    if not isinstance(data, str):
        return Attachment(url, content_type, reason="the Binary holds no data")
    try:
        return Attachment(url, content_type, base64.b64decode("".join(data.split()), validate=True))
    except (binascii.Error, ValueError):
        return Attachment(url, content_type, reason="the Binary's data is not valid base64")
