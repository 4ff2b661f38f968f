"""The engine: validate a contact for every targeted vendor, call them concurrently, remember what each said.

Each vendor runs in its own task under its own deadline (`timeout_s`, all attempts included), concurrency limit,
rate limit and circuit breaker; one slow or failing vendor never delays or fails the others beyond its deadline.
A transient failure is retried when repeating the call cannot duplicate the record: the vendor upserts natively,
the call updates a known remote id (unless the record is gone there and the connector falls through to a create:
`sending_create`), the connector looks for the record it may already have made before creating, the request
surely never reached the vendor, or the vendor answered that it failed (5xx, 429). A create that got
no answer at all, a success it cannot read, or one of the vendor's `ambiguous_statuses` (a proxy's 502/504) may
have been made: a repeat looks it up first, and where nothing can find it again it is ambiguous: its delivery is
FAILED for an operator to check, never repeated on its own.

Nothing accepted is lost: the contact and one outbox delivery per vendor to call are committed in one transaction
before any vendor is called; each vendor's answer completes its delivery in a second transaction. A vendor still
unavailable when its in-request attempts are spent is QUEUED and redelivered by `OutboxWorker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection

from resolvers import observe
from resolvers.breaker import BreakerState, CircuitBreaker
from resolvers.clock import utcnow
from resolvers.errors import BeyondAllowList, RateLimited, VendorError, VendorTimeout, VendorUnavailable
from resolvers.events import DeliveryEvent, DeliveryEvents
from resolvers.model import Contact, payload_hash
from resolvers.outbox import (
    Completion,
    Delivery,
    Operation,
    Outbox,
    describe_errors,
    lock_contact,
    read_open,
)
from resolvers.results import (
    SUCCESS_STATUSES,
    ErrorCode,
    FieldError,
    UpsertStatus,
    Vendor,
    VendorResult,
    VendorStatus,
    overall_status,
)
from resolvers.store import LinkUpdate, Store, StoredContact, read_contacts, read_links, stored_form
from resolvers.vendors.base import CURRENT_ATTEMPT, AttemptState, Connector, CrossReference, Delivered, Prepared

log = logging.getLogger(__name__)

#: First in-request retry waits about this long; each further one doubles it (with full jitter).
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    """How queued deliveries are kept and redelivered (`[outbox]` in the configuration)."""

    #: A delivery not made within this long is FAILED.
    expire_after_s: float = 86_400.0
    #: A lease outlives the vendor's deadline by this much before another worker may take the delivery over.
    lease_grace_s: float = 5.0
    #: Redelivery backoff: the first retry after about this long, doubling, capped.
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    #: How often a worker looks for due deliveries made by other processes.
    poll_interval_s: float = 1.0
    #: Deliveries one worker sends at once.
    max_parallel: int = 16


@dataclass(frozen=True, slots=True)
class Readback:
    """A contact as stored right after a write, and its open (pending or failed) deliveries by vendor."""

    contact: StoredContact | None
    open_deliveries: dict[tuple[str, Vendor], list[Delivery]]


def _read_back(conn: Connection, contact_id: str) -> Readback:
    return Readback(read_contacts(conn, [contact_id]).get(contact_id), read_open(conn, [contact_id]))


@dataclass(slots=True)
class Outcome:
    """One operation's answer: the overall status, the contact id, and one result per targeted vendor."""

    status: UpsertStatus
    contact_id: str
    results: list[VendorResult]
    stored: bool


class RateLimit:
    """At most `rate` calls per second to a vendor, evenly spaced (no bursts); 0 means unlimited.

    Spacing rather than a token bucket: a bucket lets a burst plus a second's refill into one second, and a vendor
    that counts per second would throttle that.
    """

    def __init__(self, rate: float, vendor: Vendor | None = None) -> None:
        self.rate = rate
        self.vendor = vendor
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until a call may start."""
        if self.rate <= 0:
            return
        async with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + 1.0 / self.rate
        if wait > 0:
            if self.vendor is not None:
                observe.rate_limit_waited(self.vendor, wait)
            await asyncio.sleep(wait)


@dataclass(slots=True)
class VendorHealth:
    """What this process last saw of a vendor (for `/readyz?verbose=1` and the `vendors` query)."""

    #: The vendor answered the last call (any answer, a rejection included); None before any call.
    reachable: bool | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    #: The error code of the last failure (`VENDOR_ERROR`, `TIMEOUT`, ...).
    last_failure_code: str | None = None

    def record(self, result: VendorResult) -> None:
        """Note one finished vendor operation."""
        now = utcnow()
        if result.status in SUCCESS_STATUSES:
            self.reachable = True
            self.last_success_at = now
            return
        if result.status in (VendorStatus.UNAVAILABLE, VendorStatus.QUEUED, VendorStatus.REJECTED):
            self.last_failure_at = now
            self.last_failure_code = result.errors[0].code.value if result.errors else result.status.value
            self.reachable = result.status is VendorStatus.REJECTED or result.http_status is not None


def _breaker_moved(vendor: Vendor, state: BreakerState) -> None:
    observe.breaker_moved(vendor, state.value)


def default_owner() -> str:
    """This process's name on the leases it takes: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class BreakerOpen(VendorUnavailable):
    """The vendor's circuit breaker is open: the call was not made."""


