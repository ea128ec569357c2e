# The two things people do here: run the system, run the tests. Both install what they need.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: up test lint compose-test install asyncapi bench system-up system-test chaos chaos-short

# System packages first: scripts/system-packages installs what is missing with apt-get, or
# stops at once with the command to run.
up: system-up $(VENV)/.installed
	$(BIN)/portal-auth up

test: system-test lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The production shape for real: dockerd, the images, docker compose up (docs/operations.md).
compose-test: $(VENV)/.installed
	$(BIN)/pytest -m compose -p no:cacheprovider -s $(PYTEST_ARGS) tests/compose

# ruff (bug-finding rules, no formatter) and mypy (strict) as configured in pyproject.toml.
lint: $(VENV)/.installed
	$(BIN)/ruff check --quiet .
	$(BIN)/mypy

system-up system-test: system-%:
	scripts/system-packages $*

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
	$(BIN)/python -m pip install --quiet -e ".[test,compose]"
	touch $@

asyncapi: $(VENV)/.installed
	$(BIN)/portal-auth asyncapi --output docs/asyncapi.json

# Every figure of docs/performance.md, written there with the date and commit (BENCH_ARGS=--quick: under 3 minutes).
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)
