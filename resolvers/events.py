"""Live delivery status: an in-process publisher of each vendor's status changes for a contact.

The engine (`FanOut`) publishes one `DeliveryEvent` per vendor result once the transaction that recorded it has
committed: the answers of a write, of a delete, and of each redelivery the outbox worker makes (QUEUED while the
vendor is unavailable, then CREATED, UPDATED, REJECTED, ...), and UNCHANGED for a vendor a write did not need to
call. The `deliveryUpdates` subscription reads them through `DeliveryEvents.subscribe`.

Choices:

- Publishing never awaits and never raises: `publish` puts the event into each subscriber's bounded queue with
  `put_nowait`, so a slow (or stuck) subscriber can never delay or fail a write or a redelivery.
- A subscriber that falls behind loses its *oldest* events, never the newest (the newest is the one a status
  display needs): its queue holds at most `queue_size` events, and the next event it reads says in `missed` how many
  were dropped just before it. A client seeing `missed > 0` should re-read the contact's `vendorLinks` (or subscribe
  again, which starts with the current state).
- At most `max_subscribers` subscriptions at once per process; one more is refused (`TooManySubscribers`).
- Events are per process. With `serve --workers N`, or several gateway hosts, a subscriber sees only the writes and
  redeliveries handled by the process its connection landed on. Lifting that needs a shared channel, e.g.
  PostgreSQL `LISTEN`/`NOTIFY` (each process `NOTIFY`s after its commit and relays what it `LISTEN`s to its local
  subscribers); that is not built. The state a subscription starts with is read from the store, so it is right
  whichever process made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from types import TracebackType

from resolvers.clock import utcnow
from resolvers.outbox import Delivery, DeliveryStatus
from resolvers.results import SUCCESS_STATUSES, Vendor, VendorStatus
from resolvers.vendors.base import CrossReference

log = logging.getLogger(__name__)

#: Events one subscriber may have waiting before the oldest are dropped.
QUEUE_SIZE = 256
#: Subscriptions one process serves at once.
MAX_SUBSCRIBERS = 10_000


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """One vendor's status for one contact, as it changed (or, with `snapshot`, as it stood on subscribing)."""

    contact_id: str
    vendor: Vendor
    status: VendorStatus
    #: The outbox delivery that carried the write (None for UNCHANGED: nothing was sent).
    delivery_id: int | None
    #: Calls made to the vendor for this delivery so far (every try, the background ones included).
    attempts: int
    #: Error codes and the first message (already scrubbed of credentials), as the delivery row keeps them.
    error: str | None
    #: When it happened (UTC).
    at: datetime
    #: For QUEUED: when the outbox tries again.
    next_attempt_at: datetime | None = None
    #: The vendor's id for the contact, once it has one.
    remote_id: str | None = None
    #: True for the current state sent first on subscribing, False for a change as it happens.
    snapshot: bool = False
    #: Events this subscriber lost just before this one because it read too slowly.
    missed: int = 0


class TooManySubscribers(Exception):
    """The process already serves `max_subscribers` subscriptions."""


