"""Schema migrations (Alembic), configured in code so the installed package migrates from any working directory.

`Store.open()` calls `migrate`: one transaction that first takes the migration lock, then upgrades to the head
revision. On PostgreSQL the lock is a transaction-scoped advisory lock on a fixed key, so several processes opening
one database at once queue up and all but the first find nothing to do; PostgreSQL's DDL is transactional, so a
migration that fails leaves nothing half done. On SQLite the transaction starts with `BEGIN IMMEDIATE`, which takes the
database's write lock (other processes wait through `busy_timeout`). Either lock also keeps concurrent opens within one
process apart, which matters: Alembic's `context` and `op` are process-wide proxies that two interleaved migrations
would share.

A database made before migrations existed (the tables created by `metadata.create_all`, no `alembic_version`) is
migrated, not stamped: revision 0001 adopts the tables it finds and creates only what is missing.

Authors of a new revision use Alembic's own command line through this package, e.g.
`uv run python -m resolvers.migrations --url sqlite:///./dev.db revision --autogenerate -m "add a column"`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

#: The PostgreSQL advisory lock key that serialises migrations (the bytes of "contactg").
MIGRATION_LOCK_KEY = 0x636F6E7461637467

SCRIPT_LOCATION = Path(__file__).resolve().parent


def alembic_config(url: str | None = None, connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration, built in code: the scripts in this package, and the connection or URL to migrate."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> tuple[str, ...]:
    """The head revision(s) of the migration scripts."""
    return tuple(sorted(_scripts().get_heads()))


def current(connection: sa.Connection) -> tuple[str, ...]:
    """The revision(s) the database is at; empty when it has never been migrated."""
    return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))


def at_head(connection: sa.Connection) -> bool:
    """True when the database is at the head revision."""
    return current(connection) == head()


def upgrade(connection: sa.Connection, revision: str = "head") -> None:
    """Upgrade on `connection`, inside whatever transaction it is in (the caller commits)."""
    command.upgrade(alembic_config(connection=connection), revision)


def downgrade(connection: sa.Connection, revision: str) -> None:
    """Downgrade on `connection`, inside whatever transaction it is in (the caller commits)."""
    command.downgrade(alembic_config(connection=connection), revision)


async def lock(conn: AsyncConnection) -> None:
    """Begin `conn`'s transaction holding the lock that serialises migrations between processes."""
    if conn.dialect.name == "postgresql":
        # Transaction-scoped: released by the commit (or rollback) that ends the migration.
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("BEGIN IMMEDIATE")


async def migrate(engine: AsyncEngine, revision: str = "head", *, down: bool = False) -> None:
    """Upgrade (or, with `down`, downgrade) the database to `revision` in one locked transaction; a no-op when it
    is there already."""
    async with engine.connect() as conn:
        await lock(conn)
        await conn.run_sync(downgrade if down else upgrade, revision)
        await conn.commit()
