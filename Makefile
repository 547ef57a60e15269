# minyun — two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
BENCH ?=
PYTEST_ARGS ?= -n 2 --dist worksteal

.PHONY: help install vendor browser wrk java demo serve test lint fmt bench lock clean

help:
	@echo "make demo    set up, load the demo province, serve http://127.0.0.1:8000"
	@echo "make test    lint and run the whole test suite"
	@echo "make bench   run benchmarks/ (BENCH=audit for one group) -> var/bench/latest.json"
	@echo "make lock    re-lock requirements.lock from pyproject.toml"

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

$(VENV)/.installed: pyproject.toml requirements.lock | $(UV)
	test -x $(PY) || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --python $(PY) requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $@

install: $(VENV)/.installed

# Front-end libraries from the npm registry (htmx, ECharts, Leaflet, Swagger UI, Fujian's
# outlines), never copied into git.
src/minyun/web/static/vendor/.built: package.json package-lock.json scripts/vendor.sh scripts/fujian_boundaries.py
	bash scripts/vendor.sh
	touch $@

vendor: src/minyun/web/static/vendor/.built

# Debian's Chromium for the browser tests (Playwright drives it; no browser download).
browser:
	@if [ ! -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -qi "noto.*cjk"; then \
	  echo "installing chromium and CJK fonts from Debian"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; \
	fi

# Debian's wrk, the HTTP load generator of the exchange benchmark (a process of its own).
wrk:
	@if ! command -v wrk >/dev/null; then \
	  echo "installing wrk from Debian"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	fi

# Debian's Java runtime for Spark, the second engine of entity resolution (pyspark, local mode).
java:
	@if ! command -v java >/dev/null; then \
	  echo "installing the Java runtime from Debian"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null; \
	fi

demo: install vendor
	$(VENV)/bin/minyun init
	$(VENV)/bin/minyun demo
	$(VENV)/bin/minyun serve

serve: install vendor
	$(VENV)/bin/minyun serve

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

fmt: install
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

# Exit code 5 is pytest's "no tests collected": not a failure of the suite.
test: install vendor browser java lint
	$(PY) -m pytest $(PYTEST_ARGS) || { code=$$?; [ $$code -eq 5 ] && echo "no tests collected"; exit $$([ $$code -eq 5 ] && echo 0 || echo $$code); }

bench: install wrk java
	$(PY) -m benchmarks $(BENCH)

lock: | $(UV)
	$(UV) pip compile --quiet pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock
	@! grep -nE "https?://" requirements.lock || { echo "requirements.lock names a URL"; exit 1; }

clean:
	rm -rf $(VENV) .tools node_modules src/minyun/web/static/vendor .pytest_cache .mypy_cache .ruff_cache
