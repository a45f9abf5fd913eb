# Release targets: every artifact of a release built and checked locally (tools/release.py), and
# the check that one version is written everywhere. Included by the Makefile.
DIST ?= dist

##@ Release

.PHONY: package
package: venv tools e2e-control-plane ## Build $(DIST)/: the chart .tgz (helm lint --strict, Helm 3 and 4), wheel and sdist (twine check), the migrator and example app images, SHA256SUMS
	FAST_NOTE_E2E_CACHE=$(E2E_CACHE) $(BIN)/python -m tools.release package --out $(DIST)

.PHONY: release-check
release-check: venv ## Refuse a version mismatch: __version__, pyproject, Chart.yaml, the default images, CHANGELOG.md, the tag (RELEASE_TAG or GITHUB_REF_NAME), $(DIST)/SHA256SUMS
	$(BIN)/python -m tools.release check --dist $(DIST)
