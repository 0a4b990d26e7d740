# The two commands a newcomer types: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.spool-installed
# The Vercel AI SDK client the AI SDK facade's tests drive (Node; Debian's nodejs + npm).
JS_DIR   := tests/js
JS_STAMP := $(JS_DIR)/node_modules/.spool-installed

.PHONY: install js run test test-quick lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# npm ci only when package.json or the lock changed since the last install (cached).
# Without npm the AI SDK tests skip locally; under CI they fail.
$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(JS_DIR) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.spool-installed; \
	else \
		echo "npm not found: the AI SDK tests need it (sudo apt-get install -y nodejs npm)"; \
		test -z "$$CI"; \
	fi

js: $(JS_STAMP)

## Start Redis (embedded when REDIS_URL is unset), web and worker; Ctrl-C stops all.
run: install
	$(BIN)/python scripts/devserver.py

## The whole suite against real Redis, gunicorn, worker and Chromium processes.
test: install js
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## The suite without the long fault and load tests (marked `slow`), for quick local runs.
test-quick: install js
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
