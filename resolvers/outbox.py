"""The durable outbox: every accepted write is a delivery row until each vendor has it, it fails, or a newer write
of the same contact supersedes it.

A delivery is written in the same transaction as the accepted contact, before any vendor is called, so a process
killed at any point loses nothing: a delivery nobody finished is picked up again once its lease runs out. A row
being sent carries a lease (owner, until); claiming is a compare-and-set on the lease (and `FOR UPDATE SKIP LOCKED`
on PostgreSQL), so any number of workers in any number of processes send each delivery once. Per contact and
vendor at most one delivery is in flight, and the newest wins: an older pending delivery is superseded, never sent
after a newer one. A delivery always sends the contact as it is when it is sent, so a retried old delivery cannot
write stale data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, NamedTuple

import sqlalchemy as sa

from resolvers.clock import utcnow
from resolvers.results import SUCCESS_STATUSES, Vendor, VendorResult, VendorStatus
from resolvers.sql import BySize, Direct, by_ids, of_ids
from resolvers.store import Store, deliveries, vendor_links

#: The error a delivery gets when the outbox gives up on it.
EXPIRED = "EXPIRED: not delivered before the outbox expiry ([outbox] expire_after_s)"


class DeliveryStatus(Enum):
    """Where a delivery stands."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    SUPERSEDED = "SUPERSEDED"
    CANCELLED = "CANCELLED"


class Operation(Enum):
    """What a delivery does at the vendor."""

    UPSERT = "upsert"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One row of the outbox."""

    id: int
    contact_id: str
    vendor: Vendor
    operation: Operation
    contact_version: int
    force: bool
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_until: datetime | None
    expires_at: datetime
    result_status: VendorStatus | None
    last_error: str | None
    last_http_status: int | None
    created_at: datetime
    updated_at: datetime
    #: Set by `claim`: the row still had a lease, run out or given up, so the process sending it stopped before it
    #: recorded an outcome (killed, or cut short at shutdown): its call may have reached the vendor.
    interrupted: bool = False


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything stored is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=int(row.id),
        contact_id=row.contact_id,
        vendor=Vendor(row.vendor),
        operation=Operation(row.operation),
        contact_version=int(row.contact_version),
        force=bool(row.force),
        status=DeliveryStatus(row.status),
        attempts=int(row.attempts),
        next_attempt_at=_aware(row.next_attempt_at) or utcnow(),
        lease_owner=row.lease_owner,
        lease_until=_aware(row.lease_until),
        expires_at=_aware(row.expires_at) or utcnow(),
        result_status=VendorStatus(row.result_status) if row.result_status else None,
        last_error=row.last_error,
        last_http_status=row.last_http_status,
        created_at=_aware(row.created_at) or utcnow(),
        updated_at=_aware(row.updated_at) or utcnow(),
    )


def _leased(now: datetime) -> sa.ColumnElement[bool]:
    """The row is being sent right now (its lease has not run out)."""
    return sa.and_(deliveries.c.lease_until.is_not(None), deliveries.c.lease_until > now)


def _same_pair(contact_id: Any, vendor: Any) -> sa.ColumnElement[bool]:
    return sa.and_(deliveries.c.contact_id == contact_id, deliveries.c.vendor == vendor)


def describe_errors(result: VendorResult) -> str | None:
    """A short description of a result's errors for the delivery row (codes and the first message)."""
    if not result.errors:
        return None
    codes = ", ".join(dict.fromkeys(e.code.value for e in result.errors))
    return f"{codes}: {result.errors[0].message}"[:1000]


@dataclass(frozen=True, slots=True)
class Completion:
    """One attempt's outcome for `Outbox.complete` (`answered`: the vendor's status when the result says QUEUED)."""

    delivery_id: int
    result: VendorResult
    retry_at: datetime | None
    answered: VendorStatus | None = None


def _delivered(answered: VendorStatus) -> bool:
    """Whether a vendor's answer ends its delivery as DELIVERED."""
    return answered in SUCCESS_STATUSES or answered is VendorStatus.SKIPPED


class _State(NamedTuple):
    """A delivery's pair as `complete` reads it (for the newer-pending check of one that would wait again)."""

    id: int
    contact_id: str
    vendor: str


