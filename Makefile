# powercast: `make run` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
ROOT ?= var
STAMP := $(VENV)/.installed
SAMPLE := data/sample/household_power_consumption_last120d.txt.gz

# Prefect state stays inside the project's ignored var/ folder; no telemetry; the embedded
# server gets enough time to start on a loaded 2-core machine.
export POWERCAST_ROOT ?= $(abspath $(ROOT))
export PREFECT_HOME ?= $(abspath $(ROOT))/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_LOGGING_LEVEL ?= INFO

.PHONY: help run test test-slow test-all serve bench install browser-deps clean

help:
	@echo "make run        set up .venv if missing and run the nightly flow on the bundled sample"
	@echo "make test       install test dependencies and run the default test suite"
	@echo "make test-slow  also run slow tests (full ../shared/data file)"
	@echo "make serve      local Prefect server + process work pool + deployments + worker"
	@echo "make bench      run the benchmarks in bench/ (prints tables, writes bench/results/); QUICK=1: the bundled sample, ~2 min"

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the CPU wheel on this machine's disk, so that the `torch>=` range in
# pyproject.toml is already satisfied and pip never resolves a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[flows,test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@mkdir -p "$(PREFECT_HOME)"
	$(PY) flows/nightly.py --sample

# Chromium for the browser test: installed from Debian when we can (CI runs as root);
# elsewhere the browser test skips and says why.
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = "0" ]; then \
		echo "installing Debian chromium + chromium-driver for the browser test"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
		|| (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1) \
		|| echo "could not install chromium; the browser test will be skipped"; \
	fi

test: $(STAMP) browser-deps
	@mkdir -p "$(PREFECT_HOME)"
	$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m "slow" $(PYTEST_ARGS)

test-all: $(STAMP) browser-deps
	@mkdir -p "$(PREFECT_HOME)"
	$(PY) -m pytest $(PYTEST_ARGS)

# SERVE_ARGS, e.g. "--port 4300" or "--host 0.0.0.0" (the latter only with
# PREFECT_SERVER_API_AUTH_STRING set in the environment: docs/operations.md).
SERVE_ARGS ?=
serve: $(STAMP)
	$(PY) deployments/serve.py $(SERVE_ARGS)

# QUICK=1: the bundled sample, fewer repeats, under 2 minutes. Only the scripts that have a --quick
# mode run then; the others read the full file (or what those wrote) and have none, so QUICK skips
# them and names them.
QUICK ?= 0
QUICK_BENCHES := bench/bench_ingest.py bench/bench_startup.py bench/bench_forecast_latency.py bench/bench_throughput.py bench/bench_nightly.py
# The full run: every script, the ceiling last (it replays the models bench_real_meters.py registered).
FULL_BENCHES := $(filter-out bench/bench_accuracy_ceiling.py,$(sort $(wildcard bench/bench_*.py))) bench/bench_accuracy_ceiling.py
bench: $(STAMP)
	@if [ "$(QUICK)" = "1" ]; then \
		echo "QUICK=1: bundled sample; skipping the full-file benchmarks without a quick mode:" \
			"$(filter-out $(QUICK_BENCHES),$(FULL_BENCHES))"; \
		for script in $(QUICK_BENCHES); do echo "== $$script --quick"; $(PY) $$script --quick || exit 1; done; \
	else \
		for script in $(FULL_BENCHES); do echo "== $$script"; $(PY) $$script || exit 1; done; \
	fi

clean:
	rm -rf $(ROOT) test-artifacts .pytest_cache
