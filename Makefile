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

.PHONY: install services run test deploy-check lint typecheck pytest soak format bench-ingest bench-e2e bench-apply bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/.installed

services:
	@bash scripts/services.sh

run: install services
	$(BIN)/ledgerhook run --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install services
	$(BIN)/pytest -q

test: lint typecheck pytest deploy-check

# deploy/ validated without a container engine: promtool (Debian's prometheus package, installed
# when missing) on the alerting rules and Prometheus config, and the Kubernetes manifests against
# the bundled OpenAPI schemas (kubernetes-validate, offline).
deploy-check: install
	@command -v promtool >/dev/null || { echo "deploy-check: installing promtool (Debian package prometheus)" >&2; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; }; }
	promtool check rules deploy/prometheus/rules.yml
	promtool check config deploy/prometheus/prometheus.yml
	$(BIN)/kubernetes-validate --strict --quiet deploy/k8s/*.yaml

soak: install services
	$(BIN)/pytest -q -m slow --run-slow

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
