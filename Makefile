# The README's two commands are `make quick` and `make test`; both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quick test test-slow validate bench-hmc bench-flow clean

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

bench-hmc: $(STAMP)
	$(BIN)/python bench/hmc_throughput.py

bench-flow: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python bench/flow_throughput.py

clean:
	rm -rf $(VENV) results/quick reports/quick
