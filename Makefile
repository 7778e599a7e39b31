# The README's commands. `make run` and `make test` make .venv when there is none and install
# the project into it, so a fresh machine needs only Python 3.11+ and make.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The first Python >= 3.11 on PATH (python3 may be older on some machines).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && { echo $$p; break; }; done)

.PHONY: run test lint bench sim clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Shouwang needs Python 3.11 or newer on PATH" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)  ## the gateway with a demo community (SQLite, embedded MQTT broker)
	$(BIN)/shouwang run --demo

# The suite runs in two worker processes (pytest-xdist; CI has two cores; how the tests are
# shared out: tests/support/xdist_groups.py). `make test PYTEST_WORKERS=0` runs it in one
# process; PYTEST_ARGS adds pytest arguments, e.g. `make test PYTEST_ARGS='tests/unit -x'`.
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=

test: $(STAMP)  ## the whole test suite: unit, integration (real broker, SQLite, PostgreSQL), e2e
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff, import-linter contracts for the architecture's arrows, mypy on the domain
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy devices alerts care

bench: $(STAMP)  ## page latency and ingest throughput on SQLite and PostgreSQL
	$(BIN)/python -m tests.bench.bench_alarm_path

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis shouwang.db* shouwang-demo.db* shouwang-demo.key \
		shouwang-demo-logins.txt
