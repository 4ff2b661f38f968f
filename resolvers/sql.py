"""The write path's statements and the hot reads, run straight on the database driver's cursor.

Through `Connection.execute` a statement costs SQLAlchemy 0.1-0.2 ms on this machine before the database sees it
(cache key, execution context, parameter processing, result wrapping): more than SQLite takes to run it, and a write
runs about eight, in the writer thread that holds the GIL the event loop needs (bench/README.md); a page of contacts
read its 500 link rows through SQLAlchemy's result rows, whose attribute access cost more than the query. `Direct`
compiles a Core statement once per dialect and keeps what SQLAlchemy would work out on every call: the SQL text, the
order of its parameters and each parameter type's bind processor, so that a value is stored exactly as SQLAlchemy
stores it (a date-time on SQLite as SQLAlchemy's text, which the outbox's comparisons rely on).

What it does not do, and refuses when a statement needs it: expanding IN parameters (`bindparam(expanding=True)`),
Python-side column defaults (an INSERT must name every column that has one), named-parameter drivers (those run
through `Connection.execute`, unchanged). Rows come back as the driver hands them (no result processing: SQLite's
date-times as text, booleans as 0 and 1), so callers unpack by position and convert as `resolvers.store._link` does.
Statement events (`before_cursor_execute`) do not see these statements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

#: Drivers whose cursors this module has been tested against (sqlite3; asyncpg through SQLAlchemy's adapter).
_DRIVERS = frozenset({"pysqlite", "asyncpg"})
_MISSING = object()


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    #: The parameter list with every fixed (literal) value in place, processed; `keyed` slots are filled per call.
    template: tuple[Any, ...]
    keyed: tuple[tuple[int, str, Callable[[Any], Any] | None], ...]
    returns_rows: bool

    def values(self, params: Mapping[str, Any], processed: dict[tuple[int, int], Any] | None = None) -> list[Any]:
        """The statement's parameters for `params`. `processed` memoises bind processors' answers by the ids of the
        processor and the value: one object given several times (a write's `now` in every row of an enqueue, or in
        every parameter set of an executemany, which passes one dict for all its rows, all of them alive meanwhile)
        is processed once. SQLite's date-time processor is most of this function's cost."""
        values = list(self.template)
        if processed is None:
            processed = {}
        for index, key, process in self.keyed:
            value = params[key]
            if process is None:
                values[index] = value
                continue
            seen = (id(process), id(value))
            done = processed.get(seen, _MISSING)
            if done is _MISSING:
                done = processed[seen] = process(value)
            values[index] = done
        return values


#: SQLAlchemy's SQLite date-time text (its `DATETIME` type's default storage format).
_SQLITE_DATETIME_FORMAT = "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"


def _bind_processor(type_: sa.types.TypeEngine[Any], dialect: sa.Dialect) -> Callable[[Any], Any] | None:
    """The type's bind processor for `dialect`, except SQLite's date-time with the default storage format, whose
    text is made by one positional `%` instead of SQLAlchemy's mapping (2.5 -> 1.2 us; a write binds ~50). Same
    text: the date and time fields as given, any time zone ignored (tests/test_sql.py holds the two equal); what is
    not a `datetime` (None, a `date`, a wrong type) goes to SQLAlchemy's own processor."""
    impl = type_.dialect_impl(dialect)
    process = impl.bind_processor(dialect)
    if (
        process is None
        or not isinstance(impl, sqlite.DATETIME)
        or getattr(impl, "_storage_format", None) != _SQLITE_DATETIME_FORMAT
    ):
        return process
    sqlalchemy_process = process

    def fast(value: Any) -> Any:
        if type(value) is datetime:
            # A positional `%`: faster here than SQLAlchemy's mapping (2.5 us) and than an f-string (2.2 us).
            return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                value.microsecond,
            )
        return sqlalchemy_process(value)

    return fast


