# The two things people do here: run the system, run the tests. Both install what they need.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: up test compose-test install asyncapi bench

up: $(VENV)/.installed
	$(BIN)/portal-auth up

test: $(VENV)/.installed
	$(BIN)/pytest $(PYTEST_ARGS)

# The production shape for real: dockerd, the images, docker compose up (docs/operations.md).
compose-test: $(VENV)/.installed
	$(BIN)/pytest -m compose -p no:cacheprovider -s $(PYTEST_ARGS) tests/compose

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
