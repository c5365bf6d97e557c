"""Where the checkpoint key comes from: the setting, the key file, or (development only) a new key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from audit.checkpoints import load_signer, log_origin, public_key
from audit.errors import CheckpointKeyError
from audit.note import format_signer_key, generate_signer
from ledgerhook.settings import Secret, Settings
from tests.conftest import CHECKPOINT_KEY, PUBLIC_KEY

DB = Secret("postgresql://u@h/billing")


def test_the_setting_wins() -> None:
    s = Settings(database_url=DB, checkpoint_key=Secret(CHECKPOINT_KEY))
    assert public_key(load_signer(s)) == PUBLIC_KEY


def test_the_key_file_is_read(tmp_path: Path) -> None:
    signer = generate_signer("billing.example/log")
    path = tmp_path / "signer.key"
    path.write_text(format_signer_key(signer) + "\n")
    s = Settings(database_url=DB, checkpoint_key_file=str(path), environment="production")
    assert load_signer(s).verifier == signer.verifier


def test_production_without_a_key_stops(tmp_path: Path) -> None:
    s = Settings(
        database_url=DB, checkpoint_key_file=str(tmp_path / "none.key"), environment="production"
    )
    with pytest.raises(CheckpointKeyError, match="required in production"):
        load_signer(s)
    assert not (tmp_path / "none.key").exists()


def test_development_generates_a_private_key_file_once(tmp_path: Path) -> None:
    path = tmp_path / "dev" / "signer.key"
    s = Settings(database_url=DB, checkpoint_key_file=str(path))
    first = load_signer(s)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.name == log_origin(s) == "ledgerhook/billing"
    assert load_signer(s).verifier == first.verifier  # reused, not regenerated


def test_a_file_that_is_not_a_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "old.key"
    path.write_text("3f2a" * 16)  # an HMAC key of the chain versions
    s = Settings(database_url=DB, checkpoint_key_file=str(path))
    with pytest.raises(CheckpointKeyError, match="not a note signing key") as info:
        load_signer(s)
    assert "3f2a3f2a" not in str(info.value)
