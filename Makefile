# triohub: every target sets up what it needs; `make test` works on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CHROMIUM := /usr/bin/chromium
HOST    ?= 127.0.0.1
PORT    ?= 8000
PORT2   ?= 8001
REDIS_PORT ?= 6390
SERVER  ?= hypercorn
QUICK   ?=
BENCH_ARGS ?=
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help setup demo demo-cluster test test-fast lint typecheck fmt bench bench-smoke bench-micro bench-instructions clean node chromium redis soak

help:
	@echo "make demo   - set everything up and run the demo on http://$(HOST):$(PORT)"
	@echo "              (SERVER=native: on triohub's own server instead of hypercorn)"
	@echo "make demo-cluster - one redis-server and two demo nodes (ports $(PORT) and $(PORT2))"
	@echo "make test   - set everything up and run lint, typecheck and all tests"
	@echo "make bench  - triohub vs aiosignalr vs the floor (QUICK=1: short smoke run;"
	@echo "              BENCH_ARGS='--scenarios echo-50 --servers hypercorn,aiosignalr')"
	@echo "make soak   - normal and hostile clients for minutes on each server (SOAK_SECONDS=20: brief)"

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Editable: engine/ imports as `triohub`, actors/ as `triohub.actors` (pyproject.toml maps
# the folders; setuptools installs a meta path finder for that). Reinstalled whenever
# pyproject.toml changes. With -v, setuptools says "Please be careful with folders in your
# working directory with the same name as your package": it says so for every install
# through such a finder; no folder here is named triohub, and nothing imports the folder
# names engine/actors (tests/packaging/test_layout.py), so it does not apply.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(STAMP)

$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

node: $(NODE_STAMP)

# Debian's chromium for the browser tests (never a browser download of a tool's own).
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| { echo "could not install chromium" >&2; exit 1; }; \
	fi

# Debian's redis-server for the backplane tests (they start their own on free ports).
redis:
	@if ! command -v redis-server >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
		|| { echo "could not install redis-server" >&2; exit 1; }; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# mypy --strict on triohub as installed: .ci/typecheck.py stages engine/ and actors/ as
# build/typecheck/triohub (symlinks), runs mypy there and reports engine/... and actors/... paths.
typecheck: $(STAMP)
	$(BIN)/python .ci/typecheck.py

test: $(STAMP) node chromium redis lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Unit tests only (no real clients): quick feedback while developing.
test-fast: $(STAMP) redis
	$(BIN)/python -m pytest -m "not e2e" $(PYTEST_ARGS)

# Minutes per server (SOAK_SECONDS, default 300; SOAK_PATTERNS=a,b picks hostile
# patterns, see tests/soak/hostile.py). Never run by `make test`.
soak: $(STAMP) node
	$(BIN)/python -m pytest tests/soak -m soak -s $(PYTEST_ARGS)

demo: $(STAMP) node
	$(BIN)/python -m demo --host $(HOST) --port $(PORT) --server $(SERVER)

# Scale-out, for a person with two browsers: a redis-server on REDIS_PORT (no
# persistence) and two demo nodes sharing it. Ctrl+C stops all three.
demo-cluster: $(STAMP) node redis
	$(BIN)/python -m demo.cluster --host $(HOST) --ports $(PORT),$(PORT2) --redis-port $(REDIS_PORT)

# The benchmark's own venv: the project (editable) plus aiosignalr, matplotlib,
# psutil and py-spy, none of which the library depends on. Never run by `make test`.
$(BENCH_VENV)/bin/python:
	$(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip

$(BENCH_STAMP): pyproject.toml benchmarks/requirements.txt | $(BENCH_VENV)/bin/python
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[redis]' -r benchmarks/requirements.txt
	touch $@

# Exits non-zero if any scenario a server supports produced no number.
bench: $(BENCH_STAMP) node redis
	$(BENCH_VENV)/bin/python benchmarks/bench.py $(if $(QUICK),--quick,) $(BENCH_ARGS)
	$(BENCH_VENV)/bin/python benchmarks/bench_cluster.py $(if $(QUICK),--quick,)
	$(BENCH_VENV)/bin/python benchmarks/bench_workers.py $(if $(QUICK),--quick,)
	$(BENCH_VENV)/bin/python benchmarks/bench_credentials.py $(if $(QUICK),--quick,)
	$(BENCH_VENV)/bin/python benchmarks/bench_resume.py $(if $(QUICK),--quick,)

bench-smoke:
	$(MAKE) bench QUICK=1

# Server instructions per echo under valgrind (counts, not timings: see benchmarks/README.md).
bench-instructions: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/bench_instructions.py $(if $(QUICK),--quick,)

# In-process ceilings of the codecs, the router and the WebSocket framing (no network).
bench-micro: $(STAMP)
	$(BIN)/python benchmarks/bench_codec.py $(if $(QUICK),--quick,)
	$(BIN)/python benchmarks/bench_fanout.py $(if $(QUICK),--quick,)
	$(BIN)/python benchmarks/bench_framing.py $(if $(QUICK),--quick,)
	$(BIN)/python benchmarks/bench_telemetry.py $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) $(BENCH_VENV) node_modules .mypy_cache .pytest_cache .ruff_cache benchmarks/results build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
