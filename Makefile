# The two set-up commands of the README: `make demo` (main job) and `make test`.
# Both create .venv on first use; torch is installed first and pinned, so that pip
# takes the local CPU build instead of a multi-GB CUDA one.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv lint test demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# verl's tooling first (ruff with verl's rules, ruff format, Apache-2.0 headers), then the tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/check_license_headers.py

test: lint
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	PYTHON=$(CURDIR)/$(BIN)/python bash recipes/run_cpu_demo.sh

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_core

clean:
	rm -rf $(VENV) outputs
