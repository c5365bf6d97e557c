"""One frozen settings object, decoded once at start from the environment and an optional TOML file.

Sources, later wins:
1. the TOML file named by ``LEDGERHOOK_CONFIG`` (sections ``[ingest]``, ``[processors]``, ...,
   and ``[[endpoints]]`` tables for named webhook endpoints);
2. environment variables ``LEDGERHOOK_<FIELD>`` for top-level fields and
   ``LEDGERHOOK_<SECTION>__<FIELD>`` for fields of a section (double underscore).

A bad or missing value raises :class:`SettingsError` naming the environment variable, so the
program stops at start with a message an operator can act on. Secret values are wrapped in
:class:`Secret`, whose ``repr``/``str`` never show the value; nothing here prints a secret.
Nothing is read at import time: callers build settings with :func:`load_settings` (the CLI) or
construct ``Settings(...)`` directly (tests).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

__all__ = [
    "AlertSettings",
    "ApiSettings",
    "CoexistSettings",
    "EndpointSettings",
    "IngestSettings",
    "ProcessorSettings",
    "ReconcileSettings",
    "Secret",
    "Settings",
    "SettingsError",
    "load_settings",
]

ENV_PREFIX = "LEDGERHOOK_"
Provider = Literal["stripe", "chargebee"]


class SettingsError(Exception):
    """A setting is missing or invalid; the message names it and never contains its value."""


class Secret:
    """A string that does not show itself: ``repr`` and ``str`` print a mask, ``reveal()`` the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class EndpointSettings(msgspec.Struct, frozen=True, kw_only=True):
    """One webhook endpoint: ``POST /webhooks/{provider}/{name}``.

    ``account`` is the Stripe account id or Chargebee site the endpoint receives for; it is part of
    an event's identity (provider, account, event id). It defaults to the endpoint name.
    """

    provider: Provider
    name: str = "default"
    account: str = ""
    # Stripe: every ``whsec_...`` that may sign (several while rotating).
    secrets: tuple[Secret, ...] = ()
    # Chargebee: every ``user:password`` pair that may authenticate.
    basic_auth: tuple[Secret, ...] = ()
    tolerance_seconds: int = 300
    # Chargebee only: retrieve each event from the API and compare (see alerts.fetchback).
    fetch_back: bool = False
    # No verified delivery for this long raises a ``silence`` alert; 0 disables.
    silence_after_seconds: int = 0

    @property
    def account_id(self) -> str:
        return self.account or self.name


class IngestSettings(msgspec.Struct, frozen=True, kw_only=True):
    max_body_bytes: int = 1024 * 1024
    # Request headers beyond these bounds are refused with 431 (uvicorn's httptools has no limit).
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    # A body not fully received by then is refused with 408 (slow-body clients).
    body_timeout_seconds: float = 10.0
    # Group commit: one transaction appends up to this many concurrent deliveries.
    max_batch: int = 256
    # Group commits in flight at once per process (pipelined on the chain lock; see ingest.appender).
    commit_pipeline: int = 2
    # More deliveries than this waiting for a commit in one process: answer 503 at once.
    max_pending: int = 4096
    # A delivery not committed within this many seconds is answered 503 (it may still land).
    commit_timeout_seconds: float = 10.0
    # Bounded wait for the Redis wake-up after commit; the sweeper covers anything missed.
    enqueue_timeout_seconds: float = 0.5
    # Rejection records kept per endpoint per minute; beyond it they are only counted.
    rejections_per_minute: int = 60
    rejection_body_bytes: int = 4096


class ProcessorSettings(msgspec.Struct, frozen=True, kw_only=True):
    # arq queue; job ids are prefixed with it so several installations can share one Redis.
    queue_name: str = "ledgerhook"
    # Deliveries committed this long ago and still unprocessed are re-enqueued by the sweeper.
    sweep_after_seconds: float = 10.0
    sweep_interval_seconds: int = 15
    sweep_batch: int = 1000
    job_timeout_seconds: int = 60
    max_tries: int = 10
    max_jobs: int = 32
    # arq reads at most max_jobs jobs per poll, so this bounds throughput: max_jobs / poll_delay.
    poll_delay_seconds: float = 0.05
    # Deliveries of concurrent jobs applied in one transaction (processors.batcher), and how
    # many such transactions run at once per worker process.
    batch_size: int = 100
    batch_concurrency: int = 2
    # Jobs arq reads per poll (its default is max_jobs); see ledgerhook.worker.
    queue_read_limit: int = 8
    # Seconds between the worker's ANALYZE of tables whose statistics are stale (what
    # autovacuum would do; needed when it is off, see processors/migrations/0102); 0: never.
    analyze_interval_seconds: int = 15