def backoff(attempt: int, retry_after: float | None, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Delay before attempt `attempt + 1`: at least the vendor's Retry-After, else capped exponential full jitter."""
    jitter = random.uniform(0, min(cap, base * 2 ** max(attempt - 1, 0)))
    return max(retry_after, jitter) if retry_after is not None else jitter


@dataclass(slots=True)
class _Sent:
    """What one vendor call of an operation needs for its completion transaction."""

    delivery_id: int
    result: VendorResult
    hash: str | None = None
    payload: dict[str, Any] | None = None
    #: Calls made for this delivery before this one (a redelivery's earlier tries), for the published event.
    prior_attempts: int = 0


class FanOut:
    """Runs operations across the configured vendors and records the outcome in the store and the outbox."""

    def __init__(
        self,
        connectors: dict[Vendor, Connector[Any]],
        store: Store,
        outbox: Outbox | None = None,
        settings: OutboxSettings | None = None,
        events: DeliveryEvents | None = None,
    ) -> None:
        self.connectors = connectors
        self.store = store
        #: Where each vendor's status change is published once committed (`deliveryUpdates`); None: nowhere.
        self.events = events
        self.settings = settings or OutboxSettings()
        self.outbox = outbox or Outbox(store, owner=default_owner(), expire_after_s=self.settings.expire_after_s)
        self._slots = {v: asyncio.Semaphore(c.settings.max_concurrency) for v, c in connectors.items()}
        self._rates = {v: RateLimit(c.settings.rate_per_s, v) for v, c in connectors.items()}
        self.breakers = {
            v: CircuitBreaker(
                c.settings.breaker_threshold,
                c.settings.breaker_cooldown_s,
                on_change=partial(_breaker_moved, v),
            )
            for v, c in connectors.items()
        }
        self.health = {v: VendorHealth() for v in connectors}
        #: Set when a delivery is queued, so this process's worker looks at once.
        self.wakeup = asyncio.Event()
        for vendor, connector in connectors.items():
            connector.link_owner = partial(store.link_owner, vendor)

    def targets(self, vendors: Sequence[Vendor] | None) -> list[Vendor]:
        """The vendors an operation addresses, in registry order: all configured ones when none are named."""
        if vendors is None:
            return list(self.connectors)
        wanted = set(vendors)
        return [v for v in Vendor if v in wanted]

    def lease_s(self, vendor: Vendor) -> float:
        """How long a delivery to `vendor` stays leased to the process sending it."""
        return float(self.connectors[vendor].settings.timeout_s) + self.settings.lease_grace_s

    def write_leases(self, vendors: Iterable[Vendor]) -> dict[Vendor, float]:
        """The leases of one request's deliveries: each as long as the longest of them. A request records every
        vendor's outcome in one transaction once the last has answered, so a fast vendor's delivery is held until
        the slowest vendor's deadline; with only its own lease it would run out meanwhile, a worker would send a
        newer write, and the late completion would then record the older payload as what the vendor holds."""
        chosen = list(vendors)
        longest = max((self.lease_s(v) for v in chosen), default=0.0)
        return dict.fromkeys(chosen, longest)

    def _not_configured(self, vendor: Vendor) -> VendorResult:
        return _skipped(vendor, ErrorCode.NOT_SUPPORTED, "vendor is not configured")

    # -- validation -----------------------------------------------------------------------------------------------

    def prepare(self, contact: Contact, vendors: Sequence[Vendor] | None) -> dict[Vendor, Prepared | VendorResult]:
        """Each targeted vendor's prepared payload, or its SKIPPED result when it is not configured."""
        out: dict[Vendor, Prepared | VendorResult] = {}
        for vendor in self.targets(vendors):
            connector = self.connectors.get(vendor)
            out[vendor] = self._not_configured(vendor) if connector is None else connector.prepare(contact)
        return out

    def validate(self, contact: Contact, vendors: Sequence[Vendor] | None) -> list[VendorResult]:
        """Dry run: every vendor's pre-flight verdict (VALID or INVALID with every violated rule); calls no vendor."""
        results = []
        for vendor, prepared in self.prepare(contact, vendors).items():
            if isinstance(prepared, VendorResult):
                results.append(prepared)
                continue
            results.append(
                VendorResult(
                    vendor=vendor,
                    status=VendorStatus.VALID if prepared.valid else VendorStatus.INVALID,
                    errors=prepared.errors,
                    warnings=prepared.warnings,
                )
            )
        return results

    def invalid(self, errors: list[FieldError], vendors: Sequence[Vendor] | None) -> Outcome:
        """The answer for input that breaks the universal rules: every vendor INVALID with the same errors."""
        results = [
            self._not_configured(v)
            if v not in self.connectors
            else VendorResult(vendor=v, status=VendorStatus.INVALID, errors=list(errors))
            for v in self.targets(vendors)
        ]
        return Outcome(status=UpsertStatus.FAILED, contact_id="", results=results, stored=False)

    # -- writes ---------------------------------------------------------------------------------------------------

    async def upsert(self, contact: Contact, vendors: Sequence[Vendor] | None, *, force: bool = False) -> Outcome:
        """Validate; accept the contact with one delivery per vendor to call; call them; record every answer."""
        return (await self.write(contact, vendors, force=force))[0]

    async def write(
        self,
        contact: Contact,
        vendors: Sequence[Vendor] | None,
        *,
        force: bool = False,
        read_back: bool = True,
        allowed: frozenset[Vendor] | None = None,
    ) -> tuple[Outcome, Readback | None]:
        """`upsert`, also returning the contact as stored after it and its open deliveries (None when not stored).

        Two transactions: accept (read the cross-references, decide UNCHANGED, save the contact, enqueue the
        deliveries) before any vendor is called, and complete (every answer) after; the read-back rides on the last.

        `allowed`: the vendors the caller may write to (None: all). A delivery waits to send the contact as stored
        when it goes, so while one of this contact to a vendor outside that list is not done (PENDING, or FAILED and
        retryable), the write would reach that vendor too: it is refused (`BeyondAllowList`), nothing stored.
        """
        prepared = self.prepare(contact, vendors)
        results: dict[Vendor, VendorResult] = {}
        candidates: dict[Vendor, Prepared] = {}
        for vendor, item in prepared.items():
            if isinstance(item, VendorResult):
                results[vendor] = item
            elif not item.valid:
                results[vendor] = VendorResult(
                    vendor=vendor, status=VendorStatus.INVALID, errors=item.errors, warnings=item.warnings
                )
            else:
                candidates[vendor] = item
        invalid = [v for v, r in results.items() if r.status is VendorStatus.INVALID]
        readback: Readback | None = None
        if candidates:
            hashes = {v: payload_hash(p.payload) for v, p in candidates.items()}
            stored = stored_form(contact)

            def accept(
                conn: Connection,
            ) -> (
                tuple[dict[Vendor, CrossReference], dict[Vendor, tuple[int, bool]], dict[Vendor, int], Readback | None]
                | str
            ):
                lock_contact(conn, contact.id)  # before anything is read that decides what is sent
                if allowed is not None:
                    beyond = {v: d for v, d in self.outbox.undelivered(conn, contact.id).items() if v not in allowed}
                    if beyond:
                        return ", ".join(
                            f"{v.name} (delivery {id_}, {status.value})"
                            for v, (id_, status) in sorted(beyond.items(), key=lambda item: item[0].value)
                        )
                links = read_links(conn, contact.id)
                send = [v for v in candidates if force or not _unchanged(links.get(v), hashes[v])]
                if len(send) < len(candidates):
                    # The link holds what the vendor last accepted. While another delivery of this contact to it is
                    # open (in flight, or waiting to be retried), that may not be what the vendor ends up holding:
                    # a write equal to the link is sent too (queued behind the one in flight), never UNCHANGED.
                    open_ = self.outbox.pending_vendors(conn, contact.id)
                    send = [v for v in candidates if v in open_ or v in send]
                version = self.store.save_contact(conn, contact, stored)
                # A vendor this version breaks the rules of keeps what it last accepted, which is no longer the
                # stored contact: its link says so (INVALID, the codes), or it would show the old success. Only over
                # a success, so the link's hash is still what the vendor holds (a failure already shows, and may
                # leave the vendor's copy unknown). A vendor never written to gets no link (a delete would then look
                # for a record it cannot have). One that holds this version again is UNCHANGED, and says so.
                marks = [_link_update(results[v], None) for v in invalid if _holds(links.get(v))]
                marks += [
                    LinkUpdate(vendor=v, status=VendorStatus.UNCHANGED)
                    for v in candidates
                    if v not in send and links[v].last_status is VendorStatus.INVALID
                ]
                if marks:
                    self.store.apply_links(conn, contact.id, marks)
                queued = self.outbox.enqueue(
                    conn,
                    contact_id=contact.id,
                    vendors=send,
                    operation=Operation.UPSERT,
                    version=version,
                    force=force,
                    lease_s=self.write_leases(send),
                )
                held = self._held_creates(conn, contact.id, version, queued, candidates, links)
                # Nothing to send: no completion transaction follows, so read the answer back here.
                return links, queued, held, None if send or not read_back else _read_back(conn, contact.id)

            accepted = await self.store.write(accept)
            if isinstance(accepted, str):
                raise BeyondAllowList(
                    f"contact {contact.id!r} has a write not yet delivered to {accepted}, which this token may not "
                    "write to: that delivery sends the contact as stored when it goes, so this write would reach it "
                    "too. Nothing was stored; write again once it is delivered, or ask an operator"
                )
            links, queued, held, readback = accepted
            for vendor, item in candidates.items():
                if vendor not in queued:
                    results[vendor] = VendorResult(
                        vendor=vendor,
                        status=VendorStatus.UNCHANGED,
                        remote_id=links[vendor].remote_id,
                        warnings=item.warnings,
                    )
            self._publish_unchanged(contact.id, [results[v] for v in candidates if v not in queued])
            if queued:
                sent = await self._send(
                    queued,
                    {
                        v: partial(self._held, v, f"delivery {held[v]}")
                        if v in held
                        else partial(
                            self._upsert_one,
                            v,
                            replace(candidates[v], force=True) if force else candidates[v],
                            links.get(v),
                            queued[v][0],
                        )
                        for v in queued
                    },
                    hashes=hashes,
                    payloads={v: p.payload for v, p in candidates.items()},
                    contact_id=contact.id,
                )
                readback = await self._complete(contact.id, sent, read_back=read_back)
                results.update({v: s.result for v, s in sent.items()})
        ordered = [results[v] for v in prepared]
        outcome = Outcome(
            status=overall_status(ordered), contact_id=contact.id, results=ordered, stored=bool(candidates)
        )
        return outcome, readback

    async def delete(self, contact_id: str, vendors: Sequence[Vendor] | None) -> Outcome:
        """Delete the contact at every targeted vendor that can delete; the others report SKIPPED.

        An id the gateway never stored (no contact, no cross-reference) is sent nowhere: every vendor that could
        delete reports SKIPPED with NOT_FOUND on `id`, and nothing is recorded. So is a stored contact at a vendor it
        was never written to (no cross-reference, no delivery on its way): SKIPPED, NOT_FOUND on `id`, no delivery.

        The cross-references the deletes use are read in the accept transaction: read before it, a create of the
        contact completing meanwhile would leave a vendor's delete without the remote id it just stored (and a
        connector that finds nothing to delete closes the delivery)."""
        results: dict[Vendor, VendorResult] = {}
        capable: list[Vendor] = []
        for vendor in self.targets(vendors):
            connector = self.connectors.get(vendor)
            if connector is None:
                results[vendor] = self._not_configured(vendor)
            elif not connector.capabilities.delete:
                results[vendor] = _skipped(vendor, ErrorCode.NOT_SUPPORTED, f"{vendor.name} cannot delete contacts")
            else:
                capable.append(vendor)
        stored_any = False
        if capable:

            def accept(
                conn: Connection,
            ) -> (
                tuple[dict[Vendor, CrossReference], dict[Vendor, tuple[int, bool]], StoredContact | None, set[Vendor]]
                | None
            ):
                lock_contact(conn, contact_id)
                links = read_links(conn, contact_id)
                version = self.store.contact_version(conn, contact_id)
                if not version and not links:
                    return None  # never written through the gateway: nothing to delete, nothing recorded
                # A vendor the contact was never written to (no cross-reference, no delivery on its way) has nothing
                # of the gateway's to delete: it is sent nothing, and no delivery or link is made for it.
                open_ = self.outbox.pending_vendors(conn, contact_id) if any(v not in links for v in capable) else ()
                sending = [v for v in capable if v in links or v in open_]
                # Without a remote id, a vendor is looked up by content only where an upsert may have made a record.
                unknown = [v for v in sending if _unlinked(links.get(v))]
                reached = self.outbox.may_have_written(conn, contact_id, unknown) if unknown else set()
                stored = read_contacts(conn, [contact_id]).get(contact_id) if reached else None
                queued = self.outbox.enqueue(
                    conn,
                    contact_id=contact_id,
                    vendors=sending,
                    operation=Operation.DELETE,
                    version=version,
                    force=True,
                    lease_s=self.write_leases(sending),
                )
                return links, queued, stored, reached

            accepted = await self.store.write(accept)
            if accepted is None:
                unknown_id = (
                    f"the gateway has no contact {contact_id!r}: never written through the gateway, nothing was sent"
                )
                results.update({v: _skipped(v, ErrorCode.NOT_FOUND, unknown_id, field="id") for v in capable})
            else:
                stored_any = True
                links, queued, stored, reached = accepted
                results.update(
                    {
                        v: _skipped(
                            v,
                            ErrorCode.NOT_FOUND,
                            f"{contact_id!r} was never written to {v.name} through the gateway: nothing to delete, "
                            "nothing sent",
                            field="id",
                        )
                        for v in capable
                    }
                )
                sent = await self._send(
                    queued,
                    {
                        v: partial(
                            self._delete_one,
                            v,
                            contact_id,
                            self._delete_link(v, links.get(v), stored if v in reached else None),
                        )
                        for v in queued
                    },
                    contact_id=contact_id,
                )
                await self._complete(contact_id, sent)
                results.update({v: s.result for v, s in sent.items()})
        ordered = [results[v] for v in self.targets(vendors)]
        return Outcome(status=overall_status(ordered), contact_id=contact_id, results=ordered, stored=stored_any)

    async def deliver(self, delivery: Delivery) -> VendorResult:
        """Send one queued delivery (the worker's path): the contact as stored now, to one vendor."""
        vendor = delivery.vendor
        connector = self.connectors.get(vendor)
        if connector is None:
            result = self._not_configured(vendor)
            await self._complete(delivery.contact_id, {vendor: _Sent(delivery.id, result)})
            return result
        link = (await self.store.links(delivery.contact_id)).get(vendor)
        sent = _Sent(
            delivery.id, VendorResult(vendor=vendor, status=VendorStatus.UNAVAILABLE), prior_attempts=delivery.attempts
        )
        if delivery.operation is Operation.DELETE:
            stored = await self._written_contact(delivery.contact_id, vendor) if _unlinked(link) else None
            sent.result = await self._delete_one(vendor, delivery.contact_id, self._delete_link(vendor, link, stored))
        else:
            stored = await self.store.get_contact(delivery.contact_id)
            if stored is None:
                sent.result = VendorResult(
                    vendor=vendor,
                    status=VendorStatus.REJECTED,
                    errors=[FieldError(field="", code=ErrorCode.NOT_FOUND, message="the contact is no longer stored")],
                )
            else:
                prepared = connector.prepare(stored.contact)
                sent.hash, sent.payload = payload_hash(prepared.payload), prepared.payload
                if not prepared.valid:
                    sent.result = VendorResult(
                        vendor=vendor, status=VendorStatus.INVALID, errors=prepared.errors, warnings=prepared.warnings
                    )
                elif not delivery.force and _unchanged(link, sent.hash):
                    sent.result = VendorResult(
                        vendor=vendor, status=VendorStatus.UNCHANGED, remote_id=link.remote_id if link else None
                    )
                elif not _repeat_is_safe(connector, prepared, link) and (
                    earlier := await self._uncertain_before(delivery)
                ):
                    sent.result = await self._held(vendor, earlier)
                else:
                    forced = replace(prepared, force=True) if delivery.force else prepared
                    sent.result = await self._upsert_one(vendor, forced, link, delivery.id)
        await self._complete(delivery.contact_id, {vendor: sent})
        return sent.result

    async def _send(
        self,
        queued: dict[Vendor, tuple[int, bool]],
        calls: dict[Vendor, Callable[[], Coroutine[Any, Any, VendorResult]]],
        *,
        hashes: dict[Vendor, str] | None = None,
        payloads: dict[Vendor, dict[str, Any]] | None = None,
        contact_id: str | None = None,
    ) -> dict[Vendor, _Sent]:
        """Call every vendor whose delivery this process leased, concurrently; the others wait in the outbox."""
        sent: dict[Vendor, _Sent] = {}
        running: dict[Vendor, Coroutine[Any, Any, VendorResult]] = {}
        for vendor, (delivery_id, leased) in queued.items():
            if leased:
                running[vendor] = calls[vendor]()
            else:
                sent[vendor] = _Sent(
                    delivery_id,
                    VendorResult(
                        vendor=vendor,
                        status=VendorStatus.QUEUED,
                        # The reason is in `errors`, as for every QUEUED (README): the field is the whole contact.
                        errors=[
                            FieldError(
                                field="",
                                code=ErrorCode.CONFLICT,
                                message=f"an earlier write of this contact to {vendor.name} is still being sent; "
                                "this one is queued and follows it",
                            )
                        ],
                        delivery_id=delivery_id,
                    ),
                )
        loop = asyncio.get_running_loop()  # its create_task: `ensure_future`'s checks cost ~1% of the CPU at c=50
        tasks = {vendor: loop.create_task(call) for vendor, call in running.items()}
        try:
            results = await asyncio.gather(*tasks.values())
        except asyncio.CancelledError:
            # Cut short (shutdown past its grace period, a client gone): record what the vendors that did answer
            # said, so their deliveries are not sent again; the rest stay pending in the outbox.
            finished = {
                vendor: _Sent(
                    queued[vendor][0], task.result(), (hashes or {}).get(vendor), (payloads or {}).get(vendor)
                )
                for vendor, task in tasks.items()
                if task.done() and not task.cancelled() and task.exception() is None
            }
            if finished and contact_id is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._complete(contact_id, finished))
            raise
        for vendor, result in zip(tasks, results, strict=True):
            sent[vendor] = _Sent(queued[vendor][0], result, (hashes or {}).get(vendor), (payloads or {}).get(vendor))
        return sent

    async def _complete(
        self, contact_id: str, sent: dict[Vendor, _Sent], *, read_back: bool = False
    ) -> Readback | None:
        """One transaction: each vendor's cross-reference and delivery. Transient failures become QUEUED.

        `read_back`: also read the contact and its open deliveries as they stand after it (in the same transaction).
        """
        if not sent:
            return None
        now = utcnow()
        waiting: dict[Vendor, datetime | None] = {}
        answered = {vendor: item.result.status for vendor, item in sent.items()}  # before QUEUED replaces it
        for vendor, item in sent.items():
            result = item.result
            result.delivery_id = item.delivery_id
            if result.status is VendorStatus.QUEUED:
                waiting[vendor] = None  # never called: stays as it was enqueued
            elif result.status is VendorStatus.UNAVAILABLE and result.ambiguous:
                result.warnings.append(
                    f"not retried: {vendor.name} may have created the contact (a create's answer was lost or left it "
                    "in doubt, or its sender stopped before the answer), and no lookup can find it for sure (no "
                    "e-mail or key to search by, or a listing too long to read to its end), so sending could "
                    f"duplicate it; check the vendor, then retryDelivery({item.delivery_id}) if it is missing"
                )
            elif result.status is VendorStatus.UNAVAILABLE:
                attempts = max(result.attempts, 1)
                delay = backoff(attempts, result.retry_after, self.settings.backoff_base_s, self.settings.backoff_cap_s)
                breaker = self.breakers.get(vendor)
                if breaker is not None:
                    delay = max(delay, breaker.retry_in())
                waiting[vendor] = now + timedelta(seconds=delay)
                result.status = VendorStatus.QUEUED
                result.warnings.append(
                    f"queued: delivery {item.delivery_id} will be retried in the background from "
                    f"{waiting[vendor]:%H:%M:%S} UTC"
                )

        def op(conn: Connection) -> Readback | None:
            updates = [
                _link_update(item.result, item.hash, item.payload, item.delivery_id)
                for item in sent.values()
                if item.result.status is not VendorStatus.QUEUED or item.result.attempts
            ] + [
                LinkUpdate(vendor=v, status=VendorStatus.QUEUED, error=None, delivery_id=item.delivery_id)
                for v, item in sent.items()
                if item.result.status is VendorStatus.QUEUED and not item.result.attempts
            ]
            self.store.apply_links(conn, contact_id, updates)
            self.outbox.complete(
                conn,
                [
                    Completion(item.delivery_id, item.result, waiting.get(vendor), answered[vendor])
                    for vendor, item in sent.items()
                    if not (vendor in waiting and waiting[vendor] is None)
                ],
            )
            return _read_back(conn, contact_id) if read_back else None

        readback = await self.store.write(op)
        if waiting:
            self.wakeup.set()
        self._publish(contact_id, sent, waiting, now)
        return readback

    # -- live delivery status (resolvers/events.py) -----------------------------------------------------------------

    def _publish(
        self, contact_id: str, sent: dict[Vendor, _Sent], waiting: dict[Vendor, datetime | None], now: datetime
    ) -> None:
        """After a completion committed: one event per vendor. Never awaits, never raises into the write."""
        if self.events is None or not self.events.watched(contact_id):
            return
        try:
            self.events.publish_all(
                DeliveryEvent(
                    contact_id=contact_id,
                    vendor=vendor,
                    status=item.result.status,
                    delivery_id=item.delivery_id,
                    attempts=item.prior_attempts + item.result.attempts,
                    error=describe_errors(item.result),
                    at=now,
                    next_attempt_at=waiting.get(vendor),
                    remote_id=item.result.remote_id,
                )
                for vendor, item in sent.items()
            )
        except Exception:
            log.exception("publishing delivery events failed")

    def _publish_unchanged(self, contact_id: str, unchanged: list[VendorResult]) -> None:
        """After an accept committed: the vendors the write did not need to call (UNCHANGED)."""
        if self.events is None or not unchanged or not self.events.watched(contact_id):
            return
        now = utcnow()
        try:
            self.events.publish_all(
                DeliveryEvent(
                    contact_id=contact_id,
                    vendor=r.vendor,
                    status=r.status,
                    delivery_id=None,
                    attempts=0,
                    error=None,
                    at=now,
                    remote_id=r.remote_id,
                )
                for r in unchanged
            )
        except Exception:
            log.exception("publishing delivery events failed")

    def _held_creates(
        self,
        conn: Connection,
        contact_id: str,
        version: int,
        queued: dict[Vendor, tuple[int, bool]],
        candidates: dict[Vendor, Prepared],
        links: dict[Vendor, CrossReference],
    ) -> dict[Vendor, int]:
        """Within the accept: the vendors this write would create at with no way to find the record again (no
        remote id, no lookup), where an earlier delivery of the contact may already have made one (`uncertain`),
        with that delivery's id. A contact's first write has no earlier delivery: nothing is read for it."""
        if version <= 1 or not queued:
            return {}
        risky = [v for v in queued if not _repeat_is_safe(self.connectors[v], candidates[v], links.get(v))]
        if not risky:
            return {}
        return self.outbox.uncertain_before(conn, contact_id, risky, before=min(id_ for id_, _ in queued.values()))

    async def _uncertain_before(self, delivery: Delivery) -> str | None:
        """What may already have made `delivery`'s record, unfindable: its own interrupted call, or an older
        delivery of the pair flagged `uncertain`; None when nothing did."""
        if delivery.interrupted:
            return f"the process sending delivery {delivery.id} stopped before {delivery.vendor.name} answered"
        earlier = await self.store.read(
            lambda conn: self.outbox.uncertain_before(conn, delivery.contact_id, [delivery.vendor], before=delivery.id)
        )
        return f"delivery {earlier[delivery.vendor]}" if earlier else None

    async def _held(self, vendor: Vendor, earlier: str) -> VendorResult:
        """A create not sent: `earlier` may have made the record, and nothing can find it to update (see
        `_complete`'s warning: an operator checks the vendor, then retries)."""
        if earlier.startswith("delivery "):
            message = f"not sent: {earlier} of this contact may have made it at {vendor.name} already, unfindable"
        else:
            message = earlier
        return VendorResult(
            vendor=vendor,
            status=VendorStatus.UNAVAILABLE,
            ambiguous=True,
            errors=[FieldError(field="", code=ErrorCode.VENDOR_ERROR, message=message)],
        )

    async def _upsert_one(
        self, vendor: Vendor, prepared: Prepared, link: CrossReference | None, delivery_id: int
    ) -> VendorResult:
        connector = self.connectors[vendor]
        safe = _repeat_is_safe(connector, prepared, link)
        live_link = link if link is not None and not link.deleted else None
        result = await self._run(
            vendor,
            lambda: connector.upsert(prepared, live_link),
            safe=safe,
            warnings=prepared.warnings,
            operation="upsert",
            contact_id=prepared.contact_id,
        )
        if (
            result.status in SUCCESS_STATUSES
            and result.remote_id
            and not (live_link is not None and live_link.remote_id == result.remote_id)
            and connector.capabilities.shared_lookup
            and connector.reconciles(prepared)
        ):
            await self._claim(prepared, result, delivery_id)
        return result

    async def _claim(self, prepared: Prepared, result: VendorResult, delivery_id: int) -> None:
        """Record at once the link to a record this write made or adopted at a vendor that finds records by content
        (Jim2, Valomnia: by e-mail), before the write's other vendors answer. Until the completion recorded it,
        another contact with the same e-mail, written meanwhile by any process, found that record unowned and
        adopted it: two contacts on one record. The completion records the same link again. It is the delivery's
        outcome like the completion's: a link that recorded a newer delivery's success keeps it (`apply_links`)."""
        update = _link_update(result, payload_hash(prepared.payload), prepared.payload, delivery_id)
        try:
            await self.store.write(lambda conn: self.store.apply_links(conn, prepared.contact_id, [update]))
        except Exception:  # the completion records it anyway; only the early claim is lost
            log.exception("recording %s's link of %r early failed", result.vendor.name, prepared.contact_id)

    async def _written_contact(self, contact_id: str, vendor: Vendor) -> StoredContact | None:
        """The contact as stored, if an upsert of it may have reached `vendor` (`Outbox.may_have_written`)."""

        def op(conn: Connection) -> StoredContact | None:
            if not self.outbox.may_have_written(conn, contact_id, [vendor]):
                return None
            return read_contacts(conn, [contact_id]).get(contact_id)

        return await self.store.read(op)

    def _delete_link(
        self, vendor: Vendor, link: CrossReference | None, stored: StoredContact | None
    ) -> CrossReference | None:
        """The cross-reference a delete works from. Without a remote id or an accepted payload (a create whose
        answer was lost, then queued or superseded by this delete), the contact as stored stands in for the
        payload, so a connector that finds records by content (Jim2, by e-mail) can still find the one it made.
        `stored` is given only where an upsert may have reached the vendor: where every write was refused or never
        sent, a record found by content is someone else's, and the delete is left without one (SKIPPED)."""
        if stored is None or not _unlinked(link):
            return link
        prepared = self.connectors[vendor].prepare(stored.contact)
        if link is None:
            return CrossReference(stored.contact.id, vendor, None, None, None, None, payload=prepared.payload)
        return replace(link, payload=prepared.payload)

    async def _delete_one(self, vendor: Vendor, contact_id: str, link: CrossReference | None) -> VendorResult:
        return await self._run(
            vendor,
            partial(self.connectors[vendor].delete, contact_id, link),
            safe=True,
            operation="delete",
            contact_id=contact_id,
        )

    async def _run(
        self,
        vendor: Vendor,
        call: Callable[[], Awaitable[Delivered]],
        *,
        safe: bool,
        warnings: Sequence[str] = (),
        operation: str = "upsert",
        contact_id: str | None = None,
    ) -> VendorResult:
        """`_attempt` in a trace span, then counted, timed, logged and noted in the vendor's health."""
        with observe.vendor_span(vendor, operation, contact_id) as span:
            result = await self._attempt(vendor, call, safe=safe, warnings=warnings)
            observe.vendor_call_done(span, vendor, operation, contact_id, result)
        self.health[vendor].record(result)
        return result

    async def _attempt(
        self,
        vendor: Vendor,
        call: Callable[[], Awaitable[Delivered]],
        *,
        safe: bool,
        warnings: Sequence[str] = (),
    ) -> VendorResult:
        """One vendor's operation under its deadline, limits, breaker and retry policy; never raises."""
        connector = self.connectors[vendor]
        settings = connector.settings
        breaker = self.breakers[vendor]
        rate = self._rates[vendor]
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + settings.timeout_s
        attempts = 0
        result = VendorResult(vendor=vendor, status=VendorStatus.UNAVAILABLE, warnings=list(warnings))
        state: AttemptState | None = None  # the last attempt's (a connector may make a safe call unsafe midway)
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    if not breaker.allow():
                        raise BreakerOpen(
                            f"{vendor.name} is failing: calls paused, next probe in {breaker.retry_in():.1f} s",
                            sent=False,
                        )
                    attempts += 1
                    state = AttemptState()
                    token = CURRENT_ATTEMPT.set(state)
                    try:
                        async with self._slots[vendor]:
                            if rate.rate > 0:  # no coroutine to make and await for an unlimited vendor
                                await rate.acquire()
                            delivered = await call()
                    except VendorError as exc:
                        if exc.transient and not isinstance(exc, RateLimited):
                            breaker.failure()
                        else:
                            breaker.success()  # the vendor answered: it is up
                        if not exc.transient:
                            raise
                        acted = exc.sent and _may_have_acted(exc, settings.ambiguous_statuses)
                        if state.create_sent and acted:
                            result.maybe_created = True
                        if (not safe or state.unfindable_create) and acted:
                            # No answer (or a success it cannot read) to a create that nothing can find again: it
                            # may exist now.
                            result.ambiguous = True
                            raise
                        if attempts >= settings.max_attempts:
                            raise
                        delay = backoff(attempts, exc.retry_after)
                        if loop.time() + delay >= deadline:
                            raise
                        await asyncio.sleep(delay)
                        continue
                    except BaseException:
                        breaker.release()
                        raise
                    finally:
                        CURRENT_ATTEMPT.reset(token)
                    breaker.success()
                    result.status = delivered.status
                    result.remote_id = delivered.remote_id
                    result.http_status = delivered.http_status
                    result.warnings.extend(delivered.warnings)
                    result.matched_by = delivered.matched_by
                    break
        except TimeoutError:
            breaker.failure()
            result.ambiguous = (not safe and attempts > 0) or (state is not None and state.unfindable_create)
            result.maybe_created = result.maybe_created or (state is not None and state.create_sent)
            _fail(result, VendorTimeout(f"no answer within {settings.timeout_s:g} s"))
        except VendorError as exc:
            _fail(result, exc)
        except Exception:
            # A bug in a connector: logged with its traceback, reported without internals.
            log.exception("unexpected error calling %s", vendor.name)
            result.status = VendorStatus.UNAVAILABLE
            result.errors = [FieldError(field="", code=ErrorCode.VENDOR_ERROR, message="internal error")]
        result.attempts = attempts
        result.duration_ms = round((loop.time() - started) * 1000, 3)
        return result


