"""The store over real databases, one suite run on each: SQLite (a file) and PostgreSQL (a fresh database).

Contacts, cross-references, group commit under concurrency; schema migrations (fresh, repeated, concurrent, adopting a
database made before migrations) and the migrated schema equal to `metadata`. Fixtures: `tests/databases.py`.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
import types
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from resolvers import migrations
from resolvers.errors import ConfigError
from resolvers.migrations.__main__ import main as migrate
from resolvers.model import Contact
from resolvers.outbox import Operation, Outbox
from resolvers.results import Vendor, VendorStatus
from resolvers.store import LinkUpdate, Store, contacts, deliveries, engine_url, metadata, stored_form
from tests.databases import fresh_postgresql_database


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = Store(store_url)
    await s.open()
    yield s
    await s.close()


def test_stored_date_times_are_read_as_utc() -> None:
    """SQLite's text (without offset, with or without microseconds), text with an offset, naive and aware datetimes
    (asyncpg's): every one an aware UTC datetime of the same instant."""
    from datetime import timezone

    from resolvers.store import _utc

    at = datetime(2026, 12, 2, 5, 6, 7, 890, tzinfo=UTC)
    for value in (
        "2026-12-02 05:06:07.000890",
        "2026-12-02T07:06:07.000890+02:00",
        at.replace(tzinfo=None),
        at.astimezone(timezone(timedelta(hours=-5))),
    ):
        read = _utc(value)
        assert read == at and read is not None and read.tzinfo is UTC, value
    assert _utc("2026-12-02 05:06:07") == at.replace(microsecond=0)
    assert _utc(None) is None


def test_stored_form_is_the_contacts_json_and_content_hash() -> None:
    """A write dumps the model once for both: the same JSON and hash as dumping it for each."""
    contact = Contact.model_validate(
        {"id": "c1", "firstName": "Ada", "details": [{"kind": "EMAIL", "value": "a@b.co", "preferred": True}]}
    )
    data, content_hash = stored_form(contact)
    assert data == orjson.dumps(contact.model_dump(mode="json", by_alias=True)).decode()
    assert content_hash == contact.content_hash()
    assert Contact.model_validate_json(data) == contact


async def test_contact_and_links_round_trip(store: Store) -> None:
    contact = Contact.model_validate(
        {"id": "c1", "firstName": "Ada", "details": [{"kind": "EMAIL", "value": "a@b.co", "preferred": True}]}
    )
    await store.record(
        contact,
        [
            LinkUpdate(Vendor.EROS, VendorStatus.CREATED, remote_id="r-1", hash="h1", payload={"A": 1}),
            LinkUpdate(Vendor.ONESERVE, VendorStatus.UNAVAILABLE, error="TIMEOUT"),
        ],
        "c1",
    )
    stored = await store.get_contact("c1")
    assert stored is not None
    assert stored.contact == contact
    links = {link.vendor: link for link in stored.links}
    assert [link.vendor for link in stored.links] == [Vendor.ONESERVE, Vendor.EROS], "registry order"
    assert (links[Vendor.EROS].remote_id, links[Vendor.EROS].hash, links[Vendor.EROS].payload) == ("r-1", "h1", None)
    # The accepted wire payload is read where changes are sent against it, not with contacts read for GraphQL.
    assert (await store.links("c1"))[Vendor.EROS].payload == {"A": 1}
    page, _ = await store.list_contacts(10, None)
    assert [link.payload for link in page[0].links] == [None, None]
    assert links[Vendor.ONESERVE].remote_id is None
    assert links[Vendor.ONESERVE].last_error == "TIMEOUT"
    assert links[Vendor.EROS].synced_at is not None and links[Vendor.EROS].synced_at.tzinfo is not None


async def test_failure_keeps_what_the_vendor_last_accepted(store: Store) -> None:
    contact = Contact(id="c1")
    await store.record(contact, [LinkUpdate(Vendor.EROS, VendorStatus.CREATED, remote_id="r", hash="h")], "c1")
    await store.record(contact, [LinkUpdate(Vendor.EROS, VendorStatus.UNAVAILABLE, error="VENDOR_ERROR")], "c1")
    link = (await store.links("c1"))[Vendor.EROS]
    assert (link.remote_id, link.hash, link.last_status) == ("r", "h", VendorStatus.UNAVAILABLE)


async def test_newer_contact_replaces_older(store: Store) -> None:
    await store.record(Contact(id="c1", first_name="A"), [], "c1")
    first = await store.get_contact("c1")
    await store.record(Contact(id="c1", first_name="B"), [], "c1")
    second = await store.get_contact("c1")
    assert first is not None and second is not None
    assert second.contact.first_name == "B"
    assert second.created_at == first.created_at
    assert second.updated_at >= first.updated_at


async def test_concurrent_writes_are_all_committed(store: Store) -> None:
    """Hundreds of concurrent writers through the single group-committing writer: none lost, none interleaved."""
    await asyncio.gather(
        *(
            store.record(
                Contact(id=f"c{i:04d}"),
                [LinkUpdate(Vendor.EROS, VendorStatus.CREATED, remote_id=f"r{i}", hash=str(i))],
                f"c{i:04d}",
            )
            for i in range(500)
        )
    )
    assert await store.count_contacts() == 500
    found = await store.get_contacts([f"c{i:04d}" for i in range(0, 500, 7)])
    assert all(found[k].links[0].remote_id == f"r{int(k[1:])}" for k in found)


async def test_one_bad_write_does_not_fail_its_batch(store: Store) -> None:
    def bad(conn: object) -> None:
        raise RuntimeError("boom")

    good = [store.record(Contact(id=f"g{i}"), [], f"g{i}") for i in range(20)]
    results = await asyncio.gather(store.write(bad), *good, return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
    assert results[1:] == [None] * 20
    assert await store.count_contacts() == 20


async def test_write_operations_are_plain_functions(store: Store) -> None:
    """An async operation would never run inside the transaction: the store refuses it instead of committing nothing."""

    async def op(conn: object) -> None:
        return None

    with pytest.raises(TypeError, match="plain function"):
        await store.write(op)  # type: ignore[arg-type]


async def test_paging_by_id(store: Store) -> None:
    for i in range(7):
        await store.record(Contact(id=f"p{i}"), [], f"p{i}")
    page, more = await store.list_contacts(3, None)
    assert [s.contact.id for s in page] == ["p0", "p1", "p2"] and more
    page, more = await store.list_contacts(3, "p5")
    assert [s.contact.id for s in page] == ["p6"] and not more
    page, more = await store.list_contacts(0, None)
    assert page == [] and more


async def test_reads_of_many_ids_and_full_pages(store: Store) -> None:
    """Reads by id run in chunks of 100 ids (one prepared statement per count): 250 ids, some missing, and pages of
    100 over them give each contact once, with its own links, in id order."""
    await asyncio.gather(
        *(
            store.record(
                Contact(id=f"m{i:03d}", firstName=f"F{i}"),
                [
                    LinkUpdate(Vendor.EROS, VendorStatus.CREATED, remote_id=f"e{i}", hash=str(i)),
                    LinkUpdate(Vendor.JIM2, VendorStatus.UNAVAILABLE, error="TIMEOUT"),
                ],
                f"m{i:03d}",
            )
            for i in range(230)
        )
    )
    wanted = [f"m{i:03d}" for i in range(250)]  # the last 20 do not exist
    found = await store.get_contacts(reversed(wanted))
    assert sorted(found) == wanted[:230]
    for key, stored in found.items():
        assert stored.contact.first_name == f"F{int(key[1:])}"
        assert [(link.vendor, link.remote_id) for link in stored.links] == [
            (Vendor.EROS, f"e{int(key[1:])}"),
            (Vendor.JIM2, None),
        ]
    pages, after, more = [], None, True
    while more:
        page, more = await store.list_contacts(100, after)
        pages.append([s.contact.id for s in page])
        after = page[-1].contact.id if page else None
        assert page == [found[s.contact.id] for s in page]
    assert [len(p) for p in pages] == [100, 100, 30]
    assert [i for p in pages for i in p] == wanted[:230]


async def test_reopening_keeps_everything(store_url: str) -> None:
    url = store_url
    first = Store(url)
    await first.open()
    await first.record(Contact(id="keep"), [LinkUpdate(Vendor.EROS, VendorStatus.CREATED, remote_id="r")], "keep")
    await first.close()
    second = Store(url)
    await second.open()
    try:
        assert (await second.links("keep"))[Vendor.EROS].remote_id == "r"
    finally:
        await second.close()


async def test_a_link_keeps_a_newer_deliverys_outcome(store_url: str) -> None:
    """Link updates carry the delivery whose outcome they record: one of a delivery older than the one whose
    success the link last recorded (a completion that ran late) changes nothing; one of no delivery (a pre-flight
    mark) and one of the same or a newer delivery apply; a failure does not raise the bar; and a recorded delivery
    an operator purged holds nothing back."""
    store = Store(store_url)
    await store.open()
    outbox = Outbox(store, owner="test", expire_after_s=3600)
    try:

        def enqueue_op(conn: sa.Connection) -> int:
            queued = outbox.enqueue(
                conn,
                contact_id="c-1",
                vendors=[Vendor.ONESERVE],
                operation=Operation.UPSERT,
                version=1,
                force=False,
                lease_s={Vendor.ONESERVE: 60.0},
            )
            return queued[Vendor.ONESERVE][0]

        def apply(*updates: LinkUpdate) -> Any:
            return store.write(lambda conn: store.apply_links(conn, "c-1", list(updates)))

        await store.record(Contact(id="c-1"), [], "c-1")
        d1, d2, d3, d4, d5 = [await store.write(enqueue_op) for _ in range(5)]
        newer = LinkUpdate(Vendor.ONESERVE, VendorStatus.UPDATED, remote_id="r", hash="new", payload={"v": 2})
        late = LinkUpdate(Vendor.ONESERVE, VendorStatus.CREATED, remote_id="r", hash="old", payload={"v": 1})
        await apply(replace(newer, delivery_id=d2))
        await apply(replace(late, delivery_id=d1))
        link = (await store.links("c-1"))[Vendor.ONESERVE]
        assert (link.hash, link.payload, link.last_status) == ("new", {"v": 2}, VendorStatus.UPDATED)

        await apply(LinkUpdate(Vendor.ONESERVE, VendorStatus.INVALID, error="TOO_LONG"))
        assert (await store.links("c-1"))[Vendor.ONESERVE].last_status is VendorStatus.INVALID
        await apply(replace(late, delivery_id=d2), LinkUpdate(Vendor.EROS, VendorStatus.CREATED, delivery_id=d1))
        links = await store.links("c-1")
        assert (links[Vendor.ONESERVE].hash, links[Vendor.EROS].last_status) == ("old", VendorStatus.CREATED)
        await apply(replace(newer, delivery_id=d3))
        assert (await store.links("c-1"))[Vendor.ONESERVE].hash == "new"
        # A newer delivery that failed changed nothing at the vendor: an older one's late success still applies.
        await apply(LinkUpdate(Vendor.ONESERVE, VendorStatus.QUEUED, error="VENDOR_ERROR", delivery_id=d5))
        await apply(replace(late, delivery_id=d4))
        link = (await store.links("c-1"))[Vendor.ONESERVE]
        assert (link.hash, link.last_status) == ("old", VendorStatus.CREATED)

        # The outbox purged (an operator reclaiming space): SQLite may hand out the same ids again, lower than the
        # one the link recorded; the link is not held back by a delivery that no longer exists.
        await apply(replace(newer, delivery_id=d5))
        await store.write(lambda conn: conn.execute(sa.delete(deliveries)))
        await apply(replace(late, delivery_id=d1))
        assert (await store.links("c-1"))[Vendor.ONESERVE].hash == "old"
    finally:
        await store.close()


async def test_wal_mode(tmp_path: Path) -> None:
    """SQLite only: WAL, synchronous=NORMAL, a busy timeout and foreign keys on every connection."""
    store = Store(f"sqlite:///{tmp_path / 'wal.db'}")
    await store.open()
    try:
        async with store.engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
            settings = [
                (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
                for name in ("synchronous", "busy_timeout", "foreign_keys")
            ]
    finally:
        await store.close()
    assert mode == "wal"
    assert settings == [1, 5000, 1], "NORMAL, 5 s, on"


def _where(record: list[str]) -> Any:
    """A write operation that notes the thread it ran in (each run: a batch may run more than once)."""

    def op(conn: sa.Connection) -> None:
        record.append(threading.current_thread().name)
        conn.execute(sa.text("INSERT INTO contacts VALUES (:id, '{}', 'h', 1, :now, :now)"), {"id": "x", "now": "t"})

    return op


async def test_a_lone_write_commits_on_the_loops_thread(tmp_path: Path) -> None:
    """SQLite: a batch of one commits on the loop's own thread, on a connection that neither waits for locks nor
    checkpoints; a batch larger than `inline_max_ops` still goes to the writer thread."""
    store = Store(f"sqlite:///{tmp_path / 'inline.db'}")
    await store.open()
    try:
        ran: list[str] = []
        await store.write(_where(ran))
        assert ran == [threading.current_thread().name]
        assert (store.inline_batches, store.inline_fallbacks) == (1, 0)
        assert store._inline is not None
        pragmas = ("busy_timeout", "wal_autocheckpoint")
        settings = [store._inline.exec_driver_sql(f"PRAGMA {p}").scalar_one() for p in pragmas]
        store._inline.commit()
        assert settings == [0, 0]
        # A connection SQLAlchemy invalidated would come back with the pool's settings: the store opens its own again.
        store._inline.invalidate()
        await store.write(lambda conn: ran.append(threading.current_thread().name))
        assert ran[-1] == threading.current_thread().name
        settings = [store._inline.exec_driver_sql(f"PRAGMA {p}").scalar_one() for p in pragmas]
        store._inline.commit()
        assert settings == [0, 0]

        # Queued together while the writer is busy with the first: a batch too large for the loop's thread.
        many: list[str] = []

        def note(conn: sa.Connection) -> None:
            many.append(threading.current_thread().name)

        store.inline_max_ops = 2
        await asyncio.gather(*(store.write(note) for _ in range(10)))
        assert any(name.startswith("store-writer") for name in many), many
        # Batches were large lately (load): a lone write goes to the thread too, until small batches are the rule.
        lone: list[str] = []
        for _ in range(8):
            await store.write(note)
            lone.append(many[-1])
        assert lone[0].startswith("store-writer")
        assert lone[-1] == threading.current_thread().name, lone
        assert await store.count_contacts() == 1
    finally:
        await store.close()


async def test_a_write_finding_the_database_locked_leaves_no_cycle_for_the_collector(tmp_path: Path) -> None:
    """The loop's connection finding the lock taken raises inside SQLAlchemy; the error's traceback held frames whose
    locals held the error again, with the batch inside: a cycle only the garbage collector freed (~120 objects a
    write in the benchmark, what its RSS grew by between collections). Now nothing of it is left for the collector."""
    path = tmp_path / "cycles.db"
    store = Store(f"sqlite:///{path}")
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    gc.collect()
    gc.disable()
    try:
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(store.record(Contact(id="c1", firstName="Ada"), [], "c1"))
        for _ in range(500):
            if store.inline_fallbacks:
                break
            await asyncio.sleep(0.01)
        assert store.inline_fallbacks == 1
        other.execute("COMMIT")
        await write
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        errors = [o for o in gc.garbage if isinstance(o, BaseException)]
        frames = {o.f_code.co_name for o in gc.garbage if isinstance(o, types.FrameType)}
        assert errors == [], errors
        assert not frames & {"_commit_inline", "_begin_immediate", "_handle_dbapi_exception"}, frames
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        other.close()
        await store.close()


async def test_a_write_finding_the_database_locked_waits_in_the_writer_thread(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock: the loop's connection gives up at once, before the batch reads
    anything (the loop is never blocked on it), and the batch runs in the writer thread, which waits for the lock
    and commits."""
    path = tmp_path / "locked.db"
    store = Store(f"sqlite:///{path}")
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO contacts VALUES ('other', '{}', 'h', 1, 't', 't')")
        ran: list[str] = []
        write = asyncio.ensure_future(store.write(_where(ran)))
        for _ in range(500):  # the loop runs while the write waits
            if store.inline_fallbacks:
                break
            await asyncio.sleep(0.01)
        assert store.inline_fallbacks == 1
        await asyncio.sleep(0.1)
        assert ran == [], "the batch waits for the lock before it runs"
        assert not write.done()
        other.execute("COMMIT")
        await write
        assert len(ran) == 1 and ran[0].startswith("store-writer"), ran
        assert await store.count_contacts() == 2
    finally:
        other.close()
        await store.close()


@pytest.mark.parametrize("where", ["loop", "writer thread"])
async def test_a_write_reads_under_the_lock_it_writes_under(tmp_path: Path, where: str) -> None:
    """What a write operation reads before its first change is read inside its transaction, with SQLite's write
    lock held: another process cannot commit between the read and the change made from it. (sqlite3 opened the
    transaction only at the first INSERT/UPDATE/DELETE, so such a commit could land in between.)"""
    path = tmp_path / "read-then-write.db"
    store = Store(f"sqlite:///{path}")
    await store.open()
    try:
        seen: list[object] = []

        def read_then_write(conn: sa.Connection) -> None:
            seen.append(conn.execute(sa.select(sa.func.count()).select_from(contacts)).scalar())
            other = sqlite3.connect(path, timeout=0)
            try:
                other.execute("INSERT INTO contacts VALUES ('other', '{}', 'h', 1, 't', 't')")
                other.commit()
                seen.append("another process committed")
            except sqlite3.OperationalError as exc:
                seen.append(str(exc))
            finally:
                other.close()
            conn.execute(
                sa.insert(contacts).values(
                    id="mine",
                    data="{}",
                    hash="h",
                    version=1,
                    created_at=datetime.now(UTC),
                    updated_at=datetime.now(UTC),
                )
            )

        if where == "loop":
            await store.write(read_then_write)
        else:
            ((ok, _),) = await asyncio.to_thread(store._commit_sqlite, [read_then_write])
            assert ok
        assert seen == [0, "database is locked"]
        assert await store.count_contacts() == 1
    finally:
        await store.close()


async def test_the_writer_thread_checkpoints_what_the_loops_connection_commits(tmp_path: Path) -> None:
    """The loop's connection never checkpoints the WAL itself; every `checkpoint_every` of its commits the writer
    thread does, so the WAL does not grow without end."""
    store = Store(f"sqlite:///{tmp_path / 'checkpoint.db'}")
    store.checkpoint_every = 5
    await store.open()
    seen: list[str] = []
    original = store._wal_checkpoint

    def counted() -> None:
        seen.append(threading.current_thread().name)
        original()

    store._wal_checkpoint = counted  # type: ignore[method-assign]
    try:
        for i in range(12):
            await store.record(Contact(id=f"k{i}"), [], f"k{i}")
            if store._checkpoint is not None:
                await store._checkpoint
        assert store.inline_batches == 12
        assert len(seen) == 2 and all(name.startswith("store-writer") for name in seen), seen
    finally:
        await store.close()
    # Everything committed is in the database file once the WAL is gone (close checkpoints and removes it).
    assert not (tmp_path / "checkpoint.db-wal").exists()
    with sqlite3.connect(tmp_path / "checkpoint.db") as conn:
        assert conn.execute("SELECT count(*) FROM contacts").fetchone() == (12,)


async def test_the_wal_is_emptied_while_writes_keep_coming(tmp_path: Path) -> None:
    """One write after another, as a lone client sends them (the checkpoints not awaited): each checkpoint copies the
    WAL back and empties it, so its file stays small. A passive checkpoint (SQLite's answer: frames left in the WAL)
    copied while the loop kept committing, and the WAL grew with every write (9 MB after these 1,000; 6 GB after
    50,000 in the benchmark); a RESTART one left the restart to a commit that, on the loop's connection, did not make
    it."""
    store = Store(f"sqlite:///{tmp_path / 'emptied.db'}")
    store.checkpoint_every = 20
    await store.open()
    wal = tmp_path / "emptied.db-wal"
    answers: list[tuple[int, int, int]] = []
    original = store._wal_checkpoint

    def noted() -> tuple[int, int, int]:
        answer = original()
        answers.append(answer)
        return answer

    store._wal_checkpoint = noted  # type: ignore[method-assign]
    largest = 0
    try:
        for i in range(1000):
            await store.record(Contact(id=f"w{i}", firstName="Ada", lastName="Lovelace"), [], f"w{i}")
            largest = max(largest, wal.stat().st_size)
    finally:
        await store.close()
    assert store.inline_batches > 900  # the loop's connection committed (nearly) all of them
    assert len(answers) >= 10, answers  # one every 20 commits, fewer when one is still running
    assert all(answer == (0, 0, 0) for answer in answers), answers  # not busy, nothing left in the WAL
    assert largest < 5_000_000, f"the WAL grew to {largest} bytes"


async def test_timestamps_read_back_aware_utc(store: Store) -> None:
    before = datetime.now(UTC)
    await store.record(Contact(id="t1"), [LinkUpdate(Vendor.EROS, VendorStatus.CREATED, remote_id="r")], "t1")
    stored = await store.get_contact("t1")
    assert stored is not None
    synced_at = stored.links[0].synced_at
    assert synced_at is not None
    for value in (stored.created_at, stored.updated_at, synced_at):
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= value <= datetime.now(UTC)


# -- migrations -------------------------------------------------------------------------------------------------------


async def _schema_diff(engine: AsyncEngine) -> list[Any]:
    def diff(conn: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, metadata))

    async with engine.connect() as conn:
        return await conn.run_sync(diff)


async def _versions(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars())


async def test_fresh_database_migrates_to_head(store_url: str) -> None:
    store = Store(store_url)
    try:
        assert not await store.migrated(), "an empty database is not at the head revision"
        await store.open()
        assert await store.migrated()
        assert await _versions(store.engine) == list(migrations.head())
        async with store.engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
        assert tables == {"contacts", "vendor_links", "deliveries", "idempotency_keys", "alembic_version"}
    finally:
        await store.close()


async def test_migrated_schema_equals_metadata(store: Store) -> None:
    """Revision by revision, the migrations build exactly the tables, columns, types and indexes of `metadata`."""
    assert await _schema_diff(store.engine) == []


async def test_opening_again_is_a_no_op(store_url: str) -> None:
    first = Store(store_url)
    await first.open()
    await first.record(Contact(id="kept"), [], "kept")
    await first.close()

    second = Store(store_url)
    statements: list[str] = []
    sa.event.listen(
        second.engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(str(args[2]).strip())
    )
    await second.open()
    try:
        changes = [s for s in statements if s.split()[0].upper() in {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE"}]
        assert changes == [], "nothing to migrate the second time"
        assert await second.migrated()
        assert await _versions(second.engine) == list(migrations.head())
        assert await second.count_contacts() == 1
    finally:
        await second.close()


async def test_concurrent_opens_migrate_once(store_url: str) -> None:
    """Gateways starting together on one fresh database: every open succeeds, the schema is built once."""
    stores = [Store(store_url) for _ in range(6)]
    try:
        results = await asyncio.gather(*(s.open() for s in stores), return_exceptions=True)
        assert results == [None] * len(stores), [repr(r) for r in results]
        assert all([await s.migrated() for s in stores])
        assert await _versions(stores[0].engine) == list(migrations.head())
        assert await _schema_diff(stores[0].engine) == []
    finally:
        for s in stores:
            await s.close()


async def test_sqlite_open_waits_for_another_writer_to_switch_to_wal(tmp_path: Path) -> None:
    """A new file whose write lock another process holds: switching it to WAL cannot wait through the busy timeout
    (SQLite fails it at once), so `open()` retries until the lock is free instead of failing."""
    path = tmp_path / "store.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE other_app (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO other_app VALUES (1)")
    switching = sqlite3.connect(path, timeout=5)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        switching.execute("PRAGMA journal_mode=WAL")  # what a lone attempt gets, at once
    switching.close()

    store = Store(f"sqlite:///{path}")
    opening = asyncio.create_task(store.open())
    try:
        await asyncio.sleep(0.3)
        assert not opening.done(), opening.exception() if opening.done() else None
        holder.execute("COMMIT")
        await asyncio.wait_for(opening, 10)
        assert await store.migrated()
        async with store.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one() == "wal"
    finally:
        if not opening.done():
            opening.cancel()
        holder.close()
        await store.close()


@pytest.mark.postgresql
async def test_postgresql_migration_waits_for_the_advisory_lock(postgresql_url: str) -> None:
    """While another process holds the migration lock, open() waits and changes nothing; then it migrates."""
    holder = await asyncpg.connect(postgresql_url)
    store = Store(postgresql_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", migrations.MIGRATION_LOCK_KEY)
        opening = asyncio.create_task(store.open())
        await asyncio.sleep(0.5)
        assert not opening.done(), "open() went ahead without the lock"
        tables = await holder.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables == 0
        await holder.execute("SELECT pg_advisory_unlock($1)", migrations.MIGRATION_LOCK_KEY)
        await asyncio.wait_for(opening, 30)
        assert await store.migrated()
    finally:
        await holder.close()
        await store.close()


@pytest.mark.postgresql
async def test_postgresql_connection_settings(postgresql_url: str) -> None:
    store = Store(postgresql_url)
    await store.open()
    try:
        assert store.engine.dialect.driver == "asyncpg"
        assert store.engine.pool.size() == Store.pg_pool_size  # type: ignore[attr-defined]
        async with store.engine.connect() as conn:
            settings = [
                (await conn.exec_driver_sql(f"SHOW {name}")).scalar_one()
                for name in ("application_name", "TimeZone", "transaction_isolation")
            ]
        # READ COMMITTED: outbox workers in several processes claim rows with FOR UPDATE SKIP LOCKED.
        assert settings == ["contact-gateway", "UTC", "read committed"]
    finally:
        await store.close()


@pytest.mark.postgresql
async def test_postgresql_writes_and_reads_survive_the_server_dropping_pooled_connections(
    postgresql_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server ends every pooled connection (a restart, a failover, an idle-session reaper, pg_terminate_backend):
    the next write, and the next read, run again on a fresh connection instead of failing on the dead one. Seen
    before the fix: right after pg_terminate_backend, a write answered INTERNAL (its batch's only operation ran on
    the dead connection)."""
    store = Store(postgresql_url)
    await store.open()

    async def end_the_pools_connections() -> None:
        # Several connections in the pool: concurrent reads each check one out.
        await asyncio.gather(
            *(store.read(lambda conn: conn.execute(sa.text("SELECT pg_sleep(0.05)"))) for _ in range(4))
        )
        admin = await asyncpg.connect(postgresql_url)
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND application_name = 'contact-gateway'",
                sa.make_url(postgresql_url).database,
            )
        finally:
            await admin.close()
        assert ended >= 2

    def write(n: int) -> Any:
        return lambda conn: conn.execute(sa.select(sa.literal(n, sa.Integer))).scalar()

    try:
        await end_the_pools_connections()
        with caplog.at_level("WARNING", logger="resolvers.store"):
            # One at a time, so each is a batch of one operation (a batch of several already retried each alone).
            assert await store.write(write(1)) == 1
        assert "the transaction runs again on a new one" in caplog.text
        assert await store.write(write(2)) == 2

        await end_the_pools_connections()
        assert await store.read(lambda conn: conn.execute(sa.text("SELECT 3")).scalar()) == 3
        assert await store.write(write(4)) == 4
    finally:
        await store.close()


async def test_database_from_before_migrations_is_adopted(store_url: str) -> None:
    """A database made by the old `create_all` (before the outbox: no `version` column, two tables) is migrated:
    its tables and rows are kept, what is missing is added, and it ends at the head revision."""
    old = sa.MetaData()
    sa.Table(
        "contacts",
        old,
        sa.Column("id", sa.String(50), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    metadata.tables["vendor_links"].to_metadata(old)
    legacy = create_async_engine(engine_url(store_url))
    try:
        async with legacy.begin() as conn:
            await conn.run_sync(old.create_all)
            now = datetime.now(UTC)
            await conn.execute(
                old.tables["contacts"]
                .insert()
                .values(id="old", data='{"id": "old"}', hash="h", created_at=now, updated_at=now)
            )
    finally:
        await legacy.dispose()

    store = Store(store_url)
    await store.open()
    try:
        assert await store.migrated()
        assert await _schema_diff(store.engine) == []
        stored = await store.get_contact("old")
        assert stored is not None and stored.contact == Contact(id="old")
        async with store.engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT version FROM contacts"))).scalar_one() == 1
    finally:
        await store.close()


async def test_a_database_made_by_create_all_is_adopted_as_is(store_url: str) -> None:
    engine = create_async_engine(engine_url(store_url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
    finally:
        await engine.dispose()
    store = Store(store_url)
    await store.open()
    try:
        assert await store.migrated()
        assert await _schema_diff(store.engine) == []
    finally:
        await store.close()


async def test_downgrade_to_base_and_back(store: Store) -> None:
    await migrations.migrate(store.engine, "base", down=True)
    assert not await store.migrated()
    async with store.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    assert tables <= {"alembic_version"}
    await migrations.migrate(store.engine)
    assert await store.migrated()
    assert await _schema_diff(store.engine) == []


# -- configuration ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
        ("sqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("postgresql://u:p%40ss@db.example:5433/gw", "postgresql+asyncpg://u:p%40ss@db.example:5433/gw"),
        ("postgres://u@db/gw", "postgresql+asyncpg://u@db/gw"),
        ("postgresql+asyncpg://u@db/gw", "postgresql+asyncpg://u@db/gw"),
        ("postgresql://u:p%40ss@db/gw?sslmode=require", "postgresql+asyncpg://u:p%40ss@db/gw?ssl=require"),
    ],
)
def test_engine_url(configured: str, expected: str) -> None:
    assert engine_url(configured) == expected


@pytest.mark.parametrize(
    ("configured", "message"),
    [
        ("mysql://x", "store.url: unsupported store 'mysql'"),
        ("postgresql+psycopg://u@db/gw", "store.url: unsupported store 'postgresql+psycopg'"),
        ("postgresql://u:secret@db:notaport/gw", "store.url: not a valid PostgreSQL URL"),
    ],
)
def test_engine_url_refuses(configured: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        engine_url(configured)
    assert message in str(caught.value)
    assert "secret" not in str(caught.value)


@pytest.mark.postgresql
async def test_several_postgresql_databases_at_once() -> None:
    """The helper other tests use for PostgreSQL: each database is separate and is dropped afterwards."""
    async with fresh_postgresql_database() as one, fresh_postgresql_database() as two:
        assert one != two
        for url in (one, two):
            conn = await asyncpg.connect(url)
            try:
                assert await conn.fetchval("SELECT current_database()") == url.rsplit("/", 1)[1]
            finally:
                await conn.close()


async def test_next_due_waits_for_the_lease_of_a_delivery_in_flight(store: Store) -> None:
    """A delivery being sent (leased) is due again only when its lease runs out, not when it was enqueued: the
    worker would otherwise poll for every write in flight. A released one waiting for a retry is due at its time."""
    from resolvers.outbox import Completion, Operation, Outbox
    from resolvers.results import VendorResult

    outbox = Outbox(store, owner="test", expire_after_s=3600)
    contact = Contact.model_validate({"id": "due-1", "firstName": "Ada"})

    def enqueue(conn: sa.Connection) -> dict[Vendor, tuple[int, bool]]:
        version = store.save_contact(conn, contact)
        return outbox.enqueue(
            conn,
            contact_id="due-1",
            vendors=[Vendor.EROS],
            operation=Operation.UPSERT,
            version=version,
            force=False,
            lease_s={Vendor.EROS: 60.0},
        )

    before = datetime.now(UTC)
    assert await outbox.next_due() is None
    ((delivery_id, _),) = (await store.write(enqueue)).values()
    due = await outbox.next_due()
    assert due is not None and due >= before + timedelta(seconds=59), due  # the lease, not the enqueue time
    retry_at = datetime.now(UTC) + timedelta(seconds=5)
    result = VendorResult(vendor=Vendor.EROS, status=VendorStatus.QUEUED)
    await store.write(
        lambda conn: outbox.complete(conn, [Completion(delivery_id, result, retry_at, VendorStatus.UNAVAILABLE)])
    )
    due = await outbox.next_due()
    assert due is not None and abs((due - retry_at).total_seconds()) < 0.01, (due, retry_at)


async def test_writes_wait_behind_a_checkpoint_the_writer_thread_is_late_to_run(tmp_path: Path) -> None:
    """However late the writer thread runs a scheduled checkpoint, the loop's connection commits at most another
    `checkpoint_every` writes meanwhile; the rest go to the writer thread, behind the checkpoint (so the WAL cannot
    outrun it)."""
    store = Store(f"sqlite:///{tmp_path / 'late.db'}")
    store.checkpoint_every = 5
    await store.open()
    release = threading.Event()
    original = store._wal_checkpoint
    started: list[int] = []

    def late() -> tuple[int, int, int]:
        started.append(store.inline_batches)
        release.wait(10)
        return original()

    store._wal_checkpoint = late  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    inline_at_release: list[int] = []

    def let_go() -> None:
        inline_at_release.append(store.inline_batches)
        release.set()

    loop.call_later(0.5, let_go)
    try:
        for i in range(30):
            await store.record(Contact(id=f"l{i}", firstName="Ada"), [], f"l{i}")
    finally:
        release.set()
        await store.close()
    assert started and started[0] == 5, started  # scheduled after the fifth loop-thread commit
    assert inline_at_release == [10], inline_at_release  # five more on the loop, then none until it ran
    with sqlite3.connect(tmp_path / "late.db") as db:
        assert db.execute("SELECT count(*) FROM contacts WHERE id LIKE 'l%'").fetchone()[0] == 30


async def test_an_attempts_outcome_keeps_a_cancel_or_supersede_that_came_meanwhile(store: Store) -> None:
    """`Outbox.complete` records every attempt (attempts, the vendor's answer) but never replaces a status an operator
    (CANCELLED) or a newer write (SUPERSEDED) gave the delivery while the attempt was out; an attempt that would wait
    again behind a newer pending delivery of the same pair is superseded; one without waits (PENDING at its time)."""
    from resolvers.outbox import Completion, DeliveryStatus, Operation, Outbox
    from resolvers.results import VendorResult
    from resolvers.store import deliveries

    outbox = Outbox(store, owner="test", expire_after_s=3600)
    contact = Contact.model_validate({"id": "kept-1", "firstName": "Ada"})

    def enqueue(vendors: list[Vendor]) -> Any:
        def op(conn: sa.Connection) -> dict[Vendor, tuple[int, bool]]:
            version = store.save_contact(conn, contact)
            return outbox.enqueue(
                conn,
                contact_id="kept-1",
                vendors=vendors,
                operation=Operation.UPSERT,
                version=version,
                force=False,
                lease_s=dict.fromkeys(vendors, 60.0),
            )

        return store.write(op)

    first = {vendor: id_ for vendor, (id_, _) in (await enqueue(list(Vendor))).items()}
    # A newer write while every first delivery is in flight: only Valomnia's, which then waits for the worker.
    ((newer_id, sendable),) = (await enqueue([Vendor.VALOMNIA])).values()
    assert not sendable
    refused = await outbox.cancel(first[Vendor.EROS])
    assert isinstance(refused, str) and "being sent to EROS now" in refused, "an operator cannot cancel a send"
    # A status another writer set while an attempt was out (a newer write's supersede, a cancel) is kept by the
    # attempt's completion.
    for vendor, status in ((Vendor.EROS, DeliveryStatus.CANCELLED), (Vendor.JIM2, DeliveryStatus.SUPERSEDED)):
        await store.write(
            lambda conn, v=vendor, s=status: conn.execute(
                sa.update(deliveries).where(deliveries.c.id == first[v]).values(status=s.value)
            )
        )
    retry_at = datetime.now(UTC) + timedelta(seconds=30)

    def done(vendor: Vendor, status: VendorStatus, retry: bool = False) -> Completion:
        result = VendorResult(vendor=vendor, status=VendorStatus.QUEUED if retry else status, attempts=1)
        return Completion(first[vendor], result, retry_at if retry else None, status)

    await store.write(
        lambda conn: outbox.complete(
            conn,
            [
                done(Vendor.EROS, VendorStatus.CREATED),
                done(Vendor.JIM2, VendorStatus.UPDATED),
                done(Vendor.ONESERVE, VendorStatus.CREATED),
                done(Vendor.VALOMNIA, VendorStatus.UNAVAILABLE, retry=True),
                done(Vendor.SUPEROFFICE, VendorStatus.UNAVAILABLE, retry=True),
                Completion(10**9, VendorResult(vendor=Vendor.EROS, status=VendorStatus.CREATED, attempts=1), None),
            ],
        )
    )
    got = {vendor: await outbox.get(id_) for vendor, id_ in first.items()}
    assert {vendor: d.status for vendor, d in got.items() if d is not None} == {
        Vendor.EROS: DeliveryStatus.CANCELLED,
        Vendor.JIM2: DeliveryStatus.SUPERSEDED,
        Vendor.ONESERVE: DeliveryStatus.DELIVERED,
        Vendor.VALOMNIA: DeliveryStatus.SUPERSEDED,
        Vendor.SUPEROFFICE: DeliveryStatus.PENDING,
    }
    assert all(d is not None and d.attempts == 1 and d.lease_owner is None for d in got.values())
    assert got[Vendor.EROS] is not None and got[Vendor.EROS].result_status is VendorStatus.CREATED
    superoffice = got[Vendor.SUPEROFFICE]
    assert superoffice is not None and abs((superoffice.next_attempt_at - retry_at).total_seconds()) < 0.01
    newer = await outbox.get(newer_id)
    assert newer is not None and newer.status is DeliveryStatus.PENDING and newer.attempts == 0
    assert await outbox.get(10**9) is None


@pytest.mark.parametrize(
    ("url", "delivery_id_type"),
    [("sqlite:////tmp/never-opened.db", "INTEGER"), ("postgresql://u:p@127.0.0.1:9/none", "BIGINT")],
    ids=["sqlite", "postgresql"],
)
def test_the_migrations_print_their_sql_without_a_database(
    url: str, delivery_id_type: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`upgrade head --sql` (the SQL for a DBA) connects to nothing: every revision writes its statements, the
    ones that look at an existing database first (0004, 0005) included."""
    migrate(["--url", url, "upgrade", "head", "--sql"])
    script = capsys.readouterr().out
    assert "ALTER TABLE deliveries ADD COLUMN uncertain BOOLEAN" in script
    assert f"ALTER TABLE vendor_links ADD COLUMN delivery_id {delivery_id_type};" in script
    assert f"UPDATE alembic_version SET version_num='{migrations.head()[-1]}'" in script
