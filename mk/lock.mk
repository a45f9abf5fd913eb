# The locked dependencies of the migrator (hooks/requirements.lock, hooks/build.lock), with the
# uv pinned in requirements-dev.txt. Included by the Makefile.
LOCK_PYTHON := 3.11
# One lock for every platform and Python >= $(LOCK_PYTHON) (markers), a sha256 for every file.
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version $(LOCK_PYTHON) \
	--generate-hashes --custom-compile-command "make lock"

##@ Dependencies

.PHONY: lock
lock: venv ## Regenerate hooks/requirements.lock (runtime, with [pkcs12]) and hooks/build.lock (the build backend) with hashes
	$(UV_COMPILE) --extra pkcs12 --output-file hooks/requirements.lock pyproject.toml
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
		| $(UV_COMPILE) --output-file hooks/build.lock -