class Direct:
    """A Core statement compiled once per dialect and executed on the DBAPI cursor of a `Connection`.

    `keys`: the parameters every call supplies; every other parameter of the compiled statement must carry its
    value (a literal in the statement). Checked when the statement is first compiled for a dialect.
    """

    def __init__(self, statement: sa.ClauseElement, keys: Iterable[str]) -> None:
        self.statement = statement
        self.keys = frozenset(keys)
        #: By (dialect, driver): SQLite is reached through two drivers here (sqlite3 for the store's writes and reads,
        #: aiosqlite for migrations), and only the cursors in `_DRIVERS` take the short path.
        self._plans: dict[tuple[str, str], _Plan | None] = {}

    def plan(self, dialect: sa.Dialect) -> _Plan | None:
        """The compiled plan for `dialect`, or None when its driver takes named parameters (or is not one of ours)."""
        key = (dialect.name, dialect.driver)
        try:
            return self._plans[key]
        except KeyError:
            pass
        plan = self._compile(dialect) if dialect.driver in _DRIVERS else None
        self._plans[key] = plan
        return plan

    def _compile(self, dialect: sa.Dialect) -> _Plan | None:
        compiled: Any = self.statement.compile(dialect=dialect)
        if not compiled.positional or compiled.positiontup is None:
            return None
        if "__[POSTCOMPILE_" in compiled.string:
            raise ValueError("Direct: expanding parameters are not supported; build one statement per size")
        if compiled.insert_prefetch or compiled.update_prefetch:
            names = [c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
            raise ValueError(f"Direct: columns {names} have Python-side defaults; give them values")
        template: list[Any] = []
        keyed: list[tuple[int, str, Callable[[Any], Any] | None]] = []
        for index, name in enumerate(compiled.positiontup):
            bind = compiled.binds[name]
            process = _bind_processor(bind.type, dialect)
            if name in self.keys:
                keyed.append((index, name, process))
                template.append(None)
            elif bind.required:
                raise ValueError(f"Direct: parameter {name!r} has no value and is not in keys")
            else:
                value = bind.effective_value
                template.append(value if process is None else process(value))
        return _Plan(
            compiled.string,
            tuple(template),
            tuple(keyed),
            isinstance(self.statement, sa.Select) or bool(compiled.effective_returning),
        )

    def execute(self, conn: sa.Connection, params: Mapping[str, Any]) -> Sequence[Any]:
        """Run once; the rows it returns (driver rows, by position), or an empty list."""
        plan = self.plan(conn.dialect)
        if plan is None:
            result = conn.execute(self.statement, dict(params))  # type: ignore[call-overload]
            return result.all() if result.returns_rows else []
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(plan.sql, plan.values(params))
            return cursor.fetchall() if plan.returns_rows else []
        finally:
            cursor.close()

    def executemany(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per parameter set, in one driver call (no rows returned)."""
        if not rows:
            return
        plan = self.plan(conn.dialect)
        if plan is None:
            conn.execute(self.statement, [dict(row) for row in rows])  # type: ignore[call-overload]
            return
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            processed: dict[tuple[int, int], Any] = {}
            cursor.executemany(plan.sql, [plan.values(row, processed) for row in rows])
        finally:
            cursor.close()


class BySize:
    """`Direct` statements that differ only in how many items they take (an IN list, rows of a multi-row INSERT),
    built on first use for each size by `build(n)`."""

    def __init__(self, build: Callable[[int], Direct]) -> None:
        self._build = build
        self._made: dict[int, Direct] = {}

    def __call__(self, n: int) -> Direct:
        made = self._made.get(n)
        if made is None:
            made = self._made[n] = self._build(n)
        return made


#: Ids per statement of a read by ids (`of_ids`): one statement per count up to this, longer lists in chunks, so the
#: statements made stay few and far under SQLite's parameter limit.
IDS_CHUNK = 100


def of_ids(select: sa.Select[Any], column: sa.Column[Any]) -> BySize:
    """`select` of the rows whose `column` is one of n ids (parameters `id_0`...), one `Direct` statement per n;
    run it with `by_ids`."""

    def build(n: int) -> Direct:
        ids = [sa.bindparam(f"id_{k}", type_=column.type) for k in range(n)]
        return Direct(select.where(column.in_(ids)), [f"id_{k}" for k in range(n)])

    return BySize(build)


def by_ids(statement: BySize, conn: sa.Connection, ids: Sequence[Any]) -> list[Any]:
    """The driver rows of `statement` (an `of_ids`) for every id in `ids`, `IDS_CHUNK` ids at a time."""
    rows: list[Any] = []
    for start in range(0, len(ids), IDS_CHUNK):
        chunk = ids[start : start + IDS_CHUNK]
        rows.extend(statement(len(chunk)).execute(conn, {f"id_{k}": value for k, value in enumerate(chunk)}))
    return rows
