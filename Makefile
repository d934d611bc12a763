# Muster: every target creates .venv and installs the project into it when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: up down status infra test test-fast bench bench-quick demo lint format venv clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "venv: installing Muster and its dependencies into $(VENV) (first time: ~1 min)"
	@$(PY) -m pip install -q --upgrade pip setuptools wheel
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## Start Kafka, PostgreSQL, Redis, the three services and the console (installs what is missing).
up: $(STAMP)
	@bash deploy/local/stack.sh up

## Stop everything `make up` started.
down:
	@bash deploy/local/stack.sh down

status:
	@bash deploy/local/stack.sh status

## Only the infrastructure the tests need (and Chromium for the browser tests).
infra: $(STAMP)
	@bash deploy/local/stack.sh up --infra

## The whole test suite against real Kafka, PostgreSQL and Redis, browser tests included.
test: infra
	@$(PY) -m pytest $(PYTEST_ARGS)

## The fast part only: pure logic and contract tests.
test-fast: $(STAMP)
	@$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

## Benchmarks: each figure beside the raw part it stands on, one table, bench/results/latest.json.
bench: infra
	@$(PY) -m bench

## The same at small sizes, for day-to-day use (a few minutes).
bench-quick: infra
	@BENCH_QUICK=1 $(PY) -m bench

## After `make up`: sections, accounts, a few thousand members, a drill in Fier with answers.
demo: $(STAMP)
	@bash deploy/local/stack.sh status >/dev/null 2>&1 || \
		{ echo "error: the stack is not running: run make up first, then make demo" >&2; exit 1; }
	@$(PY) -m demo

lint: $(STAMP)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy shared services demo

format: $(STAMP)
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
