# Two entry points for newcomers: `make demo` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo down demo-rerun demo-downtime bench clean venv venv-airflow2

venv: $(STAMP)

# Reinstall only when the project metadata changed; pip is quiet but says what it does.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required, found " + sys.version.split()[0])'
	@test -x $(BIN)/python || { echo ">> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo ">> installing coordinator with the airflow and dev extras into $(VENV) (first time: ~1 min)"
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e ".[airflow,dev]"
	@touch $(STAMP)

# Airflow 2 and 3 cannot share a venv: the Airflow 2.11 end-to-end tests run one from .venv-airflow2, pinned by
# constraints/airflow2.txt and rebuilt only when the pins or the project metadata change (first time: ~1 min).
# The tests build it on demand too; building it here keeps the install out of the first test's time budget.
venv-airflow2: $(STAMP)
	@$(BIN)/python -m devtools.airflow2_stack venv

lint: $(STAMP)
	$(BIN)/ruff check coordinator tests bench dags
	$(BIN)/ruff format --check coordinator tests bench dags

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) venv-airflow2
	$(BIN)/pytest

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/python -m coordinator.demo up

down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m coordinator.demo down; else echo "nothing to stop"; fi

demo-rerun: $(STAMP)
	$(BIN)/python -m coordinator.demo rerun

demo-downtime: $(STAMP)
	$(BIN)/python -m coordinator.demo downtime

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean: down
	rm -rf $(VENV) .venv-airflow2 .venv-airflow2.lock .demo .mypy_cache .ruff_cache .pytest_cache
