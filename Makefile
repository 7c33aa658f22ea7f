# Two set-up commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
UV_VERSION := 0.13.8
INSTALLED := $(VENV)/.installed

WORK_DIR := $(or $(FACILFLOW_HOME),$(CURDIR)/.facilflow)
export DAGSTER_HOME := $(WORK_DIR)/dagster_home

.PHONY: install demo test test-fast dev lint format lock clean

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"

# Bytecode compiled at install: where PYTHONDONTWRITEBYTECODE is set, every process (the
# CLI, Dagster's code servers, Ray's workers) would otherwise compile its imports anew,
# seconds each.
$(INSTALLED): $(UV) requirements.lock pyproject.toml
	$(UV) pip sync --python $(BIN)/python --compile-bytecode requirements.lock
	$(UV) pip install --python $(BIN)/python --no-deps --editable .
	touch $@

install: $(INSTALLED)

# The local Dagster instance: sqlite storage under DAGSTER_HOME, no telemetry, and a run
# queue that gives each tenant at most two runs at a time and one training.
$(DAGSTER_HOME)/dagster.yaml: deploy/local-dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deploy/local-dagster.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/facilflow demo

test: install
	$(BIN)/pytest --numprocesses 2

# The tests that start no Ray, no server process and no demo build: answers in minutes.
test-fast: install
	$(BIN)/pytest --numprocesses 2 -m "not slow"

MLFLOW_DIR := $(WORK_DIR)/mlflow

# The Dagster UI on :3000 (every location of workspace.yaml on one instance) and the MLflow
# UI on :5000, over the stores `make demo` fills. The MLflow UI runs the governance server
# app with demo users (alice, every tenant's approvers, facilflow), whose passwords facilflow_assets/dev_server.py keeps in
# $(MLFLOW_DIR)/dev-credentials.ini and prints once the server is up.
dev: install $(DAGSTER_HOME)/dagster.yaml
	setsid $(BIN)/python -m facilflow_assets.dev_server $(MLFLOW_DIR) \
	    --host 127.0.0.1 --port 5000 & \
	mlflow_group=$$!; trap 'kill -- -$$mlflow_group' EXIT; \
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Style, the layers of docs/architecture.md, and types.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/basedpyright

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-resolve the pinned dependency set after changing pyproject.toml.
lock: $(UV)
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf .facilflow dbt/target dbt/logs
