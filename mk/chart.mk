# Chart targets (charts/fast-note): lint, test, README generation. Included by the Makefile.
CHART_DIR := charts/fast-note
CHART_ENV ?= dev

##@ Chart

.PHONY: chart-readme-tool
chart-readme-tool: venv ## Install the pinned readme-generator-for-helm into .tools/node (needs node and npm)
	$(BIN)/python -m tools.chart_lint install-readme-generator

.PHONY: chart-readme
chart-readme: venv chart-readme-tool ## Regenerate the chart README's Parameters section from values.yaml
	$(BIN)/python -m tools.chart_lint readme

.PHONY: chart-lint
chart-lint: venv tools ## helm lint --strict (Helm 3 and 4, every values file), yamllint, yamale, README drift
	$(BIN)/python -m tools.chart_lint

.PHONY: chart-test
chart-test: venv tools ## Chart tests: render with Helm 3 and 4, validate against Kubernetes 1.29 and 1.35
	$(BIN)/python -m pytest tests/chart -q $(PYTEST_ARGS)

.PHONY: chart-template
chart-template: tools ## Render the chart with values/$(CHART_ENV).yaml (CHART_ENV=dev|prod)
	$(TOOLS)/bin/helm3 template fast-note $(CHART_DIR) -f values/$(CHART_ENV).yaml
