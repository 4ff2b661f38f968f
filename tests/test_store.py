"""The SQLite store over a real database file: contacts, cross-references, group commit under concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from resolvers.model import Contact
from resolvers.results import Vendor, VendorStatus
from resolvers.store import LinkUpdate, Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'store.db'}")
    await s.open()
    yield s
    await s.close()


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
    assert (links[Vendor.EROS].remote_id, links[Vendor.EROS].hash, links[Vendor.EROS].payload) == (
        "r-1",
        "h1",
        {"A": 1},
    )
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
    async def bad(conn: object) -> None:
        raise RuntimeError("boom")

    good = [store.record(Contact(id=f"g{i}"), [], f"g{i}") for i in range(20)]
    results = await asyncio.gather(store.write(bad), *good, return_exceptions=True)  # type: ignore[arg-type]
    assert isinstance(results[0], RuntimeError)
    assert results[1:] == [None] * 20
    assert await store.count_contacts() == 20


async def test_paging_by_id(store: Store) -> None:
    for i in range(7):
        await store.record(Contact(id=f"p{i}"), [], f"p{i}")
    page, more = await store.list_contacts(3, None)
    assert [s.contact.id for s in page] == ["p0", "p1", "p2"] and more
    page, more = await store.list_contacts(3, "p5")
    assert [s.contact.id for s in page] == ["p6"] and not more
    page, more = await store.list_contacts(0, None)
    assert page == [] and more


async def test_reopening_keeps_everything(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'again.db'}"
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


async def test_wal_mode(store: Store) -> None:
    async with store.engine.connect() as conn:
        mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
    assert mode == "wal"
