# The two things people do here: run the system, run the tests. Both install what they need.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: up test install asyncapi bench chaos chaos-short

up: $(VENV)/.installed
	$(BIN)/portal-auth up

test: $(VENV)/.installed
	$(BIN)/pytest $(PYTEST_ARGS)

# Faults under traffic on real Apache Kafka and PostgreSQL (docs/reliability.md). The full run
# wants >= 5,000 events and takes a quarter of an hour; the short form is CI's, a few minutes.
chaos: $(VENV)/.installed
	PORTAL_AUTH_KAFKA=apache CHAOS_SCALE=full $(BIN)/pytest -m chaos -s -p no:cacheprovider tests/chaos $(PYTEST_ARGS)

chaos-short: $(VENV)/.installed
	PORTAL_AUTH_KAFKA=apache CHAOS_SCALE=short $(BIN)/pytest -m chaos -s -p no:cacheprovider tests/chaos $(PYTEST_ARGS)

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

asyncapi: $(VENV)/.installed
	$(BIN)/portal-auth asyncapi --output docs/asyncapi.json

# Every figure of docs/performance.md, written there with the date and commit (BENCH_ARGS=--quick: under 3 minutes).
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)
