"""gunicorn configuration from the DVT_CDS_* settings (bind, workers, threads) with graceful shutdown."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cds_service.front.config import listen_address
from cds_service.logs import server_log_config
from cds_service.settings import Settings

_settings = Settings()

bind = [listen_address(_settings.host, _settings.port)]
if _settings.metrics_port:
    # Facing clients itself (DVT_CDS_FRONT=none): /metrics gets its own listener (wsgi.py keeps the two apart).
    # Behind the front, serve --production binds a unix socket instead and nginx keeps them apart.
    bind.append(listen_address(_settings.host, _settings.metrics_port))
workers = _settings.workers
worker_class = "gthread"  # threads overlap the FHIR round trips of the fetch path
threads = _settings.threads
timeout = 30
graceful_timeout = 20  # SIGTERM: finish the calls in flight, then stop
keepalive = 5  # the front's upstream keepalive_timeout (4 s) stays below this
accesslog = None  # the service logs one structured line per call itself
errorlog = "-"
loglevel = _settings.log_level.lower()
logconfig_dict = server_log_config(_settings.log_level)  # gunicorn's own lines as JSON too, like the service's
proc_name = "dvt-cds"
# gunicorn ≥ 25 opens a control socket at one fixed path per user: instances on a host would fight over it,
# and nothing here uses it.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """Check the site files and the store's schema once, in the master, before any worker starts (a schema behind
    this version stops gunicorn with one line: `dvt-cds db upgrade` changes it, never the service); start the
    metrics from zero (values of a previous run's workers would be added to this run's)."""
    from cds_service.fhir.conceptmaps import SiteConceptMaps
    from cds_service.profiles import OrderCatalog
    from cds_service.schema import SchemaError
    from cds_service.store import Store

    SiteConceptMaps.load(_settings.concept_maps)  # a bad file stops gunicorn here, with the file and the error
    OrderCatalog.load(_settings.order_catalog)
    if _settings.metrics_dir:
        _clear_metrics_dir(Path(_settings.metrics_dir))
    try:
        Store.from_settings(_settings, schema="require").close()
    except SchemaError as error:
        print(f"dvt-cds: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _clear_metrics_dir(directory: Path) -> None:
    """Only prometheus_client's value files (``*.db``), and without importing it: imported here, in the master,
    before wsgi.py names the directory, the workers would inherit its single-process mode."""
    for path in directory.glob("*.db"):
        path.unlink(missing_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    if _settings.metrics_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, path=_settings.metrics_dir)
