# The service as `dvt-cds serve --production` runs it: nginx in front (buffers whole requests, so slow clients
# cannot hold gunicorn's threads), gunicorn behind it; slim, non-root, with a health check.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY cds_service ./cds_service
COPY hooks ./hooks
COPY fhir_fixtures ./fhir_fixtures
RUN pip install '.[postgres]' \
 && useradd --system --uid 10001 --home-dir /app cds \
 && mkdir -p /app/var /app/metrics \
 && chown cds:cds /app/var /app/metrics

USER cds
ENV DVT_CDS_HOST=0.0.0.0 \
    DVT_CDS_PORT=8080 \
    DVT_CDS_METRICS_DIR=/app/metrics \
    DVT_CDS_DATABASE_URL=sqlite:////app/var/dvt-cds.sqlite3

EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"

# nginx + gunicorn (DVT_CDS_WORKERS × DVT_CDS_THREADS) under one supervisor; SIGTERM (docker stop) drains.
CMD ["dvt-cds", "serve", "--production"]