#: The statuses an attempt's outcome never replaces (an operator's cancel, or a newer write's supersede, that came
#: while the attempt was out).
_KEPT = (DeliveryStatus.CANCELLED.value, DeliveryStatus.SUPERSEDED.value)
#: The completion update, built once (executemany with one parameter set per delivery). The kept statuses are kept
#: by the statement itself, so a write's completion reads no delivery first.
_COMPLETE = Direct(
    sa.update(deliveries)
    .where(
        deliveries.c.id == sa.bindparam("b_id"),
        # Only the lease holder records an outcome: a sender whose lease ran out while it was still waiting must not
        # clear (or end) the lease of the process that took the delivery over and is sending it now.
        sa.or_(deliveries.c.lease_owner.is_(None), deliveries.c.lease_owner == sa.bindparam("b_owner")),
    )
    .values(
        status=sa.case(
            (deliveries.c.status.in_([sa.literal(kept) for kept in _KEPT]), deliveries.c.status),
            else_=sa.bindparam("b_status", type_=deliveries.c.status.type),
        ),
        attempts=deliveries.c.attempts + sa.bindparam("b_attempts", type_=sa.Integer),
        result_status=sa.bindparam("b_result"),
        last_error=sa.bindparam("b_error"),
        last_http_status=sa.bindparam("b_http", type_=sa.Integer),
        next_attempt_at=sa.bindparam("b_next", type_=sa.DateTime(timezone=True)),
        uncertain=sa.or_(deliveries.c.uncertain, sa.bindparam("b_uncertain", type_=sa.Boolean)),
        lease_owner=None,
        lease_until=None,
        updated_at=sa.bindparam("b_now", type_=sa.DateTime(timezone=True)),
    ),
    ["b_id", "b_status", "b_attempts", "b_result", "b_error", "b_http", "b_next", "b_now", "b_owner", "b_uncertain"],
)


#: Enqueue's statements, built once (statement construction costs more than SQLite running them) and run on the
#: driver's cursor (`resolvers.sql`). The vendors of a write are filtered in Python, or given as an IN list of bind
#: parameters, one statement per count of vendors (`BySize`).
_PENDING_OF_CONTACT = sa.and_(
    deliveries.c.contact_id == sa.bindparam("b_contact"),
    deliveries.c.status == DeliveryStatus.PENDING.value,
)
_LEASED_NOW = sa.and_(deliveries.c.lease_until.is_not(None), deliveries.c.lease_until > sa.bindparam("b_now"))
#: The vendors with a pending delivery of this contact being sent now (by any process).
_BUSY = Direct(sa.select(deliveries.c.vendor).where(_PENDING_OF_CONTACT, _LEASED_NOW), ["b_contact", "b_now"])
#: The vendors with a pending delivery of this contact, being sent or waiting.
_OPEN_VENDORS = Direct(sa.select(deliveries.c.vendor).where(_PENDING_OF_CONTACT).distinct(), ["b_contact"])


#: A delivery set aside without an outcome (superseded or expired while not being sent) that still has a lease: run
#: out or given up, so its sender stopped before it recorded an outcome, and its call may have reached the vendor.
_INTERRUPTED = sa.or_(deliveries.c.uncertain, deliveries.c.lease_until.is_not(None))


def _supersede_statement(n: int) -> Direct:
    """The pending deliveries of a contact to any of `n` vendors (`b_vendor_0`...), not being sent now, superseded:
    one statement for a write's vendors (an executemany ran it once per vendor, ~20 us each on SQLite)."""
    vendors = [sa.bindparam(f"b_vendor_{k}", type_=deliveries.c.vendor.type) for k in range(n)]
    return Direct(
        sa.update(deliveries)
        .where(_PENDING_OF_CONTACT, deliveries.c.vendor.in_(vendors), sa.not_(_LEASED_NOW))
        .values(status=DeliveryStatus.SUPERSEDED.value, updated_at=sa.bindparam("b_now"), uncertain=_INTERRUPTED),
        ["b_contact", "b_now", *(f"b_vendor_{k}" for k in range(n))],
    )


