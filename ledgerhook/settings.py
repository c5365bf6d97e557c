"""One frozen settings object, decoded once at start from the environment and two optional files.

Sources, later wins:
1. the TOML file named by ``LEDGERHOOK_CONFIG`` (sections ``[ingest]``, ``[processors]``, ...,
   and ``[[endpoints]]`` tables for named webhook endpoints);
2. the env file: ``LEDGERHOOK_*=value`` lines, read from ``.env`` in the working directory, or
   from the file ``LEDGERHOOK_ENV_FILE`` names (empty: none). It supplies variables the
   environment does not set, so it may name ``LEDGERHOOK_CONFIG`` too. ``make run`` writes one
   with development values, so every ``ledgerhook`` command run in the checkout (server, worker,
   ``token``, ``verify``, ...) finds the same settings without exporting anything;
3. environment variables ``LEDGERHOOK_<FIELD>`` for top-level fields and
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
from pathlib import Path
from typing import Any, Literal

import msgspec

from ledgerhook.client_address import ProxyHeader, parse_networks

__all__ = [
    "AlertSettings",
    "ApiSettings",
    "CoexistSettings",
    "ConsoleSettings",
    "DriftSettings",
    "EndpointSettings",
    "IngestSettings",
    "ProcessorSettings",
    "ReconcileSettings",
    "Secret",
    "Settings",
    "SettingsError",
    "SyncSettings",
    "TlogSettings",
    "env_file_path",
    "load_settings",
    "read_env_file",
]

ENV_PREFIX = "LEDGERHOOK_"
ENV_FILE = ENV_PREFIX + "ENV_FILE"
DEFAULT_ENV_FILE = ".env"
_ENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
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
    # Group commits in flight at once per process (see ingest.appender). One: while it commits,
    # the next batch gathers, so batches are larger (28 deliveries at the maximum against 20 with
    # two) and the tail shorter (p99 60 ms against 450 ms measured by bench.ingest); two only paid
    # off while a chain lock had to be overlapped.
    commit_pipeline: int = 1
    # More deliveries than this waiting for a commit in one process: answer 503 at once.
    max_pending: int = 4096
    # A delivery not committed within this many seconds is answered 503 (it may still land).
    commit_timeout_seconds: float = 10.0
    # Rejection records kept per endpoint per minute; beyond it they are only counted.
    rejections_per_minute: int = 60
    rejection_body_bytes: int = 4096


class TlogSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The transparency log: sequencer, Merkle tree, signed checkpoints (audit.sequencer)."""

    # The log's name in its checkpoints (C2SP tlog-checkpoint origin line). Set it once, for
    # good, to something unique such as "billing.example.com/ledgerhook"; empty means
    # "ledgerhook/<database name>".
    origin: str = ""
    # A committed delivery not in the tree after this long raises a ``merge_delay`` alert.
    max_merge_delay_seconds: float = 1.0
    # The sequencer's poll period when it finds nothing to integrate, and its batch size.
    integrate_interval_seconds: float = 0.05
    integrate_batch: int = 5000
    # Seconds between scheduled checkpoints (only when the tree grew); 0: on demand only.
    checkpoint_interval_seconds: int = 60
    # How often a standby sequencer tries to become the leader.
    leader_retry_seconds: float = 1.0


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
    # Consecutive failed calls to a provider's API (sync, drift checks), after retries, that
    # raise a provider_api alert.
    provider_api_failures_threshold: int = 3


class ReconcileSettings(msgspec.Struct, frozen=True, kw_only=True):
    # Periodic reconciliation of providers with API credentials; 0: only on demand.
    interval_seconds: int = 900
    window_seconds: int = 7200


class SyncSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``ledgerhook sync`` and every read of a provider's objects (drift checks too)."""

    # Objects per list page (both providers allow at most 100).
    page_size: int = 100
    # The SDKs' own retries of one request (Stripe ``max_network_retries``; Chargebee's
    # RetryConfig ``max_retries``, on 500/502/503/504; it also waits out 429s itself).
    max_network_retries: int = 2
    # Then Ledgerhook's: a call that still fails with 429, 5xx, a timeout, a lost connection
    # or an answer it cannot read is tried again this many times, with exponential backoff
    # (base, doubling, capped) or the provider's Retry-After (capped); then the run stops, its
    # cursor kept, and is reported.
    retries: int = 5
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    max_retry_after_seconds: float = 300.0
    # One HTTP request; and one SDK call with its own retries (Chargebee's SDK waits out 429s
    # without a limit of its own).
    request_timeout_seconds: float = 30.0
    call_timeout_seconds: float = 600.0
    # A sync started by API runs as an arq job in the worker, for at most this long (a longer
    # one stops with its cursor kept; start it again to resume).
    job_timeout_seconds: int = 21600
    # Stripe API version for fetched objects; empty: the stripe library's pinned version. Set
    # it to your webhook endpoint's version so that fetched objects and events look alike.
    stripe_api_version: str = ""


class DriftSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The worker's drift sweep (alerts.drift): state objects compared with the provider's."""

    # How often the sweep runs; 0 turns it off. It runs only for providers with an API key.
    interval_seconds: int = 300
    # Budget: provider API calls per minute (one per object checked); each run checks at most
    # interval * calls_per_minute / 60 objects, spaced evenly, then continues next run.
    calls_per_minute: int = 30
    # Append the provider's object through the pipeline when drift is found (like --repair).
    repair: bool = False
    # The endpoint whose account the sweep checks: the account the API key belongs to.
    endpoint: str = "default"


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True):
    max_page_size: int = 1000
    default_page_size: int = 100
    # Failed token authentications per client address per minute before 429, counted in Redis
    # for all API processes together (audit.brake). Valid tokens never consult it.
    auth_failures_per_minute: int = 20
    # Bound on each Redis call of the brake; past it (or with Redis down) the brake lets go.
    brake_timeout_seconds: float = 0.25
    # Reverse proxies (IPs or CIDR networks) whose forwarding header names the client
    # (ledgerhook.client_address); empty: the TCP peer is the client, headers are ignored.
    trusted_proxies: tuple[str, ...] = ()
    # The header those proxies write: X-Forwarded-For or RFC 7239 Forwarded (only that one).
    proxy_header: ProxyHeader = "x-forwarded-for"


class ConsoleSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The web console under ``/console`` (ledgerhook.console)."""

    # A signed-in session ends this long after sign-in (sign-out and token revocation end it sooner).
    session_ttl_seconds: int = 12 * 3600
    # ``auto``: the session cookie is Secure when the request came over TLS; ``always``: always
    # (set it when a TLS-terminating proxy forwards plain HTTP to Ledgerhook).
    secure_cookie: Literal["auto", "always"] = "auto"


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
    # Ed25519 signing key for checkpoints, as a note key string (PRIVATE+KEY+<name>+<id>+<key>,
    # `ledgerhook checkpoint-key generate`). Else read from the file; in development a key is
    # generated into the file when it does not exist.
    checkpoint_key: Secret | None = None
    checkpoint_key_file: str = ".ledgerhook/checkpoint-signer.key"
    # The HMAC key of the retired chain checkpoints, to check their signatures (optional).
    legacy_hmac_key: Secret | None = None
    # Bound on each Redis call that must not hold anything up (workers' wake-up, health).
    redis_timeout_seconds: float = 0.5
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
    tlog: TlogSettings = TlogSettings()
    processors: ProcessorSettings = ProcessorSettings()
    alerts: AlertSettings = AlertSettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    api: ApiSettings = ApiSettings()
    console: ConsoleSettings = ConsoleSettings()
    sync: SyncSettings = SyncSettings()
    drift: DriftSettings = DriftSettings()
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


_SECTIONS = {
    "ingest",
    "tlog",
    "processors",
    "alerts",
    "reconcile",
    "api",
    "console",
    "sync",
    "drift",
    "coexist",
}
# Comma-separated in the environment (sections as ``section__field``).
_TUPLE_FIELDS = {"stripe_webhook_secrets", "chargebee_basic_auth", "api__trusted_proxies"}


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
        if not key.startswith(ENV_PREFIX) or key in {ENV_PREFIX + "CONFIG", ENV_FILE}:
            continue
        name = key.removeprefix(ENV_PREFIX).lower()
        parsed: str | list[str] = value
        if name in _TUPLE_FIELDS:
            parsed = [v.strip() for v in value.split(",") if v.strip()]
        if "__" in name:
            section, _, field = name.partition("__")
            if section not in _SECTIONS:
                raise SettingsError(f"{key}: unknown settings section {section!r}")
            raw.setdefault(section, {})[field] = parsed
        else:
            raw[name] = parsed
    return raw


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def env_file_path(env: Mapping[str, str], cwd: Path | None) -> Path | None:
    """The env file to read: ``LEDGERHOOK_ENV_FILE`` when set (empty: none, a missing file is an
    error), else ``.env`` in ``cwd`` when there is one."""
    if ENV_FILE in env:
        named = env[ENV_FILE]
        if not named:
            return None
        path = Path(named)
        if not path.is_absolute() and cwd is not None:
            path = cwd / path
        if not path.is_file():
            raise SettingsError(f"{ENV_FILE}: no such file: {named}")
        return path
    if cwd is None:
        return None
    path = cwd / DEFAULT_ENV_FILE
    return path if path.is_file() else None


