"""Settings: decoded once from the environment (and a TOML file); errors name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerhook.settings import Secret, SettingsError, load_settings

DB = "postgresql://postgres@127.0.0.1:5432/x"


def test_minimal_environment() -> None:
    s = load_settings({"LEDGERHOOK_DATABASE_URL": DB})
    assert s.database_url.reveal() == DB
    assert s.ingest.max_body_bytes == 1024 * 1024
    assert s.environment == "development"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "LEDGERHOOK_DATABASE_URL"),
        ({"LEDGERHOOK_DATABASE_URL": "mysql://x"}, "LEDGERHOOK_DATABASE_URL"),
        (
            {"LEDGERHOOK_DATABASE_URL": DB, "LEDGERHOOK_INGEST__MAX_BODY_BYTES": "lots"},
            "LEDGERHOOK_INGEST__MAX_BODY_BYTES",
        ),
        (
            {"LEDGERHOOK_DATABASE_URL": DB, "LEDGERHOOK_ENVIRONMENT": "staging"},
            "LEDGERHOOK_ENVIRONMENT",
        ),
        (
            {"LEDGERHOOK_DATABASE_URL": DB, "LEDGERHOOK_REDIS_URL": "http://x"},
            "LEDGERHOOK_REDIS_URL",
        ),
        ({"LEDGERHOOK_DATABASE_URL": DB, "LEDGERHOOK_BOGUS__X": "1"}, "LEDGERHOOK_BOGUS__X"),
        (
            {"LEDGERHOOK_DATABASE_URL": DB, "LEDGERHOOK_CHECKPOINT_KEY": "an-old-hmac-key"},
            "LEDGERHOOK_CHECKPOINT_KEY",
        ),
        (
            {"LEDGERHOOK_DATABASE_URL": DB, "LEDGERHOOK_TLOG__MAX_MERGE_DELAY_SECONDS": "0"},
            "LEDGERHOOK_TLOG__MAX_MERGE_DELAY_SECONDS",
        ),
        (
            {"LEDGERHOOK_DATABASE_URL": DB, "LEDGERHOOK_STRIPE_WEBHOOK_SECRETS": "nope"},
            "LEDGERHOOK_STRIPE_WEBHOOK_SECRETS",
        ),
        (
            {"LEDGERHOOK_DATABASE_URL": DB, "LEDGERHOOK_CHARGEBEE_BASIC_AUTH": "nocolon"},
            "LEDGERHOOK_CHARGEBEE_BASIC_AUTH",
        ),
        (
            {"LEDGERHOOK_DATABASE_URL": DB, "LEDGERHOOK_CONFIG": "/nonexistent/ledgerhook.toml"},
            "LEDGERHOOK_CONFIG",
        ),
    ],
)
def test_bad_or_missing_setting_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert named in str(info.value)


def test_secrets_never_shown() -> None:
    s = load_settings(
        {
            "LEDGERHOOK_DATABASE_URL": "postgresql://app:hunter2@db/x",
            "LEDGERHOOK_STRIPE_WEBHOOK_SECRETS": "whsec_aaa,whsec_bbb",
            "LEDGERHOOK_CHARGEBEE_BASIC_AUTH": "u:topsecret",
            "LEDGERHOOK_CHECKPOINT_KEY": "PRIVATE+KEY+log+00000000+ck-value",
            "LEDGERHOOK_LEGACY_HMAC_KEY": "legacy-value",
        }
    )
    text = repr(s) + str(s)
    for value in ("hunter2", "whsec_aaa", "whsec_bbb", "topsecret", "ck-value", "legacy-value"):
        assert value not in text
    assert [x.reveal() for x in s.stripe_webhook_secrets] == ["whsec_aaa", "whsec_bbb"]


def test_bad_value_message_does_not_echo_secret() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"LEDGERHOOK_DATABASE_URL": "mysql://u:hunter2@h/x"})
    assert "hunter2" not in str(info.value)


def test_default_endpoints_from_shortcuts() -> None:
    s = load_settings(
        {
            "LEDGERHOOK_DATABASE_URL": DB,
            "LEDGERHOOK_STRIPE_WEBHOOK_SECRETS": "whsec_a",
            "LEDGERHOOK_CHARGEBEE_BASIC_AUTH": "u:p",
            "LEDGERHOOK_CHARGEBEE_SITE": "acme",
        }
    )
    stripe = s.endpoint("stripe", "default")
    chargebee = s.endpoint("chargebee", "default")
    assert stripe is not None and stripe.secrets == (Secret("whsec_a"),)
    assert chargebee is not None and chargebee.account_id == "acme"


def test_config_file_and_env_override(tmp_path: Path) -> None:
    cfg = tmp_path / "lh.toml"
    cfg.write_text(
        """
        database_url = "postgresql://postgres@127.0.0.1/fromfile"
        [ingest]
        max_batch = 64
        max_body_bytes = 2048
        [[endpoints]]
        provider = "stripe"
        name = "eu"
        account = "acct_eu"
        secrets = ["whsec_eu1", "whsec_eu2"]
        [[endpoints]]
        provider = "chargebee"
        name = "acme"
        basic_auth = ["hook:pw"]
        fetch_back = true
        """
    )
    s = load_settings({"LEDGERHOOK_CONFIG": str(cfg), "LEDGERHOOK_INGEST__MAX_BATCH": "32"})
    assert s.database_url.reveal().endswith("/fromfile")
    assert s.ingest.max_batch == 32  # environment wins over the file
    assert s.ingest.max_body_bytes == 2048
    eu = s.endpoint("stripe", "eu")
    assert eu is not None and eu.account_id == "acct_eu" and len(eu.secrets) == 2
    acme = s.endpoint("chargebee", "acme")
    assert acme is not None and acme.fetch_back and acme.account_id == "acme"


def test_bad_endpoint_in_file_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "lh.toml"
    cfg.write_text('database_url = "postgresql://h/x"\n[[endpoints]]\nprovider = "paypal"\n')
    with pytest.raises(SettingsError, match=r"\[\[endpoints\]\] provider"):
        load_settings({"LEDGERHOOK_CONFIG": str(cfg)})


def test_env_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# development settings\n"
        "\n"
        f"LEDGERHOOK_DATABASE_URL={DB}\n"
        "export LEDGERHOOK_STRIPE_WEBHOOK_SECRETS='whsec_a,whsec_b'\n"
        'LEDGERHOOK_INGEST__MAX_BATCH = "64"\n'
        "LEDGERHOOK_LOG_FORMAT=text\n"
        "COMPOSE_PROJECT_NAME=other-tools-may-share-the-file\n"
    )
    s = load_settings({}, cwd=tmp_path)
    assert s.database_url.reveal() == DB
    assert [x.reveal() for x in s.stripe_webhook_secrets] == ["whsec_a", "whsec_b"]
    assert s.ingest.max_batch == 64
    assert s.log_format == "text"


def test_the_environment_wins_over_the_env_file_which_wins_over_the_toml(tmp_path: Path) -> None:
    (tmp_path / "lh.toml").write_text(
        'database_url = "postgresql://h/fromtoml"\nlog_level = "ERROR"\n[ingest]\nmax_batch = 8\n'
    )
    (tmp_path / ".env").write_text(
        "LEDGERHOOK_CONFIG=lh.toml\n"  # relative to the working directory
        "LEDGERHOOK_DATABASE_URL=postgresql://h/fromenvfile\n"
        "LEDGERHOOK_INGEST__MAX_BATCH=16\n"
    )
    s = load_settings({"LEDGERHOOK_INGEST__MAX_BATCH": "32"}, cwd=tmp_path)
    assert s.ingest.max_batch == 32
    assert s.database_url.reveal().endswith("/fromenvfile")
    assert s.log_level == "ERROR"


def test_env_file_can_be_named_or_turned_off(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LEDGERHOOK_DATABASE_URL=postgresql://h/default\n")
    other = tmp_path / "other.env"
    other.write_text("LEDGERHOOK_DATABASE_URL=postgresql://h/named\n")
    named = load_settings({"LEDGERHOOK_ENV_FILE": str(other)}, cwd=tmp_path)
    assert named.database_url.reveal().endswith("/named")
    with pytest.raises(SettingsError, match="LEDGERHOOK_DATABASE_URL is required"):
        load_settings({"LEDGERHOOK_ENV_FILE": ""}, cwd=tmp_path)
    with pytest.raises(SettingsError, match="LEDGERHOOK_ENV_FILE"):
        load_settings({"LEDGERHOOK_ENV_FILE": str(tmp_path / "missing.env")}, cwd=tmp_path)


def test_an_explicit_environment_reads_no_env_file_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("LEDGERHOOK_DATABASE_URL=postgresql://h/fromfile\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError):
        load_settings({})
    monkeypatch.delenv("LEDGERHOOK_ENV_FILE", raising=False)
    monkeypatch.delenv("LEDGERHOOK_DATABASE_URL", raising=False)
    assert load_settings().database_url.reveal().endswith("/fromfile")  # the process: cwd's .env


def test_a_bad_env_file_line_is_named_without_its_content(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"LEDGERHOOK_DATABASE_URL={DB}\nwhsec_leaked_secret\n")
    with pytest.raises(SettingsError) as info:
        load_settings({}, cwd=tmp_path)
    assert ".env:2" in str(info.value)
    assert "whsec_leaked_secret" not in str(info.value)
