"""Databases for tests: a `store_url` fixture parametrised over SQLite and PostgreSQL, and fresh PostgreSQL databases.

PostgreSQL is found through `CONTACT_GATEWAY_TEST_PG` (a URL whose user may create databases; default
`postgresql://postgres@127.0.0.1:5432/postgres`). Every test that asks for it gets a database of its own, created
for it and dropped afterwards. When the server cannot be reached the test is skipped with the reason, except under
`CI=true`, where that is a failure (`.ci/run` starts PostgreSQL, so CI always runs every test).

Use from any test module (this module is loaded by `tests/conftest.py`):
- `store_url`: the test runs once per database (`[sqlite]`, `[postgresql]`), with a store URL for `Store(...)`;
- `postgresql_url`: a fresh PostgreSQL database's URL (PostgreSQL-only tests);
- `fresh_postgresql_database()`: the same as an async context manager, for a test that needs several databases.
Tests on PostgreSQL carry the `postgresql` mark: `pytest -m "not postgresql"` leaves them out.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa

PG_ENV = "CONTACT_GATEWAY_TEST_PG"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Prefix of every database the tests create (and drop).
DATABASE_PREFIX = "cg_test_"

_unavailable: dict[str, str | None] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgresql: the test needs a PostgreSQL server (see tests/databases.py)")


def admin_url() -> str:
    """The URL tests create and drop their PostgreSQL databases through (libpq form, no driver)."""
    url = os.environ.get(PG_ENV) or DEFAULT_PG
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def in_ci() -> bool:
    """True under CI, where a missing database fails the run instead of skipping."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _shown(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url, timeout=10)


async def require_postgresql() -> str:
    """The admin URL when its server answers; otherwise skip the test (fail it under `CI=true`) saying why."""
    url = admin_url()
    if url not in _unavailable:
        try:
            conn = await _connect(url)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            _unavailable[url] = f"{type(exc).__name__}: {exc}"
        else:
            await conn.close()
            _unavailable[url] = None
    reason = _unavailable[url]
    if reason is not None:
        message = f"PostgreSQL unavailable at {_shown(url)} ({reason}); set {PG_ENV} or start it"
        if in_ci():
            pytest.fail(f"CI=true needs PostgreSQL: {message}", pytrace=False)
        pytest.skip(message)
    return url


@contextlib.asynccontextmanager
async def fresh_postgresql_database() -> AsyncIterator[str]:
    """Create a uniquely named database, yield its URL (`postgresql://...`), drop it afterwards."""
    admin = await require_postgresql()
    name = f"{DATABASE_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:12]}"
    conn = await _connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield sa.make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        conn = await _connect(admin)
        try:
            # FORCE: a connection a failed test left open must not keep the database alive.
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
async def postgresql_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for this test (skipped, or failed under CI, without a server)."""
    async with fresh_postgresql_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store URL of an empty database, once per supported database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    async with fresh_postgresql_database() as url:
        yield url
