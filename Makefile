# The README's two commands are `make quick` and `make test`; both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quick test test-slow validate report bench bench-hmc bench-flow clean

# Reinstall only when the dependency pins or the package metadata change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

quick: $(STAMP)
	$(BIN)/lftbench run quick --out results/quick
	$(BIN)/lftbench report results/quick --out reports/quick

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

validate: $(STAMP)
	$(BIN)/lftbench validate --tier quick

# The committed CPU reference report of the scaling studies (one thread, some three CPU-hours; a second
# `lftbench run scaling-phi4-cpu --out results/cpu` beside it shares the tasks).
report: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/lftbench run scaling-phi4-cpu --out results/cpu
	$(BIN)/lftbench report results/cpu --out reports/cpu --target-ess 0.05 --html
	$(BIN)/lftbench compare results/cpu --target-ess 0.05 > reports/cpu/leaderboard.md
	cp results/cpu/results.jsonl reports/cpu/results.jsonl

$(VENV)/.installed-bench: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test,bench]"
	touch $@

# The asv suite once (--quick) against the working tree, one thread; results in .asv/results.
bench: $(VENV)/.installed-bench
	$(BIN)/asv machine --yes
	OMP_NUM_THREADS=1 $(BIN)/asv run --python=same --quick --show-stderr --set-commit-hash=$$(git rev-parse HEAD)

bench-hmc: $(STAMP)
	$(BIN)/python bench/hmc_throughput.py --out results/bench-hmc

bench-flow: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python bench/flow_throughput.py --out results/bench-flow

clean:
	rm -rf $(VENV) results/quick reports/quick
