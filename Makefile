# What developers and CI both run. `make run` starts Ledgerhook; `make test` runs every check.
# Both set themselves up on a fresh machine: virtual environment, dependencies, and the local
# PostgreSQL and Redis (started if they are not running).

PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
HOST    ?= 127.0.0.1
PORT    ?= 8000

.PHONY: install services run demo test readme-tools deploy-tools browser-tools deploy-check lint typecheck pytest soak format bench-ingest bench-e2e bench-apply bench-coexist bench bench-soak bench-console bench-sync bench-tools clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/.installed

services:
	@bash scripts/services.sh

# Development settings: `make run` and `make demo` write .env once, when there is none, and every
# `ledgerhook` command run in this directory reads it (variables in the environment win), so the
# README's commands work from a plain shell. The demo's signed webhooks verify with these secrets
# and reconciliation calls the demo's stand-in Stripe Events API (port 12111). Never production
# values: edit .env, or delete it to get these back.
.env:
	@printf '%s\n' \
	  '# Ledgerhook development settings, written by `make run` (README: Configuration).' \
	  '# Read by every ledgerhook command run in this directory; the environment wins.' \
	  'LEDGERHOOK_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ledgerhook' \
	  'LEDGERHOOK_REDIS_URL=redis://127.0.0.1:6379/0' \
	  'LEDGERHOOK_STRIPE_WEBHOOK_SECRETS=whsec_demo_ledgerhook_0123456789abcdef' \
	  'LEDGERHOOK_STRIPE_ACCOUNT=acct_demo' \
	  'LEDGERHOOK_CHARGEBEE_BASIC_AUTH=demo:demo-chargebee-pass' \
	  'LEDGERHOOK_CHARGEBEE_SITE=acme-demo' \
	  'LEDGERHOOK_STRIPE_API_KEY=sk_test_demo' \
	  'LEDGERHOOK_STRIPE_API_BASE=http://127.0.0.1:12111' \
	  '# The stand-in API runs only during `make demo`, which reconciles on demand: no periodic runs.' \
	  'LEDGERHOOK_RECONCILE__INTERVAL_SECONDS=0' \
	  '# Nor has it the providers'"'"' object APIs: no drift sweep against it.' \
	  'LEDGERHOOK_DRIFT__INTERVAL_SECONDS=0' \
	  'LEDGERHOOK_LOG_FORMAT=text' > $@
	@echo "make: wrote $@ (development settings; edit it or delete it to start over)" >&2

run: install services .env
	$(BIN)/ledgerhook run --host $(HOST) --port $(PORT)

# In a second terminal while `make run` is running.
demo: install .env
	$(BIN)/ledgerhook demo --url http://$(HOST):$(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install services deploy-tools browser-tools readme-tools
	$(BIN)/pytest -q

# The README's runnable blocks (tests/integration/test_readme_commands.py) use curl and openssl.
readme-tools:
	@for tool in curl openssl; do command -v $$tool >/dev/null || { \
	  echo "pytest: installing $$tool (Debian package)" >&2; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$tool >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$tool >/dev/null; }; }; done

test: lint typecheck pytest deploy-check

# deploy/ validated without a container engine: promtool (Debian's prometheus package, installed
# when missing) on the alerting rules and Prometheus config, and the Kubernetes manifests against
# the bundled OpenAPI schemas (kubernetes-validate, offline).
# promtool before pytest too: tests/integration/test_deploy_manifests.py runs it.
deploy-tools:
	@command -v promtool >/dev/null || { echo "deploy-check: installing promtool (Debian package prometheus)" >&2; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; }; }

# The console's browser tests (tests/browser) drive Debian's chromium with Playwright's Python API;
# Playwright's own browser download is never used (it cannot download here).
browser-tools:
	@command -v chromium >/dev/null || { echo "browser tests: installing chromium (Debian package)" >&2; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; }

deploy-check: install deploy-tools
	promtool check rules deploy/prometheus/rules.yml
	promtool check config deploy/prometheus/prometheus.yml
	$(BIN)/kubernetes-validate --strict --quiet deploy/k8s/*.yaml

soak: install services
	$(BIN)/pytest -q -m slow --run-slow

# Benchmarks (bench/README.md): loopback only, own databases (dropped after), results in
# bench/results/<name>.json and a summary on stdout. `make bench` runs ingest, apply and e2e
# (3.5-8 minutes); the 10-minute soak (memory, lag over time) is `make bench-soak`. Options per benchmark:
# e.g. `make bench-ingest INGEST_ARGS="--duration 30 --workers 2"` (python -m bench.ingest --help).
INGEST_ARGS ?=
E2E_ARGS    ?=
APPLY_ARGS  ?=
SOAK_ARGS   ?=
CONSOLE_ARGS ?=
SYNC_ARGS   ?=
COEXIST_ARGS ?=

bench-tools:
	@command -v wrk >/dev/null || { echo "bench: installing wrk (Debian package)" >&2; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null; }

bench-ingest: install services bench-tools
	$(BIN)/python -m bench.ingest $(INGEST_ARGS)

bench-e2e: install services bench-tools
	$(BIN)/python -m bench.e2e $(E2E_ARGS)

bench-apply: install services
	$(BIN)/python -m bench.apply $(APPLY_ARGS)

# Provider migration: verifying a cohort of 100 000 linked subscription pairs (no servers, no wrk).
bench-coexist: install services
	$(BIN)/python -m bench.coexist $(COEXIST_ARGS)

bench-soak: install services bench-tools
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# Console page render times with 1 million deliveries in the log (load included: several minutes).
bench-console: install services
	$(BIN)/python -m bench.console $(CONSOLE_ARGS)

# ledgerhook sync against a local stand-in of the provider's API serving 100 000 objects.
bench-sync: install services
	$(BIN)/python -m bench.sync $(SYNC_ARGS)

bench: bench-ingest bench-apply bench-e2e

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
