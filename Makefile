# uadjax: `make demo` runs the main job on built-in data; `make test` runs lint and tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint format install install-test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The CAE's 2x5 cross-validation on the synthetic phantoms; prints the results table.
demo: install
	$(PY) -m experiments.cross_validate --config=configs/headct/cae.py:demo --workdir=runs/demo

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# pytest-xdist workers: 2, one per core of the 2-core development machine; 0 runs serially.
PYTEST_WORKERS ?= 2

test: lint
	$(PY) -m pytest -n $(PYTEST_WORKERS)

format: install-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
