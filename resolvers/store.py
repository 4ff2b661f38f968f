"""The gateway's own memory: the last accepted canonical contact and, per vendor, the cross-reference.

SQLAlchemy Core over an async engine: aiosqlite for the embedded SQLite default (WAL), asyncpg for PostgreSQL in
production. The schema is owned by the Alembic migrations in `resolvers/migrations` (`open()` upgrades to the head
under a lock, so several processes may open one database at once); `metadata` below is what they must produce, and a
test holds the two equal on both databases. Every write goes through one
writer task that commits whatever is queued in one transaction (group commit): SQLite allows one writer at a time,
one aiosqlite connection shared by concurrent requests interleaves their transactions, and one commit per batch is
what makes many small writes fast. Reads use their own pooled connections (WAL lets them run beside the writer).

Write operations and reads are plain functions of a synchronous SQLAlchemy `Connection`: on SQLite a whole batch
runs in the writer thread in one hop (and a read in one hop to a reader thread), through the standard library's
sqlite3, not statement by statement through aiosqlite's thread and SQLAlchemy's greenlet bridge, which cost more
than SQLite itself (bench/README.md); on PostgreSQL they run inside `AsyncConnection.run_sync` over asyncpg. The
async engine stays for migrations and for callers that want an `AsyncConnection`.

A small SQLite batch (at most `Store.inline_max_ops` operations, while batches have been that small lately: a lone
request's accept or completion) commits on the event loop's own thread instead, on a connection of its own that
never waits: its `busy_timeout` is 0, so a write lock held by another process makes the batch fall back to the
writer thread (which waits, as before) rather than block the loop, and its automatic WAL checkpoint is off (a
checkpoint copies pages and syncs the file). Instead, every `Store.checkpoint_every` of its commits the writer thread
runs a TRUNCATE checkpoint: it holds new writers off (the loop's batches fall back to the thread meanwhile, queued
behind it) until every frame is back in the database file, then empties the WAL itself. A passive checkpoint would
not do: it copies the frames, but the loop commits new ones while it runs, so the WAL never restarts and grows
without end (6 GB after 50,000 writes, seen). Nor would RESTART, which leaves the restart to the next commit: seen
here, it happened when that commit was the writer thread's and not when it was the loop connection's.
Two thread hand-offs per write were most of what a lone write's transactions cost beyond SQLite's own work
(bench/README.md); under load the batches grow and go to the thread, where SQLite's C code runs beside the loop's
Python.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from resolvers import clock, migrations, observe
from resolvers.errors import ConfigError
from resolvers.model import Contact, payload_hash
from resolvers.results import SUCCESS_STATUSES, Vendor, VendorStatus
from resolvers.sql import BySize, Direct, by_ids, of_ids
from resolvers.vendors.base import CrossReference

log = logging.getLogger(__name__)

#: The database's own time, read for `resolvers.clock` (PostgreSQL's wall clock, not the transaction's start).
_CLOCK_TIMESTAMP = sa.text("SELECT clock_timestamp()")
#: An offset from the database's clock this large is logged: it is a sizeable part of a lease's grace.
CLOCK_WARN_S = 1.0
#: How long one reading of the database's clock may take, and how many tries opening the store makes.
CLOCK_READ_TIMEOUT_S = 10.0
CLOCK_OPEN_ATTEMPTS = 3
T = TypeVar("T")

#: A write operation: runs inside the writer's transaction, on its connection (never awaits).
WriteOp = Callable[[sa.Connection], Any]

metadata = sa.MetaData()

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("id", sa.String(50), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    #: Incremented by every accepted write: deliveries name the version they carry.
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

vendor_links = sa.Table(
    "vendor_links",
    metadata,
    sa.Column("contact_id", sa.String(50), primary_key=True),
    sa.Column("vendor", sa.String(20), primary_key=True),
    sa.Column("remote_id", sa.String(255)),
    sa.Column("hash", sa.String(64)),
    sa.Column("payload", sa.Text),
    sa.Column("last_status", sa.String(20)),
    sa.Column("last_error", sa.Text),
    sa.Column("synced_at", sa.DateTime(timezone=True)),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    #: The delivery whose success the link last recorded (what the vendor holds): an outcome of an older delivery
    #: (a sender that stalled past its lease while a newer write was sent) never overwrites it.
    sa.Column("delivery_id", sa.BigInteger().with_variant(sa.Integer, "sqlite")),
    sa.Index("ix_vendor_links_remote", "vendor", "remote_id"),
)

#: The durable outbox: one row per (accepted write, vendor) until the vendor has it, it fails, or a newer write
#: supersedes it. A row being worked on carries a lease (owner, until) so no two workers send it at once.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("contact_id", sa.String(50), nullable=False),
    sa.Column("vendor", sa.String(20), nullable=False),
    sa.Column("operation", sa.String(10), nullable=False),  # upsert | delete
    sa.Column("contact_version", sa.Integer, nullable=False),
    sa.Column("force", sa.Boolean, nullable=False, default=False),
    sa.Column("status", sa.String(12), nullable=False),  # PENDING DELIVERED FAILED SUPERSEDED CANCELLED
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("result_status", sa.String(20)),  # the VendorStatus of the last attempt
    sa.Column("last_error", sa.Text),
    sa.Column("last_http_status", sa.Integer),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    #: A create it sent may have made a record nothing can find (an ambiguous outcome, or its sender stopped
    #: mid-call): later creates of the pair are held until an operator's retry clears it (migration 0004).
    sa.Column("uncertain", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
    #: The outbox's statements about one contact's deliveries (migration 0003 says why this column order).
    sa.Index("ix_deliveries_contact_status_vendor", "contact_id", "status", "vendor"),
)

#: Idempotency keys: the first answer to a keyed write, replayed to repeats with the same input.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("principal", sa.String(100), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("response", sa.Text),  # null while the first call is still running
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_idempotency_expires", "expires_at"),
)


@dataclass(frozen=True, slots=True)
class StoredContact:
    """A contact as the store holds it, with its cross-references."""

    contact: Contact
    links: tuple[CrossReference, ...]
    created_at: datetime
    updated_at: datetime
    #: How many writes of this contact were accepted.
    version: int = 1


@dataclass(frozen=True, slots=True)
class LinkUpdate:
    """What one operation learnt about one vendor's copy of a contact.

    `remote_id` and `hash` replace the stored ones only when given (a failure keeps what the vendor last accepted).
    """

    vendor: Vendor
    status: VendorStatus
    remote_id: str | None = None
    hash: str | None = None
    error: str | None = None
    deleted: bool | None = None
    #: The wire payload the vendor accepted (kept for partial updates).
    payload: dict[str, Any] | None = None
    #: The delivery whose outcome this is; None for what no delivery sent (pre-flight marks). A link
    #: that recorded a newer delivery's success is left as it is; a success records its delivery on the link.
    delivery_id: int | None = None


#: Accepted spellings of a PostgreSQL store URL (all served by asyncpg).
_POSTGRESQL_SCHEMES = ("postgresql://", "postgres://", "postgresql+asyncpg://")


def engine_url(url: str) -> str:
    """The SQLAlchemy async URL for a configured store URL."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith("sqlite+aiosqlite:///"):
        return url
    for scheme in _POSTGRESQL_SCHEMES:
        if url.startswith(scheme):
            async_url = "postgresql+asyncpg://" + url.removeprefix(scheme)
            try:
                parsed = sa.make_url(async_url)
            except (sa.exc.ArgumentError, ValueError):
                # Never echo the URL: it may carry a password.
                raise ConfigError(
                    "store.url: not a valid PostgreSQL URL (postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
                ) from None
            if "sslmode" in parsed.query:
                # libpq's spelling; asyncpg takes the same values as `ssl`.
                query = dict(parsed.query)
                query["ssl"] = query.pop("sslmode")
                async_url = parsed.set(query=query).render_as_string(hide_password=False)
            return async_url
    raise ConfigError(
        f"store.url: unsupported store {url.split(':', 1)[0]!r} "
        "(supported: sqlite:///PATH, postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
    )


