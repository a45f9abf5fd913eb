# Chart targets (charts/fast-note): lint, test, README generation, security scan. Included by the
# Makefile.
CHART_DIR := charts/fast-note
CHART_ENV ?= dev
CHECKOV := $(TOOLS)/checkov/bin/checkov

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
chart-test: venv tools scan-tools ## Chart tests: render with Helm 3 and 4, validate against Kubernetes 1.29 and 1.35, security scan
	$(BIN)/python -m pytest tests/chart -q $(PYTEST_ARGS)

.PHONY: chart-template
chart-template: tools ## Render the chart with values/$(CHART_ENV).yaml (CHART_ENV=dev|prod)
	$(TOOLS)/bin/helm3 template fast-note $(CHART_DIR) -f values/$(CHART_ENV).yaml

# checkov and its ~100 dependencies (~290 MB): its own virtualenv, never .venv. The install is a
# no-op (it touches the binary) when the pinned version is there already.
$(CHECKOV): tools/security_scan.py tools/fetch_tools.py | $(BIN)/.installed
	$(BIN)/python -m tools.security_scan install

.PHONY: scan-tools
scan-tools: venv $(CHECKOV) ## Install the pinned checkov (PyPI, wheel sha256-checked) into its own virtualenv .tools/checkov

.PHONY: scan
scan: venv tools scan-tools ## Security scan (checkov) of the prod render, Helm 3 and 4: print the report, fail on a finding not in charts/fast-note/ci/security-scan-accepted.yaml
	$(BIN)/python -m tools.security_scan

.PHONY: scan-docs
scan-docs: venv ## Regenerate docs/chart.md's "Security scan" section from charts/fast-note/ci/security-scan-accepted.yaml
	$(BIN)/python -m tools.security_scan docs
