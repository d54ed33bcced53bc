# Everything installs from this repo's own files: pyproject.toml into .venv/, package-lock.json
# into node_modules/. `make setup` is idempotent (stamp files); demo and test run it first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup demo test contracts clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Recompile contracts/src into contracts/artifacts (committed; a test fails when they are stale).
contracts: node_modules/.installed
	node contracts/compile.js

demo: setup
	$(BIN)/fedmarket demo

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) node_modules .fedmarket
