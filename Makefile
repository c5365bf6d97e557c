# What developers and CI both run. `make run` starts Ledgerhook; `make test` runs every check.
# Both set themselves up on a fresh machine: virtual environment, dependencies, and the local
# PostgreSQL and Redis (started if they are not running).

PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
HOST    ?= 127.0.0.1
PORT    ?= 8000

export LEDGERHOOK_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/ledgerhook
export LEDGERHOOK_REDIS_URL    ?= redis://127.0.0.1:6379/0

.PHONY: install services run demo test deploy-tools deploy-check lint typecheck pytest soak format bench-ingest bench-e2e bench-apply bench-coexist bench bench-soak bench-tools clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/.installed

services:
	@bash scripts/services.sh

# Development defaults shared by `make run` and `make demo`, so the demo's signed webhooks verify
# and its stand-in Stripe Events API (port 12111) is what reconciliation calls. Never production
# values: set your own LEDGERHOOK_* to override any of them.
run demo: export LEDGERHOOK_STRIPE_WEBHOOK_SECRETS ?= whsec_demo_ledgerhook_0123456789abcdef
run demo: export LEDGERHOOK_STRIPE_ACCOUNT ?= acct_demo
run demo: export LEDGERHOOK_CHARGEBEE_BASIC_AUTH ?= demo:demo-chargebee-pass
run demo: export LEDGERHOOK_CHARGEBEE_SITE ?= acme-demo
run demo: export LEDGERHOOK_STRIPE_API_KEY ?= sk_test_demo
run demo: export LEDGERHOOK_STRIPE_API_BASE ?= http://127.0.0.1:12111
run demo: export LEDGERHOOK_LOG_FORMAT ?= text

run: install services
	$(BIN)/ledgerhook run --host $(HOST) --port $(PORT)

# In a second terminal while `make run` is running.
demo: install
	$(BIN)/ledgerhook demo --url http://$(HOST):$(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install services deploy-tools
	$(BIN)/pytest -q

test: lint typecheck pytest deploy-check

# deploy/ validated without a container engine: promtool (Debian's prometheus package, installed
# when missing) on the alerting rules and Prometheus config, and the Kubernetes manifests against
# the bundled OpenAPI schemas (kubernetes-validate, offline).
# promtool before pytest too: tests/integration/test_deploy_manifests.py runs it.
deploy-tools:
	@command -v promtool >/dev/null || { echo "deploy-check: installing promtool (Debian package prometheus)" >&2; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; }; }

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

bench: bench-ingest bench-apply bench-e2e

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
