"""The shared vocabulary of outcomes: vendors, statuses, error codes, field errors and per-vendor results."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Vendor(Enum):
    """A vendor backend the gateway can write to."""

    #: Members are singletons compared by identity: hash them by identity too, in C. Enum's own `__hash__` is a
    #: Python function, and a vendor keys every per-vendor dict of a write (~1% of the CPU at c=50).
    __hash__ = object.__hash__

    ONESERVE = "oneserve"
    EROS = "eros"
    JIM2 = "jim2"
    SUPEROFFICE = "superoffice"
    VALOMNIA = "valomnia"


class VendorStatus(Enum):
    """What happened to one contact at one vendor."""

    __hash__ = object.__hash__  # as `Vendor`'s

    CREATED = "CREATED"
    UPDATED = "UPDATED"
    UNCHANGED = "UNCHANGED"
    DELETED = "DELETED"
    VALID = "VALID"
    INVALID = "INVALID"
    REJECTED = "REJECTED"
    UNAVAILABLE = "UNAVAILABLE"
    QUEUED = "QUEUED"
    SKIPPED = "SKIPPED"


#: Statuses that mean the vendor holds (or validly would hold) what was sent.
SUCCESS_STATUSES = frozenset(
    {
        VendorStatus.CREATED,
        VendorStatus.UPDATED,
        VendorStatus.UNCHANGED,
        VendorStatus.DELETED,
        VendorStatus.VALID,
    }
)


class UpsertStatus(Enum):
    """The overall outcome of one operation across every targeted vendor."""

    SUCCEEDED = "SUCCEEDED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"


class ErrorCode(Enum):
    """The one documented list of error codes (the design document, DESIGN.md, beside this repository)."""

    REQUIRED = "REQUIRED"
    TOO_LONG = "TOO_LONG"
    INVALID_FORMAT = "INVALID_FORMAT"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    TOO_MANY = "TOO_MANY"
    NOT_SUPPORTED = "NOT_SUPPORTED"
    VENDOR_REJECTED = "VENDOR_REJECTED"
    AUTH_FAILED = "AUTH_FAILED"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    TIMEOUT = "TIMEOUT"
    VENDOR_ERROR = "VENDOR_ERROR"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One violated rule: `field` is the canonical input path (`details[1].value`), `vendor_field` the vendor's name."""

    field: str
    code: ErrorCode
    message: str
    vendor_field: str | None = None
    vendor_code: str | None = None


@dataclass(slots=True)
class VendorResult:
    """The outcome of one operation at one vendor."""

    vendor: Vendor
    status: VendorStatus
    remote_id: str | None = None
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    http_status: int | None = None
    attempts: int = 0
    duration_ms: float = 0.0
    #: How an existing record at the vendor was adopted when the gateway had no cross-reference for it.
    matched_by: str | None = None
    #: The outbox delivery that carried this call (QUEUED results are redelivered under it).
    delivery_id: int | None = None
    #: The vendor's Retry-After advice, in seconds (internal: schedules the redelivery).
    retry_after: float | None = None
    #: A create that may have reached the vendor failed, and nothing can find its record again: repeating it could
    #: duplicate (internal: such a write is FAILED for an operator, never redelivered on its own).
    ambiguous: bool = False
    #: A create was sent and its answer lost (or unreadable): the record may exist, made from the payload sent
    #: (internal: the link keeps that payload, so a later lookup or delete can find the record by it).
    maybe_created: bool = False


def overall_status(results: list[VendorResult]) -> UpsertStatus:
    """SUCCEEDED when every vendor not skipped succeeded (and one was not skipped), FAILED when none did (every one
    skipped included), PARTIAL otherwise."""
    relevant = [r for r in results if r.status is not VendorStatus.SKIPPED]
    ok = sum(1 for r in relevant if r.status in SUCCESS_STATUSES)
    if ok == len(relevant):
        return UpsertStatus.SUCCEEDED if relevant or not results else UpsertStatus.FAILED
    return UpsertStatus.FAILED if ok == 0 else UpsertStatus.PARTIAL