def read_env_file(path: Path) -> dict[str, str]:
    """``LEDGERHOOK_*`` variables of an env file: ``NAME=value`` lines (``export`` allowed), blank
    lines and ``#`` comment lines skipped, one pair of matching quotes around a value removed, no
    expansion. Other names are left alone, so the file can serve other tools too."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{ENV_FILE}: cannot read {path}: {exc}") from None
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ENV_LINE.match(stripped)
        if match is None:
            # Never echo the line: it may hold a secret.
            raise SettingsError(f"{path}:{number}: expected NAME=value")
        name, value = match.group(1), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if name.startswith(ENV_PREFIX) and name != ENV_FILE:
            out[name] = value
    return out


def load_settings(env: Mapping[str, str] | None = None, *, cwd: Path | None = None) -> Settings:
    """Build the one Settings object from the environment, the env file and the config file.

    ``env`` defaults to ``os.environ`` and ``cwd`` (where ``.env`` is looked for) to the working
    directory; an explicit ``env`` without ``cwd`` reads no ``.env`` unless it names one.
    """
    if env is None:
        env = os.environ
        cwd = Path.cwd() if cwd is None else cwd
    env_file = env_file_path(env, cwd)
    if env_file is not None:
        env = {**read_env_file(env_file), **env}  # the environment wins
    raw: dict[str, Any] = {}
    config_path = env.get(ENV_PREFIX + "CONFIG")
    if config_path:
        path = Path(config_path)
        if not path.is_absolute() and cwd is not None:
            path = cwd / path
        try:
            with path.open("rb") as fh:
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
        raise SettingsError(
            "LEDGERHOOK_DATABASE_URL is required (a postgresql:// URL): set it in the environment "
            "or in .env in the working directory (`make run` writes one for development)"
        )
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
    if settings.checkpoint_key is not None and not settings.checkpoint_key.reveal().startswith(
        "PRIVATE+KEY+"
    ):
        raise SettingsError(
            "LEDGERHOOK_CHECKPOINT_KEY: must be an Ed25519 note signing key (PRIVATE+KEY+...; "
            "`ledgerhook checkpoint-key generate` makes one); the HMAC key of earlier versions "
            "now goes in LEDGERHOOK_LEGACY_HMAC_KEY"
        )
    if settings.tlog.max_merge_delay_seconds <= 0 or settings.tlog.integrate_batch <= 0:
        raise SettingsError(
            "LEDGERHOOK_TLOG__MAX_MERGE_DELAY_SECONDS / INTEGRATE_BATCH: must be positive"
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
    try:
        parse_networks(settings.api.trusted_proxies)
    except ValueError as exc:
        raise SettingsError(f"LEDGERHOOK_API__TRUSTED_PROXIES: {exc}") from None
    if settings.api.auth_failures_per_minute <= 0 or settings.api.brake_timeout_seconds <= 0:
        raise SettingsError(
            "LEDGERHOOK_API__AUTH_FAILURES_PER_MINUTE / BRAKE_TIMEOUT_SECONDS: must be positive"
        )
    if settings.console.session_ttl_seconds < 60:
        raise SettingsError("LEDGERHOOK_CONSOLE__SESSION_TTL_SECONDS: at least 60")
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
    if not 1 <= settings.sync.page_size <= 100:
        raise SettingsError("LEDGERHOOK_SYNC__PAGE_SIZE: must be between 1 and 100")
    if settings.sync.retries < 0 or settings.sync.max_network_retries < 0:
        raise SettingsError("LEDGERHOOK_SYNC__RETRIES / MAX_NETWORK_RETRIES: must not be negative")
    if settings.drift.calls_per_minute <= 0 or settings.drift.interval_seconds < 0:
        raise SettingsError(
            "LEDGERHOOK_DRIFT__CALLS_PER_MINUTE must be positive, LEDGERHOOK_DRIFT__INTERVAL_SECONDS not negative"
        )