class AlertSettings(msgspec.Struct, frozen=True, kw_only=True):
    sweep_interval_seconds: int = 60
    missing_predecessor_grace_seconds: int = 300
    rejections_threshold: int = 20
    rejections_window_seconds: int = 300
    lag_threshold_seconds: int = 300
    auto_resolve_after_seconds: int = 900
    integrity_interval_seconds: int = 3600
    slack_webhook_url: Secret | None = None
    pagerduty_routing_key: Secret | None = None
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    notify_max_tries: int = 5


class ReconcileSettings(msgspec.Struct, frozen=True, kw_only=True):
    interval_seconds: int = 900
    window_seconds: int = 7200


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True):
    max_page_size: int = 1000
    default_page_size: int = 100
    # Failed token authentications per source address per minute before 429.
    auth_failures_per_minute: int = 20


class CoexistSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Provider migration (processors.coexist, the coexistence alerts)."""

    # Links from metadata: a ``target`` object whose metadata has ``customer_metadata_key``
    # (``subscription_metadata_key``) is linked to the ``source`` object it names. Empty: off.
    metadata_source: Provider = "chargebee"
    metadata_target: Provider = "stripe"
    customer_metadata_key: str = ""
    subscription_metadata_key: str = ""
    # Provider account of the source objects metadata names (default: the source provider's
    # default endpoint account).
    metadata_source_account: str = ""
    # Metadata key naming the cohort; objects without it join ``default_cohort``.
    cohort_metadata_key: str = ""
    default_cohort: str = "default"
    # Comparison tolerances: period ends this close are the same moment; money within this
    # many minor units (0: exact).
    period_tolerance_seconds: int = 60
    amount_tolerance_minor: int = 0
    # Both sides may bill for this long after a switch before it is a mismatch / an alert.
    grace_seconds: int = 86_400
    # A link may wait this long for its objects to arrive in the state before it is an orphan.
    orphan_grace_seconds: int = 3_600
    # The coexistence sweep (metadata links, then the coexistence alert rules); 0: off.
    sweep_interval_seconds: int = 300
    # Linked pairs read per page by a verification run.
    page_size: int = 2_000


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: Secret
    # Used by ``ledgerhook migrate`` only (owner/superuser); defaults to database_url.
    admin_database_url: Secret | None = None
    redis_url: Secret = Secret("redis://127.0.0.1:6379/0")
    environment: Literal["development", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    # HMAC key for signed chain checkpoints. Unset in development: generated into the file below.
    checkpoint_key: Secret | None = None
    checkpoint_key_file: str = ".ledgerhook/checkpoint.key"
    db_pool_min: int = 2
    db_pool_max: int = 16
    sentry_dsn: Secret | None = None
    # The worker's own /metrics (ledgerhook.observability); 0 disables. Containers bind 0.0.0.0.
    worker_metrics_port: int = 0
    worker_metrics_host: str = "127.0.0.1"
    # Shortcuts for the default endpoints ``/webhooks/stripe`` and ``/webhooks/chargebee``.
    stripe_webhook_secrets: tuple[Secret, ...] = ()
    chargebee_basic_auth: tuple[Secret, ...] = ()
    stripe_account: str = "default"
    chargebee_site: str = ""
    # Provider APIs (reconciliation, fetch-back). Bases are configurable for local stand-ins.
    stripe_api_key: Secret | None = None
    stripe_api_base: str = "https://api.stripe.com"
    chargebee_api_key: Secret | None = None
    chargebee_api_base: str = ""
    endpoints: tuple[EndpointSettings, ...] = ()
    ingest: IngestSettings = IngestSettings()
    processors: ProcessorSettings = ProcessorSettings()
    alerts: AlertSettings = AlertSettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    api: ApiSettings = ApiSettings()
    coexist: CoexistSettings = CoexistSettings()

    @property
    def admin_url(self) -> Secret:
        return self.admin_database_url or self.database_url

    @property
    def chargebee_api_url(self) -> str:
        return self.chargebee_api_base or f"https://{self.chargebee_site}.chargebee.com"

    def all_endpoints(self) -> tuple[EndpointSettings, ...]:
        """Configured endpoints plus the default ones the environment shortcuts describe."""
        extra: list[EndpointSettings] = []
        names = {(e.provider, e.name) for e in self.endpoints}
        if self.stripe_webhook_secrets and ("stripe", "default") not in names:
            extra.append(
                EndpointSettings(
                    provider="stripe",
                    name="default",
                    account=self.stripe_account,
                    secrets=self.stripe_webhook_secrets,
                )
            )
        if self.chargebee_basic_auth and ("chargebee", "default") not in names:
            extra.append(
                EndpointSettings(
                    provider="chargebee",
                    name="default",
                    account=self.chargebee_site or "default",
                    basic_auth=self.chargebee_basic_auth,
                )
            )
        return (*self.endpoints, *extra)

    def endpoint(self, provider: str, name: str) -> EndpointSettings | None:
        for e in self.all_endpoints():
            if e.provider == provider and e.name == name:
                return e
        return None


_SECTIONS = {"ingest", "processors", "alerts", "reconcile", "api", "coexist"}
_TUPLE_FIELDS = {"stripe_webhook_secrets", "chargebee_basic_auth"}


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Secret:
        if isinstance(obj, str):
            return Secret(obj)
        if isinstance(obj, Secret):
            return obj
        raise msgspec.ValidationError("Expected a string")
    raise NotImplementedError(type_)


def _env_name(path: str) -> str:
    """``$.ingest.max_body_bytes`` -> ``LEDGERHOOK_INGEST__MAX_BODY_BYTES``."""
    parts = [p for p in re.split(r"\.|\[\d+\]", path.removeprefix("$")) if p]
    if not parts:
        return "LEDGERHOOK_*"
    if parts[0] == "endpoints":
        return "LEDGERHOOK_CONFIG [[endpoints]] " + ".".join(parts[1:])
    return ENV_PREFIX + "__".join(p.upper() for p in parts)


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        name = key.removeprefix(ENV_PREFIX).lower()
        if "__" in name:
            section, _, field = name.partition("__")
            if section not in _SECTIONS:
                raise SettingsError(f"{key}: unknown settings section {section!r}")
            raw.setdefault(section, {})[field] = value
        elif name in _TUPLE_FIELDS:
            raw[name] = [v.strip() for v in value.split(",") if v.strip()]
        else:
            raw[name] = value
    return raw


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the one Settings object from ``env`` (default ``os.environ``) and the config file."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    config_path = env.get(ENV_PREFIX + "CONFIG")
    if config_path:
        try:
            with open(config_path, "rb") as fh:
                raw = tomllib.load(fh)
        except OSError as exc:
            raise SettingsError(
                f"LEDGERHOOK_CONFIG: cannot read {config_path}: {exc.strerror}"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(
                f"LEDGERHOOK_CONFIG: {config_path} is not valid TOML: {exc}"
            ) from None
    raw = _merge(raw, _from_env(env))
    if "database_url" not in raw:
        raise SettingsError("LEDGERHOOK_DATABASE_URL is required (a postgresql:// URL)")
    try:
        settings = msgspec.convert(raw, Settings, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        # msgspec messages name the path (``... - at `$.ingest.max_batch```) but never the value.
        message = str(exc)
        match = re.search(r"at `([^`]+)`", message)
        field = re.search(r"required field `([^`]+)`", message)
        if match:
            name = _env_name(match.group(1))
        elif field:
            name = _env_name("$." + field.group(1))
        else:
            name = "LEDGERHOOK_*"
        if "unknown field" in message.lower() or "object contains unknown field" in message:
            raise SettingsError(f"{name}: {message}") from None
        raise SettingsError(f"{name}: {message}") from None
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    for name, url in (
        ("DATABASE_URL", settings.database_url),
        ("ADMIN_DATABASE_URL", settings.admin_database_url),
    ):
        if url is not None and not url.reveal().startswith(("postgresql://", "postgres://")):
            raise SettingsError(f"LEDGERHOOK_{name}: must be a postgresql:// URL")
    if not settings.redis_url.reveal().startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("LEDGERHOOK_REDIS_URL: must be a redis:// URL")
    if settings.environment == "production" and settings.checkpoint_key is None:
        raise SettingsError(
            "LEDGERHOOK_CHECKPOINT_KEY: required in production (signs chain checkpoints)"
        )
    for secret in settings.chargebee_basic_auth:
        if ":" not in secret.reveal():
            raise SettingsError("LEDGERHOOK_CHARGEBEE_BASIC_AUTH: each entry must be user:password")
    for secret in settings.stripe_webhook_secrets:
        if not secret.reveal().startswith("whsec_"):
            raise SettingsError(
                "LEDGERHOOK_STRIPE_WEBHOOK_SECRETS: each entry must start with whsec_"
            )
    seen: set[tuple[str, str]] = set()
    for e in settings.endpoints:
        if (e.provider, e.name) in seen:
            raise SettingsError(f"LEDGERHOOK_CONFIG [[endpoints]]: duplicate {e.provider}/{e.name}")
        seen.add((e.provider, e.name))
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", e.name):
            raise SettingsError(f"LEDGERHOOK_CONFIG [[endpoints]] name {e.name!r}: use [a-z0-9_-]")
    c = settings.coexist
    if c.metadata_source == c.metadata_target:
        raise SettingsError(
            "LEDGERHOOK_COEXIST__METADATA_SOURCE / METADATA_TARGET: must be different providers"
        )
    if c.page_size <= 0 or c.grace_seconds < 0 or c.period_tolerance_seconds < 0:
        raise SettingsError(
            "LEDGERHOOK_COEXIST__PAGE_SIZE / GRACE_SECONDS / PERIOD_TOLERANCE_SECONDS: "
            "must be positive (page size) or not negative"
        )
    if settings.ingest.max_body_bytes <= 0 or settings.ingest.max_batch <= 0:
        raise SettingsError("LEDGERHOOK_INGEST__MAX_BODY_BYTES / MAX_BATCH: must be positive")