class Feed:
    """One subscriber's events for one contact: registered on creation, an async iterator, closed on `close`."""

    def __init__(self, owner: DeliveryEvents, contact_id: str, queue_size: int) -> None:
        self._owner = owner
        self.contact_id = contact_id
        self._queue: asyncio.Queue[DeliveryEvent] = asyncio.Queue(maxsize=queue_size)
        #: Events dropped since the last one read.
        self.dropped = 0
        self.closed = False

    def offer(self, event: DeliveryEvent) -> None:
        """Queue an event without waiting: when full, the oldest waiting event makes room (and is counted)."""
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
                self.dropped += 1
        self._queue.put_nowait(event)

    def __aiter__(self) -> AsyncIterator[DeliveryEvent]:
        return self

    async def __anext__(self) -> DeliveryEvent:
        if self.closed:
            raise StopAsyncIteration
        event = await self._queue.get()
        if self.dropped:
            event, self.dropped = replace(event, missed=self.dropped), 0
        return event

    def close(self) -> None:
        """Stop receiving events (idempotent)."""
        if not self.closed:
            self.closed = True
            self._owner._remove(self)

    def __enter__(self) -> Feed:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class DeliveryEvents:
    """The process's publisher: subscribers by contact id."""

    def __init__(self, *, queue_size: int = QUEUE_SIZE, max_subscribers: int = MAX_SUBSCRIBERS) -> None:
        self.queue_size = queue_size
        self.max_subscribers = max_subscribers
        self._feeds: dict[str, set[Feed]] = {}
        self._count = 0

    @property
    def subscribers(self) -> int:
        """Subscriptions open now."""
        return self._count

    def subscribe(self, contact_id: str) -> Feed:
        """Start receiving `contact_id`'s events now (before reading any snapshot, so nothing falls in between).

        Use as a context manager, or call `close()`: a feed nobody closes keeps receiving (bounded) events.
        """
        if self._count >= self.max_subscribers:
            raise TooManySubscribers(f"this process already serves {self.max_subscribers} live subscriptions")
        feed = Feed(self, contact_id, self.queue_size)
        self._feeds.setdefault(contact_id, set()).add(feed)
        self._count += 1
        return feed

    def _remove(self, feed: Feed) -> None:
        feeds = self._feeds.get(feed.contact_id)
        if feeds is not None and feed in feeds:
            feeds.discard(feed)
            self._count -= 1
            if not feeds:
                del self._feeds[feed.contact_id]

    def watched(self, contact_id: str) -> bool:
        """Whether anyone subscribes to `contact_id` now (a writer need not build events nobody receives)."""
        return contact_id in self._feeds

    def publish(self, event: DeliveryEvent) -> None:
        """Hand an event to every subscriber of its contact; never waits, never raises."""
        try:
            for feed in tuple(self._feeds.get(event.contact_id, ())):
                feed.offer(event)
        except Exception:  # a bug here must not fail the write that published
            log.exception("publishing a delivery event failed")

    def publish_all(self, events: Iterable[DeliveryEvent]) -> None:
        """`publish` each event."""
        for event in events:
            self.publish(event)


def current_state(
    contact_id: str, links: dict[Vendor, CrossReference], open_deliveries: dict[tuple[str, Vendor], list[Delivery]]
) -> list[DeliveryEvent]:
    """Where the contact stands at each vendor, from the store, as snapshot events in vendor order.

    A vendor with a PENDING delivery is QUEUED (that delivery, its attempts and its next try); otherwise the vendor
    link's last status, error and time, with the newest FAILED delivery's id when the last operation failed (an
    operator can `retryDelivery` it). A vendor with neither is left out.
    """
    events = []
    now = utcnow()
    for vendor in Vendor:
        link = links.get(vendor)
        deliveries = open_deliveries.get((contact_id, vendor), [])
        pending = next((d for d in deliveries if d.status is DeliveryStatus.PENDING), None)
        if pending is not None:
            events.append(
                DeliveryEvent(
                    contact_id=contact_id,
                    vendor=vendor,
                    status=VendorStatus.QUEUED,
                    delivery_id=pending.id,
                    attempts=pending.attempts,
                    error=pending.last_error,
                    at=pending.updated_at,
                    next_attempt_at=pending.next_attempt_at,
                    remote_id=link.remote_id if link is not None else None,
                    snapshot=True,
                )
            )
            continue
        if link is None or link.last_status is None:
            continue
        failed = next((d for d in deliveries if d.status is DeliveryStatus.FAILED), None)
        ok = link.last_status in SUCCESS_STATUSES
        events.append(
            DeliveryEvent(
                contact_id=contact_id,
                vendor=vendor,
                status=link.last_status,
                delivery_id=failed.id if failed is not None and not ok else None,
                attempts=failed.attempts if failed is not None and not ok else 0,
                error=(failed.last_error if failed is not None and not ok else None) or link.last_error,
                at=link.synced_at or now,
                remote_id=link.remote_id,
                snapshot=True,
            )
        )
    return events
