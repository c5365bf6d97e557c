"""Append-only under attack, beyond the audit log's own tests (test_audit_store.py).

The application role tries to change every history the product relies on (tokens, revocations,
the access log, processed/anomaly/history rows, alert history) and to take the guards apart
(replace the trigger function, drop or add triggers, take ownership, grant itself more). Every
attempt fails with insufficient privilege. The owner role, which may alter tables, is still
stopped by the append-only triggers on the tables that have them.
"""

from __future__ import annotations

import asyncpg
import pytest

from ledgerhook.settings import Settings
from tests.conftest import superuser


async def _as_app(settings: Settings) -> asyncpg.Connection:
    """Log in as the application role itself (as production does)."""
    url = settings.database_url.reveal().replace("postgres@", "ledgerhook_app@")
    return await asyncpg.connect(url)


APP_ATTEMPTS = [
    # Taking the guards apart.
    "CREATE OR REPLACE FUNCTION audit.forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    "DROP TRIGGER append_only ON audit.deliveries",
    "CREATE TRIGGER sneaky BEFORE INSERT ON audit.deliveries FOR EACH ROW EXECUTE FUNCTION audit.forbid_change()",
    "ALTER TABLE audit.deliveries OWNER TO ledgerhook_app",
    "ALTER TABLE audit.deliveries ENABLE REPLICA TRIGGER append_only",
    "ALTER FUNCTION audit.ensure_partitions(integer) OWNER TO ledgerhook_app",
    "CREATE OR REPLACE FUNCTION processors.analyze_stale() RETURNS text[] LANGUAGE sql AS $$ SELECT '{}'::text[] $$",
    "DROP FUNCTION audit.forbid_change() CASCADE",
    "ALTER SCHEMA audit RENAME TO audit_old",
    "CREATE TABLE audit.deliveries_y2099m01 PARTITION OF audit.deliveries FOR VALUES FROM ('2099-01-01') TO ('2099-02-01')",
    "ALTER TABLE audit.deliveries DETACH PARTITION audit.deliveries_default",
    "SET session_replication_role = replica",
    # Tokens: un-revoking, re-roling, forgetting who read what.
    "UPDATE audit.api_tokens SET role = 'admin'",
    "DELETE FROM audit.api_token_revocations",
    "TRUNCATE audit.api_token_revocations",
    "UPDATE audit.access_log SET decision = 'allowed'",
    "DELETE FROM audit.access_log",
    # Processors: forgetting an event was applied would let it apply twice.
    "DELETE FROM processors.processed",
    "TRUNCATE processors.processed",
    "UPDATE processors.anomalies SET kind = 'out_of_order'",
    "DELETE FROM processors.anomalies",
    "UPDATE processors.history SET delivery_id = 0",
    "DELETE FROM processors.history",
    "DELETE FROM processors.subscription_changes",
    "TRUNCATE processors.subscription_changes",
    # Alerts: rewriting who acknowledged or resolved what.
    "UPDATE alerts.alert_events SET actor = 'someone-else'",
    "DELETE FROM alerts.alert_events",
    "TRUNCATE alerts.alert_events",
    "DROP TRIGGER append_only ON alerts.alert_events",
    "CREATE OR REPLACE FUNCTION alerts.forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
]


@pytest.mark.parametrize("statement", APP_ATTEMPTS)
async def test_application_role_cannot(settings: Settings, statement: str) -> None:
    conn = await _as_app(settings)
    try:
        assert await conn.fetchval("SELECT current_user") == "ledgerhook_app"
        with pytest.raises(asyncpg.PostgresError) as info:
            async with conn.transaction():
                await conn.execute(statement)
        assert isinstance(info.value, asyncpg.InsufficientPrivilegeError), (
            type(info.value).__name__,
            str(info.value),
        )
    finally:
        await conn.close()


async def test_application_role_cannot_grant_itself_more(settings: Settings) -> None:
    """PostgreSQL answers a GRANT without grant option with a warning, not an error: what matters
    is that nothing was granted."""
    conn = await _as_app(settings)
    try:
        await conn.execute("GRANT UPDATE, DELETE, TRUNCATE ON audit.deliveries TO ledgerhook_app")
        for privilege in ("UPDATE", "DELETE", "TRUNCATE"):
            assert not await conn.fetchval(
                "SELECT has_table_privilege('ledgerhook_app', 'audit.deliveries', $1)", privilege
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE audit.deliveries SET event_type = 'x'")
    finally:
        await conn.close()


OWNER_ATTEMPTS = [
    "UPDATE audit.api_tokens SET role = 'admin'",
    "DELETE FROM audit.api_token_revocations",
    "TRUNCATE audit.api_token_revocations",
    "UPDATE audit.access_log SET decision = 'allowed'",
    "TRUNCATE audit.access_log",
    "UPDATE alerts.alert_events SET actor = 'someone-else'",
    "DELETE FROM alerts.alert_events",
    "TRUNCATE alerts.alert_events",
]


@pytest.mark.parametrize("statement", OWNER_ATTEMPTS)
async def test_append_only_triggers_stop_the_owner_too(settings: Settings, statement: str) -> None:
    """Rows are inserted first (as the owner, rolled back after) so row triggers have a target."""
    conn = await superuser(settings)
    try:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("SET LOCAL ROLE ledgerhook_owner")
            token = await conn.fetchval(
                "INSERT INTO audit.api_tokens (name, role, token_hash) "
                "VALUES ('hostile-owner-test', 'auditor', sha256('x'::bytea)) RETURNING id"
            )
            await conn.execute(
                "INSERT INTO audit.api_token_revocations (token_id) VALUES ($1)", token
            )
            await conn.execute(
                "INSERT INTO audit.access_log (token_name, role, method, path, query, decision, "
                "required_role, source_address) VALUES "
                "('t', 'auditor', 'GET', '/x', '', 'forbidden', 'admin', '127.0.0.1')"
            )
            alert = await conn.fetchval(
                "INSERT INTO alerts.alerts (rule, severity, subject, summary, first_seen, last_seen) "
                "VALUES ('silence', 'info', 'hostile-owner-test', 's', now(), now()) RETURNING id"
            )
            await conn.execute(
                "INSERT INTO alerts.alert_events (alert_id, at, actor, to_status) "
                "VALUES ($1, now(), 'system', 'open')",
                alert,
            )
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                async with conn.transaction():  # a savepoint: the scaffolding survives
                    await conn.execute(statement)
        finally:
            await tx.rollback()
    finally:
        await conn.close()
