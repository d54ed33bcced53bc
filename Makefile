# Everything installs from this repo's own files: pyproject.toml into .venv/, package-lock.json
# into node_modules/. `make setup` is idempotent (stamp files); demo and test run it first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup demo test contracts slither bench-gas clean

FORGE := $(CURDIR)/node_modules/.bin/forge

setup: $(VENV)/.installed $(VENV)/slither/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# slither-analyzer pins web3<8 and fedmarket needs web3 8: it gets a venv of its own, inside .venv/.
$(VENV)/slither/.installed: contracts/slither-requirements.txt
	test -x $(VENV)/slither/bin/python || $(PYTHON) -m venv $(VENV)/slither
	$(VENV)/slither/bin/pip install --quiet -r contracts/slither-requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Recompile contracts/src into contracts/artifacts (committed; a test fails when they are stale).
contracts: node_modules/.installed
	node contracts/compile.js

# Static analysis: zero high/medium findings; every low one is justified in contracts/README.md.
slither: setup
	$(BIN)/python -m pytest -q tests/test_slither.py

bench-gas: setup
	$(BIN)/fedmarket bench gas

demo: setup
	$(BIN)/fedmarket demo

# forge unit, fuzz and invariant tests of the contracts, then every Python suite (slither included).
test: setup
	cd contracts && $(FORGE) test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) node_modules .fedmarket
