"""`resolvers.sql.Direct`, the write path's statements on the driver's cursor, on both databases.

A value written through `Direct` is stored exactly as SQLAlchemy stores it (the outbox compares stored date-times
in SQL, so a different text form on SQLite would break leases); what `Direct` cannot do it refuses when the
statement is compiled, never at a write. On SQLite the outbox's statements about one contact use the index made for
them, whatever the pending backlog.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from resolvers import outbox
from resolvers.results import Vendor
from resolvers.sql import BySize, Direct, _bind_processor
from resolvers.store import Store

scratch = sa.MetaData()
samples = sa.Table(
    "direct_samples",
    scratch,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("label", sa.String(20), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True)),
    sa.Column("flag", sa.Boolean, nullable=False),
    sa.Column("count", sa.Integer, nullable=False, default=0),
    sa.Column("note", sa.Text),
)
COLUMNS = ["id", "label", "at", "flag", "count", "note"]
INSERT = Direct(sa.insert(samples), COLUMNS)
SELECT = Direct(sa.select(samples.c.id, samples.c.label).where(samples.c.flag.is_(True), samples.c.label != "skip"), [])
BY_IDS = BySize(
    lambda n: Direct(
        sa.select(samples.c.id).where(samples.c.id.in_([sa.bindparam(f"id_{k}") for k in range(n)])),
        [f"id_{k}" for k in range(n)],
    )
)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = Store(store_url)
    await s.open()
    await s.write(lambda conn: scratch.create_all(conn))
    yield s
    await s.close()


def _row(id_: int, **values: Any) -> dict[str, Any]:
    at = datetime(2026, 12, 2, 4, 5, 6, 789, tzinfo=UTC)
    return {"id": id_, "label": f"row-{id_}", "at": at, "flag": True, "count": 3, "note": None} | values


async def test_values_are_stored_as_sqlalchemy_stores_them(store: Store) -> None:
    rows = [
        _row(1),
        _row(2, at=datetime(2026, 1, 1, tzinfo=UTC), flag=False, note="ünïcode"),
        _row(3, at=None),
    ]

    def write(conn: sa.Connection) -> None:
        conn.execute(sa.insert(samples), [r | {"id": r["id"] + 100} for r in rows])  # SQLAlchemy's own path
        INSERT.executemany(conn, rows[:2])
        INSERT.execute(conn, rows[2])

    await store.write(write)

    def raw(conn: sa.Connection) -> list[tuple[Any, ...]]:
        # As stored: the text SQLite keeps (no result processing), PostgreSQL's typed values.
        text = sa.text("SELECT id, label, at, flag, count, note FROM direct_samples ORDER BY id")
        return [tuple(r) for r in conn.execute(text)]

    stored = await store.read(raw)
    direct, reference = stored[:3], stored[3:]
    assert [r[1:] for r in direct] == [r[1:] for r in reference]
    assert [r[0] for r in direct] == [1, 2, 3]

    def lease_comparison(conn: sa.Connection) -> list[int]:
        # The outbox's kind of comparison: a stored date-time against a bound one, in SQL.
        query = sa.select(samples.c.id).where(samples.c.at > sa.bindparam("t")).order_by(samples.c.id)
        return list(conn.scalars(query, {"t": datetime(2026, 6, 1, tzinfo=UTC)}))

    assert await store.read(lease_comparison) == [1, 101]


async def test_rows_come_back_by_position_with_literals_in_the_statement(store: Store) -> None:
    await store.write(
        lambda conn: INSERT.executemany(conn, [_row(1), _row(2, flag=False), _row(3, label="skip"), _row(4)])
    )
    found = await store.read(lambda conn: sorted(tuple(r) for r in SELECT.execute(conn, {})))
    assert found == [(1, "row-1"), (4, "row-4")]
    by_ids = await store.read(
        lambda conn: sorted(r[0] for r in BY_IDS(3).execute(conn, {"id_0": 4, "id_1": 2, "id_2": 9}))
    )
    assert by_ids == [2, 4]
    assert BY_IDS(3) is BY_IDS(3), "one statement per size, built once"


async def test_what_direct_cannot_run_is_refused_when_compiled(store: Store) -> None:
    expanding = Direct(sa.select(samples.c.id).where(samples.c.id.in_(sa.bindparam("ids", expanding=True))), ["ids"])
    missing = Direct(sa.select(samples.c.id).where(samples.c.id == sa.bindparam("wanted")), [])
    given = ["id", "label", "at", "flag", "note"]  # not `count`, which has a Python-side default
    defaults = Direct(sa.insert(samples).values({c: sa.bindparam(c) for c in given}), given)
    unnamed = Direct(sa.insert(samples), given)  # every column a parameter: `count` too

    def attempt(statement: Direct, params: dict[str, Any]) -> Any:
        return store.write(lambda conn: statement.execute(conn, params))

    with pytest.raises(ValueError, match="expanding parameters"):
        await attempt(expanding, {"ids": [1]})
    with pytest.raises(ValueError, match="'wanted' has no value"):
        await attempt(missing, {})
    with pytest.raises(ValueError, match=r"\['count'\] have Python-side defaults"):
        await attempt(defaults, _row(1))
    with pytest.raises(ValueError, match="'count' has no value"):
        await attempt(unnamed, _row(1))
    assert await store.read(lambda conn: conn.scalar(sa.select(sa.func.count()).select_from(samples))) == 0


async def test_outbox_statements_about_one_contact_use_the_contact_index(tmp_path: Any) -> None:
    """SQLite keeps no statistics; with (contact_id, vendor) it took the due index (status, next_attempt_at) for
    these, scanning every pending delivery on every write while a vendor was down (migration 0003)."""
    store = Store(f"sqlite:///{tmp_path / 'plan.db'}")
    await store.open()
    try:
        now = datetime.now(UTC)
        statements = {
            "busy": (outbox._BUSY, {"b_contact": "c-1", "b_now": now}),
            "supersede": (outbox._SUPERSEDE(1), {"b_contact": "c-1", "b_vendor_0": "eros", "b_now": now}),
            "supersede five": (
                outbox._SUPERSEDE(5),
                {"b_contact": "c-1", "b_now": now} | {f"b_vendor_{k}": v.value for k, v in enumerate(Vendor)},
            ),
        }

        def plans(conn: sa.Connection) -> dict[str, str]:
            out = {}
            for name, (statement, params) in statements.items():
                plan = statement.plan(conn.dialect)
                assert plan is not None
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + plan.sql, tuple(plan.values(params))).all()
                out[name] = " | ".join(str(row[-1]) for row in rows)
            return out

        found = await store.read(plans)
    finally:
        await store.close()
    assert all("ix_deliveries_contact_status_vendor" in plan for plan in found.values()), found
    assert not any("ix_deliveries_due" in plan for plan in found.values()), found


async def test_each_driver_gets_its_own_plan(tmp_path: Any) -> None:
    """SQLite is reached through aiosqlite (migrations, the async engine) and sqlite3 (the store's writes and
    reads): a statement first run through the one still takes the short path on the other."""
    store = Store(f"sqlite:///{tmp_path / 'drivers.db'}")
    await store.open()
    try:
        statement = Direct(sa.select(sa.literal(1).label("one")), [])
        async with store.engine.connect() as conn:  # aiosqlite: not a driver of Direct's, SQLAlchemy runs it
            assert await conn.run_sync(lambda sync: [tuple(r) for r in statement.execute(sync, {})]) == [(1,)]
            assert statement.plan(conn.sync_connection.dialect) is None  # type: ignore[union-attr]
        assert await store.read(lambda sync: [tuple(r) for r in statement.execute(sync, {})]) == [(1,)]
        assert await store.read(lambda sync: statement.plan(sync.dialect)) is not None
    finally:
        await store.close()


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(
        st.datetimes(timezones=st.none() | st.timezones()),
        st.dates(),
        st.none(),
    )
)
def test_the_sqlite_date_time_text_is_sqlalchemys(value: Any) -> None:
    """`Direct`'s own SQLite date-time processor writes what SQLAlchemy's writes, for any date-time (naive or in any
    time zone, any year, microseconds or none) and hands everything else to SQLAlchemy's."""
    dialect = sqlite.dialect()
    ours = _bind_processor(sa.DateTime(timezone=True), dialect)
    theirs = sa.DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and theirs is not None
    assert ours(value) == theirs(value)


