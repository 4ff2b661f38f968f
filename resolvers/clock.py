"""The time the store's rows are stamped with: this process's clock, corrected to the database's.

Leases (outbox deliveries, idempotency reservations) are written by one process and compared by another: a host
whose clock runs ahead would take over a delivery another host is still sending, one whose clock lags would hold
its own leases too long. On PostgreSQL, where several hosts share one outbox, `Store` measures how far the
database's clock (`clock_timestamp()`) is from this process's when it opens and every `SYNC_INTERVAL_S` after, and
`utcnow()` adds that offset: every process then stamps and compares on the database's time, whatever its host's
clock says. SQLite is one machine's file: the offset stays zero.

`local_now` is the process's own clock; tests replace it to play a host whose clock is wrong.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

#: How often an open PostgreSQL store measures the offset again (clocks drift; NTP may step one).
SYNC_INTERVAL_S = 60.0
#: Samples per measurement: the one with the shortest round trip is kept (its midpoint is the least uncertain).
SAMPLES = 3


def local_now() -> datetime:
    """This process's clock, in UTC."""
    return datetime.now(UTC)


_offset = timedelta(0)


def utcnow() -> datetime:
    """Now, on the store's clock: `local_now()` plus the measured offset (zero until a PostgreSQL store measures)."""
    return local_now() + _offset


def offset() -> timedelta:
    """The database's clock minus this process's, as last measured."""
    return _offset


def set_offset(value: timedelta) -> None:
    """Use `value` as the database's clock minus this process's from now on."""
    global _offset
    _offset = value


async def measure(database_now: Callable[[], Awaitable[datetime]]) -> tuple[timedelta, float]:
    """The database's clock minus this process's, and the round trip (seconds) of the sample it was read from:
    `SAMPLES` reads of `database_now()`, each compared with the midpoint of the local times around it."""
    best: tuple[timedelta, float] | None = None
    for _ in range(SAMPLES):
        started, before = time.perf_counter(), local_now()
        remote = await database_now()
        rtt = time.perf_counter() - started
        midpoint = before + timedelta(seconds=rtt / 2)
        if best is None or rtt < best[1]:
            best = (remote - midpoint, rtt)
    assert best is not None
    return best
