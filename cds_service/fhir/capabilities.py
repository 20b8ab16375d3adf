"""What each FHIR server says it can do (its CapabilityStatement), read once per server and kept.

Only one thing is asked of it: whether the server takes a ``batch`` Bundle (``rest.interaction`` ``batch``), so a
call's first round of queries can go in one request. The statement is read in the background the first time a
server is seen, so no call waits for it (that call's queries go one by one); later calls use what it said. A server
whose statement cannot be read, or whose batch answer was unusable, is asked again after ``retry_s``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_TTL_S = 3600.0  # a server's capabilities change with its releases: re-read hourly
DEFAULT_RETRY_S = 300.0
MAX_SERVERS = 256  # fhirServer comes from the caller: the cache stays bounded whatever it sends


@dataclass(frozen=True)
class _Known:
    batch: bool
    until: float  # monotonic


def declares_batch(statement: Any) -> bool:
    """True when a CapabilityStatement lists the system interaction ``batch`` for a server-mode rest entry."""
    if not isinstance(statement, dict) or statement.get("resourceType") != "CapabilityStatement":
        return False
    for rest in statement.get("rest") or []:
        if not isinstance(rest, dict) or rest.get("mode") != "server":
            continue
        for interaction in rest.get("interaction") or []:
            if isinstance(interaction, dict) and interaction.get("code") == "batch":
                return True
    return False


class ServerCapabilities:
    """``batch(base_url)``: True or False when known, None while the statement is being read (it is then started).

    ``read(base_url)`` returns the CapabilityStatement JSON or None; ``start(fn)`` runs ``fn`` in the background.
    """

    def __init__(
        self,
        read: Callable[[str], Any],
        start: Callable[[Callable[[], None]], Any],
        *,
        ttl_s: float = DEFAULT_TTL_S,
        retry_s: float = DEFAULT_RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._read = read
        self._start = start
        self._ttl_s = ttl_s
        self._retry_s = retry_s
        self._clock = clock
        self._known: OrderedDict[str, _Known] = OrderedDict()
        self._reading: set[str] = set()
        self._lock = threading.Lock()

    def batch(self, base_url: str) -> bool | None:
        key = base_url.rstrip("/")
        with self._lock:
            known = self._known.get(key)
            if known is not None and known.until > self._clock():
                self._known.move_to_end(key)
                return known.batch
            if key in self._reading:
                return None
            self._reading.add(key)
        try:
            self._start(lambda: self._refresh(key))
        except RuntimeError:  # the pool is shut down (the app is stopping): nothing to learn any more
            with self._lock:
                self._reading.discard(key)
        return None

    def refresh(self, base_url: str) -> bool:
        """Read the statement now (tests, warm-up): what it says about batch."""
        key = base_url.rstrip("/")
        with self._lock:
            self._reading.add(key)
        self._refresh(key)
        return self._known[key].batch

    def refuse(self, base_url: str) -> None:
        """The server's batch answer could not be used: no batch for it until the retry time."""
        self._remember(base_url.rstrip("/"), batch=False, ttl_s=self._retry_s)

    def _refresh(self, key: str) -> None:
        statement = None
        try:
            statement = self._read(key)
        finally:
            ok = isinstance(statement, dict)
            self._remember(key, batch=declares_batch(statement), ttl_s=self._ttl_s if ok else self._retry_s)

    def _remember(self, key: str, *, batch: bool, ttl_s: float) -> None:
        with self._lock:
            self._reading.discard(key)
            self._known[key] = _Known(batch, self._clock() + ttl_s)
            self._known.move_to_end(key)
            while len(self._known) > MAX_SERVERS:
                self._known.popitem(last=False)
