# Two commands matter: `make run` (the service on localhost) and `make test` (the whole suite).
# Both create .venv on first use. Every DVT_CDS_* variable set by the caller wins over the defaults here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint fuzz bench bench-scale clean system-packages lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@ $(VENV)/.stamp-run

# Embedded development defaults: loopback, authentication off (the service warns loudly); the store is the settings'
# default, var/dvt-cds.sqlite3 of this checkout by its absolute path, the one every dvt-cds command uses.
run: export DVT_CDS_HOST ?= 127.0.0.1
run: export DVT_CDS_PORT ?= 8080
run: export DVT_CDS_AUTH ?= off
run: export DVT_CDS_PUBLIC_BASE_URL ?= http://$(DVT_CDS_HOST):$(DVT_CDS_PORT)
# The fixture library's example site ConceptMap, so `dvt-cds replay --all` passes against `make run`.
run: export DVT_CDS_CONCEPT_MAPS ?= $(CURDIR)/fhir_fixtures/conceptmaps/example-site.json
run: $(VENV)/.stamp-run
	@mkdir -p var
	$(BIN)/dvt-cds db upgrade
	$(BIN)/dvt-cds serve

# nginx, the front `dvt-cds serve --production` starts before gunicorn (cds_service/front/), and chromium, the
# headless browser the pathway view's tests drive (tests/smart/): from the distribution, each installed once when
# missing (the production and overload tests start nginx; Playwright downloads no browser of its own).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-packages:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
		echo "installing nginx from the distribution (the production front)"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null; }
	@[ -x /usr/bin/chromium ] || { \
		echo "installing chromium from the distribution (the pathway view's browser tests)"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# The real FHIR server the fetch-path tests run against (@medplum/fhir-router, in memory, loopback only).
tests/medplum/node_modules/.stamp: tests/medplum/package-lock.json
	npm ci --prefix tests/medplum --no-audit --no-fund --loglevel=error
	@touch $@

# The whole suite on TEST_WORKERS pytest-xdist workers, each test file on one worker (--dist loadfile: a file's module
# fixtures and its order stay as in a serial run), with branch coverage of cds_service and hooks, the `dvt-cds`
# processes the end-to-end tests start included ([tool.coverage.run] in pyproject.toml). Then the gate, run even when
# a test failed: >= 90 % in total and in each package of the clinical core (tests/coverage_gate.py prints the table).
# The tests that run `make run` see make as a user's shell does (no MAKELEVEL: messages say `make:`, not `make[1]:`).
# Per-file detail afterwards: COVERAGE_FILE=var/coverage/.coverage .venv/bin/coverage report (or html).
TEST_WORKERS ?= 2
COVERAGE_DIR := var/coverage
test: export COVERAGE_FILE = $(CURDIR)/$(COVERAGE_DIR)/.coverage
test: $(VENV)/.stamp-test tests/medplum/node_modules/.stamp system-packages
	@rm -rf $(COVERAGE_DIR) && mkdir -p $(COVERAGE_DIR)
	@status=0; \
	env -u MAKELEVEL -u MAKEFLAGS -u MFLAGS $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile \
		--cov=cds_service --cov=hooks --cov-branch --cov-report=json:$(COVERAGE_DIR)/coverage.json || status=$$?; \
	$(BIN)/python tests/coverage_gate.py $(COVERAGE_DIR)/coverage.json || status=$${status/#0/1}; \
	exit $$status

# Far more generated and mutated requests than the suite's own fuzz test (a few minutes).
fuzz: $(VENV)/.stamp-test
	FUZZ_EXAMPLES_PER_SERVICE=13000 $(BIN)/python -m pytest tests/security/test_fuzz.py -p no:logging -q --hypothesis-profile=fuzz

# The service under gunicorn against its floor, driven from a separate process, and the fetch path against the
# Medplum test server behind a 50 ms proxy (about ten minutes); results are saved under bench/results/ and compared
# with the previous run. BENCH_ARGS="--before REV" measures an older revision beside it in the same run.
bench: $(VENV)/.stamp-test tests/medplum/node_modules/.stamp system-packages
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# requirements.lock, which the Dockerfile installs by hash: pip resolves pyproject.toml's dependencies against PyPI.
# Run it under the Python of the Dockerfile's base image (its header says which) after changing a dependency.
lock: | $(BIN)/python
	$(BIN)/python deploy/lock_requirements.py

# One production instance against two on one PostgreSQL database (127.0.0.1:5432 by default), JWT on: throughput
# and the ratio (about a minute). On one machine the instances share its cores: bench/scale.py says what that means.
bench-scale: $(VENV)/.stamp-test system-packages
	$(BIN)/python -m bench.scale

# Style, formatting, types and the layer contracts of pyproject.toml ([tool.importlinter]).
lint: $(VENV)/.stamp-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var/*.sqlite3 .pytest_cache .ruff_cache .hypothesis
