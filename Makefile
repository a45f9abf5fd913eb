# fast-note deploy kit. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
PYTEST_ARGS ?=

##@ General

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Set-up

$(BIN)/.installed: pyproject.toml requirements-dev.txt hooks/requirements.lock
	$(PYTHON) -m venv $(VENV)
	# The migrator's dependencies exactly as the image gets them (hooks/Dockerfile), hashes checked.
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		-r hooks/requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

$(TOOLS)/.ready: tools/fetch_tools.py
	$(PYTHON) tools/fetch_tools.py $(TOOLS)
	@touch $@

.PHONY: venv
venv: $(BIN)/.installed ## Create .venv with the migrator and the pinned test dependencies

.PHONY: tools
tools: $(TOOLS)/.ready ## Fetch Helm 3, Helm 4, kubectl and PostgreSQL into .tools/ (sha256-checked)

# Component makefiles (chart checks, end-to-end, benchmarks) add their own targets.
-include mk/*.mk

##@ Main

.PHONY: demo
demo: venv tools ## Run the demo: migrate an embedded PostgreSQL while three replicas wait
	$(BIN)/python -m tools.demo

.PHONY: test
test: venv tools scan-tools ## Run the test suite: migrator and safety (real PostgreSQL), reliability (quick), chart (Helm 3 and 4, checkov scan)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

.PHONY: lint
lint: venv tools ## Lint the code, the chart and the workflows (ruff check and format, mypy, helm lint --strict, yamllint, yamale, actionlint)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m tools.chart_lint
	$(BIN)/actionlint

.PHONY: clean
clean: ## Remove .venv, .tools and caches
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache .mypy_cache .demo
