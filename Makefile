# The front door: `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 5055
PERSONALIZE_DATABASE_URL ?= sqlite:///personalize.db
export PERSONALIZE_DATABASE_URL

# Rasa 3.6.21 needs Python 3.10 and lives in its own environment (it talks to us over HTTP).
# A pyenv shim named python3.10 may exist without working, so each candidate is tried.
PYTHON310 ?= $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10.*/bin/python /usr/bin/python3.10; do \
    if $$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then \
    command -v $$p; break; fi; done)
RASA_VENV := .venv-rasa
RASA := $(RASA_VENV)/bin/rasa
RASA_STAMP := $(RASA_VENV)/.installed
# Rasa 3.6's socket.io channel calls AsyncServer.enter_room without await, which became a
# coroutine in python-socketio 5.10: with session_persistence (what chat widgets use) no
# answer would reach the browser. Rasa allows any 5.x, so the last one that works is pinned.
RASA_SOCKETIO := "python-socketio>=5.8,<5.10"
RASA_MODEL := models/rasa/demo.tar.gz
RASA_INPUTS := domain.yml config.yml $(wildcard data/*.yml)
export RASA_TELEMETRY_ENABLED := false
CUSTOMER ?= demo-loyal
WEB_PORT ?= 8000
# The chat widget of the demo shop's page: web/package.json pins it, web/package-lock.json
# holds the integrity hash of every package npm brings; installed into web/node_modules.
WIDGET := web/node_modules/rasa-webchat/lib/index.js

.PHONY: install demo chat demo-web web-widget browser-tools test pytest prometheus-tools lint serve bench seed clean rasa-env rasa-train rasa-test rasa-validate rasa-stories docs

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	@touch $(STAMP)

seed: install
	$(BIN)/personalize db upgrade
	$(BIN)/personalize seed-demo
	$(BIN)/personalize train --precompute
	$(BIN)/personalize segment --report reports/segments
	$(BIN)/personalize tag

# The main job: real Rasa conversations when Python 3.10 is there, else the webhook walk.
demo: seed
	@if [ -n "$(PYTHON310)" ]; then $(MAKE) --no-print-directory rasa-train; \
	else echo "No Python 3.10 for Rasa 3.6: the demo falls back to the webhook walk-through"; fi
	$(BIN)/personalize demo

chat: seed rasa-train
	$(BIN)/personalize chat --customer $(CUSTOMER)

# The shop's page with a chat widget on http://127.0.0.1:$(WEB_PORT)/ (?customer=demo-loyal).
demo-web: seed rasa-train web-widget
	$(BIN)/personalize demo-web --port $(WEB_PORT)

web-widget: $(WIDGET)

# npm ci: exactly the locked versions, checked against their hashes; no install scripts.
$(WIDGET): web/package.json web/package-lock.json
	cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

rasa-env: $(RASA_STAMP)

$(RASA_STAMP):
	@if [ -z "$(PYTHON310)" ]; then \
	    echo "Rasa 3.6.21 needs Python 3.10, which is not installed."; \
	    echo "Install it with 'pyenv install 3.10.13' or 'apt-get install python3.10 python3.10-venv',"; \
	    echo "then run this again. Without it the Rasa-based tests are skipped."; \
	    exit 1; fi
	@test -x $(RASA_VENV)/bin/python || $(PYTHON310) -m venv $(RASA_VENV)
	$(RASA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(RASA_VENV)/bin/python -m pip install --quiet rasa==3.6.21 $(RASA_SOCKETIO)
	@touch $(RASA_STAMP)

rasa-train: $(RASA_MODEL)

$(RASA_MODEL): $(RASA_STAMP) $(RASA_INPUTS)
	$(RASA) train --out models/rasa --fixed-model-name demo

rasa-validate: $(RASA_STAMP)
	$(RASA) data validate --fail-on-warnings

rasa-stories: rasa-train
	$(RASA) test core --model $(RASA_MODEL) --stories tests/test_stories.yml \
	    --fail-on-prediction-errors --out reports/rasa-test

rasa-test: rasa-validate rasa-stories install
	$(BIN)/pytest -m e2e

lint: install
	$(BIN)/ruff check rasa_personalize rasa_sdk_plugins actions tests bench
	$(BIN)/ruff format --check rasa_personalize rasa_sdk_plugins actions tests bench
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The docs site (docs/, mkdocs.yml) into site/; --strict: a broken link fails the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# promtool and prometheus (Debian's prometheus package) for the alert-rule and scrape tests:
# installed when missing; without them those tests skip, except in CI (CI=true), where they fail.
prometheus-tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || \
	    { apt-get update -qq && apt-get install -y -qq prometheus >/dev/null; } || \
	    echo "Could not install the prometheus package: its tests skip (CI fails them)"

# Debian's chromium, which Playwright drives in the browser tests (Playwright's own browser
# download is never used), and the widget the tests load: installed when missing; without
# them the browser tests skip, except in CI (CI=true), where they fail.
browser-tools:
	@command -v chromium >/dev/null || \
	    { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
	    echo "Could not install the chromium package: the browser tests skip (CI fails them)"
	@$(MAKE) --no-print-directory web-widget || \
	    echo "Could not install the chat widget with npm: the browser tests skip (CI fails them)"

pytest: install prometheus-tools browser-tools
	$(BIN)/pytest

# Without Python 3.10 the Rasa-based steps cannot run: say so and run the rest (the e2e
# tests skip with the reason). In CI (CI=true) they must run, so there it fails.
test: lint
	@if [ -n "$(PYTHON310)" ]; then \
	    $(MAKE) --no-print-directory rasa-validate rasa-stories pytest; \
	elif [ -n "$$CI" ]; then \
	    echo "CI needs Python 3.10 for the Rasa environment"; exit 1; \
	else \
	    echo "No Python 3.10: skipping rasa data validate / rasa test (install it to run them)"; \
	    $(MAKE) --no-print-directory pytest; \
	fi

# Serves the demo store, keyed with the public development secret unless
# PERSONALIZE_SECRET_KEY is set: allowed here only (demo-only; never in production).
serve: install
	$(BIN)/personalize db upgrade
	PERSONALIZE_ALLOW_DEV_SECRET=$${PERSONALIZE_ALLOW_DEV_SECRET:-true} $(BIN)/personalize serve --port $(PORT)

bench: seed
	@command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python bench/webhook_throughput.py
	$(BIN)/python bench/recommend_latency.py
	$(BIN)/python bench/served_latency.py
	$(BIN)/python bench/relevance.py
	$(BIN)/python bench/strategy_cost.py
	$(BIN)/python bench/evaluation_report.py
	$(BIN)/python bench/incremental_update.py
	$(BIN)/python bench/rules_eval.py
	$(BIN)/python bench/segment_throughput.py
	$(BIN)/python bench/propensity.py
	$(BIN)/python bench/import_throughput.py
	$(BIN)/python bench/events_throughput.py
	$(BIN)/python bench/tag_refresh.py

clean:
	rm -rf $(VENV) personalize.db models reports site .pytest_cache .mypy_cache .ruff_cache
	rm -rf web/node_modules
