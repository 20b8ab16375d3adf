"""The WSGI application for gunicorn:

    gunicorn --config python:cds_service.gunicorn_conf cds_service.wsgi:application

(``dvt-cds serve --production`` runs exactly that.) Each worker builds its own app: its own FHIR connection pool,
thread pool and database engine.
"""

from __future__ import annotations

import os

from cds_service.settings import Settings

settings = Settings()
if settings.metrics_dir:
    # prometheus_client chooses per-process value files when this is set before it is first imported.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = settings.metrics_dir

from cds_service import gc_tuning  # noqa: E402
from cds_service.app import create_app  # noqa: E402 - after the metrics directory is known
from cds_service.listeners import MetricsPortSplit  # noqa: E402
from cds_service.logs import configure_logging  # noqa: E402
from cds_service.store import Store  # noqa: E402

configure_logging(settings.log_level)
# Checked, never changed: a schema behind this version stops the worker (gunicorn_conf.py refused it already).
application = create_app(settings, store=Store.from_settings(settings, schema="require"))
if settings.metrics_port:
    application.wsgi_app = MetricsPortSplit(application.wsgi_app, settings.metrics_port)  # type: ignore[method-assign]

gc_tuning.tune()  # what warm-up built is frozen, the collector runs rarely (the bench's floor runs under the same)
