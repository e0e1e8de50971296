# The two set-up commands: `make run` and `make test`. Everything installs into ./.venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-pg lint apicheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# A development probe secret (core.probes), so `channelhub probe` can be tried beside it with the
# same value; give your own in the environment to override it.
run: $(STAMP)
	CHANNELHUB_PROBE_SECRET="$${CHANNELHUB_PROBE_SECRET:-dev-probe-secret}" $(BIN)/channelhub serve --demo

# The suite on SQLite with the in-process bus and broker (the embedded mode).
test: $(STAMP)
	$(BIN)/pytest -q

# The same suite on PostgreSQL + Redis (what production runs), including the multi-process tests
# that skip on SQLite. .ci/services starts PostgreSQL and Redis on loopback when they are not
# answering (installing them as root if missing) and prints the URL to reach PostgreSQL; the
# conftest makes a fresh database named after the URL's and drops it afterwards.
# Another server: make test-pg TEST_PG_URL=postgresql+asyncpg://USER:PW@HOST/NAME TEST_REDIS_URL=redis://...
TEST_PG_URL    ?=
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
test-pg: $(STAMP)
	@set -e; \
	if [ -n "$(TEST_PG_URL)" ]; then url="$(TEST_PG_URL)"; \
	else prefix="$$(bash .ci/services)"; url="$$prefix/channelhub_test"; fi; \
	echo "CHANNELHUB_TEST_DATABASE_URL=$$url CHANNELHUB_TEST_REDIS_URL=$(TEST_REDIS_URL)"; \
	CHANNELHUB_TEST_DATABASE_URL="$$url" CHANNELHUB_TEST_REDIS_URL="$(TEST_REDIS_URL)" $(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy bench
	$(BIN)/lint-imports

# schemathesis against a real hub, with a token of each role, on /api/v1/openapi.json: no 5xx, and
# every status and answer as the document says (tests/apicheck.py; a few minutes on 2 cores).
# APICHECK_EXAMPLES (test cases per operation and phase) and APICHECK_SEED tune it.
apicheck: $(STAMP)
	$(BIN)/python -m tests.apicheck

bench: $(STAMP)
	$(BIN)/python bench/webchat_roundtrip.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