def test_a_custom_sqlite_storage_format_keeps_sqlalchemys_processor() -> None:
    dialect = sqlite.dialect()
    at = datetime(2026, 12, 3, 8, 9, 10, 123456)
    ours = _bind_processor(sqlite.DATETIME(truncate_microseconds=True), dialect)
    assert ours is not None and ours(at) == "2026-12-03 08:09:10"
    with pytest.raises(TypeError):
        _bind_processor(sa.DateTime(), dialect)("2026-12-03")  # type: ignore[misc]


async def test_an_executemany_processes_a_shared_value_once_and_each_other_value_apart(store: Store) -> None:
    """One memo serves every parameter set of an executemany: the same object in several rows is processed once;
    equal but distinct objects, and different ones, each get their own text."""
    shared = datetime(2026, 12, 3, 1, 2, 3, 4, tzinfo=UTC)
    rows = [
        _row(1, at=shared),
        _row(2, at=datetime(2026, 12, 3, 1, 2, 3, 5, tzinfo=UTC)),
        _row(3, at=shared),
        _row(4, at=datetime(2026, 12, 3, 1, 2, 3, 4, tzinfo=UTC)),
        _row(5, at=None),
    ]
    await store.write(lambda conn: INSERT.executemany(conn, rows))

    def ats(conn: sa.Connection) -> list[Any]:
        return [r[0] for r in conn.execute(sa.text("SELECT at FROM direct_samples ORDER BY id"))]

    stored = await store.read(ats)
    if store.url.startswith("sqlite"):
        assert stored == [
            "2026-12-03 01:02:03.000004",
            "2026-12-03 01:02:03.000005",
            "2026-12-03 01:02:03.000004",
            "2026-12-03 01:02:03.000004",
            None,
        ]
    else:
        assert stored == [r["at"] for r in rows]
