# Everything installs from this repo's own files: pyproject.toml into .venv/, package-lock.json
# into node_modules/. `make setup` is idempotent (stamp files); demo and test run it first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# the first ephemeral Prefect server on a fresh machine migrates a new database: more than 20 s here
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: setup demo test lint e2e e2e-load ui-check contracts slither bench-gas bench-science clean

FORGE := $(CURDIR)/node_modules/.bin/forge

# The four installs are independent and mostly wait on disk: they run side by side.
INSTALLS := $(VENV)/.installed $(VENV)/slither/.installed $(VENV)/peers/.installed node_modules/.installed
setup:
	@$(MAKE) --no-print-directory -j4 $(INSTALLS)

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# slither-analyzer pins web3<8 and fedmarket needs web3 8: it gets a venv of its own, inside .venv/.
$(VENV)/slither/.installed: contracts/slither-requirements.txt | $(BIN)/python
	test -x $(VENV)/slither/bin/python || $(PYTHON) -m venv $(VENV)/slither
	$(VENV)/slither/bin/pip install --quiet -r contracts/slither-requirements.txt
	touch $@

# byzfl and flwr, the peers `fedmarket bench aggregation` compares with: flwr 1.41 pins fastapi
# 0.138 (prefect needs >=0.139) and byzfl pulls torchvision, whose PyPI build does not load on the
# CPU torch; so a venv of their own, and byzfl without its declared dependencies.
$(VENV)/peers/.installed: benchmarks/peers-requirements.txt | $(BIN)/python
	test -x $(VENV)/peers/bin/python || $(PYTHON) -m venv $(VENV)/peers
	$(VENV)/peers/bin/pip install --quiet -r benchmarks/peers-requirements.txt
	$(VENV)/peers/bin/pip install --quiet --no-deps byzfl==0.0.11
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

bench-science: setup
	$(BIN)/fedmarket bench robustness
	$(BIN)/fedmarket bench contribution
	$(BIN)/fedmarket bench aggregation

demo: setup
	$(BIN)/fedmarket demo

# Lint and format (ruff) and the layers of DESIGN.md section 5 (import-linter, pyproject.toml).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

# The lint, the forge unit, fuzz and invariant tests of the contracts, then every Python suite
# (slither included), one file per worker on two workers: much of the suite waits on
# subprocesses, nodes and servers, so one worker leaves a core idle.
test: lint
	cd contracts && $(FORGE) test
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not load and not ui"

# The multi-process market alone (also part of `make test`): anvil, prefect server, worker,
# listener and four trainer daemons; prints its wall time and the Prefect overhead per task.
e2e: setup
	$(BIN)/python -m pytest -q -s tests/test_e2e.py

# 100 trainers (light clients, 25 per process), 3 rounds, on anvil and a real IPFS node through
# the real flows and the listener; prints per-round latency, gas, peak memory and listener lag.
e2e-load: setup
	$(BIN)/python -m pytest -q -s -m load tests/test_load.py

# The Prefect UI as a person sees it: the e2e market on a real server, then headless Chromium
# (Debian's package, installed when missing) renders the runs, artifacts, deployments and
# automations pages into build/ui-check/*.png to look at; the test checks what the pages show.
ui-check: setup
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
	$(BIN)/python -m pytest -q -s -m ui tests/test_ui.py

clean:
	rm -rf $(VENV) node_modules .fedmarket
