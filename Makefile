# The two set-up commands of the README: `make demo` (main job) and `make test` (test suite).
# Both create or reuse .venv and install torch==2.13.0 *before* the package, so that no resolver
# pulls a multi-GB CUDA wheel on a CPU-only machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.orthojac-installed

.PHONY: demo test lint venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/orthojac demo

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

lint: $(STAMP)
	$(VENV)/bin/ruff check orthojac tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
