"""The garbage collector's settings for a worker process: one place, so the bench's floor runs under exactly the
service's (bench/floor.py imports this, as cds_service/wsgi.py does).

A request allocates millions of small, acyclic JSON containers that reference counting frees; at the default
thresholds the cyclic collector runs over them again and again mid-request (measured on the 2,800-resource record:
133 ms worst case → 72 ms with these settings, bench/results). Freeze what start-up built, collect rarely.
"""

from __future__ import annotations

import gc

THRESHOLDS = (100_000, 50, 100)


def tune() -> None:
    """Call once the process has built what it keeps (the app, its caches)."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
