"""The gateway's own memory: the last accepted canonical contact and, per vendor, the cross-reference.

SQLAlchemy Core over an async engine: aiosqlite for the embedded SQLite default (WAL), asyncpg for PostgreSQL in
production. The schema is owned by the Alembic migrations in `resolvers/migrations` (`open()` upgrades to the head
under a lock, so several processes may open one database at once); `metadata` below is what they must produce, and a
test holds the two equal on both databases. Every write goes through one
writer task that commits whatever is queued in one transaction (group commit): SQLite allows one writer at a time,
one aiosqlite connection shared by concurrent requests interleaves their transactions, and one commit per batch is
what makes many small writes fast. Reads use their own pooled connections (WAL lets them run beside the writer).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from resolvers import migrations
from resolvers.errors import ConfigError
from resolvers.model import Contact
from resolvers.results import Vendor, VendorStatus
from resolvers.vendors.base import CrossReference

log = logging.getLogger(__name__)
T = TypeVar("T")

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
    sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_deliveries_contact_vendor", "contact_id", "vendor"),
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


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes (everything stored is UTC); asyncpg aware ones, made UTC here.
    if value is None:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _link(row: Any) -> CrossReference:
    return CrossReference(
        contact_id=row.contact_id,
        vendor=Vendor(row.vendor),
        remote_id=row.remote_id,
        hash=row.hash,
        last_status=VendorStatus(row.last_status) if row.last_status else None,
        synced_at=_utc(row.synced_at),
        deleted=bool(row.deleted),
        last_error=row.last_error,
        payload=orjson.loads(row.payload) if row.payload else None,
    )


class Store:
    """Contacts and cross-references, with a single group-committing writer."""

    #: Most operations committed in one transaction.
    max_batch = 256

    #: PostgreSQL pool per process: the writer holds one connection, concurrent reads share the rest. Sized for a
    #: 2-core box (a few workers per machine, many machines on one server: keep the product under max_connections).
    pg_pool_size = 5
    pg_max_overflow = 5

    def __init__(self, url: str) -> None:
        self.url = url
        #: Statements built once and reused (see `_link_upsert`).
        self._statements: dict[tuple[str, bool], Any] = {}
        async_url = engine_url(url)
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
        self._queue: asyncio.Queue[tuple[Callable[[AsyncConnection], Awaitable[Any]], asyncio.Future[Any]]] = (
            asyncio.Queue()
        )
        self._writer: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Migrate the schema to the head revision (under the migration lock) and start the writer."""
        await migrations.migrate(self.engine)
        self._writer = asyncio.create_task(self._write_loop(), name="store-writer")

    async def close(self) -> None:
        """Finish queued writes, stop the writer and release connections."""
        if self._writer is not None:
            await self._queue.join()
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        await self.engine.dispose()

    async def migrated(self) -> bool:
        """True when the database is at the head schema revision (for readiness checks)."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(migrations.at_head)

    async def ping(self) -> bool:
        """True when the store answers a trivial query."""
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return True

    # -- writes ---------------------------------------------------------------------------------------------------

    async def write(self, op: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `op` in the writer's next transaction (committed with whatever else is queued); its result."""
        if self._writer is None:
            raise RuntimeError("store is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put((op, future))
        return await future

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(
        self, batch: list[tuple[Callable[[AsyncConnection], Awaitable[Any]], asyncio.Future[Any]]]
    ) -> None:
        try:
            async with self.engine.begin() as conn:
                results = [await op(conn) for op, _ in batch]
        except Exception:
            if len(batch) == 1:
                _, future = batch[0]
                if not future.done():
                    future.set_exception(_current_exception())
                return
            # One bad operation must not fail its neighbours: commit each alone.
            for item in batch:
                await self._commit([item])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _insert(self, table: sa.Table) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    async def record(self, contact: Contact | None, updates: Sequence[LinkUpdate], contact_id: str) -> None:
        """Save the accepted contact (if given) and what each vendor did with it, in one transaction."""

        async def op(conn: AsyncConnection) -> None:
            if contact is not None:
                await self.save_contact(conn, contact)
            await self.apply_links(conn, contact_id, updates)

        await self.write(op)

    async def save_contact(self, conn: AsyncConnection, contact: Contact) -> int:
        """Within a write: store `contact` as the latest accepted version; returns that version number."""
        now = datetime.now(UTC)
        data = orjson.dumps(contact.model_dump(mode="json", by_alias=True)).decode()
        stmt = self._insert(contacts).values(
            id=contact.id, data=data, hash=contact.content_hash(), version=1, created_at=now, updated_at=now
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[contacts.c.id],
            set_={
                "data": stmt.excluded.data,
                "hash": stmt.excluded.hash,
                "version": contacts.c.version + 1,
                "updated_at": now,
            },
        )
        await conn.execute(stmt)
        version = await conn.scalar(sa.select(contacts.c.version).where(contacts.c.id == contact.id))
        return int(version or 1)

    async def apply_links(self, conn: AsyncConnection, contact_id: str, updates: Sequence[LinkUpdate]) -> None:
        """Within a write: record what each vendor did with the contact (its cross-reference).

        One statement for all vendors (executemany): a value left None keeps what is stored (a failure keeps the
        remote id and hash the vendor last accepted), except `deleted`, set only by updates that say.
        """
        now = datetime.now(UTC)
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
            if chosen:
                await conn.execute(statement, chosen)

    def _link_upsert(self, *, set_deleted: bool) -> Any:
        """The vendor-link upsert (built once per store and kind: statement construction is a real cost)."""
        cached = self._statements.get(("link_upsert", set_deleted))
        if cached is not None:
            return cached
        stmt = self._insert(vendor_links)
        excluded = stmt.excluded
        set_: dict[str, Any] = {
            "last_status": excluded.last_status,
            "last_error": excluded.last_error,
            "synced_at": excluded.synced_at,
            "remote_id": sa.func.coalesce(excluded.remote_id, vendor_links.c.remote_id),
            "hash": sa.func.coalesce(excluded.hash, vendor_links.c.hash),
            "payload": sa.func.coalesce(excluded.payload, vendor_links.c.payload),
        }
        if set_deleted:
            set_["deleted"] = excluded.deleted
        built = stmt.on_conflict_do_update(index_elements=[vendor_links.c.contact_id, vendor_links.c.vendor], set_=set_)
        self._statements[("link_upsert", set_deleted)] = built
        return built

    # -- reads ----------------------------------------------------------------------------------------------------

    async def link_owner(self, vendor: Vendor, remote_id: str) -> str | None:
        """The contact whose live cross-reference at `vendor` is `remote_id`, if any."""
        async with self.engine.connect() as conn:
            owner = await conn.scalar(
                sa.select(vendor_links.c.contact_id)
                .where(
                    vendor_links.c.vendor == vendor.value,
                    vendor_links.c.remote_id == remote_id,
                    vendor_links.c.deleted.is_(False),
                )
                .limit(1)
            )
        return str(owner) if owner is not None else None

    async def links(self, contact_id: str) -> dict[Vendor, CrossReference]:
        """The cross-references of one contact, by vendor."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(vendor_links).where(vendor_links.c.contact_id == contact_id))
            return {link.vendor: link for link in map(_link, rows)}

    async def get_contacts(self, ids: Iterable[str]) -> dict[str, StoredContact]:
        """Several contacts by id (missing ones are absent from the answer), in two queries."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(contacts).where(contacts.c.id.in_(wanted)))).all()
            link_rows = (await conn.execute(sa.select(vendor_links).where(vendor_links.c.contact_id.in_(wanted)))).all()
        return self._assemble(rows, link_rows)

    async def get_contact(self, contact_id: str) -> StoredContact | None:
        """One contact by id."""
        return (await self.get_contacts([contact_id])).get(contact_id)

    async def list_contacts(self, first: int, after: str | None) -> tuple[list[StoredContact], bool]:
        """Up to `first` contacts ordered by id, strictly after `after`; and whether more follow."""
        query = sa.select(contacts).order_by(contacts.c.id).limit(first + 1)
        if after is not None:
            query = query.where(contacts.c.id > after)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            page = rows[:first]
            ids = [r.id for r in page]
            link_rows = (
                (await conn.execute(sa.select(vendor_links).where(vendor_links.c.contact_id.in_(ids)))).all()
                if ids
                else []
            )
        found = self._assemble(page, link_rows)
        return [found[i] for i in ids], len(rows) > first

    async def count_contacts(self) -> int:
        """How many contacts the store holds."""
        async with self.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(contacts))).scalar_one())

    @staticmethod
    def _assemble(rows: Sequence[Any], link_rows: Sequence[Any]) -> dict[str, StoredContact]:
        links: dict[str, list[CrossReference]] = {}
        for row in link_rows:
            links.setdefault(row.contact_id, []).append(_link(row))
        out: dict[str, StoredContact] = {}
        for row in rows:
            out[row.id] = StoredContact(
                contact=Contact.model_validate(orjson.loads(row.data)),
                links=tuple(sorted(links.get(row.id, []), key=lambda link: list(Vendor).index(link.vendor))),
                created_at=_utc(row.created_at) or datetime.now(UTC),
                updated_at=_utc(row.updated_at) or datetime.now(UTC),
                version=int(row.version),
            )
        return out


def _current_exception() -> BaseException:
    import sys

    exc = sys.exc_info()[1]
    assert exc is not None
    return exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers never wait for the writer. NORMAL is durable across process crashes in WAL mode.
    # busy_timeout first: switching a new file to WAL needs a moment of exclusive access when others open it too.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
