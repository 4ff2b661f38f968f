"""Alembic's environment for the store.

Online, migrations run on the connection `resolvers.migrations.upgrade` hands over (already inside the locked
transaction `migrate` opened), or, from the command line, on a new connection to `sqlalchemy.url` under the same lock.
Offline (`--sql`), the SQL is printed for the URL's dialect.
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from resolvers.migrations import lock
from resolvers.store import engine_url, metadata

config = context.config


def run_migrations(connection: sa.Connection) -> None:
    """Run the pending migrations on `connection`, within its transaction when it has one."""
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_from_url(url: str) -> None:
    """Open the store's database by its configured URL and migrate it, under the migration lock."""
    engine = create_async_engine(engine_url(url), poolclass=sa.NullPool)
    try:
        async with engine.connect() as conn:
            await lock(conn)
            await conn.run_sync(run_migrations)
            await conn.commit()
    finally:
        await engine.dispose()


def configured_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database: pass --url (the [store] url, e.g. sqlite:///./contact-gateway.db)")
    return url


if context.is_offline_mode():
    context.configure(url=engine_url(configured_url()), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    handed_over: sa.Connection | None = config.attributes.get("connection")
    if handed_over is not None:
        run_migrations(handed_over)
    else:
        asyncio.run(run_from_url(configured_url()))
