# The two commands a newcomer needs: `make run` and `make test`. Both build the virtualenv first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test
# The first interpreter that is Python 3.12 or newer (Django 6 needs it).
PYTHON ?= $(shell for c in python3.12 python3.13 python3.14 python3 python; do \
	command -v $$c >/dev/null 2>&1 && $$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
	&& { echo $$c; break; }; done)

.PHONY: help venv env run serve test test-postgres test-browser lint format bench clean

help:
	@echo "make run            install, write .env, migrate, load demo data, start the web server and a worker (SQLite)"
	@echo "make serve          the production web server (gunicorn, DEBUG off, static files collected): see README"
	@echo "make env            write .env for this checkout: DEBUG=1 and keys generated here (kept if present)"
	@echo "make test           install and run the whole test suite (SQLite)"
	@echo "make test-postgres  the suite against PostgreSQL at $(POSTGRES_URL)"
	@echo "make test-concurrency  concurrency and crash recovery with real processes on PostgreSQL (CONCURRENCY_JOBS=200: quick)"
	@echo "make test-redis     the Redis-backed tests (Celery worker, Redis broker at 127.0.0.1:6379)"
	@echo "make lint           ruff and mypy"
	@echo "make bench          the benchmarks, printing ratios"
	@echo "make mutation       mutation testing of the statistics modules (mutmut; survivors argued in the README)"
	@echo "make fuzz           schemathesis over the OpenAPI schema, a longer run (FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES))"
	@echo "make test-browser   the admin in headless Chromium (Playwright); screenshots in artifacts/screenshots/"

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@if [ -z "$(PYTHON)" ]; then echo "Python 3.12 or newer is needed (python3.12 not found)." >&2; exit 1; fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

# The developer checkout's settings: DEBUG=1 and keys generated for it (git-ignored .env, read by
# settings), so `manage.py` works as written. Keys already in the file are kept.
env: venv
	$(PY) -m learning_engine.devenv

run: env
	$(PY) manage.py migrate --no-input
	$(PY) manage.py load_demo
	@echo
	@echo "  Admin:    http://$(HOST):$(PORT)/admin/"
	@echo "  API docs: http://$(HOST):$(PORT)/api/docs/"
	@echo "  API:      http://$(HOST):$(PORT)/api/v1/"
	@echo
	@$(PY) manage.py db_worker --queue-name '*' & worker=$$!; \
	trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(PY) manage.py runserver --noreload $(HOST):$(PORT)

# The production web server: gunicorn with learning_engine/gunicorn_conf.py (2 x cores + 1 workers,
# WEB_CONCURRENCY to change), after collectstatic and `check --deploy`. Refuses DEBUG on, so the
# developer .env of `make env` does not serve production (learning_engine/serve.py says what to set).
serve: venv
	HOST=$(HOST) PORT=$(PORT) $(PY) -m learning_engine.serve

test: venv
	$(PY) -m pytest

# Fewer fuzz examples here: the SQLite pass has already fuzzed every operation, and a request costs
# more on PostgreSQL.
test-postgres: venv
	DATABASE_URL=$(POSTGRES_URL) FUZZ_MAX_EXAMPLES=$${FUZZ_MAX_EXAMPLES:-5} $(PY) -m pytest

# Concurrency and crash recovery with real processes (tests/concurrency) on PostgreSQL. They are
# part of test-postgres too; this runs them alone. The worker queue holds the issue's 2,000 jobs
# (about 3.5 minutes on two cores); CONCURRENCY_JOBS=200 for a quick run.
CONCURRENCY_JOBS ?= 2000

.PHONY: test-concurrency
test-concurrency: venv
	DATABASE_URL=$(POSTGRES_URL) CONCURRENCY_JOBS=$(CONCURRENCY_JOBS) $(PY) -m pytest tests/concurrency

# The Redis-backed tests (marker "redis": tests/celery, a real `celery worker` with Redis as the
# broker). They skip, with the reason, when Redis does not answer. They use and flush only the
# Redis database CELERY_TEST_BROKER_URL names.
CELERY_TEST_BROKER_URL ?= redis://127.0.0.1:6379/13

.PHONY: test-redis
test-redis: venv
	CELERY_TEST_BROKER_URL=$(CELERY_TEST_BROKER_URL) $(PY) -m pytest -m redis

# ruff, mypy and import-linter (the apps' layering). mypy's Django plugin loads the settings, which need keys: .env gives them.
lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The browser tests (tests/browser): Playwright's Python client drives Debian's Chromium. Playwright's
# own browser downloads are never used. Chromium is installed with apt when missing and run as root.
CHROMIUM := /usr/bin/chromium

$(VENV)/.installed-browser: requirements-browser.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-browser.txt
	@touch $@

test-browser: venv $(VENV)/.installed-browser
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing Chromium: apt-get install -y chromium"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || exit 1; \
		else \
			echo "The browser tests need Chromium at $(CHROMIUM). Install it as root (Debian/Ubuntu:" \
				"sudo apt-get install -y chromium) and run make test-browser again." >&2; \
			exit 1; \
		fi; \
	fi
	$(PY) -m pytest tests/browser -m browser

# The fuzz tests run in `make test` too, with a few examples per operation; this is the long run.
FUZZ_MAX_EXAMPLES ?= 100
.PHONY: fuzz
fuzz: venv
	FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) FUZZ_DERANDOMIZE=0 $(PY) -m pytest -m fuzz tests/fuzz

bench: venv
	$(PY) -m benchmarks

# Mutation testing (mutmut 3) of the statistics modules against their unit tests; what is mutated and
# which tests run are in pyproject.toml ([tool.mutmut]). Each surviving mutant is either killed by a
# new test or argued equivalent in the README. `mutmut show NAME` shows one mutant's diff.
.PHONY: mutation
mutation: venv
	rm -rf mutants
	$(VENV)/bin/mutmut run
	$(VENV)/bin/mutmut results

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
