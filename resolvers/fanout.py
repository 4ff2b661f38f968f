"""The engine: validate a contact for every targeted vendor, call them concurrently, remember what each said.

Each vendor runs in its own task under its own deadline (`timeout_s`, all attempts included), concurrency limit and
rate limit; one slow or failing vendor never delays or fails the others beyond its deadline. A transient failure is
retried only when repeating the call cannot duplicate the record: the vendor upserts natively, the call updates a
known remote id, or the request surely never reached the vendor.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from resolvers.errors import VendorError, VendorTimeout
from resolvers.model import Contact, payload_hash
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
from resolvers.store import LinkUpdate, Store
from resolvers.vendors.base import Connector, CrossReference, Delivered, Prepared

log = logging.getLogger(__name__)

#: First retry waits about this long; each further one doubles it (with full jitter).
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0


@dataclass(slots=True)
class Outcome:
    """One operation's answer: the overall status, the contact id, and one result per targeted vendor."""

    status: UpsertStatus
    contact_id: str
    results: list[VendorResult]
    stored: bool


class RateLimit:
    """At most `rate` calls per second (a token bucket of one second's burst); 0 means unlimited."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = max(rate, 1.0)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until a call may start."""
        if self.rate <= 0:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(max(self.rate, 1.0), self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


def backoff(attempt: int, retry_after: float | None) -> float:
    """Delay before attempt `attempt + 1`: the vendor's Retry-After when given, else capped exponential jitter."""
    if retry_after is not None:
        return retry_after
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))


