"""Oneserve: one native upsert, `POST {base}rest/contact/contact`, keyed by clientRef + contactRef.

Known (Oneserve's contact API page, seed 000): the base URL is `https://app.oneserve.co.uk/{siteUrl}/`; every
call carries a JWT in a header; the body is one JSON object (an array answers `REST0002`); the field table and
limits (see `wire.py`); success is `{"result": "success", "result_msg": ""}`; failures are
`{"result": "fail", "result_msg": ...}` such as `Unable to locate client ref supplied` and
`could not execute statement ...`; 401, 403, 404, 405, 415 and 500 exist. There is no delete and no read
of one contact.

Assumed, and made settings:
- `token_header`: the header is `OS-REST-AUTH-TOKEN`. The seed spells it `OS_REST_AUTH_TOKEN`, the support
  pages with hyphens; proxies such as nginx drop underscored headers by default, so hyphens are the default.
- `detail_types`: which contact type id each detail kind gets; each tenant configures its own ids.
- `length_unit`: seed 000 gives limits as "Text (80)" without saying what counts; characters by default, "utf16"
  for an Oneserve that counts UTF-16 code units.
- `usage_type_ids`: the tenant's usage type ids are its own; known, they are checked before sending.
- `removed_fields`: "Adds new contact data, or updates existing contacts" does not say what an update does with a
  field the body leaves out. "omit" (the default) takes the body as the whole contact, so a removed field is left
  out; "blank" is for an Oneserve that keeps what is left out: a text field removed since the last accepted write is
  sent as "", and a removed list (locations) as [], to clear them; a removed contact type id cannot be blanked and
  is left to Oneserve, with a warning.
Assumed, and handled whatever the truth is:
- The HTTP status of a `fail` answer (200, 400 or 500): `result` is read whatever the status. Only 401 and 429
  are decided by the status alone; 403, 404, 405 and 415 too, unless the body is a failure `result` with one of
  the messages above (an unknown client ref answered 404 is still that field's NOT_FOUND).
- Oneserve does not say whether it created or updated: CREATED when the gateway holds no remote id yet.
- A `fail` whose message is none of the vendor's documented ones is transient (VendorUnavailable) at a 5xx
  status and a rejection at any other.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator

from resolvers.errors import VendorError, VendorProtocolError, VendorRejected, VendorUnavailable
from resolvers.model import DetailKind
from resolvers.results import ErrorCode, FieldError, Vendor, VendorStatus
from resolvers.transport import VendorResponse, status_error
from resolvers.vendors.base import (
    Capabilities,
    Connector,
    CrossReference,
    Delivered,
    NotBlank,
    Prepared,
    RemovedFields,
    VendorSettings,
    blank_removed,
)
from resolvers.vendors.oneserve.mapping import CLIENT_REF_PATH, DEFAULT_DETAIL_TYPES, to_wire
from resolvers.vendors.oneserve.wire import (
    NOT_AN_OBJECT,
    ROLLED_BACK,
    UNKNOWN_CLIENT_REF,
    OneserveContact,
    OneserveReply,
)

#: The header Oneserve reads the JWT from (the seed writes it with underscores; see the module docstring).
DEFAULT_TOKEN_HEADER = "OS-REST-AUTH-TOKEN"
#: Statuses that mean what they say whatever the body holds.
_STATUS_DECIDES = frozenset({401, 429})
#: Statuses that mean what they say unless the body is a failure `result` Oneserve explains (`_explained`): which
#: status a failure comes with is ASSUMED, so the `result` is read first (VENDORS.md).
_STATUS_UNLESS_EXPLAINED = frozenset({403, 404, 405, 415})
# `result_msg` values shaped like a code (REST0002) are reported as the vendor code.
_VENDOR_CODE = re.compile(r"^[A-Z]+\d+$")
_DETAIL_KINDS = frozenset(kind.value.lower() for kind in DetailKind)


class OneserveSettings(VendorSettings):
    """The `[vendors.oneserve]` table: site URL, JWT, default client ref and the tenant's contact type ids."""

    token: SecretStr = Field(min_length=1)
    #: The client contacts belong to unless a contact's `vendorOptions.oneserve.clientRef` says otherwise.
    client_ref: Annotated[str, Field(min_length=1, max_length=50), NotBlank]
    #: Detail kind (phone, mobile, email, fax, web, other) -> the tenant's contact type id; a kind left out
    #: cannot be sent (UNKNOWN_TYPE).
    detail_types: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_DETAIL_TYPES))
    token_header: str = Field(default=DEFAULT_TOKEN_HEADER, pattern=r"^[A-Za-z0-9_-]+$")
    #: ASSUMED: what an update does with a field the body leaves out (see the module docstring).
    removed_fields: RemovedFields = "omit"
    #: ASSUMED: what a "Text (n)" limit counts: "characters" (code points), or "utf16" code units, as a Java or
    #: SQL Server nvarchar column does (an emoji counts 2).
    length_unit: Literal["characters", "utf16"] = "characters"
    #: The tenant's location usage type ids, when known: `locations[].usageTypeId` is then checked before sending
    #: (seed 000: "must match an existing usage type ID"); None sends any and lets Oneserve judge.
    usage_type_ids: list[int] | None = None

    @field_validator("detail_types")
    @classmethod
    def _known_kinds(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - _DETAIL_KINDS)
        if unknown:
            raise ValueError(f"unknown detail kinds {unknown}; use {sorted(_DETAIL_KINDS)}")
        return value


