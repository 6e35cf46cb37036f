# The two set-up commands (README): `make demo` and `make test`. Both create .venv if needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install services browser axe lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/syndicate --config settings.toml run --once

# Redis and PostgreSQL for the tests: used where running, started or installed where not.
services:
	bash scripts/services.sh

# Debian's chromium for the browser tests (Playwright drives it; no browser download).
browser:
	bash scripts/browser.sh

# axe-core from npm into .cache/axe for the accessibility test (tests/test_accessibility.py).
axe:
	bash scripts/axe.sh

test: $(STAMP) services browser axe
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check .

# Benchmarks side by side with peers (bench/RESULTS.md). bench/run.py installs the peers on first
# use under bench/.work/ (rss2email from PyPI in its own venv, npm mjml with the machine's node).
# 10,000 due deliveries by default (about 15 minutes on 2 cores); BENCH_ARGS= for the full
# 100,000, BENCH_ARGS=--quick for a smoke run, or name benchmarks: BENCH_ARGS="poll render".
BENCH_ARGS ?= --scale 0.1
bench: $(STAMP) services
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf outbox syndicate.db syndicate.db-wal syndicate.db-shm preview
