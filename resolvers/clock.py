"""The time the store's rows are stamped with: the database's clock, carried forward by this process's.

Leases (outbox deliveries, idempotency reservations) are written by one process and compared by another: a host
whose clock runs ahead would take over a delivery another host is still sending, one whose clock lags would hold
its own leases too long. On PostgreSQL, where several hosts share one outbox, `Store` reads the database's clock
(`clock_timestamp()`) when it opens and every `SYNC_INTERVAL_S` after, and `utcnow()` is that reading carried
forward by this process's monotonic clock: every process stamps and compares on the database's time, whatever its
host's wall clock says or does meanwhile (an NTP step between two readings changes nothing). Until a reading, and
on SQLite (one machine's file), `utcnow()` is the host's wall clock.

`local_now` is the host's wall clock; tests replace it to play a host whose clock is wrong.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

#: How often an open PostgreSQL store reads the database's clock again.
SYNC_INTERVAL_S = 60.0
#: Samples per reading: the one with the shortest round trip is kept (its midpoint is the least uncertain).
SAMPLES = 3
#: A reading whose best round trip is longer than this (a busy loop, a slow link) is too uncertain to replace one
#: already in use.
MAX_ROUND_TRIP_S = 0.5


def local_now() -> datetime:
    """This host's wall clock, in UTC."""
    return datetime.now(UTC)


#: The database's time at the last reading, and this process's monotonic time at that moment (None: no reading).
_anchor: tuple[datetime, float] | None = None
#: Open stores that read the database's clock (`Store.open` / `close`): the last one to close forgets the reading.
_readers = 0


def utcnow() -> datetime:
    """Now, on the store's clock: the last reading of the database's clock plus the monotonic time since; the
    host's wall clock when there is no reading."""
    anchor = _anchor
    if anchor is None:
        return local_now()
    database, monotonic = anchor
    return database + timedelta(seconds=time.monotonic() - monotonic)


def offset() -> timedelta:
    """The store's clock minus this host's wall clock now (zero without a reading)."""
    return timedelta(0) if _anchor is None else utcnow() - local_now()


def anchor(database: datetime, monotonic: float) -> None:
    """Follow the database's clock from now on: it read `database` at this process's `monotonic` time."""
    global _anchor
    _anchor = (database, monotonic)


def forget() -> None:
    """Back to the host's wall clock (no reading)."""
    global _anchor
    _anchor = None


def reader_opened() -> None:
    """A store that reads the database's clock has opened."""
    global _readers
    _readers += 1


def reader_closed() -> None:
    """Such a store has closed; the last one forgets the reading (another store may be on another database)."""
    global _readers
    _readers = max(0, _readers - 1)
    if _readers == 0:
        forget()


async def measure(database_now: Callable[[], Awaitable[datetime]]) -> tuple[datetime, float, float]:
    """Read the database's clock: `SAMPLES` calls of `database_now()`, each taken to have been read at the midpoint
    of its round trip. The sample with the shortest round trip: its database time, this process's monotonic time at
    its midpoint, and the round trip in seconds."""
    best: tuple[datetime, float, float] | None = None
    for _ in range(SAMPLES):
        started = time.monotonic()
        remote = await database_now()
        ended = time.monotonic()
        if best is None or ended - started < best[2]:
            best = (remote, (started + ended) / 2, ended - started)
    assert best is not None
    return best