def _utc(value: datetime | str | None) -> datetime | None:
    # SQLite hands back naive datetimes (everything stored is UTC), or their text where a read asked for it (see
    # `_columns`); asyncpg aware ones, made UTC here.
    if value is None:
        return value
    if isinstance(value, str):
        try:
            # SQLAlchemy's SQLite text has no offset: parsing it with one is ~8x cheaper than `.replace(tzinfo=)`
            # after (seven date-times a contact in a page of 100).
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:  # text that carries its own offset
            value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


_VENDORS = {vendor.value: vendor for vendor in Vendor}
_STATUSES = {status.value: status for status in VendorStatus}


def _link(row: Any) -> CrossReference:
    # Positional: a Row's attribute access costs more than the rest of this function (paging reads 500 a page).
    contact_id, vendor, remote_id, hash_, payload, last_status, last_error, synced_at, deleted = row
    return CrossReference(
        contact_id=contact_id,
        vendor=_VENDORS[vendor],
        remote_id=remote_id,
        hash=hash_,
        last_status=_STATUSES[last_status] if last_status else None,
        synced_at=_utc(synced_at),
        deleted=bool(deleted),
        last_error=last_error,
        payload=orjson.loads(payload) if payload else None,
    )


class Store:
    """Contacts and cross-references, with a single group-committing writer."""

    #: Most operations committed in one transaction.
    max_batch = 256

    #: PostgreSQL pool per process: the writer holds one connection, concurrent reads share the rest. Sized for a
    #: 2-core box (a few workers per machine, many machines on one server: keep the product under max_connections).
    pg_pool_size = 5
    pg_max_overflow = 5

    #: SQLite reads run on this many threads (WAL: they never wait for the writer).
    sqlite_readers = 4

    #: A SQLite batch of at most this many operations commits on the event loop's thread (see the module docstring),
    #: while batches have been about that small lately (`_batch_mean`, a moving average, at most `inline_max_mean`):
    #: under load the writer thread's SQLite work runs beside the loop's Python, which pays more than the hand-offs.
    inline_max_ops = 2
    inline_max_mean = 1.5
    #: After this many commits on the loop's connection the writer thread runs a TRUNCATE WAL checkpoint (see the
    #: module docstring).
    checkpoint_every = 100

    def __init__(self, url: str) -> None:
        self.url = url
        #: Statements built once and reused (see `_link_upsert`).
        self._statements: dict[tuple[str, bool], Direct] = {}
        async_url = engine_url(url)
        #: The synchronous engine reads and writes use on SQLite (None on PostgreSQL, which uses `run_sync`).
        self._sync: sa.Engine | None = None
        self._write_thread: ThreadPoolExecutor | None = None
        self._read_threads: ThreadPoolExecutor | None = None
        if async_url.startswith("postgresql"):
            self.engine: AsyncEngine = create_async_engine(
                async_url,
                pool_size=self.pg_pool_size,
                max_overflow=self.pg_max_overflow,
                # Servers and proxies drop idle connections; recycle before they do.
                pool_recycle=1800,
                connect_args={"server_settings": {"application_name": "contact-gateway", "timezone": "UTC"}},
            )
        else:
            self.engine = create_async_engine(async_url)
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            self._sync = sa.create_engine(
                "sqlite:///" + async_url.removeprefix("sqlite+aiosqlite:///"),
                # Connections move between the writer thread and the reader threads (never used by two at once).
                connect_args={"check_same_thread": False},
                # The readers, the writer thread, and the loop's own connection for small batches.
                pool_size=self.sqlite_readers + 2,
                max_overflow=0,
            )
            sa.event.listen(self._sync, "connect", _sqlite_pragmas)
        self._queue: asyncio.Queue[tuple[WriteOp, asyncio.Future[Any]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        #: SQLite: the connection small batches commit on, on the loop's thread (see the module docstring).
        self._inline: sa.Connection | None = None
        self._inline_commits = 0
        self._batch_mean = 1.0
        self._checkpoint: asyncio.Future[tuple[int, int, int]] | None = None
        #: PostgreSQL: measures the database's clock against this process's now and then (`resolvers.clock`).
        self._clock_sync: asyncio.Task[None] | None = None
        #: Batches committed on the loop's thread, and those of them that found the database locked and went to the
        #: writer thread (tests read them).
        self.inline_batches = 0
        self.inline_fallbacks = 0

    async def open(self) -> None:
        """Switch a SQLite file to WAL, migrate the schema to the head revision (under the migration lock) and start
        the writer."""
        if self._sync is not None and self._sync.url.database not in (None, "", ":memory:"):
            await asyncio.to_thread(_use_wal, self._sync.url.database)
        await migrations.migrate(self.engine)
        if self._sync is None:
            # Several hosts may share this database: stamp and compare leases on its clock, not each host's. A
            # store that cannot read it does not open (leasing on the host's clock is what this prevents).
            for attempt in range(CLOCK_OPEN_ATTEMPTS):
                try:
                    await self.sync_clock()
                    break
                except Exception:
                    if attempt + 1 == CLOCK_OPEN_ATTEMPTS:
                        raise
                    log.warning("reading the database's clock failed; trying again", exc_info=True)
                    await asyncio.sleep(0.5)
            clock.reader_opened()
            self._clock_sync = asyncio.create_task(self._clock_loop(), name="store-clock")
        if self._sync is not None:
            self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
            self._read_threads = ThreadPoolExecutor(self.sqlite_readers, thread_name_prefix="store-reader")
            if self.inline_max_ops > 0:
                self._inline = self._open_inline()
        self._writer = asyncio.create_task(self._write_loop(), name="store-writer")

    async def close(self) -> None:
        """Finish queued writes, stop the writer and release connections."""
        if self._clock_sync is not None:
            self._clock_sync.cancel()
            await asyncio.gather(self._clock_sync, return_exceptions=True)
            self._clock_sync = None
            clock.reader_closed()
        if self._writer is not None:
            await self._queue.join()
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
            self._checkpoint = None
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        for pool in (self._write_thread, self._read_threads):
            if pool is not None:
                pool.shutdown(wait=True)
        self._write_thread = self._read_threads = None
        if self._sync is not None:
            self._sync.dispose()
        await self.engine.dispose()

    async def sync_clock(self) -> timedelta:
        """PostgreSQL: read the database's clock and have `clock.utcnow()` follow it; the store's clock minus this
        host's wall clock afterwards (SQLite: nothing to read, zero). A reading with a round trip over
        `clock.MAX_ROUND_TRIP_S` does not replace one in use. Logged when the host's clock is a second or more off."""
        if self._sync is not None:
            return timedelta(0)
        async with asyncio.timeout(CLOCK_READ_TIMEOUT_S), self.engine.connect() as conn:

            async def database_now() -> datetime:
                value: datetime = (await conn.execute(_CLOCK_TIMESTAMP)).scalar_one()
                return value

            database, monotonic, rtt = await clock.measure(database_now)
        previous = clock.offset()
        if rtt > clock.MAX_ROUND_TRIP_S and self._clock_sync is not None:  # a reading is in use already
            log.warning("the database's clock answered in %.0f ms: reading kept from before", rtt * 1000)
            return previous
        clock.anchor(database, monotonic)
        measured = clock.offset()
        if abs(measured.total_seconds()) >= CLOCK_WARN_S and abs((measured - previous).total_seconds()) >= 0.1:
            log.warning(
                "this host's clock is %.3f s %s the database's (read with a %.1f ms round trip); leases follow "
                "the database's clock",
                abs(measured.total_seconds()),
                "behind" if measured > timedelta(0) else "ahead of",
                rtt * 1000,
            )
        return measured

    async def _clock_loop(self) -> None:
        while True:
            await asyncio.sleep(clock.SYNC_INTERVAL_S)
            try:
                await self.sync_clock()
            except Exception:  # the last offset stays in use; the next round tries again
                log.warning("measuring the database's clock failed", exc_info=True)

    async def migrated(self) -> bool:
        """True when the database is at the head schema revision (for readiness checks)."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(migrations.at_head)

    async def ping(self) -> bool:
        """True when the store answers a trivial query."""
        await self.read(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())
        return True

    # -- writes ---------------------------------------------------------------------------------------------------

    async def write(self, op: Callable[[sa.Connection], T]) -> T:
        """Run `op` in the writer's next transaction (committed with whatever else is queued); its result.

        `op` is a plain function of the transaction's connection: it runs in the writer (on SQLite the writer thread,
        or the loop's own thread for a small batch), so it must not touch the event loop, and it may run more than
        once (a batch that fails or finds the database locked is rolled back and run again).
        """
        if self._writer is None:
            raise RuntimeError("store is not open")
        if inspect.iscoroutinefunction(op):
            raise TypeError("Store.write: the operation must be a plain function of the connection, not async")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put((op, future))
        return await future

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                ops = [op for op, _ in batch]
                with observe.store_timer("write"):
                    if self._sync is not None:
                        self._batch_mean += (len(ops) - self._batch_mean) / 8
                        small = (
                            len(ops) <= self.inline_max_ops
                            and self._batch_mean <= self.inline_max_mean
                            and not self._checkpoint_behind()
                        )
                        inline = self._commit_inline(ops) if small else None
                        if inline is not None:
                            outcomes = inline
                        else:
                            loop = asyncio.get_running_loop()
                            outcomes = await loop.run_in_executor(self._write_thread, self._commit_sqlite, ops)
                    else:
                        outcomes = await self._commit_pg(ops)
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
            except Exception as exc:  # the store itself failed (connection lost...): every op in the batch did
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _open_inline(self) -> sa.Connection:
        """The loop's own connection: it never waits for another process's lock and never checkpoints."""
        assert self._sync is not None
        inline = self._sync.connect()
        inline.exec_driver_sql("PRAGMA busy_timeout=0")
        inline.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
        inline.commit()
        return inline

    def _commit_inline(self, ops: list[WriteOp]) -> list[tuple[bool, Any]] | None:
        """On the loop's thread: the batch in one transaction on the loop's connection; None when it must go to the
        writer thread instead (the database is locked by another process, or one of several operations failed and
        each must be committed alone there). Nothing of a batch that returns None stays: it was rolled back."""
        conn = self._inline
        if conn is None:
            return None
        if conn.invalidated:
            # SQLAlchemy would reconnect it with the pool's settings (a 5 s busy timeout): make a new one instead.
            conn.close()
            conn = self._inline = self._open_inline()
        try:
            with conn.begin():
                _begin_immediate(conn)
                outcomes = [(True, op(conn)) for op in ops]
        except Exception as exc:
            if _locked(exc):
                self.inline_fallbacks += 1
                _forget_traceback(exc)
                return None
            return [(False, exc)] if len(ops) == 1 else None
        self.inline_batches += 1
        self._committed()
        return outcomes

    def _committed(self) -> None:
        """After a commit on the loop's connection: every `checkpoint_every` of them, a checkpoint in the writer
        thread. (Batches the writer thread commits need none: its connection checkpoints on its own, and under the
        load that sends batches there, a TRUNCATE checkpoint's waits would only slow it.)"""
        self._inline_commits += 1
        if self._inline_commits < self.checkpoint_every or self._checkpoint is not None:
            return
        self._inline_commits = 0
        self._checkpoint = asyncio.get_running_loop().run_in_executor(self._write_thread, self._wal_checkpoint)
        self._checkpoint.add_done_callback(self._checkpointed)

    def _checkpoint_behind(self) -> bool:
        """A checkpoint is scheduled and another `checkpoint_every` loop-thread commits have come since: the writer
        thread has not yet got to it (seen in CI: a busy machine left the thread unscheduled for over a hundred
        commits, and the WAL grew meanwhile). Batches then go to the writer thread, where they wait behind the
        checkpoint, so the WAL holds at most about twice `checkpoint_every` loop-thread commits however late the
        thread runs."""
        return self._checkpoint is not None and self._inline_commits >= self.checkpoint_every

    def _wal_checkpoint(self) -> tuple[int, int, int]:
        """In the writer thread: every frame of the WAL back into the database file and the WAL emptied; SQLite's
        answer (busy, frames left in the WAL, frames copied): (0, 0, 0) when it did so. TRUNCATE waits, up to the
        busy timeout, for another process's writer and for readers on older snapshots; meanwhile this process's
        loop-thread commits find the lock taken and queue here."""
        assert self._sync is not None
        with self._sync.connect() as conn:
            busy, frames, copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        if busy:
            log.warning("WAL checkpoint: %d of %d frames copied, the database stayed busy", copied, frames)
        return int(busy), int(frames), int(copied)

    def _checkpointed(self, future: asyncio.Future[tuple[int, int, int]]) -> None:
        self._checkpoint = None
        if not future.cancelled() and future.exception() is not None:
            # Not fatal: the WAL keeps growing until a checkpoint succeeds; the next one is tried after as many commits.
            log.error("WAL checkpoint failed", exc_info=future.exception())

    def _commit_sqlite(self, ops: list[WriteOp]) -> list[tuple[bool, Any]]:
        """In the writer thread: run the batch in one transaction (each op alone if one of them fails)."""
        assert self._sync is not None
        try:
            with self._sync.begin() as conn:
                _begin_immediate(conn)
                return [(True, op(conn)) for op in ops]
        except Exception as exc:
            if len(ops) == 1:
                return [(False, exc)]
        # One bad operation must not fail its neighbours: commit each alone.
        return [outcome for op in ops for outcome in self._commit_sqlite([op])]

    async def _commit_pg(self, ops: list[WriteOp], *, reconnected: bool = False) -> list[tuple[bool, Any]]:
        """Run the batch in one transaction (each op alone if one of them fails).

        A connection the server ended while it sat in the pool (a restart, a failover, `pg_terminate_backend`) fails
        the first statement; nothing was committed then, so the batch runs once more on a fresh connection (SQLAlchemy
        has by then marked every connection of the pool older than the failure for replacing). A connection lost
        while committing is not retried: whether the commit happened is unknown, and the error goes to the callers.
        (`pool_pre_ping` would find dead connections at checkout instead, but its round trip cost 0.3 ms on every
        transaction here, bench/README.md.)
        """
        committing = False
        try:
            async with self.engine.connect() as conn:
                transaction = await conn.begin()
                results = await conn.run_sync(lambda sync: [op(sync) for op in ops])
                committing = True
                await transaction.commit()
            return [(True, result) for result in results]
        except Exception as exc:
            if _lost_connection(exc) and not committing and not reconnected:
                log.warning("store: a pooled PostgreSQL connection was gone; the transaction runs again on a new one")
                return await self._commit_pg(ops, reconnected=True)
            if len(ops) == 1:
                return [(False, exc)]
        return [outcome for op in ops for outcome in await self._commit_pg([op], reconnected=reconnected)]

    async def read(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run `fn` (a plain function of a connection) on a read connection: a reader thread on SQLite."""
        with observe.store_timer("read"):
            if self._sync is not None:
                if self._read_threads is None:
                    raise RuntimeError("store is not open")
                return await asyncio.get_running_loop().run_in_executor(self._read_threads, self._read_sqlite, fn)
            try:
                async with self.engine.connect() as conn:
                    return await conn.run_sync(fn)
            except Exception as exc:
                if not _lost_connection(exc):
                    raise
            # A pooled connection the server had ended (see `_commit_pg`): a read is safe to run again.
            async with self.engine.connect() as conn:
                return await conn.run_sync(fn)

    def _read_sqlite(self, fn: Callable[[sa.Connection], T]) -> T:
        assert self._sync is not None
        with self._sync.connect() as conn:
            try:
                return fn(conn)
            finally:
                conn.rollback()  # end the read transaction: WAL keeps old pages while a reader holds a snapshot

    def insert(self, table: sa.Table) -> Any:
        """An INSERT into `table` in the store's dialect (with its `on_conflict_do_nothing` / `_do_update`)."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    async def record(self, contact: Contact | None, updates: Sequence[LinkUpdate], contact_id: str) -> None:
        """Save the accepted contact (if given) and what each vendor did with it, in one transaction."""

        def op(conn: sa.Connection) -> None:
            if contact is not None:
                self.save_contact(conn, contact)
            self.apply_links(conn, contact_id, updates)

        await self.write(op)

    def save_contact(self, conn: sa.Connection, contact: Contact, stored: tuple[str, str] | None = None) -> int:
        """Within a write: store `contact` as the latest accepted version; returns that version number.

        `stored`: the contact's JSON and content hash (`stored_form`), when the caller has them already.
        """
        now = clock.utcnow()
        data, content_hash = stored if stored is not None else stored_form(contact)
        params = {
            "id": contact.id,
            "data": data,
            "hash": content_hash,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        ((version,),) = self._contact_upsert().execute(conn, params)
        return int(version)

    def contact_version(self, conn: sa.Connection, contact_id: str) -> int:
        """Within a read or a write: the contact's stored version (0 when it is not stored)."""
        version = conn.execute(sa.select(contacts.c.version).where(contacts.c.id == contact_id)).scalar()
        return int(version) if version is not None else 0

    def _contact_upsert(self) -> Direct:
        """Insert or replace a contact, bumping its version; returns the version (built once per store)."""
        cached = self._statements.get(("contact_upsert", False))
        if cached is not None:
            return cached
        stmt = self.insert(contacts)
        built = stmt.on_conflict_do_update(
            index_elements=[contacts.c.id],
            set_={
                "data": stmt.excluded.data,
                "hash": stmt.excluded.hash,
                "version": contacts.c.version + 1,
                "updated_at": stmt.excluded.updated_at,
            },
        ).returning(contacts.c.version)
        direct = self._statements[("contact_upsert", False)] = Direct(built, [c.name for c in contacts.columns])
        return direct

    def apply_links(self, conn: sa.Connection, contact_id: str, updates: Sequence[LinkUpdate]) -> None:
        """Within a write: record what each vendor did with the contact (its cross-reference).

        One statement for all vendors (executemany): a value left None keeps what is stored (a failure keeps the
        remote id and hash the vendor last accepted), except `deleted`, set only by updates that say. An update
        of a delivery older than the one whose success the link last recorded changes nothing: what the vendor
        holds since that newer write is already there (a failure of a newer delivery does not count: it changed
        nothing at the vendor, so an older delivery's late success still says what the vendor holds). The vendor
        acted on the older delivery first: its answer came within its `timeout_s`, inside its lease, and the newer
        delivery was sent only once that lease had run out. A recorded delivery that no longer exists (purged by
        an operator) holds nothing back.
        """
        now = clock.utcnow()
        rows = [
            {
                "contact_id": contact_id,
                "vendor": update.vendor.value,
                "remote_id": update.remote_id,
                "hash": update.hash,
                "payload": orjson.dumps(update.payload).decode() if update.payload is not None else None,
                "last_status": update.status.value,
                "last_error": update.error,
                "synced_at": now,
                "deleted": bool(update.deleted),
                "delivery_id": update.delivery_id if update.status in SUCCESS_STATUSES else None,
                "b_guard": update.delivery_id,
            }
            for update in updates
        ]
        for statement, chosen in (
            (
                self._link_upsert(set_deleted=True),
                [r for r, u in zip(rows, updates, strict=True) if u.deleted is not None],
            ),
            (
                self._link_upsert(set_deleted=False),
                [r for r, u in zip(rows, updates, strict=True) if u.deleted is None],
            ),
        ):
            statement.executemany(conn, chosen)

    def _link_upsert(self, *, set_deleted: bool) -> Direct:
        """The vendor-link upsert (built once per store and kind: statement construction is a real cost)."""
        cached = self._statements.get(("link_upsert", set_deleted))
        if cached is not None:
            return cached
        stmt = self.insert(vendor_links)
        excluded = stmt.excluded
        set_: dict[str, Any] = {
            "last_status": excluded.last_status,
            "last_error": excluded.last_error,
            "synced_at": excluded.synced_at,
            "remote_id": sa.func.coalesce(excluded.remote_id, vendor_links.c.remote_id),
            "hash": sa.func.coalesce(excluded.hash, vendor_links.c.hash),
            "payload": sa.func.coalesce(excluded.payload, vendor_links.c.payload),
            "delivery_id": sa.func.coalesce(excluded.delivery_id, vendor_links.c.delivery_id),
        }
        if set_deleted:
            set_["deleted"] = excluded.deleted
        guard = sa.bindparam("b_guard", type_=vendor_links.c.delivery_id.type)
        # The recorded delivery must still be this pair's: one an operator purged no longer holds links back (SQLite
        # reuses the ids of the highest rows once they are deleted).
        recorded = (
            sa.select(deliveries.c.id)
            .where(
                deliveries.c.id == vendor_links.c.delivery_id,
                deliveries.c.contact_id == vendor_links.c.contact_id,
                deliveries.c.vendor == vendor_links.c.vendor,
            )
            .exists()
        )
        not_older = sa.or_(
            guard.is_(None),
            vendor_links.c.delivery_id.is_(None),
            guard >= vendor_links.c.delivery_id,
            ~recorded,
        )
        built = stmt.on_conflict_do_update(
            index_elements=[vendor_links.c.contact_id, vendor_links.c.vendor], set_=set_, where=not_older
        )
        direct = self._statements[("link_upsert", set_deleted)] = Direct(
            built, [c.name for c in vendor_links.columns] + ["b_guard"]
        )
        return direct

    # -- reads ----------------------------------------------------------------------------------------------------

    async def link_owner(self, vendor: Vendor, remote_id: str) -> str | None:
        """The contact whose live cross-reference at `vendor` is `remote_id`, if any."""
        owner = await self.read(
            lambda conn: conn.execute(_LINK_OWNER, {"vendor": vendor.value, "remote_id": remote_id}).scalar()
        )
        return str(owner) if owner is not None else None

    async def links(self, contact_id: str) -> dict[Vendor, CrossReference]:
        """The cross-references of one contact, by vendor."""
        return await self.read(lambda conn: read_links(conn, contact_id))

    async def get_contacts(self, ids: Iterable[str]) -> dict[str, StoredContact]:
        """Several contacts by id (missing ones are absent from the answer), in two queries; their cross-references
        without wire payloads (see `read_contacts`)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        return await self.read(lambda conn: read_contacts(conn, wanted))

    async def get_contact(self, contact_id: str) -> StoredContact | None:
        """One contact by id."""
        return (await self.get_contacts([contact_id])).get(contact_id)

    async def list_contacts(self, first: int, after: str | None) -> tuple[list[StoredContact], bool]:
        """Up to `first` contacts ordered by id, strictly after `after`; and whether more follow. Cross-references
        without wire payloads (see `read_contacts`)."""

        def fn(conn: sa.Connection) -> tuple[list[StoredContact], bool]:
            if after is None:
                rows = _PAGE(first + 1).execute(conn, {})
            else:
                rows = _PAGE_AFTER(first + 1).execute(conn, {"after": after})
            page = rows[:first]
            ids = [row[0] for row in page]
            found = assemble(page, by_ids(_LINK_SUMMARIES_OF, conn, ids))
            return [found[i] for i in ids], len(rows) > first

        return await self.read(fn)

    async def count_contacts(self) -> int:
        """How many contacts the store holds."""
        return await self.read(
            lambda conn: int(conn.execute(sa.select(sa.func.count()).select_from(contacts)).scalar_one())
        )


def stored_form(contact: Contact) -> tuple[str, str]:
    """The JSON a contact is stored as and its content hash (`Contact.content_hash`), from one dump of the model
    (a write needs both; the dump is most of the cost of either)."""
    dumped = contact.model_dump(mode="json", by_alias=True)
    return orjson.dumps(dumped).decode(), payload_hash(dumped)


_LINK_OWNER = (
    sa.select(vendor_links.c.contact_id)
    .where(
        vendor_links.c.vendor == sa.bindparam("vendor"),
        vendor_links.c.remote_id == sa.bindparam("remote_id"),
        vendor_links.c.deleted.is_(False),
    )
    .limit(1)
)


def _columns(table: sa.Table) -> list[Any]:
    """The table's columns for a hot read, date-times as stored: SQLAlchemy's SQLite date-time parser costs more
    per value than the rest of the read, `datetime.fromisoformat` in `_utc` a tenth of it (asyncpg returns
    datetimes whatever the declared type)."""
    return [
        sa.type_coerce(column, sa.String).label(column.name) if isinstance(column.type, sa.DateTime) else column
        for column in table.columns
    ]


#: A link's columns as reads take them (`_link`): the delivery it recorded only guards its updates.
_LINK_COLUMNS = [column for column in _columns(vendor_links) if column.name != "delivery_id"]
#: One contact's links with their payloads: what a write reads first.
_LINKS_OF_ONE = Direct(sa.select(*_LINK_COLUMNS).where(vendor_links.c.contact_id == sa.bindparam("id")), ["id"])
#: The same rows without the accepted wire payload (NULL in its place): what contacts read for GraphQL carry. No
#: field shows a payload, it can be kilobytes per vendor, and parsing five of them per contact cost a page of 100
#: more than the rest of its read. Writes and redeliveries, which send changes against it, read `read_links`.
_LINK_SUMMARIES = sa.select(
    *(sa.null().label("payload") if column.name == "payload" else column for column in _LINK_COLUMNS)
)
_CONTACTS = sa.select(*_columns(contacts))
_LINK_SUMMARIES_OF = of_ids(_LINK_SUMMARIES, vendor_links.c.contact_id)
_CONTACTS_OF = of_ids(_CONTACTS, contacts.c.id)
#: A page of contacts in id order: the first, and the one after a cursor (the limit a literal: one per page size).
_PAGE = BySize(lambda n: Direct(_CONTACTS.order_by(contacts.c.id).limit(n), []))
_PAGE_AFTER = BySize(
    lambda n: Direct(
        _CONTACTS.where(contacts.c.id > sa.bindparam("after", type_=contacts.c.id.type))
        .order_by(contacts.c.id)
        .limit(n),
        ["after"],
    )
)
_VENDOR_ORDER = {vendor: index for index, vendor in enumerate(Vendor)}


def _vendor_order(link: CrossReference) -> int:
    return _VENDOR_ORDER[link.vendor]


def read_links(conn: sa.Connection, contact_id: str) -> dict[Vendor, CrossReference]:
    """Within a read or a write: the cross-references of one contact, by vendor (on the driver's cursor: every write
    reads them)."""
    return {link.vendor: link for link in map(_link, _LINKS_OF_ONE.execute(conn, {"id": contact_id}))}


def read_contacts(conn: sa.Connection, ids: list[str]) -> dict[str, StoredContact]:
    """Within a read or a write: several contacts by id with their cross-references (two queries), as GraphQL
    shows them: without the wire payloads (`CrossReference.payload` is None; `read_links` has them)."""
    if not ids:
        return {}
    return assemble(by_ids(_CONTACTS_OF, conn, ids), by_ids(_LINK_SUMMARIES_OF, conn, ids))


def assemble(rows: Sequence[Any], link_rows: Sequence[Any]) -> dict[str, StoredContact]:
    """Contacts rows and their vendor-link rows (`_CONTACTS` and `_LINK_SUMMARIES` columns, by position: driver rows
    or SQLAlchemy's) as `StoredContact`s, by id."""
    links: dict[str, list[CrossReference]] = {}
    for row in link_rows:
        link = _link(row)
        links.setdefault(link.contact_id, []).append(link)
    out: dict[str, StoredContact] = {}
    for contact_id, data, _hash, version, created_at, updated_at in rows:
        out[contact_id] = StoredContact(
            contact=Contact.model_validate_json(data),
            links=tuple(sorted(links.get(contact_id, ()), key=_vendor_order)),
            created_at=_utc(created_at) or clock.utcnow(),
            updated_at=_utc(updated_at) or clock.utcnow(),
            version=int(version),
        )
    return out


def _begin_immediate(conn: sa.Connection) -> None:
    """Open a SQLite write batch's transaction with the database's write lock taken.

    sqlite3 (and so SQLAlchemy's `begin()`) opens a transaction only before the first INSERT, UPDATE or DELETE: what
    an operation read before its first change was read outside it, and another process's commit could land between
    the read and the change made from it (a delivery completed after its link was read, say). `BEGIN IMMEDIATE`
    takes the lock first, so every operation reads and writes one state no other writer changes meanwhile. It waits
    for another process's lock up to the connection's busy timeout (the loop's connection: not at all, so the batch
    goes to the writer thread)."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _lost_connection(exc: BaseException) -> bool:
    """SQLAlchemy found the database connection gone (and invalidated it, and the pool's older ones)."""
    return isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated


def _locked(exc: BaseException) -> bool:
    """The error SQLite gives a connection that does not wait (`busy_timeout` 0) for another's lock."""
    orig = getattr(exc, "orig", exc)
    return isinstance(orig, sqlite3.OperationalError) and (
        getattr(orig, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(orig)
    )


def _forget_traceback(exc: BaseException) -> None:
    """Drop the tracebacks of an error nobody will see (a lock the writer thread will wait for instead), and of the
    errors it was raised from. Each traceback holds the frames of SQLAlchemy's error handling, whose locals hold the
    error again: a cycle that only the garbage collector frees, with the batch's operations, their contacts and
    results inside. Writes finding the lock taken (a checkpoint running, another process writing) left ~120 objects
    each for the collector, the most of what a write left at all; in the benchmark's 100,000 writes they were
    the saw-tooth of garbage the RSS grew by until the young generation was collected. Without the tracebacks
    reference counting frees them at once."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        error.__traceback__ = None
        orig = getattr(error, "orig", None)
        pending += [error.__cause__, error.__context__, orig if isinstance(orig, BaseException) else None]


#: How long `Store.open()` keeps trying to switch a SQLite file to WAL, and every connection's `busy_timeout` (ms).
SQLITE_BUSY_TIMEOUT_MS = 5000


def _use_wal(path: str) -> None:
    """Switch the SQLite file at `path` to WAL (it stays so: the mode is stored in the file), retrying while others
    hold its lock, for up to `SQLITE_BUSY_TIMEOUT_MS`.

    The switch reads the file, then takes its write lock to change the header; SQLite does not wait through the busy
    timeout for that second step (a reader that waits for the write lock could deadlock), so when another process or
    `Store` is switching or migrating the same new file at that moment it fails at once with "database is locked"
    (seen in CI: six gateways opening one new file together). On a file that is already WAL it only reads."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.001
    conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        while True:
            try:
                mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
                break
            except sqlite3.OperationalError as exc:
                if not _locked(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
    finally:
        conn.close()
    if mode.lower() != "wal":
        raise RuntimeError(f"SQLite kept {path} in journal mode {mode!r}, not WAL")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL (readers never wait for the writer) is set once, by `open()` (`_use_wal`): the mode is stored in the file,
    # and every connection opened after it uses it. NORMAL is durable across process crashes in WAL mode.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
