# The service as `dvt-cds serve --production` runs it: nginx in front (buffers whole requests, so slow clients
# cannot hold gunicorn's threads), gunicorn behind it; slim, a numeric non-root user, a health check.
#
# Reproducible: the base image is pinned to the Python release requirements.lock was resolved for (bump both
# together: `make lock` under the new interpreter; `docker buildx imagetools inspect <tag>` gives a digest to pin
# with @sha256: as well), and every Python package is installed from requirements.lock by hash, with no resolver
# run at build time. The image runs with a read-only root filesystem: it writes only /tmp (the front's runtime
# directory), DVT_CDS_METRICS_DIR and the outbox's directory (deploy/kubernetes mounts emptyDirs there).
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies first, in their own layer: a source change does not reinstall them.
COPY requirements.lock ./
RUN pip install --no-deps --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY cds_service ./cds_service
COPY hooks ./hooks
COPY fhir_fixtures ./fhir_fixtures
# The project alone (its dependencies are the locked ones above; pip check proves they satisfy it).
RUN pip install --no-deps --no-build-isolation '.[postgres]' \
 && pip check \
 && groupadd --system --gid 10001 cds \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home cds \
 && mkdir -p /app/var /app/metrics \
 && chown 10001:10001 /app/var /app/metrics

# Numeric, so Kubernetes can verify runAsNonRoot without looking the name up.
USER 10001:10001
ENV DVT_CDS_HOST=0.0.0.0 \
    DVT_CDS_PORT=8080 \
    DVT_CDS_METRICS_PORT=9464 \
    DVT_CDS_METRICS_DIR=/app/metrics \
    DVT_CDS_DATABASE_URL=sqlite:////app/var/dvt-cds.sqlite3

EXPOSE 8080 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"

# nginx + gunicorn (DVT_CDS_WORKERS × DVT_CDS_THREADS) under one supervisor; SIGTERM (docker stop) drains. The
# schema is not created here: run `dvt-cds db upgrade` first (docker compose's migrate service, the Kubernetes Job).
CMD ["dvt-cds", "serve", "--production"]
