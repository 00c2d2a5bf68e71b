# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test soak lint fmt bench migrate clean

$(STAMP): pyproject.toml client/pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e './client[openfeature]' -e '.[dev]'
	touch $(STAMP)

## Start the service on embedded defaults (a SQLite file; no servers needed) at 127.0.0.1:8004.
run: $(STAMP)
	$(BIN)/python -m service

## The whole suite: lint, types, and tests on SQLite and on the local MariaDB/Redis.
test: $(STAMP) lint
	$(BIN)/python -m pytest -n 2

## Long runs kept out of `make test`: 500 seeds of randomized faults (tests/e2e/test_fault_storm.py),
## and 1,000,000 random cases against UnleashClient (tests/differential; `make test` runs 10,000).
soak: $(STAMP)
	AURORA_FAULT_SEEDS=$${AURORA_FAULT_SEEDS:-500} $(BIN)/python -m pytest -p no:randomly \
		tests/e2e/test_fault_storm.py --log-cli-level=INFO
	AURORA_DIFF_CASES=$${AURORA_DIFF_CASES:-1000000} $(BIN)/python -m pytest -n 2 -p no:randomly \
		tests/differential -rA --log-level=INFO

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Every benchmark, against the local MariaDB and Redis, and Unleash OSS on the local PostgreSQL
## (installed from npm into bench/.unleash on the first run); writes bench/RESULTS.md.
bench: $(STAMP)
	bash bench/run.sh

## Apply the schema to DATABASE_URL (Alembic migrations).
migrate: $(STAMP)
	$(BIN)/python -m service migrate

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache aurora.db*