def _skipped(vendor: Vendor, code: ErrorCode, message: str, field: str = "") -> VendorResult:
    """A vendor the operation was not sent to, and why."""
    return VendorResult(
        vendor=vendor, status=VendorStatus.SKIPPED, errors=[FieldError(field=field, code=code, message=message)]
    )


def _repeat_is_safe(connector: Connector[Any], prepared: Prepared, link: CrossReference | None) -> bool:
    """Whether sending this write again cannot create a second record: a native upsert, an update by remote id, or
    a create that first looks for the record it may already have made."""
    return (
        connector.capabilities.native_upsert
        or bool(link and link.remote_id and not link.deleted)
        or connector.reconciles(prepared)
    )


def _may_have_acted(exc: VendorError, ambiguous: frozenset[int]) -> bool:
    """A transient failure after which the vendor may hold what was sent: no answer at all, a success status whose
    body the connector could not read (the vendor acted; only what it said is lost), or one of the vendor's
    `ambiguous_statuses` (a proxy's 502/504, which can come after the vendor behind it committed)."""
    status = exc.http_status
    return status is None or 200 <= status < 300 or status in ambiguous


def _unlinked(link: CrossReference | None) -> bool:
    """Nothing is known of the contact at the vendor: no remote id and no payload it accepted."""
    return link is None or (not link.remote_id and not link.payload)