class OneserveConnector(Connector[OneserveSettings]):
    """Sends contacts to Oneserve's native upsert and reads its `result` answers."""

    vendor = Vendor.ONESERVE
    settings_type = OneserveSettings
    wire_model = OneserveContact
    capabilities = Capabilities(native_upsert=True, delete=False, read=False)
    to_wire = staticmethod(to_wire)

    async def upsert(self, prepared: Prepared, link: CrossReference | None) -> Delivered:
        """Create or update the contact (Oneserve decides by clientRef + contactRef).

        clientRef and contactRef are Oneserve's key and cannot be updated: a contact whose clientRef changed (by
        `vendorOptions.oneserve.clientRef` or the `client_ref` setting) is written under the new key, reported
        CREATED with a warning, and the record under the old key stays as it was."""
        payload = prepared.payload
        key = remote_id(payload)
        moved = link is not None and link.remote_id is not None and link.remote_id != key
        stuck: list[str] = []
        if self.settings.removed_fields == "blank" and link is not None and link.remote_id == key:
            payload, stuck = blank_removed(link.payload, payload)
        # Docs: https://support.oneserve.co.uk/hc/en-us/articles/360011064318-contact-API
        response = await self.transport.request(
            "POST",
            f"{self.settings.base}rest/contact/contact",
            json=payload,
            headers={
                self.settings.token_header: self.settings.token.get_secret_value(),
                "Accept": "application/json",
            },
        )
        error = self.reply_error(response, payload)
        if error is not None:
            raise error
        created = link is None or link.remote_id is None or moved
        warnings = (
            (
                f"clientRef changed to {payload.get('clientRef')}: written under that client as {key}; Oneserve "
                f"cannot move a contact, so {link.remote_id} was left in place",
            )
            if moved and link is not None
            else ()
        ) + tuple(f"{path}: removed, but it is not text and cannot be blanked; Oneserve may keep it" for path in stuck)
        return Delivered(
            status=VendorStatus.CREATED if created else VendorStatus.UPDATED,
            remote_id=key,
            http_status=response.status,
            warnings=warnings,
        )

    def reply_error(self, response: VendorResponse, payload: dict[str, Any]) -> VendorError | None:
        """The error an answer means, or None when Oneserve stored the contact."""
        reply = _reply(response)
        if response.status in _STATUS_DECIDES:
            return status_error(response, _describe(response, reply), vendor_code=_code(reply))
        explained = self._explained(response, reply, payload) if reply is not None and not reply.succeeded else None
        if explained is not None:
            return explained
        if response.status in _STATUS_UNLESS_EXPLAINED:
            return status_error(response, _describe(response, reply), vendor_code=_code(reply))
        if reply is None:
            if response.status >= 400:
                return status_error(response, _describe(response, reply))
            return VendorProtocolError(
                f"Oneserve answered HTTP {response.status} without a result: {response.excerpt()}",
                http_status=response.status,
            )
        if reply.succeeded:
            if 200 <= response.status < 300:
                return None
            return VendorProtocolError(
                f"Oneserve answered HTTP {response.status} with result success", http_status=response.status
            )
        return self._failure(response, reply)

    def _failure(self, response: VendorResponse, reply: OneserveReply) -> VendorError:
        """A failure `result` with none of Oneserve's documented messages (`_explained`): by the status."""
        status = response.status
        if status >= 500:
            return VendorUnavailable(
                f"Oneserve failed (HTTP {status}): {_reason(reply)}",
                http_status=status,
                vendor_code=_code(reply),
                retry_after=response.retry_after(),
            )
        return VendorRejected(f"Oneserve refused the contact: {_reason(reply)}", http_status=status)

    def _explained(
        self, response: VendorResponse, reply: OneserveReply, payload: dict[str, Any]
    ) -> VendorRejected | None:
        """The rejection a failure `result` with one of Oneserve's documented messages (seed 000) means, whatever
        the status; None for any other message."""
        status = response.status
        message = reply.result_msg
        if message == NOT_AN_OBJECT:
            return VendorRejected(
                f"{message}: Oneserve could not read the body as one JSON object: {reply.result_error_msg or ''}",
                http_status=status,
                vendor_code=message,
            )
        if message.startswith(UNKNOWN_CLIENT_REF):
            return self._unknown_client(status, message, payload)
        if "could not execute statement" in message.lower():
            return VendorRejected(
                f"{message} (Oneserve's database refused the contact: an overlong or mistyped field)",
                http_status=status,
                vendor_code=_code(reply),
            )
        if message.startswith(ROLLED_BACK):
            return VendorRejected(
                f"{message} (an id the tenant does not have, such as a contact or usage type)",
                http_status=status,
                vendor_code=_code(reply),
            )
        return None

    def _unknown_client(self, status: int, message: str, payload: dict[str, Any]) -> VendorRejected:
        client_ref = payload.get("clientRef")
        # The payload does not say where its clientRef came from; one differing from the configured default
        # can only have come from the caller. A configured one is not something the caller typed: field "".
        from_caller = client_ref != self.settings.client_ref
        origin = CLIENT_REF_PATH if from_caller else "the configured [vendors.oneserve] client_ref"
        text = f"{message}: no client {client_ref!r} in Oneserve (from {origin})"
        error = FieldError(
            field=CLIENT_REF_PATH if from_caller else "",
            code=ErrorCode.NOT_FOUND,
            message=text,
            vendor_field="clientRef",
            # Oneserve has no error codes: its documented message is the key a caller can match on.
            vendor_code=UNKNOWN_CLIENT_REF,
        )
        return VendorRejected(text, http_status=status, vendor_code=UNKNOWN_CLIENT_REF, errors=[error])


def remote_id(payload: dict[str, Any]) -> str:
    """Oneserve's key for a contact: `{clientRef}/{contactRef}`."""
    return f"{payload.get('clientRef')}/{payload.get('contactRef')}"


def _reply(response: VendorResponse) -> OneserveReply | None:
    data = response.json_or_none()
    if not isinstance(data, dict):
        return None
    try:
        return OneserveReply.model_validate(data)
    except ValidationError:
        return None


def _reason(reply: OneserveReply) -> str:
    if reply.result_error_msg:
        return f"{reply.result_msg}: {reply.result_error_msg}"
    return reply.result_msg or "(no message)"


def _describe(response: VendorResponse, reply: OneserveReply | None) -> str:
    reason = _reason(reply) if reply is not None else response.excerpt()
    return f"Oneserve answered HTTP {response.status}: {reason}"


def _code(reply: OneserveReply | None) -> str | None:
    if reply is not None and _VENDOR_CODE.fullmatch(reply.result_msg):
        return reply.result_msg
    return None
