"""A call's first round of queries as one FHIR ``batch``: POST [base] with a ``type: batch`` Bundle of GET entries,
answered by a ``batch-response`` whose entries come back in the same order (FHIR R4 §3.1.0.11.1).

Pure: building the request and splitting the answer. The client (client.py) sends it, reads each entry as it would
read that query's own answer, follows each search's ``next`` links itself, and falls back to separate GETs for an
entry (or a whole answer) it cannot use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

_STATUS = re.compile(r"^\s*(\d{3})\b")


@dataclass(frozen=True)
class EntryAnswer:
    status: int | None  # None: the entry's response had no readable status
    resource: dict[str, Any] | None


def relative_url(url: str, base_url: str) -> str:
    """A query URL under ``base_url`` as a batch entry writes it: relative to the base (``Condition?patient=…``)."""
    base = base_url.rstrip("/") + "/"
    return url[len(base) :] if url.startswith(base) else url


def batch_body(urls: list[str]) -> bytes:
    entries = [{"request": {"method": "GET", "url": url}} for url in urls]
    return orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries})


def split_answer(body: dict[str, Any], count: int) -> list[EntryAnswer] | None:
    """The answer's entries in request order; None when it is not a batch-response with one entry per request."""
    if body.get("resourceType") != "Bundle" or body.get("type") != "batch-response":
        return None
    entries = body.get("entry")
    if not isinstance(entries, list) or len(entries) != count:
        return None
    answers = []
    for entry in entries:
        entry = entry if isinstance(entry, dict) else {}
        raw_response = entry.get("response")
        response = raw_response if isinstance(raw_response, dict) else {}
        match = _STATUS.match(str(response.get("status", "")))
        resource = entry.get("resource")
        status = int(match.group(1)) if match else None
        answers.append(EntryAnswer(status, resource if isinstance(resource, dict) else None))
    return answers
