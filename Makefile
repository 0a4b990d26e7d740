# The two commands a newcomer types: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.spool-installed

.PHONY: install run test test-quick lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Start Redis (embedded when REDIS_URL is unset), web and worker; Ctrl-C stops all.
run: install
	$(BIN)/python scripts/devserver.py

## The whole suite against real Redis, gunicorn, worker and Chromium processes.
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## The suite without the long fault and load tests (marked `slow`), for quick local runs.
test-quick: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
