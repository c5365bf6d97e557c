"""Versioned SQL migrations: discover, then apply in order, once, under a lock.

Migrations are ``NNNN_name.sql`` files in each package's ``migrations/`` folder (``audit`` owns
0001-0099, ``processors`` 0100-0199, ``alerts`` 0200-0299); versions are unique across packages
and applied in numeric order. Each applied file is recorded with its SHA-256 in
``ledgerhook.schema_migrations``; an applied file whose text changed is an error, never silently
re-run. Everything cluster-wide (database, roles) and database-wide (migrations) happens under a
PostgreSQL advisory lock, so two ``ledgerhook migrate`` at once serialise instead of racing.

Objects are created as the owner role (``SET LOCAL ROLE``), so the admin user only needs to be a
member of it; the application role gets exactly the grants each migration spells out.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import urllib.parse
from dataclasses import dataclass

import asyncpg

from ledgerhook.db import APP_ROLE, OWNER_ROLE, connect, database_name, with_database
from ledgerhook.settings import Secret, Settings

__all__ = ["Migration", "MigrationError", "discover", "migrate"]

PACKAGES = ("audit", "processors", "alerts")
_LOCK = 0x4C48_0000  # advisory lock key "LH" 0: migrations
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    package: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(packages: tuple[str, ...] = PACKAGES) -> list[Migration]:
    found: dict[int, Migration] = {}
    for package in packages:
        folder = importlib.resources.files(package) / "migrations"
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            match = _NAME.match(entry.name)
            if not match:
                continue
            version = int(match.group(1))
            if version in found:
                raise MigrationError(
                    f"migration version {version:04d} is used twice "
                    f"({found[version].package} and {package})"
                )
            found[version] = Migration(version, match.group(2), package, entry.read_text())
    return [found[v] for v in sorted(found)]


async def _ensure_cluster(admin: Secret, dbname: str, service_url: Secret) -> None:
    """Database and roles: cluster-wide, so serialised through the maintenance database."""
    conn = await connect(with_database(admin, "postgres"), as_app=False)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK)
        for role, login in ((OWNER_ROLE, False), (APP_ROLE, True)):
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            if not exists:
                await conn.execute(f'CREATE ROLE "{role}" {"LOGIN" if login else "NOLOGIN"}')
        me = await conn.fetchrow(
            "SELECT current_user AS name, rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        assert me is not None
        if not me["rolsuper"]:
            await conn.execute(f'GRANT "{OWNER_ROLE}" TO "{me["name"]}"')
        service_user = _user(service_url)
        if service_user and service_user not in (APP_ROLE, me["name"]):
            # The services SET ROLE to the application role; they must be a member of it.
            await conn.execute(f'GRANT "{APP_ROLE}" TO "{service_user}"')
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", dbname)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{dbname}" OWNER "{OWNER_ROLE}"')
        else:
            await conn.execute(f'GRANT ALL ON DATABASE "{dbname}" TO "{OWNER_ROLE}"')
        await conn.execute(f'GRANT CONNECT ON DATABASE "{dbname}" TO "{APP_ROLE}"')
    finally:
        await conn.close()


def _user(url: Secret) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url.reveal()).username or "")


async def migrate(settings: Settings, migrations: list[Migration] | None = None) -> list[Migration]:
    """Create the database and roles if needed and apply pending migrations; returns those applied."""
    migrations = discover() if migrations is None else migrations
    dbname = database_name(settings.database_url)
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", dbname):
        raise MigrationError("LEDGERHOOK_DATABASE_URL: database name must be [A-Za-z0-9_-]")
    await _ensure_cluster(settings.admin_url, dbname, settings.database_url)
    conn = await connect(with_database(settings.admin_url, dbname), as_app=False)
    applied: list[Migration] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK)
        async with conn.transaction():
            await conn.execute(f'SET LOCAL ROLE "{OWNER_ROLE}"')
            # Our own schema, not public: on PostgreSQL 15 only the database owner may create in
            # public, and the database may have been created by someone else.
            await conn.execute("CREATE SCHEMA IF NOT EXISTS ledgerhook")
            await conn.execute(
                """
                CREATE TABLE IF NOT EXISTS ledgerhook.schema_migrations (
                    version    integer PRIMARY KEY,
                    name       text NOT NULL,
                    checksum   text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM ledgerhook.schema_migrations")
        }
        for m in migrations:
            if m.version in done:
                if done[m.version] != m.checksum:
                    raise MigrationError(
                        f"migration {m.version:04d}_{m.name} was changed after it was applied; "
                        "add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(f'SET LOCAL ROLE "{OWNER_ROLE}"')
                try:
                    await conn.execute(m.sql)
                except asyncpg.PostgresError as exc:
                    raise MigrationError(
                        f"migration {m.version:04d}_{m.name} failed: {exc}"
                    ) from exc
                await conn.execute(
                    "INSERT INTO ledgerhook.schema_migrations (version, name, checksum) "
                    "VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            applied.append(m)
        if any(x.package == "audit" for x in migrations):
            async with conn.transaction():
                await conn.execute(f'SET LOCAL ROLE "{OWNER_ROLE}"')
                await conn.execute("SELECT audit.ensure_partitions(3)")
    finally:
        await conn.close()
    return applied
