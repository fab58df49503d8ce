# Two entry points for a fresh machine (Python >= 3.10 with venv):
#   make demo   - set up .venv, start the local sandbox, load it into ./rackwave_data.duckdb, summarise
#   make test   - set up .venv with the test tools (and PostgreSQL's server programs when missing)
#                 and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test setup setup-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

setup: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

setup-dev: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	scripts/ensure-postgres

demo: setup
	$(BIN)/rackwave --sandbox

test: setup-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) rackwave_data.duckdb .pytest_cache
