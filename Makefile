# Two entry points for a fresh machine (Python >= 3.10 with venv):
#   make demo   - set up .venv, start the local sandbox, load it into ./rackwave_data.duckdb, summarise
#   make test   - set up .venv with the test tools (PostgreSQL's server programs when missing, the
#                 environments of the emulators, the orchestrator recipes and dbt in
#                 .venv-recipes/ when missing or stale),
#                 type-check (mypy --strict), lint (ruff) and run the whole test suite
#   make test-fast - the unit tier alone (tests/unit: canned pages and Arrow tables, no HTTP, no
#                 servers), in seconds; .venv with the test tools, nothing else
#   make fuzz   - the randomized model of the API (tests/test_model.py) for RACKWAVE_MODEL_MINUTES
#                 minutes (default 45) of random examples; prints how many ran clean.
#                 RACKWAVE_MODEL_AVOID=page_cap,future,bad leaves out behaviours of known bugs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast fuzz setup setup-dev setup-test schema clean

# The environment comes with uv, which installs the rest: it resolves as pip does, downloads and
# unpacks in parallel, and its cache serves what the tools' environments share (scripts/setup-dev).
UV := $(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
$(BIN)/uv: | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.13,<0.14"

setup: $(BIN)/uv
	$(UV) -e .

# .venv with the test tools, PostgreSQL's programs, and every tool's environment in .venv-recipes/
# (emulators, orchestrator recipes, dbt), built side by side (scripts/setup-dev)
setup-dev: $(BIN)/uv
	PYTHON=$(PYTHON) VENV=$(VENV) scripts/setup-dev

demo: setup
	$(BIN)/rackwave --sandbox

# Three pytest workers (pytest-xdist), each taking the next test when it is free: tests wait on
# servers, processes and emulators, and a third worker fills the cores while two wait
# (docs/contributing.md#tests). TEST_WORKERS=0 runs the suite in this process alone (pdb, -s).
TEST_WORKERS ?= 3
# The tests' folders (DuckDB files, dlt's packages, the Postgres cluster, the emulators' data) on
# a RAM disk where there is one: the suite writes gigabytes of small files it reads back at once.
TEST_TMPDIR ?= $(if $(wildcard /dev/shm),/dev/shm,$(or $(TMPDIR),/tmp))
test: setup-dev
	$(BIN)/python -m mypy
	$(BIN)/python -m ruff check .
	TMPDIR=$(TEST_TMPDIR) $(BIN)/python -m pytest \
		$(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist worksteal) $(PYTEST_ARGS)

# .venv with the test tools only (no databases, emulators or recipes): enough for the unit tier
setup-test: $(VENV)/.test-tools
$(VENV)/.test-tools: pyproject.toml | $(BIN)/uv
	$(UV) -e ".[dev]"
	touch $@

test-fast: setup-test
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit $(PYTEST_ARGS)

RACKWAVE_MODEL_MINUTES ?= 45
fuzz: setup-dev
	RACKWAVE_MODEL_MINUTES=$(RACKWAVE_MODEL_MINUTES) RUNTIME__DLTHUB_TELEMETRY=false \
		$(BIN)/python -m pytest -q -s -p no:cacheprovider tests/test_model.py::test_model_long

# Rewrite schemas/rackwave.schema.yaml from a load of the sandbox (review the diff, then commit it:
# tests/test_schema_file.py fails while the loaded schema and the file differ).
schema: setup
	rm -rf .schema-build && mkdir .schema-build
	cd .schema-build && DLT_DATA_DIR=. RUNTIME__DLTHUB_TELEMETRY=false ../$(BIN)/rackwave --sandbox \
		--sandbox-leads 250 --sandbox-contacts 120 --pipeline-name rackwave_schema \
		--export-schema ../schemas > /dev/null
	rm -rf .schema-build

clean:
	rm -rf $(VENV) .venv-recipes rackwave_data.duckdb .pytest_cache
