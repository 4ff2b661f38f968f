"""Eros (Perspective Platform subscription API, ServiceStack): credentials login, then SaveContact.

KNOWN (seed 001, VENDORS.md):
- `SaveContact` inserts or updates a contact keyed on (SuiteDataSourceInstanceId, AlternateKey); ObjectId may
  replace AlternateKey; `MarkAsDeleted=true` deletes; `IgnoreHash=false` lets Eros skip an unchanged contact (a
  forced write sends `IgnoreHash=true`).
- Contact needs ContactType, ContactRoles (RoleId each) and ContactDetails; an address needs Latitude and Longitude.
- Business-rule failures come as `ValidationErrors [{RuleCode, Message, Key, Tag, ErrorCode}]`; ServiceStack
  request failures as `ResponseStatus {ErrorCode, Message, StackTrace, Errors [{ErrorCode, FieldName, Message}]}`.
- Login is ServiceStack `POST auth/credentials` with UserName/Password, answering BearerToken, RefreshToken,
  SessionId.

ASSUMED (each one a setting, or tolerated both ways):
- `route_prefix`: SaveContact at `json/reply/SaveContact`, with or without a leading `api/`.
- `auth_path`: `auth/credentials` (ServiceStack's default route).
- `auth_carrier`: how calls carry the login. "bearer" (the default) sends `Authorization: Bearer <BearerToken>`;
  ServiceStack also takes the same JWT as the `ss-tok` cookie ("ss-tok"), or the login's SessionId in the `X-ss-id`
  header ("session", for a tenant without the JWT provider). A 401 means the token or session expired: log in again
  once, retry once.
- `method_names` / `address_method_name`: the tenant's contact method names per detail kind.
- Success is any 2xx with an empty ValidationErrors; ValidationErrors mean rejection whatever the HTTP status.
- An ObjectId (or ContactId) in the reply is used as the remote id when present, else the AlternateKey.
- `Key` / `FieldName` name the Eros field, either bare (`FirstName`) or as a path
  (`Contact.ContactDetails[2].ContactAddress.Address.Latitude`); both are mapped back to canonical paths.
- Replies may be PascalCase (ServiceStack's default) or camelCase; both are read.
- Delete sends a minimal valid Contact (configured type and roles, no details) because the DTO requires one; with
  `details_required` it carries the ContactDetails of the payload Eros last accepted.
- `details_required`: whether an empty ContactDetails list is refused (seed 001 says "required" for the list).
- `removed_fields`: "Inserts or updates a contact" does not say what an update does with a field the body leaves
  out. "omit" (the default) takes the body as the whole contact; "blank" is for an Eros that keeps what is left
  out: a text field removed since the last accepted write is sent as "" to clear it; a removed BirthDate (a date
  ServiceStack parses) cannot be, and is left to Eros with a warning.
- Every Eros rejection is VENDOR_REJECTED (Eros' rule codes are not documented, so an unknown list item cannot be
  told apart reliably); `vendorCode` carries Eros' own RuleCode / ErrorCode.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator

from resolvers.errors import AuthFailed, VendorError, VendorProtocolError, VendorRejected
from resolvers.results import ErrorCode, FieldError, Vendor, VendorStatus
from resolvers.transport import Transport, VendorResponse, status_error
from resolvers.vendors.base import (
    Capabilities,
    Connector,
    CrossReference,
    Delivered,
    Prepared,
    RemovedFields,
    VendorSettings,
    blank_removed,
)
from resolvers.vendors.eros.mapping import (
    CONTACT_TYPE_SOURCE,
    DEFAULT_ADDRESS_METHOD_NAME,
    DEFAULT_METHOD_NAMES,
    ROLE_IDS_SOURCE,
    to_wire,
)
from resolvers.vendors.eros.wire import (
    Authenticate,
    AuthenticateResponse,
    ResponseStatusModel,
    SaveContact,
    SaveContactResponse,
    bare_status,
    pascal_keys,
)

#: How an Eros call carries its login (see `ErosSettings.auth_carrier`).
AuthCarrier = Literal["bearer", "ss-tok", "session"]


def auth_headers(carrier: AuthCarrier, credential: str) -> dict[str, str]:
    """The headers that carry `credential` (a BearerToken, or a SessionId for "session") the way `carrier` says."""
    # Docs: https://docs.servicestack.net/auth/jwt-authprovider ("Authorization: Bearer" or the ss-tok cookie) and
    # https://docs.servicestack.net/auth/sessions (the session id as the ss-id cookie or the X-ss-id header).
    if carrier == "ss-tok":
        return {"Cookie": f"ss-tok={credential}"}
    if carrier == "session":
        return {"X-ss-id": credential}
    return {"Authorization": f"Bearer {credential}"}


class ErosSettings(VendorSettings):
    """`[vendors.eros]`: where Eros is, who the gateway logs in as, and the tenant's ids."""

    username: str = Field(min_length=1)
    password: SecretStr
    data_source_instance_id: UUID
    #: Default ContactType list item; `vendorOptions.eros.contactTypeId` overrides per contact.
    contact_type_id: UUID
    #: Default roles; `vendorOptions.eros.roleIds` overrides per contact.
    role_ids: list[UUID] = Field(min_length=1)
    #: ASSUMED: the company field `organisation` goes to (both are known Contact fields); "": not sent.
    organisation_field: Literal["TradingName", "LegalName", ""] = "TradingName"
    #: ASSUMED: "" for `{base}json/reply/SaveContact`, "api/" for `{base}api/json/reply/SaveContact`.
    route_prefix: str = ""
    #: ASSUMED: the credentials login route, relative to base_url.
    auth_path: str = "auth/credentials"
    #: ASSUMED: how calls carry the login: "bearer" (`Authorization: Bearer <BearerToken>`), "ss-tok" (the
    #: BearerToken as ServiceStack's `ss-tok` cookie) or "session" (the SessionId in ServiceStack's `X-ss-id` header).
    auth_carrier: AuthCarrier = "bearer"
    #: ASSUMED: ContactMethodName per detail kind (lower-case kind -> the tenant's method name).
    method_names: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_METHOD_NAMES))
    #: ASSUMED: ContactMethodName of the address detail.
    address_method_name: str = Field(default=DEFAULT_ADDRESS_METHOD_NAME, min_length=1)
    #: ASSUMED: Eros refuses an empty `ContactDetails` list (seed 001 marks it required; present or non-empty is not
    #: known): a contact with neither details nor an address is refused before sending, and a delete carries the
    #: details Eros last accepted.
    details_required: bool = False
    #: ASSUMED: what an update does with a field the body leaves out (see the module docstring).
    removed_fields: RemovedFields = "omit"

    @field_validator("route_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        # Joined as f"{base}{route_prefix}json/...": empty, or one trailing slash and no leading one.
        value = value.strip("/")
        return f"{value}/" if value else ""

    @field_validator("auth_path")
    @classmethod
    def _relative(cls, value: str) -> str:
        value = value.lstrip("/")
        if not value:
            raise ValueError("must name the login route, e.g. auth/credentials")
        return value

    @field_validator("method_names")
    @classmethod
    def _kinds(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(DEFAULT_METHOD_NAMES))
        if unknown:
            raise ValueError(f"unknown detail kinds {unknown}; expected some of {sorted(DEFAULT_METHOD_NAMES)}")
        # A partial table overrides the defaults kind by kind.
        return {**DEFAULT_METHOD_NAMES, **value}


#: Eros field name -> canonical path, for errors that name a field outside ContactDetails / ContactRoles.
_CONTACT_FIELDS: dict[str, str] = {
    "AlternateKey": "id",
    "ContactType": CONTACT_TYPE_SOURCE,
    "ContactRoles": ROLE_IDS_SOURCE,
    "RoleId": ROLE_IDS_SOURCE,
    "Title": "title",
    "Salutation": "salutation",
    "FirstName": "firstName",
    "MiddleName": "middleName",
    "Surname": "lastName",
    "FullName": "displayName",
    "BirthDate": "birthDate",
    "Notes": "notes",
    "EmploymentRole": "jobTitle",
    "TradingName": "organisation",
    "LegalName": "organisation",
    "ContactDetails": "details",
    "PrimaryEmail": "details",
    "PrimaryMobile": "details",
}
#: Fields of a non-address ContactDetails entry -> field of canonical `details[i]`.
_DETAIL_FIELDS: dict[str, str] = {
    "ContactMethodName": "kind",
    "ContactDetails": "value",
    "Notes": "label",
    "IsPrimaryContactMethod": "preferred",
}
#: Fields of the address (wherever they appear) -> field of canonical `address`.
_ADDRESS_FIELDS: dict[str, str] = {
    "AddressLineOne": "lines[0]",
    "AddressLineTwo": "lines[1]",
    "SuburbName": "city",
    "StateShortName": "region",
    "PostCode": "postCode",
    "ISOCountryCode": "country",
    "Latitude": "latitude",
    "Longitude": "longitude",
}
_PATH_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def canonical_path(key: str | None, payload: Mapping[str, Any]) -> str:
    """The canonical input path behind an Eros error `Key` / `FieldName` ("" when it names no canonical field)."""
    tokens: list[str | int] = [int(index) if index else name for name, index in _PATH_TOKEN.findall(key or "")]
    names = [t for t in tokens if isinstance(t, str)]
    if not names:
        return ""
    for i, token in enumerate(tokens[:-1]):
        following = tokens[i + 1]
        if token == "ContactRoles" and isinstance(following, int):
            return f"{ROLE_IDS_SOURCE}[{following}]"
        if token == "ContactDetails" and isinstance(following, int):
            return _detail_path(following, [t for t in tokens[i + 2 :] if isinstance(t, str)], payload)
    last = names[-1]
    if last in _ADDRESS_FIELDS:
        return f"address.{_ADDRESS_FIELDS[last]}"
    if last in ("PrimaryEmail", "PrimaryMobile"):
        return _primary_path(last, payload)
    return _CONTACT_FIELDS.get(last, "")


def _primary_path(field: str, payload: Mapping[str, Any]) -> str:
    """`details[i].value` of the detail a PrimaryEmail / PrimaryMobile was taken from; `details` when not found."""
    contact = payload.get("Contact") or {}
    value = contact.get(field)
    for i, detail in enumerate(contact.get("ContactDetails") or []):
        if isinstance(detail, dict) and not detail.get("IsAddress") and value and detail.get("ContactDetails") == value:
            return f"details[{i}].value"
    return "details"


def _detail_path(index: int, rest: list[str], payload: Mapping[str, Any]) -> str:
    details = (payload.get("Contact") or {}).get("ContactDetails") or []
    detail = details[index] if index < len(details) and isinstance(details[index], dict) else {}
    last = rest[-1] if rest else ""
    if detail.get("IsAddress"):
        return f"address.{_ADDRESS_FIELDS[last]}" if last in _ADDRESS_FIELDS else "address"
    # Canonical details come first, in order, so wire index i is canonical details[i].
    return f"details[{index}].{_DETAIL_FIELDS[last]}" if last in _DETAIL_FIELDS else f"details[{index}]"


#: Wire fields Eros parses as other than text, which "" cannot clear (`removed_fields = "blank"`).
_NOT_TEXT = frozenset({"Contact.BirthDate", "Contact.ContactType"})


def _same_key(previous: Mapping[str, Any] | None, payload: Mapping[str, Any]) -> bool:
    """The last accepted payload was for the same record: same data source and AlternateKey."""
    return previous is not None and all(
        previous.get(k) == payload.get(k) for k in ("SuiteDataSourceInstanceId", "AlternateKey")
    )


class ErosConnector(Connector[ErosSettings]):
    """Eros: native upsert (SaveContact), deletes via MarkAsDeleted, no single-contact read."""

    vendor: ClassVar[Vendor] = Vendor.EROS
    settings_type: ClassVar[type[VendorSettings]] = ErosSettings
    wire_model: ClassVar[type[BaseModel]] = SaveContact
    capabilities: ClassVar[Capabilities] = Capabilities(delete=True, read=False, native_upsert=True)
    to_wire = staticmethod(to_wire)

    def __init__(self, settings: ErosSettings, transport: Transport) -> None:
        super().__init__(settings, transport)
        self._token: str | None = None
        # One login for many concurrent calls: whoever holds the lock logs in, the others reuse its token.
        self._login_lock = asyncio.Lock()

    @property
    def save_url(self) -> str:
        """The SaveContact endpoint."""
        return f"{self.settings.base}{self.settings.route_prefix}json/reply/SaveContact"

    @property
    def auth_url(self) -> str:
        """The credentials login endpoint."""
        return f"{self.settings.base}{self.settings.auth_path}"

    async def upsert(self, prepared: Prepared, link: CrossReference | None) -> Delivered:
        """Insert or update: Eros keys the contact on (data source, AlternateKey), so a repeat is safe."""
        payload: Mapping[str, Any] = prepared.payload
        stuck: list[str] = []
        if self.settings.removed_fields == "blank" and link is not None and _same_key(link.payload, payload):
            payload, stuck = blank_removed(link.payload, payload, _NOT_TEXT)
        if prepared.force:
            # Seed 001: IgnoreHash=true "the object will be updated/refreshed"; false lets Eros skip a contact whose
            # hash it already has, which a forced write (a resync over edits made in Eros) must not be.
            payload = {**payload, "IgnoreHash": True}
        response, reply = await self._save(payload)
        warnings = [f"{path}: removed, but it cannot be blanked; Eros may keep it" for path in stuck]
        known = link is not None and link.remote_id is not None
        if known and link is not None and link.payload is not None and not _same_key(link.payload, payload):
            # The upsert key is (data source, AlternateKey): another data source is another record at Eros.
            known = False
            warnings.append(
                f"data source changed to {payload.get('SuiteDataSourceInstanceId')}: written as a new record there; "
                f"Eros contact {link.remote_id} under data source {link.payload.get('SuiteDataSourceInstanceId')} "
                "was left in place"
            )
        # ObjectId is an optional extra: a reply without it keeps the id the record already has.
        kept = link.remote_id if known and link is not None else None
        return Delivered(
            status=VendorStatus.UPDATED if known else VendorStatus.CREATED,
            remote_id=reply.ObjectId or reply.ContactId or kept or str(prepared.payload["AlternateKey"]),
            http_status=response.status,
            warnings=tuple(warnings),
        )

    async def delete(self, contact_id: str, link: CrossReference | None) -> Delivered:
        """SaveContact with MarkAsDeleted for that AlternateKey, carrying the minimal Contact the DTO requires."""
        payload: dict[str, Any] = {
            "SuiteDataSourceInstanceId": str(self.settings.data_source_instance_id),
            "AlternateKey": contact_id,
            "MarkAsDeleted": True,
            "Contact": {
                "ContactType": str(self.settings.contact_type_id),
                "ContactRoles": [{"RoleId": str(role)} for role in self.settings.role_ids],
                "ContactDetails": self._details_for_delete(link),
            },
        }
        response, reply = await self._save(payload)
        return Delivered(
            status=VendorStatus.DELETED,
            remote_id=reply.ObjectId or reply.ContactId or (link.remote_id if link else None) or contact_id,
            http_status=response.status,
        )

    def _details_for_delete(self, link: CrossReference | None) -> list[Any]:
        """None by default; with `details_required`, those of the payload Eros last accepted (if known)."""
        if not self.settings.details_required or link is None or not link.payload:
            return []
        details = (link.payload.get("Contact") or {}).get("ContactDetails")
        return list(details) if isinstance(details, list) else []

    async def aclose(self) -> None:
        """Forget the bearer token (ServiceStack tokens expire on their own)."""
        self._token = None

    async def _save(self, payload: Mapping[str, Any]) -> tuple[VendorResponse, SaveContactResponse]:
        # Docs: https://production-eros-platform-apisubscription.azurewebsites.net/json/metadata?op=SaveContact
        # (shared/seeds/001)
        token = await self._bearer()
        response = await self._post(payload, token)
        if response.status == 401:
            # The token expired or was revoked: Eros did not act, so one fresh login and one repeat are safe.
            token = await self._bearer(stale=token)
            response = await self._post(payload, token)
            if response.status == 401:
                raise self._auth_failed(response, "Eros refused a freshly issued bearer token")
        return response, self._reply(response, payload)

    async def _post(self, payload: Mapping[str, Any], token: str) -> VendorResponse:
        return await self.transport.request(
            "POST",
            self.save_url,
            json=payload,
            headers={**auth_headers(self.settings.auth_carrier, token), "Accept": "application/json"},
        )

    async def _bearer(self, stale: str | None = None) -> str:
        """The cached login (BearerToken, or SessionId with `auth_carrier = "session"`), logging in when there is
        none or when `stale` is the one that just failed."""
        async with self._login_lock:
            if self._token is None or self._token == stale:
                self._token = await self._login()
            return self._token

    async def _login(self) -> str:
        # Docs: https://docs.servicestack.net/auth/authentication-and-authorization (credentials provider)
        # and https://docs.servicestack.net/auth/jwt-authprovider (BearerToken in the answer).
        body = Authenticate(UserName=self.settings.username, Password=self.settings.password.get_secret_value())
        response = await self.transport.request(
            "POST", self.auth_url, json=body.model_dump(), headers={"Accept": "application/json"}
        )
        if response.status in (400, 401, 403):
            raise self._auth_failed(response, "Eros refused the configured username or password")
        if not 200 <= response.status < 300:
            raise status_error(response, f"Eros login failed with HTTP {response.status}: {response.excerpt()}")
        answer = response.parse(AuthenticateResponse, "Eros login answered an unexpected shape", keys=pascal_keys)
        if self.settings.auth_carrier == "session":
            if not answer.SessionId:
                raise AuthFailed("Eros login answered without a SessionId", http_status=response.status)
            return answer.SessionId
        if not answer.BearerToken:
            # Credentials were accepted but no JWT came back: the tenant has no JWT provider, a setup problem
            # (`auth_carrier = "session"` uses the session instead).
            raise AuthFailed(
                'Eros login answered without a BearerToken (auth_carrier = "session" uses its SessionId)',
                http_status=response.status,
            )
        return answer.BearerToken

    def _auth_failed(self, response: VendorResponse, fallback: str) -> AuthFailed:
        status = _response_status(response)
        return AuthFailed(
            (status.Message if status and status.Message else fallback),
            http_status=response.status,
            vendor_code=status.ErrorCode if status else None,
        )

    def _reply(self, response: VendorResponse, payload: Mapping[str, Any]) -> SaveContactResponse:
        """Read SaveContact's answer; every way it can say no becomes a `VendorError`."""
        data = response.json_or_none()
        reply: SaveContactResponse | None = None
        if isinstance(data, dict):
            try:
                reply = SaveContactResponse.model_validate(pascal_keys(data))
            except ValidationError:
                reply = None
        ok = 200 <= response.status < 300
        if reply is not None and reply.ValidationErrors:
            errors = [
                FieldError(
                    field=canonical_path(v.Key, payload),
                    code=ErrorCode.VENDOR_REJECTED,
                    message=v.Message or "rejected by Eros",
                    vendor_field=v.Key,
                    vendor_code=v.RuleCode or v.ErrorCode,
                )
                for v in reply.ValidationErrors
            ]
            raise VendorRejected(
                "Eros rejected the contact: " + "; ".join(e.message for e in errors),
                http_status=response.status,
                vendor_code=errors[0].vendor_code,
                errors=errors,
            )
        status = reply.ResponseStatus if reply is not None else None
        failed = status is not None and bool(status.ErrorCode)
        if ok and not failed:
            if reply is None and response.body.strip():
                raise VendorProtocolError(
                    f"Eros answered HTTP {response.status} with an unreadable body: {response.excerpt()}",
                    http_status=response.status,
                )
            return reply or SaveContactResponse()
        message = (status.Message if status else None) or f"Eros answered HTTP {response.status}"
        error: VendorError = (
            VendorRejected(message, http_status=response.status) if ok else status_error(response, message)
        )
        if status is not None:
            error.vendor_code = status.ErrorCode
            error.field_errors = [
                FieldError(
                    field=canonical_path(e.FieldName, payload),
                    code=error.code,
                    message=e.Message or message,
                    vendor_field=e.FieldName,
                    vendor_code=e.ErrorCode,
                )
                for e in status.Errors
            ]
        raise error


def _response_status(response: VendorResponse) -> ResponseStatusModel | None:
    data = response.json_or_none()
    if not isinstance(data, dict):
        return None
    raw = bare_status(pascal_keys(data)).get("ResponseStatus")
    try:
        return ResponseStatusModel.model_validate(raw) if isinstance(raw, dict) else None
    except ValidationError:
        return None
