# End-to-end targets: a real Kubernetes control plane and node (the version pinned in
# tools/fetch_tools.py, built once from Debian's source package and cached in $(E2E_CACHE);
# containerd and runc from Debian), images built from the project's Dockerfiles (cached there
# too), an embedded PostgreSQL and the chart with Helm 3 and Helm 4. Included by the Makefile.
# docs/e2e.md.

E2E_CACHE ?= /var/cache/fast-note-e2e
E2E_PYTEST_ARGS ?=
E2E_TIMEOUT ?= 600
E2E_ENV := FAST_NOTE_E2E=1 FAST_NOTE_E2E_CACHE=$(E2E_CACHE)

##@ End-to-end

.PHONY: e2e-control-plane
e2e-control-plane: ## Build the pinned Kubernetes binaries once (~5 min cold), apt-install etcd, containerd, runc, buildah
	@FAST_NOTE_E2E_CACHE=$(E2E_CACHE) bash testkit/kube/build-control-plane.sh >/dev/null

.PHONY: e2e-images
e2e-images: venv e2e-control-plane ## Build the base, migrator, app and pause images with buildah (cached by their inputs)
	FAST_NOTE_E2E_CACHE=$(E2E_CACHE) $(BIN)/python -m testkit.kube.images

.PHONY: e2e
e2e: venv tools e2e-images ## End-to-end tests on a local control plane and node (Helm 3 and 4)
	$(E2E_ENV) $(BIN)/python -m pytest tests/e2e -m e2e -p no:cacheprovider \
	  --timeout $(E2E_TIMEOUT) $(E2E_PYTEST_ARGS)

.PHONY: e2e-cluster
e2e-cluster: venv tools ## The same tests against the cluster in KUBECONFIG (images and database: docs/e2e.md)
	@test -n "$(KUBECONFIG)" || { echo "set KUBECONFIG to the cluster to test" >&2; exit 2; }
	@test -n "$(FAST_NOTE_E2E_DATABASE_URL)" || { \
	  echo "set FAST_NOTE_E2E_DATABASE_URL (reachable from here and from the pods)" >&2; exit 2; }
	$(E2E_ENV) FAST_NOTE_E2E_KUBECONFIG=$(KUBECONFIG) $(BIN)/python -m pytest tests/e2e -m e2e \
	  -p no:cacheprovider --timeout $(E2E_TIMEOUT) $(E2E_PYTEST_ARGS)

.PHONY: e2e-up
e2e-up: venv tools e2e-images ## Start the local control plane and node and wait (Ctrl-C stops it)
	FAST_NOTE_E2E_CACHE=$(E2E_CACHE) $(BIN)/python -m testkit.kube.cluster

.PHONY: e2e-clean
e2e-clean: ## Remove the cached binaries, source, images and image store ($(E2E_CACHE))
	rm -rf $(E2E_CACHE)
