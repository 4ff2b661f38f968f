"""SuperOffice WebAPI (REST): contacts are ContactEntity records, created by POST, replaced by PUT, found by DbiKey.

KNOWN (seed 003, VENDORS.md, SuperOffice's REST reference):
- `POST api/v1/Contact` creates a ContactEntity and answers 200 `ContactEntityWithLinks` with the new ContactId;
  `GET api/v1/Contact/{id}` reads one; `PUT api/v1/Contact/{id}` replaces the whole entity and answers 412 when
  the record changed since `If-Unmodified-Since`; `DELETE api/v1/Contact/{id}` answers 204.
- `GET api/v1/Contact` is an OData search over the "SimpleContact" archive: `$select`, `$filter` (`col eq 'x'`),
  `$top`; it answers `{"odata.metadata", "odata.nextLink", "value": [{"PrimaryKey", "EntityName", ...}]}`.
- `Authorization: SOTicket <ticket>` with `SO-AppToken` (server to server), `Bearer <token>` or `Basic`.
- Errors are the HTTP status plus `{"Error": true, "ErrorType", "ErrorMessage", "ErrorSource"}`.
- Column limits (see `wire.py`); DbiKey is "the primary key for the integrated entry in the external datasource".

ASSUMED (each one a setting, or handled both ways):
- `dbi_key_column`: the search archive's column for DbiKey is `dbiKey` (the published SimpleContact column list
  does not show one); `lookup_path`: the search runs at `api/v1/Contact`.
- `persons_inline`: SaveContactEntity stores the persons given in `Persons` (the seed lists them in the request).
- `country_ids`: a country's CountryId is its ISO 3166-1 numeric code unless overridden per ISO code.
- `job_title_field`: `jobTitle` goes to the person's `Position` (or `Title`, or nowhere).
- `length_unit`: the column lengths VENDORS.md lists count UTF-16 code units, as SQL Server's nvarchar does (an
  emoji fills two), or characters; the wire model reads it from the validation context (`wire_context`).
- Throttling is 429 with `Retry-After`. A 404 means the addressed record is gone; an ErrorType with `Security`,
  `Unauthorized` or `Authentication` in it refused credentials; any other 4xx is a rejection (NOT_FOUND when the
  ErrorType says `NotFound`: a list item or reference the record names), and a field named in the message in single
  quotes (`'Emails[0].Value'`) is mapped back to the canonical input path.
- The credentials are static (a ticket, a token or a password from the configuration): SuperOffice's own ticket
  renewal needs the partner's signed system-user token, outside the gateway, so a 401 is AuthFailed at once.

Decisions:
- Update is read-modify-write: GET the record, replace the fields the gateway owns (`mapping.put_body`), PUT it
  with `If-Unmodified-Since` = the UpdatedDate just read. PUT replaces the whole entity, so this keeps what others
  own (owner, interests, other persons); a 412 means someone wrote in between: read again and retry once, then
  VendorConflict.
- Without a remote id the record is first looked up by DbiKey (= the contact's id) and adopted; so a create whose
  answer was lost is never repeated as a second record (`reconciles()` is always True). The search asks for at
  most `lookup_top` rows; an answer that fills them (or names an `odata.nextLink`) may have left this contact's
  record out, so the create after it is one a repeat might not find: its lost answer is reported as possibly
  written, not repeated. A delete without a remote id deletes every record with the DbiKey.
- An update answering 404 (deleted at SuperOffice), or reading a record marked `Deleted` (seed 003: "If nonzero,
  then this contact is 'deleted' and should generally not be shown"): look it up by DbiKey, else create anew, with
  a warning. A lookup skips such records too (with a warning naming each), so a write never lands in a record
  SuperOffice does not show.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, ValidationInfo, field_validator

from resolvers.errors import (
    AuthFailed,
    VendorConflict,
    VendorError,
    VendorNotFound,
    VendorProtocolError,
    VendorRejected,
)
from resolvers.results import ErrorCode, FieldError, Vendor, VendorStatus
from resolvers.transport import Transport, VendorResponse, path_segment, status_error
from resolvers.vendors.base import (
    Capabilities,
    Connector,
    CrossReference,
    Delivered,
    Mapped,
    Prepared,
    VendorSettings,
    sending_create,
)
from resolvers.vendors.superoffice.mapping import kept, put_body, to_wire
from resolvers.vendors.superoffice.wire import (
    DBI_KEY_LENGTH,
    ContactEntity,
    ContactEntityReply,
    Id32,
    ODataSlimResponse,
    SoError,
)

AuthScheme = Literal["soticket", "bearer", "basic"]
#: Which secrets each auth scheme needs.
REQUIRED_SECRETS: Mapping[str, tuple[str, ...]] = {
    "soticket": ("ticket", "app_token"),
    "bearer": ("token",),
    "basic": ("username", "password"),
}
#: The match key reported when an existing record is adopted.
MATCHED_BY = "DbiKey"
# A wire field named in an error message, in single quotes: 'Name', 'Emails[0].Value', 'Persons[0].Firstname'.
_QUOTED_FIELD = re.compile(r"'([A-Z][A-Za-z0-9]*(?:\[\d+\])?(?:\.[A-Z][A-Za-z0-9]*(?:\[\d+\])?)*)'")
_PERSON_PATH = re.compile(r"^Persons\[(\d+)\]")
_AUTH_TYPES = ("security", "unauthorized", "authentication")


class _Gone(VendorNotFound):
    """The addressed record is not there for the gateway to update: deleted (404) or marked `Deleted`."""


class SuperOfficeSettings(VendorSettings):
    """`[vendors.superoffice]`: the tenant URL, how the gateway authenticates, and tenant defaults."""

    #: `soticket` (ticket + app_token), `bearer` (token) or `basic` (username + password).
    auth: AuthScheme = "soticket"
    ticket: SecretStr | None = Field(default=None, validate_default=True)
    #: The partner application token (`SO-AppToken`); required for soticket, sent with any scheme when given.
    app_token: SecretStr | None = Field(default=None, validate_default=True)
    token: SecretStr | None = Field(default=None, validate_default=True)
    username: str | None = Field(default=None, validate_default=True)
    password: SecretStr | None = Field(default=None, validate_default=True)
    #: Default Category list item; `vendorOptions.superoffice.categoryId` overrides per contact.
    category_id: Id32 | None = None
    #: Default Business list item; `vendorOptions.superoffice.businessId` overrides per contact.
    business_id: Id32 | None = None
    #: ASSUMED: ISO 3166-1 alpha-2 code -> the tenant's CountryId, where it is not the ISO numeric code.
    country_ids: dict[str, Id32] = Field(default_factory=dict)
    #: ASSUMED: the OData search the DbiKey lookup runs on, relative to base_url.
    lookup_path: str = "api/v1/Contact"
    #: ASSUMED: the search archive's column holding DbiKey.
    dbi_key_column: str = Field(default="dbiKey", pattern=r"^[A-Za-z][A-Za-z0-9_/]*$")
    #: The most rows a DbiKey search asks for (`$top`): the search ignores case and lists records marked Deleted.
    lookup_top: int = Field(default=50, ge=1, le=1000)
    #: ASSUMED: the Contact endpoint stores the person given in `Persons`; false sends no person.
    persons_inline: bool = True
    #: ASSUMED: the person field `jobTitle` goes to. "Position" (the default) or "Title": the seed's PersonEntity has
    #: both as text, and SuperOffice's database documents position as a list item and title as free text; "": not
    #: sent (warned).
    job_title_field: Literal["Position", "Title", ""] = "Position"
    #: ASSUMED: how the columns' lengths are counted. "utf16" (SQL Server's nvarchar, as SuperOffice Online runs on:
    #: an emoji fills two) or "characters".
    length_unit: Literal["utf16", "characters"] = "utf16"

    @field_validator("ticket", "app_token", "token", "username", "password")
    @classmethod
    def _secret_for_scheme(cls, value: Any, info: ValidationInfo) -> Any:
        scheme = info.data.get("auth")
        # `auth` itself invalid: its own error is enough.
        if scheme is None or info.field_name not in REQUIRED_SECRETS[scheme]:
            return value
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not text:
            raise ValueError(f"required when auth = {scheme!r}")
        return value

    @field_validator("lookup_path")
    @classmethod
    def _relative(cls, value: str) -> str:
        value = value.strip("/")
        if not value:
            raise ValueError("must name the search endpoint, e.g. api/v1/Contact")
        return value

    @field_validator("country_ids")
    @classmethod
    def _iso_keys(cls, value: dict[str, int]) -> dict[str, int]:
        bad = sorted(k for k in value if not re.fullmatch(r"[A-Z]{2}", k))
        if bad:
            raise ValueError(f"keys must be ISO 3166-1 alpha-2 codes such as GB, got {bad}")
        return value


class SuperOfficeConnector(Connector[SuperOfficeSettings]):
    """SuperOffice: create, read-modify-write update, delete; reconciles by DbiKey."""

    vendor: ClassVar[Vendor] = Vendor.SUPEROFFICE
    settings_type: ClassVar[type[VendorSettings]] = SuperOfficeSettings
    wire_model: ClassVar[type[BaseModel]] = ContactEntity
    capabilities: ClassVar[Capabilities] = Capabilities(delete=True, read=True, native_upsert=False)
    to_wire = staticmethod(to_wire)

    def __init__(self, settings: SuperOfficeSettings, transport: Transport) -> None:
        super().__init__(settings, transport)
        self.wire_context = {"length_unit": settings.length_unit}
        self._headers = auth_headers(settings)

    @property
    def contact_url(self) -> str:
        """The ContactEntity collection."""
        return f"{self.settings.base}api/v1/Contact"

    @property
    def lookup_url(self) -> str:
        """The OData search the DbiKey lookup runs on."""
        return f"{self.settings.base}{self.settings.lookup_path}"

    def reconciles(self, prepared: Prepared) -> bool:
        """Always: DbiKey (the contact's id) is always sent, and a create first looks it up."""
        return True

    async def upsert(self, prepared: Prepared, link: CrossReference | None) -> Delivered:
        """Update the linked record; else adopt the one with this DbiKey; else create one."""
        payload = prepared.payload
        sources = prepared.sources or {}
        warnings: list[str] = []
        if link is not None and link.remote_id:
            try:
                response = await self._update(link.remote_id, payload, link.payload, sources)
            except _Gone as gone:
                warnings.append(
                    f"SuperOffice contact {link.remote_id} was gone ({gone.message}); "
                    "looked it up by DbiKey, else created a new one"
                )
            else:
                return Delivered(
                    VendorStatus.UPDATED,
                    link.remote_id,
                    http_status=response.status,
                    warnings=kept(payload, link.payload),
                )
        dbi_key = str(payload["DbiKey"])
        found, complete = await self._find(dbi_key)
        for number in found:
            candidate = str(number)
            try:
                response = await self._update(candidate, payload, None, sources)
            except _Gone as gone:
                # Marked Deleted (or deleted since the search): not this contact's record any more; the next one
                # with the DbiKey, else a new record.
                warnings.append(
                    f"SuperOffice contact {candidate} has DbiKey {dbi_key!r} but was {gone.message}; not used"
                )
                continue
            if len(found) > 1:
                warnings.append(f"several SuperOffice contacts have DbiKey {dbi_key!r} ({found}); adopted {candidate}")
            return Delivered(
                VendorStatus.UPDATED,
                candidate,
                http_status=response.status,
                warnings=tuple(warnings),
                matched_by=MATCHED_BY,
            )
        sending_create(findable=complete)  # a repeat looks the DbiKey up first, and finds it if the search was whole
        response, created = await self._create(payload, sources)
        return Delivered(VendorStatus.CREATED, created, http_status=response.status, warnings=tuple(warnings))

    async def delete(self, contact_id: str, link: CrossReference | None) -> Delivered:
        """Delete the linked record, else every one whose DbiKey is the contact's id; nothing there: SKIPPED."""
        remote = link.remote_id if link is not None and not link.deleted else None
        if not remote and len(contact_id) > DBI_KEY_LENGTH:
            # No record can have it (the column holds 255), and a lookup URL that long is refused by servers.
            return Delivered(
                VendorStatus.SKIPPED,
                None,
                warnings=(
                    f"no SuperOffice contact can have a DbiKey of {len(contact_id)} characters: nothing to delete",
                ),
            )
        if not remote:
            return await self._delete_by_dbi_key(contact_id)
        # Docs: https://docs.superoffice.com/en/api/reference/restful/rest/Contact/v1ContactEntity_DeleteContactEntity.html
        response = await self._request("DELETE", self._record_url(remote))
        if response.status == 404:
            return Delivered(
                VendorStatus.SKIPPED,
                None,
                http_status=404,
                warnings=(f"SuperOffice contact {remote} was already gone: nothing to delete",),
            )
        if not 200 <= response.status < 300:
            raise self._error(response)
        return Delivered(VendorStatus.DELETED, remote, http_status=response.status)

    async def _delete_by_dbi_key(self, contact_id: str) -> Delivered:
        """Delete every record whose DbiKey is the contact's id (a duplicate, or one marked Deleted, may come first:
        deleting only the first could leave the live one); none there: SKIPPED."""
        found, complete = await self._find(contact_id)
        deleted: list[str] = []
        status: int | None = None
        for number in found:
            # Docs: https://docs.superoffice.com/en/api/reference/restful/rest/Contact/v1ContactEntity_DeleteContactEntity.html
            response = await self._request("DELETE", self._record_url(str(number)))
            if response.status == 404:
                continue  # gone since the search
            if not 200 <= response.status < 300:
                raise self._error(response)
            deleted.append(str(number))
            status = response.status
        warnings: list[str] = []
        if len(found) > 1:
            warnings.append(f"several SuperOffice contacts had DbiKey {contact_id!r} ({found}); deleted {deleted}")
        if not complete:
            warnings.append(
                f"the DbiKey search answered its limit of {self.settings.lookup_top} rows (lookup_top): more records "
                f"with DbiKey {contact_id!r} may remain"
            )
        if not deleted:
            warnings.append(f"no SuperOffice contact has DbiKey {contact_id!r}: nothing to delete")
            return Delivered(VendorStatus.SKIPPED, None, warnings=tuple(warnings))
        return Delivered(
            VendorStatus.DELETED, deleted[0], http_status=status, warnings=tuple(warnings), matched_by=MATCHED_BY
        )

    # -- calls ----------------------------------------------------------------------------------------------------

    async def _find(self, dbi_key: str) -> tuple[list[int], bool]:
        """The ContactIds whose DbiKey is `dbi_key`, lowest first; and whether the search answered every hit (it
        did not when it filled `lookup_top` rows or named a next page)."""
        # Docs: https://docs.superoffice.com/en/api/reference/restful/rest/Contact/v1ContactEntity_GetAll.html
        # (OData over the SimpleContact archive; the DbiKey column name is ASSUMED: `dbi_key_column`).
        literal = dbi_key.replace("'", "''")
        column = self.settings.dbi_key_column
        top = self.settings.lookup_top
        params = {"$select": f"contactId,{column}", "$filter": f"{column} eq '{literal}'", "$top": str(top)}
        response = await self._request("GET", self.lookup_url, params=params)
        if not 200 <= response.status < 300:
            raise self._error(response)
        answer = response.parse(ODataSlimResponse, "SuperOffice's contact search answered an unexpected shape")
        rows = answer.value
        if any(column not in row for row in rows):
            # Without the column the exact-case check below cannot be made, and the search ignores case: adopting
            # a hit could update another contact's record.
            raise VendorProtocolError(
                f"SuperOffice's contact search answered rows without the {column!r} column (the dbi_key_column "
                f"setting), so which record has DbiKey {dbi_key!r} cannot be checked: {response.excerpt()}",
                http_status=response.status,
            )
        try:
            # The database may compare text ignoring case: only an exact DbiKey is this contact's record.
            ids = sorted({int(row.get("PrimaryKey") or row["contactId"]) for row in rows if row[column] == dbi_key})
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            raise VendorProtocolError(
                f"SuperOffice's contact search answered an unexpected shape: {response.excerpt()}",
                http_status=response.status,
            ) from exc
        return ids, len(rows) < top and not answer.next_link

    async def _create(self, payload: Mapping[str, Any], sources: Mapping[str, str]) -> tuple[VendorResponse, str]:
        # Docs: https://docs.superoffice.com/en/api/reference/restful/rest/Contact/v1ContactEntity_PostContactEntity.html
        # (shared/seeds/003)
        response = await self._request("POST", self.contact_url, json=payload)
        if not 200 <= response.status < 300:
            raise self._error(response, sources, person_index=0)
        return response, str(self._entity(response).ContactId)

    async def _update(
        self,
        remote_id: str,
        payload: Mapping[str, Any],
        previous: Mapping[str, Any] | None,
        sources: Mapping[str, str],
    ) -> VendorResponse:
        """Read, replace what the gateway owns, PUT with If-Unmodified-Since; one more round after a 412."""
        response, person_index = await self._put(remote_id, payload, previous)
        if response.status == 412:
            # Someone saved the record between our read and our write: read their version and try once more.
            response, person_index = await self._put(remote_id, payload, previous)
            if response.status == 412:
                raise VendorConflict(
                    f"SuperOffice contact {remote_id} kept changing while the gateway updated it (412 twice)",
                    http_status=412,
                    vendor_code=_error_body(response).ErrorType,
                )
        if not 200 <= response.status < 300:
            raise self._error(response, sources, person_index)
        return response

    async def _put(
        self, remote_id: str, payload: Mapping[str, Any], previous: Mapping[str, Any] | None
    ) -> tuple[VendorResponse, int | None]:
        current = await self._read(remote_id)
        body, person_index = put_body(current, payload, previous, self.settings.job_title_field)
        body["ContactId"] = int(current.get("ContactId") or remote_id)
        headers = {}
        since = if_unmodified_since(current.get("UpdatedDate"))
        if since is not None:
            headers["If-Unmodified-Since"] = since
        # Docs: https://docs.superoffice.com/en/api/reference/restful/rest/Contact/v1ContactEntity_PutContactEntity.html
        response = await self._request("PUT", self._record_url(remote_id), json=body, headers=headers)
        if response.status == 404:
            raise _Gone("deleted at SuperOffice", http_status=404, vendor_code=_error_body(response).ErrorType)
        return response, person_index

    async def _read(self, remote_id: str) -> dict[str, Any]:
        # Docs: https://docs.superoffice.com/en/api/reference/restful/rest/Contact/v1ContactEntity_GetContactEntity.html
        response = await self._request("GET", self._record_url(remote_id))
        if response.status == 404:
            raise _Gone("deleted at SuperOffice", http_status=404, vendor_code=_error_body(response).ErrorType)
        if not 200 <= response.status < 300:
            raise self._error(response)
        data = response.json()
        if not isinstance(data, dict):
            raise VendorProtocolError(
                f"SuperOffice answered a contact that is not an object: {response.excerpt()}",
                http_status=response.status,
            )
        if data.get("Deleted"):
            # Seed 003: "If nonzero, then this contact is 'deleted' and should generally not be shown".
            raise _Gone("marked Deleted at SuperOffice", http_status=response.status)
        return data

    async def _request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> VendorResponse:
        return await self.transport.request(
            method, url, json=json, params=params, headers={**self._headers, **(headers or {})}
        )

    def _record_url(self, remote_id: str) -> str:
        return f"{self.contact_url}/{path_segment(remote_id)}"

    @staticmethod
    def _entity(response: VendorResponse) -> ContactEntityReply:
        reply = response.parse(ContactEntityReply, f"SuperOffice answered HTTP {response.status} without a ContactId")
        if reply.ContactId <= 0:
            raise VendorProtocolError(f"SuperOffice answered ContactId {reply.ContactId}", http_status=response.status)
        return reply

    def _error(
        self,
        response: VendorResponse,
        sources: Mapping[str, str] | None = None,
        person_index: int | None = None,
    ) -> VendorError:
        """The error an answer means: auth, not found, conflict, throttled, unavailable, or a rejection."""
        reply = _error_body(response)
        status = response.status
        message = reply.ErrorMessage or f"SuperOffice answered HTTP {status}: {response.excerpt()}"
        code = reply.ErrorType
        kind = (code or "").lower()
        if status in (401, 403) or any(word in kind for word in _AUTH_TYPES):
            return AuthFailed(message, http_status=status, vendor_code=code)
        if status == 404:
            # Only the status says the addressed record is gone (the caller then looks it up or creates it anew);
            # a NotFound ErrorType on a 400 is a list item or other reference the record names: a rejection.
            return VendorNotFound(message, http_status=status, vendor_code=code)
        error = status_error(response, message, vendor_code=code)
        if isinstance(error, VendorRejected):
            field_code = ErrorCode.NOT_FOUND if "notfound" in kind else ErrorCode.VENDOR_REJECTED
            error.field_errors = field_errors(reply, sources or {}, person_index, field_code)
        return error


def _error_body(response: VendorResponse) -> SoError:
    data = response.json_or_none()
    if isinstance(data, dict):
        try:
            return SoError.model_validate(data)
        except ValidationError:
            pass
    return SoError(Error=True)


def field_errors(
    reply: SoError,
    sources: Mapping[str, str],
    person_index: int | None,
    code: ErrorCode = ErrorCode.VENDOR_REJECTED,
) -> list[FieldError]:
    """FieldErrors for the wire fields SuperOffice's message names, pointing at the canonical input."""
    text = " ".join(t for t in (reply.ErrorMessage, reply.ErrorSource) if t)
    out: list[FieldError] = []
    for wire_path in dict.fromkeys(_QUOTED_FIELD.findall(text)):
        out.append(
            FieldError(
                field=canonical_path(wire_path, sources, person_index),
                code=code,
                message=reply.ErrorMessage or "rejected by SuperOffice",
                vendor_field=wire_path,
                vendor_code=reply.ErrorType,
            )
        )
    return out


def canonical_path(wire_path: str, sources: Mapping[str, str], person_index: int | None = None) -> str:
    """The canonical input behind a wire path ("" when it is not the caller's): itself, a parent, or its items."""
    person = _PERSON_PATH.match(wire_path)
    if person is not None:
        # In a PUT body the gateway's person may sit at another index, among persons that are not the caller's.
        if person_index is None or int(person.group(1)) != person_index:
            return ""
        wire_path = "Persons[0]" + wire_path[person.end() :]
    return Mapped(sources=dict(sources)).source(wire_path)


def auth_headers(settings: SuperOfficeSettings) -> dict[str, str]:
    """The headers every call carries for the configured scheme."""
    headers = {"Accept": "application/json"}
    if settings.app_token is not None and settings.app_token.get_secret_value():
        headers["SO-AppToken"] = settings.app_token.get_secret_value()
    if settings.auth == "soticket" and settings.ticket is not None:
        headers["Authorization"] = f"SOTicket {settings.ticket.get_secret_value()}"
    elif settings.auth == "bearer" and settings.token is not None:
        headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
    elif settings.auth == "basic" and settings.password is not None:
        pair = f"{settings.username}:{settings.password.get_secret_value()}".encode()
        headers["Authorization"] = f"Basic {base64.b64encode(pair).decode('ascii')}"
    return headers


def if_unmodified_since(updated: Any) -> str | None:
    """An HTTP date for `If-Unmodified-Since` from SuperOffice's UpdatedDate (UTC when it has no offset)."""
    if not isinstance(updated, str) or not updated:
        return None
    try:
        when = datetime.fromisoformat(updated)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return format_datetime(when.astimezone(UTC).replace(microsecond=0), usegmt=True)
