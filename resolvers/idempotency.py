"""Idempotency keys: the first answer to a keyed write is kept, and a repeat with the same input gets it back.

A key belongs to the caller (the token's name) that used it. The first call reserves the key with a lease; a repeat
while it runs waits for its answer; a repeat after it returns the stored answer without calling any vendor; the same
key with a different input is a CONFLICT. A reservation whose process died (lease run out, no answer) is taken over
by the next repeat. Keys expire after `ttl_s`.

The lease must outlast the longest write (`Idempotency.lease_for`: the longest vendor deadline plus a grace), or a
repeat would take a running write's key over and run it twice. Several processes may share the store: the
reservation is an insert that does nothing on a conflict and a takeover an update that checks the lease it read, so
of two processes racing for one key, one gets it and the other waits (BUSY); the first answer stored is kept.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

import orjson
import sqlalchemy as sa
from pydantic import TypeAdapter

from resolvers.clock import utcnow
from resolvers.fanout import Outcome
from resolvers.store import Store, StoredContact, idempotency_keys

#: The longest key accepted.
MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Answer:
    """What a keyed write answered: the engine's outcome and the contact as it was stored then."""

    outcome: Outcome
    contact: StoredContact | None


_ANSWER = TypeAdapter(Answer)


class Claim(Enum):
    """What `begin` found for a key."""

    NEW = "NEW"  # the caller runs the operation, then calls `finish`
    REPLAY = "REPLAY"  # the stored answer is returned
    CONFLICT = "CONFLICT"  # the key was used for a different input
    BUSY = "BUSY"  # the first call is still running


@dataclass(frozen=True, slots=True)
class Begun:
    """The result of `begin`."""

    claim: Claim
    answer: Answer | None = None


class Idempotency:
    """Keyed answers in the store."""

    #: The shortest lease: a reservation whose process died is taken over after this long at the earliest.
    MIN_LEASE_S = 120.0

    def __init__(self, store: Store, *, ttl_s: float, lease_s: float = MIN_LEASE_S, poll_s: float = 0.05) -> None:
        self.store = store
        self.ttl = timedelta(seconds=ttl_s)
        self.lease = timedelta(seconds=lease_s)
        self.poll_s = poll_s

    @classmethod
    def lease_for(cls, longest_timeout_s: float, grace_s: float) -> float:
        """The lease a reservation needs when no vendor call outlasts `longest_timeout_s` (a vendor's `timeout_s`
        bounds all its attempts): that plus `grace_s` for the store's two transactions, and never under
        `MIN_LEASE_S`."""
        return max(cls.MIN_LEASE_S, longest_timeout_s + grace_s)

    async def begin(self, principal: str, key: str, request_hash: str) -> Begun:
        """Reserve `key` for this request, or say why not (replay, conflict, busy)."""

        def op(conn: sa.Connection) -> Begun:
            now = utcnow()
            where = sa.and_(idempotency_keys.c.principal == principal, idempotency_keys.c.key == key)
            conn.execute(sa.delete(idempotency_keys).where(where, idempotency_keys.c.expires_at <= now))
            row = (conn.execute(sa.select(idempotency_keys).where(where))).one_or_none()
            if row is None:
                # Another process may insert the same key between the select and this insert (PostgreSQL's read
                # committed): then this one inserts nothing and waits for that one's answer.
                inserted = conn.execute(
                    self.store.insert(idempotency_keys)
                    .values(
                        principal=principal,
                        key=key,
                        request_hash=request_hash,
                        response=None,
                        lease_until=now + self.lease,
                        created_at=now,
                        expires_at=now + self.ttl,
                    )
                    .on_conflict_do_nothing(index_elements=[idempotency_keys.c.principal, idempotency_keys.c.key])
                )
                return Begun(Claim.NEW if inserted.rowcount == 1 else Claim.BUSY)
            if row.request_hash != request_hash:
                return Begun(Claim.CONFLICT)
            if row.response is not None:
                return Begun(Claim.REPLAY, _ANSWER.validate_json(row.response))
            lease_until = row.lease_until if row.lease_until.tzinfo else row.lease_until.replace(tzinfo=now.tzinfo)
            if lease_until > now:
                return Begun(Claim.BUSY)
            # The first call's process died before answering: this repeat takes the key over, unless another one
            # took it over since the row was read (the update then finds the lease changed).
            taken = conn.execute(
                sa.update(idempotency_keys)
                .where(
                    where,
                    idempotency_keys.c.response.is_(None),
                    idempotency_keys.c.lease_until == row.lease_until,
                )
                .values(lease_until=now + self.lease)
            )
            return Begun(Claim.NEW if taken.rowcount == 1 else Claim.BUSY)

        return await self.store.write(op)

    async def wait(self, principal: str, key: str, request_hash: str, timeout_s: float) -> Begun:
        """`begin`, waiting up to `timeout_s` while the first call with this key is still running."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            begun = await self.begin(principal, key, request_hash)
            if begun.claim is not Claim.BUSY or loop.time() >= deadline:
                return begun
            await asyncio.sleep(self.poll_s)

    async def finish(self, principal: str, key: str, answer: Answer) -> None:
        """Store the answer for repeats (the first answer stored is kept)."""
        response = _ANSWER.dump_json(answer).decode()

        def op(conn: sa.Connection) -> None:
            conn.execute(
                sa.update(idempotency_keys)
                .where(
                    idempotency_keys.c.principal == principal,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.response.is_(None),
                )
                .values(response=response)
            )

        await self.store.write(op)

    async def abandon(self, principal: str, key: str) -> None:
        """Forget a reservation whose operation failed unexpectedly, so a repeat runs it afresh."""

        def op(conn: sa.Connection) -> None:
            conn.execute(
                sa.delete(idempotency_keys).where(
                    idempotency_keys.c.principal == principal,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.response.is_(None),
                )
            )

        await self.store.write(op)

    async def purge(self) -> int:
        """Delete expired keys; how many."""

        def op(conn: sa.Connection) -> int:
            result = conn.execute(sa.delete(idempotency_keys).where(idempotency_keys.c.expires_at <= utcnow()))
            return int(result.rowcount or 0)

        return await self.store.write(op)


def request_hash(operation: str, data: Any) -> str:
    """A stable hash of what a keyed request asks for (operation name and arguments)."""
    import hashlib

    return hashlib.sha256(orjson.dumps([operation, data], option=orjson.OPT_SORT_KEYS)).hexdigest()
