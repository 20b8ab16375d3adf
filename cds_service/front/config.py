"""The nginx front's configuration, rendered from the settings into a private runtime directory."""

from __future__ import annotations

import grp
import ipaddress
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cds_service.settings import Settings

TEMPLATE = Path(__file__).with_name("nginx.conf.template")
_NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


@dataclass(frozen=True)
class FrontFiles:
    runtime: Path
    config: Path
    socket: Path


def find_nginx() -> str | None:
    """nginx on PATH, or where distributions put it (/usr/sbin is not on a non-root user's PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return next((path for path in _NGINX_CANDIDATES if os.access(path, os.X_OK)), None)


def listen_address(host: str, port: int) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def _user_line() -> str:
    """As root, nginx's workers drop to an unprivileged user; the group's name differs between distributions."""
    if os.geteuid() != 0:
        return "# not root: nginx's workers run as this user"
    for group in ("nogroup", "nobody"):
        try:
            grp.getgrnam(group)
            return f"user nobody {group};"
        except KeyError:
            continue
    return "user nobody;"


_NOT_FOUND = (
    """default_type application/json;
            return 404 '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","""
    """"diagnostics":"No such endpoint"}]}';"""
)
# nginx matches locations on the normalised path (%-decoded, merged slashes), so no spelling of /metrics gets past.
_PUBLIC_METRICS = f"""
        # /metrics is answered on DVT_CDS_METRICS_PORT only (the server at the end), never on the public port.
        location = /metrics {{
            {_NOT_FOUND}
        }}"""


def _metrics_server(settings: Settings) -> str:
    """A second server on DVT_CDS_METRICS_PORT that passes /metrics to gunicorn and nothing else."""
    if not settings.metrics_port:
        return ""
    return f"""
    # Prometheus scrapes here (DVT_CDS_METRICS_PORT): /metrics only.
    server {{
        listen {listen_address(settings.host, settings.metrics_port)};

        location = /metrics {{
            proxy_pass http://dvt_cds;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
        }}
        location / {{
            {_NOT_FOUND}
        }}
    }}"""


def render(settings: Settings, runtime: Path) -> str:
    socket = runtime / "gunicorn.sock"
    values = {
        "USER": _user_line(),
        "NGINX_WORKERS": "1",  # event-driven: one process holds thousands of connections; the CPU is gunicorn's
        "NOFILE": str(settings.max_connections * 2 + 64),  # a client and an upstream socket per connection
        "RUNTIME": str(runtime),
        "MAX_CONNECTIONS": str(settings.max_connections),
        "CLIENT_TIMEOUT": f"{settings.client_timeout_s:g}",
        "KEEPALIVE": f"{settings.keepalive_s:g}",
        "MAX_BODY_BYTES": str(settings.max_body_bytes),
        "SOCKET": str(socket),
        "LISTEN": listen_address(settings.host, settings.port),
        "PUBLIC_METRICS": _PUBLIC_METRICS if settings.metrics_port else "",
        "METRICS_SERVER": _metrics_server(settings),
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@@{name}@@", value)
    if "@@" in text:
        raise ValueError("nginx template has a placeholder without a value")
    return text


def write(settings: Settings, runtime: Path) -> FrontFiles:
    """The rendered config in ``runtime`` (made traversable so root-started nginx workers reach the socket)."""
    runtime.chmod(0o711)
    config = runtime / "nginx.conf"
    config.write_text(render(settings, runtime))
    return FrontFiles(runtime=runtime, config=config, socket=runtime / "gunicorn.sock")
