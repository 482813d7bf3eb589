# lews-agent: set-up, tests, demo and benchmarks. Everything runs from the project venv in .venv.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The gateway runtime also runs on Python 3.10 (JetPack 6): `make test` runs the gateway test subset
# (tests/conftest.py leaves out modules that need torch/export) in .venv310 with only the gateway
# install and the test tools (`pip install -e '.[test]'`, no torch, no train extra).
PY310 ?= $(shell for p in $$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)/versions/3.10.*/bin/python python3.10; do \
  $$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null && { command -v $$p; break; }; done)
VENV310 := .venv310
STAMP310 := $(VENV310)/.installed
# faults/slow forms already run under 3.11; the 3.10 run checks the gateway code paths (a few minutes).
PYTEST310_ARGS ?= -m "not slow and not faults"
# Debian packages the tests and the demo use (real broker, pseudo-terminal tools, headless browser,
# systemd-analyze and libseccomp for the unit-sandbox test).
APT_PACKAGES := mosquitto socat chromium systemd

.PHONY: venv venv310 test-py310 system-deps test test-slow test-faults demo lint typecheck bench default-bundle clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel of torch lies on disk for Python 3.11; pin it so pip never pulls a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[train,dev]'
	touch $(STAMP)

venv: $(STAMP)

$(STAMP310): pyproject.toml
	@test -n "$(PY310)" || { echo "no Python 3.10 found (python3.10 on PATH or pyenv's versions/3.10.*): set PY310=/path/to/python3.10"; exit 1; }
	test -x $(VENV310)/bin/python || $(PY310) -m venv $(VENV310)
	$(VENV310)/bin/pip install -q --upgrade pip
	$(VENV310)/bin/pip install -q -e '.[test]'
	touch $(STAMP310)

venv310: $(STAMP310)

# Installs mosquitto when it is missing and we are root (the demo falls back to an embedded broker).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (run as root or: sudo apt-get install$$missing)"; fi; \
	fi

# The real public data the tests read: ../shared/data beside the clone (as in CI), or LEWS_SHARED_DATA.
export LEWS_SHARED_DATA ?= $(abspath $(CURDIR)/../shared/data)

# Lint and type checks first (fast), then the suite; fault-injection short forms included, `slow` excluded.
test: venv system-deps lint typecheck
	@test -d "$(LEWS_SHARED_DATA)" || echo "WARNING: no real data at $(LEWS_SHARED_DATA): real-data tests will skip (set LEWS_SHARED_DATA)"
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory test-py310

# The gateway test subset under Python 3.10 (no torch installed there).
test-py310: venv310 system-deps
	$(VENV310)/bin/python -m pytest -q $(PYTEST310_ARGS)

test-faults: venv system-deps
	$(BIN)/python -m pytest -q -m faults

test-slow: venv system-deps
	$(BIN)/python -m pytest -q -m slow --timeout 7200

demo: venv
	LEWS_LOG_LEVEL=$${LEWS_LOG_LEVEL:-WARNING} $(BIN)/agent demo --duration 60

# lint-imports: the layer contracts of .importlinter (docs/architecture.md, "Layers").
lint: venv
	$(BIN)/ruff check agent export firmware_bridge tests bench
	$(BIN)/ruff format --check agent export firmware_bridge tests bench
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy agent firmware_bridge export tests bench
	# the gateway runtime against Python 3.10's standard library (no tomllib, datetime.UTC, StrEnum, ...)
	$(BIN)/mypy --python-version 3.10 agent firmware_bridge

# Every benchmark in bench/, one after the other on this machine, into bench/REPORT.md and bench/report.json
# (bench/run_all.py; it trains tiny SYNTHETIC runs for bench_inference into /tmp/lews-bench-work, reused).
bench: venv system-deps
	$(BIN)/python bench/run_all.py

# Rebuild bundles/demo from SYNTHETIC data with the demo-only key (about 10 minutes on 2 cores).
default-bundle: venv
	$(BIN)/python -m export.make_default_bundle

clean:
	rm -rf $(VENV) $(VENV310) .pytest_cache .mypy_cache .ruff_cache