_SUPERSEDE = BySize(_supersede_statement)
#: The columns an enqueued delivery is given (every one with a Python-side default among them).
_ENQUEUED = (
    "contact_id",
    "vendor",
    "operation",
    "contact_version",
    "force",
    "status",
    "attempts",
    "next_attempt_at",
    "lease_owner",
    "lease_until",
    "expires_at",
    "created_at",
    "updated_at",
)


def _enqueue_statement(n: int) -> Direct:
    """`n` deliveries in one INSERT, returning each one's id with its vendor (distinct within one enqueue)."""
    values = [{c: sa.bindparam(f"{c}_{k}", type_=deliveries.c[c].type) for c in _ENQUEUED} for k in range(n)]
    statement = sa.insert(deliveries).values(values).returning(deliveries.c.id, deliveries.c.vendor)
    return Direct(statement, [f"{c}_{k}" for k in range(n) for c in _ENQUEUED])


_ENQUEUE = BySize(_enqueue_statement)
#: The contact and vendor of deliveries by id.
_STATES = of_ids(sa.select(deliveries.c.id, deliveries.c.contact_id, deliveries.c.vendor), deliveries.c.id)
_WAITING = (
    sa.select(deliveries.c.vendor, sa.func.count(), sa.func.min(deliveries.c.created_at))
    .where(deliveries.c.status == DeliveryStatus.PENDING.value)
    .group_by(deliveries.c.vendor)
)
#: When a pending delivery can next be claimed: when it is due, or when its lease runs out if that is later. A
#: delivery being sent was enqueued due at once; without the lease its write's whole fan-out would look overdue
#: and the worker would poll every 10 ms for as long as any write is in flight (a claim transaction each time).
_CLAIMABLE_AT = sa.case(
    (
        sa.and_(deliveries.c.lease_until.is_not(None), deliveries.c.lease_until > deliveries.c.next_attempt_at),
        deliveries.c.lease_until,
    ),
    else_=deliveries.c.next_attempt_at,
)
_NEXT_DUE = sa.select(sa.func.min(_CLAIMABLE_AT)).where(deliveries.c.status == DeliveryStatus.PENDING.value)
_OPEN_FOR = (
    sa.select(deliveries)
    .where(
        deliveries.c.contact_id.in_(sa.bindparam("ids", expanding=True)),
        deliveries.c.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.FAILED.value]),
    )
    .order_by(deliveries.c.id.desc())
)


def read_open(conn: sa.Connection, contact_ids: list[str]) -> dict[tuple[str, Vendor], list[Delivery]]:
    """Within a read or a write: pending and failed deliveries of these contacts, by (contact, vendor), newest first."""
    out: dict[tuple[str, Vendor], list[Delivery]] = {}
    for row in conn.execute(_OPEN_FOR, {"ids": contact_ids}):
        delivery = _delivery(row)
        out.setdefault((delivery.contact_id, delivery.vendor), []).append(delivery)
    return out


#: The first key of the PostgreSQL advisory locks a contact's deliveries are decided under (the second is a hash of
#: the contact id): an arbitrary constant, so that the locks do not meet another application's in the database.
_CONTACT_LOCKS = 0x6367