class FanOut:
    """Runs operations across the configured vendors and records the outcome in the store."""

    def __init__(self, connectors: dict[Vendor, Connector[Any]], store: Store) -> None:
        self.connectors = connectors
        self.store = store
        self._slots = {v: asyncio.Semaphore(c.settings.max_concurrency) for v, c in connectors.items()}
        self._rates = {v: RateLimit(c.settings.rate_per_s) for v, c in connectors.items()}

    def targets(self, vendors: Sequence[Vendor] | None) -> list[Vendor]:
        """The vendors an operation addresses, in registry order: all configured ones when none are named."""
        if vendors is None:
            return list(self.connectors)
        wanted = set(vendors)
        return [v for v in Vendor if v in wanted]

    def _not_configured(self, vendor: Vendor) -> VendorResult:
        return VendorResult(
            vendor=vendor,
            status=VendorStatus.SKIPPED,
            errors=[FieldError(field="", code=ErrorCode.NOT_SUPPORTED, message="vendor is not configured")],
        )

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
        """Validate, send to every valid vendor concurrently, record the contact and each vendor's answer."""
        prepared = self.prepare(contact, vendors)
        links = await self.store.links(contact.id)
        results: dict[Vendor, VendorResult] = {}
        calls: dict[Vendor, Awaitable[VendorResult]] = {}
        hashes: dict[Vendor, str] = {}
        for vendor, item in prepared.items():
            if isinstance(item, VendorResult):
                results[vendor] = item
            elif not item.valid:
                results[vendor] = VendorResult(
                    vendor=vendor, status=VendorStatus.INVALID, errors=item.errors, warnings=item.warnings
                )
            else:
                hashes[vendor] = payload_hash(item.payload)
                link = links.get(vendor)
                if not force and _unchanged(link, hashes[vendor]):
                    results[vendor] = VendorResult(
                        vendor=vendor,
                        status=VendorStatus.UNCHANGED,
                        remote_id=link.remote_id if link else None,
                        warnings=item.warnings,
                    )
                else:
                    calls[vendor] = self._upsert_one(vendor, item, link)
        results.update(zip(calls, await asyncio.gather(*calls.values()), strict=True))
        ordered = [results[v] for v in prepared]
        stored = any(isinstance(p, Prepared) and p.valid for p in prepared.values())
        if stored:
            updates = [
                _link_update(r, hashes.get(r.vendor), _payload_of(prepared.get(r.vendor)))
                for r in ordered
                if r.vendor in calls
            ]
            await self.store.record(contact, updates, contact.id)
        return Outcome(status=overall_status(ordered), contact_id=contact.id, results=ordered, stored=stored)

    async def delete(self, contact_id: str, vendors: Sequence[Vendor] | None) -> Outcome:
        """Delete the contact at every targeted vendor that can delete; the others report SKIPPED."""
        links = await self.store.links(contact_id)
        results: dict[Vendor, VendorResult] = {}
        calls: dict[Vendor, Awaitable[VendorResult]] = {}
        for vendor in self.targets(vendors):
            connector = self.connectors.get(vendor)
            if connector is None:
                results[vendor] = self._not_configured(vendor)
            elif not connector.capabilities.delete:
                results[vendor] = VendorResult(
                    vendor=vendor,
                    status=VendorStatus.SKIPPED,
                    errors=[
                        FieldError(
                            field="",
                            code=ErrorCode.NOT_SUPPORTED,
                            message=f"{vendor.name} cannot delete contacts",
                        )
                    ],
                )
            else:
                calls[vendor] = self._run(vendor, partial(connector.delete, contact_id, links.get(vendor)), safe=True)
        results.update(zip(calls, await asyncio.gather(*calls.values()), strict=True))
        ordered = [results[v] for v in self.targets(vendors)]
        updates = [_link_update(r, None) for r in ordered if r.vendor in calls]
        if updates:
            await self.store.record(None, updates, contact_id)
        return Outcome(status=overall_status(ordered), contact_id=contact_id, results=ordered, stored=bool(updates))

    def _upsert_one(self, vendor: Vendor, prepared: Prepared, link: CrossReference | None) -> Awaitable[VendorResult]:
        connector = self.connectors[vendor]
        # Repeating a native upsert, an update by remote id, or a create that first looks for the record it may
        # already have made cannot create a second record.
        safe = (
            connector.capabilities.native_upsert
            or bool(link and link.remote_id and not link.deleted)
            or connector.reconciles(prepared)
        )
        live_link = link if link is not None and not link.deleted else None
        return self._run(vendor, lambda: connector.upsert(prepared, live_link), safe=safe, warnings=prepared.warnings)

    async def _run(
        self,
        vendor: Vendor,
        call: Callable[[], Awaitable[Delivered]],
        *,
        safe: bool,
        warnings: Sequence[str] = (),
    ) -> VendorResult:
        """One vendor's operation under its deadline, limits and retry policy; never raises."""
        connector = self.connectors[vendor]
        settings = connector.settings
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + settings.timeout_s
        attempts = 0
        result = VendorResult(vendor=vendor, status=VendorStatus.UNAVAILABLE, warnings=list(warnings))
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    attempts += 1
                    try:
                        async with self._slots[vendor]:
                            await self._rates[vendor].acquire()
                            delivered = await call()
                    except VendorError as exc:
                        if not exc.transient or attempts >= settings.max_attempts or not (safe or not exc.sent):
                            raise
                        delay = backoff(attempts, exc.retry_after)
                        if loop.time() + delay >= deadline:
                            raise
                        await asyncio.sleep(delay)
                        continue
                    result.status = delivered.status
                    result.remote_id = delivered.remote_id
                    result.http_status = delivered.http_status
                    result.warnings.extend(delivered.warnings)
                    result.matched_by = delivered.matched_by
                    break
        except TimeoutError:
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


def _fail(result: VendorResult, exc: VendorError) -> None:
    result.status = exc.status
    result.errors = exc.to_field_errors()
    result.http_status = exc.http_status


def _unchanged(link: CrossReference | None, new_hash: str) -> bool:
    return (
        link is not None
        and not link.deleted
        and link.hash == new_hash
        and link.last_status in SUCCESS_STATUSES
        and link.last_status is not VendorStatus.DELETED
    )


def _payload_of(item: Prepared | VendorResult | None) -> dict[str, Any] | None:
    return item.payload if isinstance(item, Prepared) else None


def _link_update(result: VendorResult, new_hash: str | None, payload: dict[str, Any] | None = None) -> LinkUpdate:
    ok = result.status in SUCCESS_STATUSES
    error = None if ok else ", ".join(sorted({e.code.value for e in result.errors})) or result.status.value
    return LinkUpdate(
        vendor=result.vendor,
        status=result.status,
        remote_id=result.remote_id if ok else None,
        hash=new_hash if ok else None,
        payload=payload if ok else None,
        error=error,
        deleted=True if result.status is VendorStatus.DELETED else (False if ok else None),
    )
