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

.PHONY: help venv run test test-postgres lint format bench clean

help:
	@echo "make run            install, migrate, load demo data, start the web server and a worker (SQLite)"
	@echo "make test           install and run the whole test suite (SQLite)"
	@echo "make test-postgres  the suite against PostgreSQL at $(POSTGRES_URL)"
	@echo "make lint           ruff and mypy"
	@echo "make bench          the benchmarks, printing ratios"

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@if [ -z "$(PYTHON)" ]; then echo "Python 3.12 or newer is needed (python3.12 not found)." >&2; exit 1; fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

run: venv
	DEBUG=1 $(PY) manage.py migrate --no-input
	DEBUG=1 $(PY) manage.py load_demo
	@echo
	@echo "  Admin:    http://$(HOST):$(PORT)/admin/"
	@echo "  API docs: http://$(HOST):$(PORT)/api/docs/"
	@echo "  API:      http://$(HOST):$(PORT)/api/v1/"
	@echo
	@DEBUG=1 $(PY) manage.py db_worker --queue-name '*' & worker=$$!; \
	trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	DEBUG=1 $(PY) manage.py runserver --noreload $(HOST):$(PORT)

test: venv
	$(PY) -m pytest

test-postgres: venv
	DATABASE_URL=$(POSTGRES_URL) $(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DEBUG=1 $(VENV)/bin/mypy .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: venv
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