class OutboxWorker:
    """Redelivers queued deliveries in the background until each is delivered, failed, superseded or cancelled.

    Any number run at once, one per process: each claims deliveries with a lease, so each is sent once.
    """

    def __init__(self, fanout: FanOut) -> None:
        self.fanout = fanout
        self.settings = fanout.settings
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[VendorResult]] = set()
        #: Set once the loop has started (readiness checks read it).
        self.running = False

    @property
    def alive(self) -> bool:
        """The loop has started and has not stopped or died (readiness)."""
        return self.running and self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the loop in the background."""
        self._task = asyncio.create_task(self._loop(), name="outbox-worker")

    async def stop(self) -> None:
        """Stop claiming; wait for deliveries in flight (each is bounded by its vendor's deadline)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        self.running = False

    async def _loop(self) -> None:
        self.running = True
        fanout = self.fanout
        while True:
            try:
                free = self.settings.max_parallel - len(self._inflight)
                vendors = [v for v, b in fanout.breakers.items() if b.state is not BreakerState.OPEN]
                lease = {v: fanout.lease_s(v) for v in fanout.connectors}
                batch = await fanout.outbox.claim(free, lease, vendors) if free > 0 else []
                for delivery in batch:
                    task = asyncio.create_task(fanout.deliver(delivery), name=f"delivery-{delivery.id}")
                    self._inflight.add(task)
                    task.add_done_callback(self._done)
                if batch:
                    continue
                await self._wait()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The store may be briefly unreachable: log, back off, carry on.
                log.exception("outbox worker iteration failed")
                await asyncio.sleep(self.settings.poll_interval_s)

    async def _wait(self) -> None:
        wait = self.settings.poll_interval_s
        due = await self.fanout.outbox.next_due()
        if due is not None:
            wait = min(wait, max(0.0, (due - utcnow()).total_seconds()) + 0.01)
        self.fanout.wakeup.clear()
        # Not asyncio.wait_for: on Python 3.11 it drops a cancellation that arrives in the same loop step as the
        # wakeup (a delivery finishing as shutdown begins), and `stop` then waited forever for this loop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self.fanout.wakeup.wait()

    def _done(self, task: asyncio.Task[VendorResult]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a delivery failed unexpectedly", exc_info=task.exception())
        self.fanout.wakeup.set()  # a slot is free


def _fail(result: VendorResult, exc: VendorError) -> None:
    result.status = exc.status
    result.errors = exc.to_field_errors()
    result.http_status = exc.http_status
    result.retry_after = exc.retry_after


def _holds(link: CrossReference | None) -> bool:
    """The vendor holds what the link's hash says: its last operation succeeded, or was a write refused before
    sending (INVALID, recorded only over a success), and the record is not deleted."""
    return (
        link is not None
        and not link.deleted
        and (link.last_status in SUCCESS_STATUSES or link.last_status is VendorStatus.INVALID)
        and link.last_status is not VendorStatus.DELETED
    )


def _unchanged(link: CrossReference | None, new_hash: str) -> bool:
    return link is not None and _holds(link) and link.hash == new_hash


def _link_update(
    result: VendorResult,
    new_hash: str | None,
    payload: dict[str, Any] | None = None,
    delivery_id: int | None = None,
) -> LinkUpdate:
    """The cross-reference update for one result. A failure keeps what the vendor last accepted, except after a
    create whose answer was lost (`maybe_created`): the record it may have made is findable only by what was sent,
    so the link keeps that payload (not its hash: nothing is known accepted) for the next lookup or delete."""
    ok = result.status in SUCCESS_STATUSES
    error = None if ok else ", ".join(sorted({e.code.value for e in result.errors})) or result.status.value
    return LinkUpdate(
        vendor=result.vendor,
        status=result.status,
        remote_id=result.remote_id if ok else None,
        hash=new_hash if ok else None,
        payload=payload if ok or result.maybe_created else None,
        error=error,
        deleted=True if result.status is VendorStatus.DELETED else (False if ok else None),
        delivery_id=delivery_id,
    )
