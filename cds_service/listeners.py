"""Which listener may answer what, when gunicorn faces clients itself (``DVT_CDS_FRONT=none``) with
``DVT_CDS_METRICS_PORT`` set: /metrics only on the metrics port, nothing else there, so the public port does not
expose the metrics.

Behind the front gunicorn listens on a private unix socket and nginx's two servers keep the ports apart
(front/config.py); requests from a unix socket pass. On a TCP listener the local port of the connection is the
listener's own (gunicorn's ``SERVER_PORT`` is too, but for a unix socket it comes from the Host header).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable
from typing import Any

_NOT_FOUND = (
    b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found",'
    b'"diagnostics":"No such endpoint"}]}'
)
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class MetricsPortSplit:
    def __init__(self, app: WsgiApp, metrics_port: int):
        self._app = app
        self._metrics_port = metrics_port

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        port = _local_tcp_port(environ.get("gunicorn.socket"))
        # As the router will see it: werkzeug matches //metrics to /metrics (PATH_INFO is already %-decoded).
        wants_metrics = re.sub("/{2,}", "/", environ.get("PATH_INFO") or "") == "/metrics"
        if port is not None and (port == self._metrics_port) != wants_metrics:
            start_response(
                "404 NOT FOUND", [("Content-Type", "application/json"), ("Content-Length", str(len(_NOT_FOUND)))]
            )
            return [_NOT_FOUND]
        return self._app(environ, start_response)


def _local_tcp_port(sock: Any) -> int | None:
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        return int(sock.getsockname()[1])
    except OSError:
        return None
