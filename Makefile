# The front door: `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 5055
PERSONALIZE_DATABASE_URL ?= sqlite:///personalize.db
export PERSONALIZE_DATABASE_URL

.PHONY: install demo test pytest lint serve bench seed clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

seed: install
	$(BIN)/personalize db upgrade
	$(BIN)/personalize seed-demo

demo: seed
	$(BIN)/personalize demo --port $(PORT)

lint: install
	$(BIN)/ruff check actions tests bench
	$(BIN)/ruff format --check actions tests bench
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

test: lint pytest

serve: install
	$(BIN)/personalize db upgrade
	$(BIN)/personalize serve --port $(PORT)

bench: seed
	$(BIN)/python bench/webhook_throughput.py

clean:
	rm -rf $(VENV) personalize.db models reports .pytest_cache .mypy_cache .ruff_cache
