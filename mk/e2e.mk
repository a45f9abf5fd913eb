# End-to-end targets: a real Kubernetes API server (the version pinned in tools/fetch_tools.py,
# built once from Debian's source package and cached in $(E2E_CACHE)), the node agent (a kubelet
# test double), an embedded PostgreSQL and the chart with Helm 3 and Helm 4. Included by the
# Makefile. docs/e2e.md.

E2E_CACHE ?= /var/cache/fast-note-e2e
E2E_PYTEST_ARGS ?=
E2E_TIMEOUT ?= 600
E2E_ENV := FAST_NOTE_E2E=1 FAST_NOTE_E2E_CACHE=$(E2E_CACHE)

##@ End-to-end

$(BIN)/.e2e-installed: tests/e2e/requirements.txt $(BIN)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
	@touch $@

.PHONY: e2e-deps
e2e-deps: venv tools $(BIN)/.e2e-installed ## Install the e2e Python deps (kubernetes client) into .venv

.PHONY: e2e-control-plane
e2e-control-plane: ## Build the pinned kube-apiserver/kube-controller-manager once (~6 min cold), install etcd
	@FAST_NOTE_E2E_CACHE=$(E2E_CACHE) bash testkit/kube/build-control-plane.sh >/dev/null

.PHONY: e2e
e2e: e2e-deps e2e-control-plane ## End-to-end tests on a local control plane + node agent (Helm 3 and 4)
	$(E2E_ENV) $(BIN)/python -m pytest tests/e2e -m e2e -p no:cacheprovider \
	  --timeout $(E2E_TIMEOUT) $(E2E_PYTEST_ARGS)

.PHONY: e2e-cluster
e2e-cluster: e2e-deps ## The same tests against the cluster in KUBECONFIG (images and database: docs/e2e.md)
	@test -n "$(KUBECONFIG)" || { echo "set KUBECONFIG to the cluster to test" >&2; exit 2; }
	@test -n "$(FAST_NOTE_E2E_DATABASE_URL)" || { \
	  echo "set FAST_NOTE_E2E_DATABASE_URL (reachable from here and from the pods)" >&2; exit 2; }
	$(E2E_ENV) FAST_NOTE_E2E_KUBECONFIG=$(KUBECONFIG) $(BIN)/python -m pytest tests/e2e -m e2e \
	  -p no:cacheprovider --timeout $(E2E_TIMEOUT) $(E2E_PYTEST_ARGS)

.PHONY: e2e-up
e2e-up: e2e-deps e2e-control-plane ## Start the local control plane + node agent and wait (Ctrl-C stops it)
	FAST_NOTE_E2E_CACHE=$(E2E_CACHE) $(BIN)/python -m testkit.kube.cluster

.PHONY: e2e-clean
e2e-clean: ## Remove the cached control plane binaries and source ($(E2E_CACHE))
	rm -rf $(E2E_CACHE)