def lock_contact(conn: sa.Connection, contact_id: str) -> None:
    """Within a write, on PostgreSQL: wait for, then hold until the transaction ends, the lock under which a
    contact's deliveries are decided (which vendors are busy, which delivery is superseded or leased).

    Read committed lets two processes' transactions read the same deliveries before either commits: a request's
    accept could find no delivery in flight while another process's worker was leasing one, and lease its own too
    (two in flight to one vendor, the older one possibly landing last). Accepts take this lock first, a completion
    takes it before deciding whether a failed delivery waits again or is superseded by a newer one, and the worker's
    claim takes it without waiting (`try_lock_contact`). On SQLite one writer at a time holds the whole
    database, so nothing is needed."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CONTACT_LOCKS, sa.func.hashtext(contact_id))))


def try_lock_contact(conn: sa.Connection, contact_id: str) -> bool:
    """`lock_contact` without waiting: False when another transaction holds it (always True on SQLite)."""
    if conn.dialect.name != "postgresql":
        return True
    taken = conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(_CONTACT_LOCKS, sa.func.hashtext(contact_id))))
    return bool(taken.scalar())


class Outbox:
    """Delivery rows: enqueue with the accepted write, complete with the vendor's answer, claim for redelivery."""

    def __init__(self, store: Store, *, owner: str, expire_after_s: float) -> None:
        self.store = store
        self.owner = owner
        self.expire_after = timedelta(seconds=expire_after_s)

    # -- inside the accept and complete transactions (called with the writer's connection) -------------------------

    def pending_vendors(self, conn: sa.Connection, contact_id: str) -> set[Vendor]:
        """Within a write: the vendors a delivery of this contact is pending for (in flight or waiting)."""
        return {Vendor(vendor) for (vendor,) in _OPEN_VENDORS.execute(conn, {"b_contact": contact_id})}

    def undelivered(self, conn: sa.Connection, contact_id: str) -> dict[Vendor, tuple[int, DeliveryStatus]]:
        """Within a write: the vendors whose newest delivery of this contact is not done (PENDING, or FAILED and so
        still retryable by an operator), with that delivery's id and status. Each would send the contact as stored
        when it goes."""
        newest = (
            sa.select(deliveries.c.vendor, sa.func.max(deliveries.c.id).label("id"))
            .where(deliveries.c.contact_id == contact_id)
            .group_by(deliveries.c.vendor)
            .subquery()
        )
        rows = conn.execute(
            sa.select(deliveries.c.vendor, deliveries.c.id, deliveries.c.status)
            .join(newest, deliveries.c.id == newest.c.id)
            .where(deliveries.c.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.FAILED.value]))
        ).all()
        return {Vendor(vendor): (int(id_), DeliveryStatus(status)) for vendor, id_, status in rows}

    def may_have_written(self, conn: sa.Connection, contact_id: str, vendors: Iterable[Vendor]) -> set[Vendor]:
        """Within a transaction: those of `vendors` an upsert of this contact may have reached, and so may have made a
        record at. Every upsert delivery counts but one never sent (no attempt, never leased) and one stopped for
        good at its only attempt: INVALID (pre-flight, nothing sent) or REJECTED (the vendor refused it). One that
        failed any other way, was retried, or whose sender stopped mid-call may have made the record."""
        wanted = [vendor.value for vendor in vendors]
        if not wanted:
            return set()
        d = deliveries.c
        refused = sa.and_(  # `is_not(None)` first: a NULL status would make the whole test NULL, not false
            d.result_status.is_not(None),
            d.result_status.in_([VendorStatus.INVALID.value, VendorStatus.REJECTED.value]),
            d.attempts <= 1,
        )
        unsent = sa.and_(d.attempts == 0, d.result_status.is_(None), d.lease_until.is_(None))
        rows = conn.execute(
            sa.select(d.vendor)
            .distinct()
            .where(
                d.contact_id == contact_id,
                d.vendor.in_(wanted),
                d.operation == Operation.UPSERT.value,
                sa.not_(sa.or_(refused, unsent)),
            )
        )
        return {Vendor(vendor) for (vendor,) in rows}

    def uncertain_before(
        self, conn: sa.Connection, contact_id: str, vendors: Iterable[Vendor], before: int | None = None
    ) -> dict[Vendor, int]:
        """Within a transaction: those of `vendors` with an upsert delivery of this contact older than delivery
        `before` (any, when None) that may have made a record nothing can find (`uncertain`, or pending with a
        lease left behind), with the newest such delivery's id. A create that cannot look its record up is not sent
        while one exists."""
        wanted = [vendor.value for vendor in vendors]
        if not wanted:
            return {}
        d = deliveries.c
        # An older one still pending with a lease left (run out or given up) was interrupted: not yet superseded
        # (a claim may take the newer delivery first), it counts as `uncertain` already.
        interrupted = sa.and_(d.status == DeliveryStatus.PENDING.value, d.lease_until.is_not(None))
        where = [
            d.contact_id == contact_id,
            d.vendor.in_(wanted),
            d.operation == Operation.UPSERT.value,
            sa.or_(d.uncertain, interrupted),
        ]
        if before is not None:
            where.append(d.id < before)
        rows = conn.execute(sa.select(d.vendor, sa.func.max(d.id)).where(*where).group_by(d.vendor))
        return {Vendor(vendor): int(id_) for vendor, id_ in rows}

    def enqueue(
        self,
        conn: sa.Connection,
        *,
        contact_id: str,
        vendors: Sequence[Vendor],
        operation: Operation,
        version: int,
        force: bool,
        lease_s: dict[Vendor, float],
    ) -> dict[Vendor, tuple[int, bool]]:
        """Add one delivery per vendor (three statements whatever their number); supersede older ones not in flight.

        Returns each delivery's id and whether this process may send it now (False when an older delivery of the
        same contact to the same vendor is still in flight: this one then waits for the worker).
        """
        if not vendors:
            return {}
        lock_contact(conn, contact_id)  # held already when the accept took it first: taken again at no cost
        now = utcnow()
        busy = {vendor for (vendor,) in _BUSY.execute(conn, {"b_contact": contact_id, "b_now": now})}
        _SUPERSEDE(len(vendors)).execute(
            conn, {"b_contact": contact_id, "b_now": now} | {f"b_vendor_{k}": v.value for k, v in enumerate(vendors)}
        )
        expires = now + self.expire_after
        row: dict[str, Any] = {}
        for k, vendor in enumerate(vendors):
            leased = vendor.value not in busy
            row |= {
                f"contact_id_{k}": contact_id,
                f"vendor_{k}": vendor.value,
                f"operation_{k}": operation.value,
                f"contact_version_{k}": version,
                f"force_{k}": force,
                f"status_{k}": DeliveryStatus.PENDING.value,
                f"attempts_{k}": 0,
                f"next_attempt_at_{k}": now,
                f"lease_owner_{k}": self.owner if leased else None,
                f"lease_until_{k}": now + timedelta(seconds=lease_s[vendor]) if leased else None,
                f"expires_at_{k}": expires,
                f"created_at_{k}": now,
                f"updated_at_{k}": now,
            }
        ids = {vendor: int(id_) for id_, vendor in _ENQUEUE(len(vendors)).execute(conn, row)}
        return {vendor: (ids[vendor.value], vendor.value not in busy) for vendor in vendors}

    def complete(self, conn: sa.Connection, completions: Sequence[Completion]) -> None:
        """Record attempts' outcomes: DELIVERED, back to PENDING until `retry_at`, or FAILED.

        A delivery that would wait again while a newer one of the same pair is pending is superseded instead (decided
        under the contact's lock, `lock_contact`, so an accept of a newer write in another process is seen), and
        one an operator cancelled or a newer write superseded meanwhile keeps that status (the update statement
        keeps it). One update statement for all of them, after one read of the deliveries that would wait again.
        """
        if not completions:
            return
        now = utcnow()
        answers = [(done, done.answered or done.result.status) for done in completions]
        again = [
            done.delivery_id for done, answered in answers if done.retry_at is not None and not _delivered(answered)
        ]
        rows = {int(r[0]): _State(*r) for r in by_ids(_STATES, conn, again)} if again else {}
        # Before looking for a newer delivery of a pair that would wait again: another process's accept of the same
        # contact may be uncommitted (read committed would not see it), having seen this delivery leased and queued
        # its own behind it; both would then wait, and the older be sent last. Locks in id order: no deadlock.
        for contact_id in sorted({row.contact_id for row in rows.values()}):
            lock_contact(conn, contact_id)
        params: list[dict[str, Any]] = []
        for done, answered in answers:
            if _delivered(answered):
                status = DeliveryStatus.DELIVERED
            elif done.retry_at is not None:
                row = rows.get(done.delivery_id)
                if row is None:
                    continue  # no such delivery: nothing to update (the statement would match no row either)
                status = DeliveryStatus.PENDING
                newer = conn.scalar(
                    sa.select(sa.func.count()).where(
                        _same_pair(row.contact_id, row.vendor),
                        deliveries.c.status == DeliveryStatus.PENDING.value,
                        deliveries.c.id > done.delivery_id,
                    )
                )
                if newer:
                    status = DeliveryStatus.SUPERSEDED
            else:
                status = DeliveryStatus.FAILED
            params.append(
                {
                    "b_id": done.delivery_id,
                    "b_status": status.value,
                    "b_attempts": done.result.attempts,
                    "b_result": answered.value,
                    "b_error": describe_errors(done.result),
                    "b_http": done.result.http_status,
                    "b_next": done.retry_at or now,
                    "b_now": now,
                    "b_owner": self.owner,
                    "b_uncertain": done.result.ambiguous,
                }
            )
        if params:
            _COMPLETE.executemany(conn, params)

    # -- the worker's side ------------------------------------------------------------------------------------------

    async def claim(self, limit: int, lease_s: dict[Vendor, float], vendors: Sequence[Vendor]) -> list[Delivery]:
        """Lease up to `limit` due deliveries for `vendors` to this owner; expired ones become FAILED first."""
        if not vendors or limit <= 0:
            return []

        def op(conn: sa.Connection) -> list[Delivery]:
            now = utcnow()
            pending = deliveries.c.status == DeliveryStatus.PENDING.value
            self._expire(conn, now)
            query = (
                sa.select(deliveries)
                .where(
                    pending,
                    deliveries.c.next_attempt_at <= now,
                    sa.not_(_leased(now)),
                    deliveries.c.vendor.in_([v.value for v in vendors]),
                )
                .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
                .limit(limit)
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            claimed: list[Delivery] = []
            seen: set[tuple[str, str]] = set()
            for row in (conn.execute(query)).all():
                pair = (row.contact_id, row.vendor)
                if pair in seen:
                    continue
                seen.add(pair)
                if not try_lock_contact(conn, row.contact_id):
                    continue  # a request is deciding this contact's deliveries now: claimed at a later poll
                others = (
                    conn.execute(
                        sa.select(deliveries.c.id, deliveries.c.lease_until).where(
                            _same_pair(*pair), pending, deliveries.c.id != row.id
                        )
                    )
                ).all()
                if any((_aware(o.lease_until) or now) > now for o in others):
                    continue  # an older one is in flight: this one waits for it
                if any(o.id > row.id for o in others):
                    # A newer write of this contact is pending: it is the one to send.
                    conn.execute(
                        sa.update(deliveries)
                        .where(deliveries.c.id == row.id)
                        .values(status=DeliveryStatus.SUPERSEDED.value, updated_at=now, uncertain=_INTERRUPTED)
                    )
                    continue
                until = now + timedelta(seconds=lease_s.get(Vendor(row.vendor), 30.0))
                taken = conn.execute(
                    sa.update(deliveries)
                    .where(deliveries.c.id == row.id, pending, sa.not_(_leased(now)))
                    .values(lease_owner=self.owner, lease_until=until, updated_at=now)
                )
                if taken.rowcount == 1:
                    delivery = _delivery((conn.execute(sa.select(deliveries).where(deliveries.c.id == row.id))).one())
                    # An outcome clears the lease; one left there means its sender stopped mid-attempt.
                    claimed.append(dataclasses.replace(delivery, interrupted=row.lease_until is not None))
            return claimed

        return await self.store.write(op)

    def _expire(self, conn: sa.Connection, now: datetime) -> None:
        """Pending deliveries past their expiry become FAILED, and their vendor links say so."""
        due = sa.and_(
            deliveries.c.status == DeliveryStatus.PENDING.value,
            deliveries.c.expires_at <= now,
            sa.not_(_leased(now)),
        )
        expired = (conn.execute(sa.select(deliveries.c.contact_id, deliveries.c.vendor).where(due))).all()
        if not expired:
            return
        conn.execute(
            sa.update(deliveries)
            .where(due)
            .values(status=DeliveryStatus.FAILED.value, last_error=EXPIRED, updated_at=now, uncertain=_INTERRUPTED)
        )
        for contact_id, vendor in set(expired):
            conn.execute(
                sa.update(vendor_links)
                .where(
                    vendor_links.c.contact_id == contact_id,
                    vendor_links.c.vendor == vendor,
                    vendor_links.c.last_status == VendorStatus.QUEUED.value,
                )
                .values(last_status=VendorStatus.UNAVAILABLE.value, last_error="EXPIRED", synced_at=now)
            )

    async def release(self) -> int:
        """Give up this process's leases on deliveries still pending (at shutdown, after the grace period): the next
        process sends them at once instead of waiting for the leases to run out. The lease is ended, not cleared, so
        the next claim knows the delivery was interrupted (`Delivery.interrupted`). Returns how many."""

        def op(conn: sa.Connection) -> int:
            now = utcnow()
            result = conn.execute(
                sa.update(deliveries)
                .where(
                    deliveries.c.lease_owner == self.owner,
                    deliveries.c.status == DeliveryStatus.PENDING.value,
                    deliveries.c.lease_until.is_not(None),
                )
                .values(lease_until=now, updated_at=now)
            )
            return int(result.rowcount or 0)

        return await self.store.write(op)

    async def stats(self) -> dict[Vendor, tuple[int, float | None]]:
        """Per vendor: how many deliveries wait (PENDING) and the age in seconds of the oldest (for metrics)."""
        rows = await self.store.read(lambda conn: conn.execute(_WAITING).all())
        now = utcnow()
        out: dict[Vendor, tuple[int, float | None]] = {}
        for vendor, count, oldest in rows:
            since = _aware(datetime.fromisoformat(oldest) if isinstance(oldest, str) else oldest)
            out[Vendor(vendor)] = (int(count), (now - since).total_seconds() if since else None)
        return out

    async def next_due(self) -> datetime | None:
        """When the earliest pending delivery can be claimed: due, and not leased to a sender (None: nothing
        pending)."""
        value = await self.store.read(lambda conn: conn.scalar(_NEXT_DUE))
        return _aware(value)

    # -- operators --------------------------------------------------------------------------------------------------

    async def get(self, delivery_id: int) -> Delivery | None:
        """One delivery by id."""
        row = await self.store.read(
            lambda conn: conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).one_or_none()
        )
        return _delivery(row) if row is not None else None

    async def page(
        self,
        *,
        status: DeliveryStatus | None,
        vendor: Vendor | None,
        first: int,
        before_id: int | None,
        contact_id: str | None = None,
    ) -> tuple[list[Delivery], bool]:
        """Newest first: up to `first` deliveries with ids below `before_id`, and whether more follow."""
        query = sa.select(deliveries).order_by(deliveries.c.id.desc()).limit(first + 1)
        if status is not None:
            query = query.where(deliveries.c.status == status.value)
        if vendor is not None:
            query = query.where(deliveries.c.vendor == vendor.value)
        if contact_id is not None:
            query = query.where(deliveries.c.contact_id == contact_id)
        if before_id is not None:
            query = query.where(deliveries.c.id < before_id)
        rows = await self.store.read(lambda conn: conn.execute(query).all())
        return [_delivery(r) for r in rows[:first]], len(rows) > first

    async def total(
        self, *, status: DeliveryStatus | None = None, vendor: Vendor | None = None, contact_id: str | None = None
    ) -> int:
        """How many deliveries match (every one when nothing is given)."""
        query = sa.select(sa.func.count()).select_from(deliveries)
        if status is not None:
            query = query.where(deliveries.c.status == status.value)
        if vendor is not None:
            query = query.where(deliveries.c.vendor == vendor.value)
        if contact_id is not None:
            query = query.where(deliveries.c.contact_id == contact_id)
        found: int | None = await self.store.read(lambda conn: conn.scalar(query))
        return int(found or 0)

    async def open_for(self, contact_ids: Sequence[str]) -> dict[tuple[str, Vendor], list[Delivery]]:
        """Pending and failed deliveries of these contacts, by (contact, vendor), newest first."""
        if not contact_ids:
            return {}
        ids = list(contact_ids)
        return await self.store.read(lambda conn: read_open(conn, ids))

    async def retry(self, delivery_id: int) -> Delivery | str | None:
        """Make a failed, cancelled or waiting delivery due now (with a fresh expiry).

        None when there is no such delivery in one of those states; the reason, as text, when it is refused: it is
        being sent now, or a newer delivery of the same contact to the same vendor exists (a delivery sends the
        contact as stored now but keeps its operation, so an older one retried after a newer write could delete
        a record written since, revive one deleted since, or, superseding the newer one, lose that write)."""
        return await self._set_status(
            delivery_id,
            allowed=(DeliveryStatus.FAILED, DeliveryStatus.CANCELLED, DeliveryStatus.PENDING),
            status=DeliveryStatus.PENDING,
            retry=True,
        )

    async def cancel(self, delivery_id: int) -> Delivery | str | None:
        """Stop a pending or failed delivery from being sent (again); None if there is no such delivery in one of
        those states, the reason as text when it is being sent now (cancelling it would let the next delivery of
        the pair be sent while it is still out, and the older one could land last)."""
        return await self._set_status(
            delivery_id,
            allowed=(DeliveryStatus.PENDING, DeliveryStatus.FAILED),
            status=DeliveryStatus.CANCELLED,
            retry=False,
        )

    async def _set_status(
        self, delivery_id: int, *, allowed: tuple[DeliveryStatus, ...], status: DeliveryStatus, retry: bool
    ) -> Delivery | str | None:
        def op(conn: sa.Connection) -> Delivery | str | None:
            now = utcnow()
            row = (conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id))).one_or_none()
            if row is None or DeliveryStatus(row.status) not in allowed:
                return None
            lock_contact(conn, row.contact_id)  # against an accept or a claim deciding this contact's deliveries
            vendor = Vendor(row.vendor).name
            lease = _aware(row.lease_until)
            if row.status == DeliveryStatus.PENDING.value and lease is not None and lease > now:
                return f"delivery {delivery_id} is being sent to {vendor} now; its outcome shows when the attempt ends"
            if retry:
                newer = conn.scalar(
                    sa.select(sa.func.max(deliveries.c.id)).where(
                        _same_pair(row.contact_id, row.vendor), deliveries.c.id > delivery_id
                    )
                )
                if newer is not None:
                    return (
                        f"delivery {newer} of contact {row.contact_id!r} to {vendor} is newer; retry that one "
                        "(an older delivery is never sent after a newer one)"
                    )
            values: dict[str, Any] = {"status": status.value, "updated_at": now}
            if retry:
                values |= {"next_attempt_at": now, "expires_at": now + self.expire_after}
            # The status and the lease are checked again by the update itself: another process may have completed
            # or claimed the delivery since it was read (a cancel must not hide a delivery that was made, nor a
            # retry send it again).
            changed = conn.execute(
                sa.update(deliveries)
                .where(
                    deliveries.c.id == delivery_id,
                    deliveries.c.status.in_([a.value for a in allowed]),
                    sa.not_(_leased(now)),
                )
                .values(**values)
            )
            if changed.rowcount != 1:
                return None
            if retry:
                # The operator has checked the vendor: no record of the pair's earlier creates holds this one back.
                conn.execute(
                    sa.update(deliveries)
                    .where(
                        _same_pair(row.contact_id, row.vendor), deliveries.c.id <= delivery_id, deliveries.c.uncertain
                    )
                    .values(uncertain=False)
                )
            if status is DeliveryStatus.CANCELLED:
                still = conn.scalar(
                    sa.select(sa.func.count()).where(
                        _same_pair(row.contact_id, row.vendor), deliveries.c.status == DeliveryStatus.PENDING.value
                    )
                )
                if not still:
                    # The link said QUEUED for a write that will now not be sent: it says what happened instead.
                    conn.execute(
                        sa.update(vendor_links)
                        .where(
                            vendor_links.c.contact_id == row.contact_id,
                            vendor_links.c.vendor == row.vendor,
                            vendor_links.c.last_status == VendorStatus.QUEUED.value,
                        )
                        .values(
                            last_status=VendorStatus.UNAVAILABLE.value,
                            last_error=f"CANCELLED: delivery {delivery_id} was cancelled by an operator",
                            synced_at=now,
                        )
                    )
            if retry:
                # Older deliveries of the pair still waiting would send an older operation after this one.
                conn.execute(
                    sa.update(deliveries)
                    .where(
                        _same_pair(row.contact_id, row.vendor),
                        deliveries.c.status == DeliveryStatus.PENDING.value,
                        deliveries.c.id < delivery_id,
                        sa.not_(_leased(now)),
                    )
                    .values(status=DeliveryStatus.SUPERSEDED.value, updated_at=now)
                )
            return _delivery((conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id))).one())

        return await self.store.write(op)
