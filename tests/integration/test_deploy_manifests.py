"""deploy/ validated without a container engine: well-formed, schema-valid, and consistent with
the code (real subcommands, real settings, real metric names)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import msgspec
import pytest
import yaml
from prometheus_client import REGISTRY

import ledgerhook.metrics  # noqa: F401  (registers every metric)
from ledgerhook.cli import build_parser
from ledgerhook.log_gauges import METRICS as LOG_STATE_METRICS
from ledgerhook.log_gauges import UP as LOG_STATE_UP
from ledgerhook.settings import _SECTIONS, Secret, Settings, load_settings
from tests.conftest import CHECKPOINT_KEY

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
COMPOSE = DEPLOY / "docker-compose.yml"
LEDGERHOOK_SERVICES = ("migrate", "api", "worker")
# Values that stand in for secretKeyRef'd settings when checking that a manifest loads.
PLACEHOLDERS = {
    "LEDGERHOOK_DATABASE_URL": "postgresql://ledgerhook_app:pw@db/ledgerhook",
    "LEDGERHOOK_ADMIN_DATABASE_URL": "postgresql://postgres:pw@db/ledgerhook",
    "LEDGERHOOK_REDIS_URL": "redis://redis:6379/0",
    "LEDGERHOOK_STRIPE_WEBHOOK_SECRETS": "whsec_a,whsec_b",
    "LEDGERHOOK_CHARGEBEE_BASIC_AUTH": "user:pass",
    "LEDGERHOOK_ALERTS__SLACK_WEBHOOK_URL": "https://hooks.slack.invalid/x",
    "LEDGERHOOK_SENTRY_DSN": "https://key@sentry.invalid/1",
}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _k8s_containers() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in K8S:
        for doc in _docs(path):
            spec = doc.get("spec", {})
            pod = spec.get("template", {}).get("spec")
            if pod:
                out.extend((doc["metadata"]["name"], c) for c in pod["containers"])
    return out


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_every_file_is_well_formed() -> None:
    for path in [*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")]:
        assert _docs(path), path
    for path in DEPLOY.rglob("*.json"):
        msgspec.json.decode(path.read_bytes())


@pytest.mark.parametrize("path", K8S, ids=lambda p: p.name)
def test_manifests_match_the_kubernetes_schema(path: Path) -> None:
    for doc in _docs(path):
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_manifests_have_every_piece_of_a_deployment() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for p in K8S for d in _docs(p)}
    assert {
        ("Deployment", "ledgerhook-api"),
        ("Deployment", "ledgerhook-worker"),
        ("Job", "ledgerhook-migrate"),
        ("Service", "ledgerhook-api"),
        ("HorizontalPodAutoscaler", "ledgerhook-api"),
        ("HorizontalPodAutoscaler", "ledgerhook-worker"),
        ("PodDisruptionBudget", "ledgerhook-api"),
        ("PodDisruptionBudget", "ledgerhook-worker"),
    } <= kinds
    api = dict(_k8s_containers())["ledgerhook-api"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live"


def test_secrets_are_referenced_never_inlined() -> None:
    secretish = re.compile(r"(URL|SECRETS|KEY|AUTH|DSN)$")
    for name, container in _k8s_containers():
        for env in container.get("env", []):
            if secretish.search(env["name"]) and env["name"] != "LEDGERHOOK_CHECKPOINT_KEY_FILE":
                assert "secretKeyRef" in env.get("valueFrom", {}), (name, env["name"])
    for path in K8S:
        for doc in _docs(path):
            if doc["kind"] == "ConfigMap":
                assert not any(secretish.search(k) for k in doc["data"]), path
            assert doc["kind"] != "Secret", "secrets are created out of band, never committed"


def _commands() -> list[tuple[str, list[str]]]:
    found = [(f"k8s {name}", c["args"]) for name, c in _k8s_containers()]
    services = _compose()["services"]
    found += [(f"compose {s}", services[s]["command"]) for s in LEDGERHOOK_SERVICES]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert cmd
    found.append(("Dockerfile CMD", msgspec.json.decode(cmd.group(1))))
    return found


def test_commands_name_real_subcommands_and_options() -> None:
    parser = build_parser()
    commands = _commands()
    assert {argv[0] for _, argv in commands} == {"serve", "worker", "migrate"}
    for where, argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: `ledgerhook {shlex.join(argv)}` does not parse")


def _env_names() -> dict[str, str]:
    """Every LEDGERHOOK_* variable the deploy files set, with its literal value (or '')."""
    names: dict[str, str] = {}
    for path in K8S:
        for doc in _docs(path):
            if doc["kind"] == "ConfigMap":
                names.update(doc["data"])
    for _, container in _k8s_containers():
        for env in container.get("env", []):
            names.setdefault(env["name"], env.get("value", ""))
    for service in LEDGERHOOK_SERVICES:
        env = _compose()["services"][service].get("environment", {})
        names.update({k: str(v) for k, v in env.items()})
    return {k: v for k, v in names.items() if k.startswith("LEDGERHOOK_")}


def test_env_names_are_settings_fields() -> None:
    fields = set(Settings.__struct_fields__)
    sections = {
        name: set(
            type(getattr(Settings(database_url=Secret("postgresql://x/y")), name)).__struct_fields__
        )
        for name in _SECTIONS
    }
    names = _env_names()
    assert len(names) > 10
    for name in names:
        key = name.removeprefix("LEDGERHOOK_").lower()
        if "__" in key:
            section, _, field = key.partition("__")
            assert field in sections.get(section, set()), name
        else:
            assert key in fields, name


def test_deploy_env_loads_as_settings() -> None:
    env = {k: v for k, v in _env_names().items() if v and "${" not in v}
    for name, value in PLACEHOLDERS.items():
        env.setdefault(name, value)
    env["LEDGERHOOK_CHECKPOINT_KEY"] = CHECKPOINT_KEY
    settings = load_settings(env)
    assert settings.environment in {"production", "development"}
    assert settings.processors.max_jobs == 32


def _metric_names_in(text: str) -> set[str]:
    names = set(re.findall(r"\bledgerhook_[a-z_]+", text))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def test_rules_and_dashboard_use_real_metrics() -> None:
    known: set[str] = set()
    for metric in REGISTRY.collect():
        if metric.name.startswith("ledgerhook_"):
            known |= {metric.name, metric.name + "_total"}
    known |= {name for name, _, _ in LOG_STATE_METRICS} | {LOG_STATE_UP}  # read at scrape time
    rules = _metric_names_in((DEPLOY / "prometheus" / "rules.yml").read_text())
    dashboard = _metric_names_in((DEPLOY / "grafana" / "ledgerhook.json").read_text())
    assert rules <= known, rules - known
    assert dashboard <= known, dashboard - known
    for must in (
        "ledgerhook_oldest_unprocessed_age_seconds",
        "ledgerhook_dead_letters",
        "ledgerhook_verification_failures_total",
        "ledgerhook_log_verification_ok",
        "ledgerhook_oldest_unintegrated_seconds",
        "ledgerhook_sequencer_leaders",
        "ledgerhook_deliveries_received_total",
    ):
        assert must in rules


def test_promtool_accepts_rules_and_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (`make deploy-tools` installs it; `make test` does)")
    for args in (
        ["check", "rules", str(DEPLOY / "prometheus" / "rules.yml")],
        ["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
    ):
        out = subprocess.run([promtool, *args], capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
