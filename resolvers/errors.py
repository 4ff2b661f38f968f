"""The project's own error types. Foreign exceptions (aiohttp, asyncio) become these once, in `transport`."""

from __future__ import annotations

import re
from collections.abc import Sequence

from resolvers.results import ErrorCode, FieldError, VendorStatus

#: Secrets the gateway holds (vendor passwords, tokens, tickets, client secrets): never repeated in a message.
_KNOWN_SECRETS: set[str] = set()
#: What a credential looks like in text a vendor sent back: an authorization scheme and its value, a JWT, or a
#: JSON/form field whose name says secret.
_SECRET_PATTERNS = (
    (re.compile(r"(?i)\b(bearer|basic|soticket)\s+[A-Za-z0-9._~+/=:-]{4,}"), r"\1 ***"),
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "***"),
    (
        re.compile(
            r"(?i)(\"?[A-Za-z_-]*(?:token|secret|password|passwd|ticket|api[_-]?key|authorization|credential|session)"
            r"[A-Za-z_-]*\"?\s*[:=]\s*)(\"[^\"]*\"|[^\s,&}\]]+)"
        ),
        r'\1"***"',
    ),
)


def register_secret(value: str) -> None:
    """Remember a secret so that `scrub` removes it from any message (values under 4 characters are ignored)."""
    if len(value) >= 4:
        _KNOWN_SECRETS.add(value)


def scrub(text: str) -> str:
    """`text` without credentials: every registered secret, and anything shaped like one, becomes `***`."""
    for secret in _KNOWN_SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is unusable; the message names the key."""


class BeyondAllowList(GatewayError):
    """A write by a caller limited to some vendors would reach others: a delivery of the contact to a vendor outside
    its list is not done yet, and would send the contact as this write stores it."""


class VendorError(GatewayError):
    """A vendor call that did not succeed. Carries everything a `VendorResult` needs.

    `transient` means a later attempt may succeed; `sent` is False only when the request surely never reached the
    vendor (so even a create may be repeated safely).
    """

    status = VendorStatus.REJECTED
    code = ErrorCode.VENDOR_ERROR
    transient = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        vendor_code: str | None = None,
        errors: Sequence[FieldError] = (),
        sent: bool = True,
        retry_after: float | None = None,
    ) -> None:
        # Vendor bodies end up in messages (and so in answers, delivery rows and logs): never a credential.
        message = scrub(message)
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.vendor_code = vendor_code
        self.field_errors = list(errors)
        self.sent = sent
        self.retry_after = retry_after

    def to_field_errors(self) -> list[FieldError]:
        """The errors to report: the vendor's field errors, or one general error naming the whole contact."""
        if self.field_errors:
            return self.field_errors
        return [FieldError(field="", code=self.code, message=self.message, vendor_code=self.vendor_code)]


class VendorRejected(VendorError):
    """The vendor understood the request and said no (validation, business rule)."""

    code = ErrorCode.VENDOR_REJECTED


class AuthFailed(VendorError):
    """The vendor refused the gateway's credentials."""

    code = ErrorCode.AUTH_FAILED


class VendorNotFound(VendorError):
    """The vendor does not know the record (or the parent record) the call names."""

    code = ErrorCode.NOT_FOUND


class VendorConflict(VendorError):
    """The record changed at the vendor since it was read (412, 409)."""

    code = ErrorCode.CONFLICT


class VendorUnavailable(VendorError):
    """The vendor failed in a way that a later attempt may not repeat (5xx, dropped connection)."""

    status = VendorStatus.UNAVAILABLE
    code = ErrorCode.VENDOR_ERROR
    transient = True


class RateLimited(VendorUnavailable):
    """The vendor throttled the call (429); `retry_after` is its advice in seconds, if it gave one."""

    code = ErrorCode.RATE_LIMITED


class VendorTimeout(VendorUnavailable):
    """No answer within the vendor's deadline."""

    code = ErrorCode.TIMEOUT


class VendorUnreachable(VendorUnavailable):
    """The connection could not be opened: the request never reached the vendor."""

    def __init__(self, message: str, **kwargs: object) -> None:
        kwargs["sent"] = False
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class VendorProtocolError(VendorUnavailable):
    """The vendor answered something the connector cannot read (not JSON, wrong shape)."""


class ConnectionDropped(VendorUnavailable):
    """The connection broke after the request was sent: the vendor may or may not have acted on it."""
