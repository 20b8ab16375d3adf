"""When a call arrived, and whether it is still worth answering.

The front (nginx, cds_service/front/) stamps each request as it hands it on: ``X-Request-Start: t=<epoch s>``
and ``X-Request-Read-Time: <s>`` (how long reading the request took before that). Time spent queued in gunicorn
until a thread takes the call is otherwise invisible to the call. Two uses:

* the call deadline counts from arrival, not from when a thread picked the call up;
* admission control: a call that already waited longer than ``DVT_CDS_MAX_QUEUE_WAIT_S`` is answered 503 with
  ``Retry-After`` at once, instead of computing an answer the EHR has likely stopped waiting for (measured
  before: at 2,048 clients the server computed thousands of answers nobody waited for).

Other proxies' ``X-Request-Start`` (seconds, milliseconds or microseconds since the epoch) are read the same
way. A stamp that is missing, malformed, in the future or over a minute old is ignored: the call then counts
from when the app saw it, as without a front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

_MAX_BELIEVABLE_WAIT_S = 60.0


class _Headers(Protocol):
    """A request's headers as werkzeug gives them (or any mapping in tests)."""

    def get(self, key: str, /) -> str | None: ...


@dataclass(frozen=True)
class Arrival:
    started: float  # on the monotonic clock: when the request arrived
    queued_s: float  # how long it waited between the front handing it on and a thread taking it


def _epoch_seconds(stamp: str) -> float | None:
    text = stamp.strip()
    if text.startswith("t="):
        text = text[2:]
    try:
        value = float(text)
    except ValueError:
        return None
    if value != value or value <= 0:  # NaN
        return None
    for scale in (1.0, 1e3, 1e6):  # Unix seconds are ~1.8e9 now; ms and µs are 1e3 and 1e6 times that
        if value / scale < 1e11:
            return value / scale
    return None


def arrival(headers: _Headers, *, now_wall: float, now_monotonic: float) -> Arrival:
    stamp = headers.get("X-Request-Start")
    handed_on = _epoch_seconds(stamp) if stamp else None
    if handed_on is None:
        return Arrival(started=now_monotonic, queued_s=0.0)
    queued = now_wall - handed_on
    if not 0.0 <= queued <= _MAX_BELIEVABLE_WAIT_S:
        return Arrival(started=now_monotonic, queued_s=0.0)
    try:
        reading = float(headers.get("X-Request-Read-Time") or "0")
    except ValueError:
        reading = 0.0
    reading = min(max(reading, 0.0), _MAX_BELIEVABLE_WAIT_S) if reading == reading else 0.0
    return Arrival(started=now_monotonic - queued - reading, queued_s=queued)
