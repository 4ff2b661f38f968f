"""Valomnia (field sales): form login for a bearer token, then `POST api/{version}/contacts[/{id}]`.

KNOWN (seed 004, VENDORS.md):
- Create is `POST api/{version}/contacts` (201), update `POST api/{version}/contacts/{id}` (200), show
  `GET api/{version}/contacts/{id}`; bodies are `application/x-www-form-urlencoded`, or `multipart/form-data` with
  an `imageFile` (jpg/gif/png/bmp, at most 2 Mo). Required: firstName, lastName, customerId; optional: fonction,
  country (ISO code), city, postalCode, address, email, phone, phone2, mobile, fax, useExternalId.
- Success answers the contact as JSON (id, customerReference, customer{...}, "" rather than null, ISO `Z` dates).
- Errors are `{"error", "error_description"}`: 400 missing_param, invalid_param_type, email_validation_error,
  country_error, save_failed, exceeded_file_size, unsupported_file_type; 404 not_found ("The customer with the id
  31888 doesn't exist."); 500 server_error. No delete is documented: `capabilities.delete` is False.
- Login (Valomnia's own client code, not the docs): a Spring Security form login, `POST j_spring_security_check`
  with j_username, j_password (and ajax=true), answering a redirect and a `JSESSIONID` cookie; then
  `GET login/ajaxSuccess` with that cookie answers `{"token": ...}`; API calls send `Authorization: Bearer`.

ASSUMED (each one a setting, or read both ways):
- `api_version`: the version path segment (`v1.0`, `v2.1`).
- `token`: a configured bearer token may replace the login (and is renewed by a login when credentials are set).
- A 401, or any answer with error `no_credentials`, means the token expired: one fresh login, one repeat. A login
  answered by a redirect to `authfail` / `login_error` / `denied`, or a 401/403, means wrong credentials.
- `session_cookie` (`JSESSIONID`), `login_path`, `token_path`: Spring Security's and Valomnia's defaults.
- Reconciliation (`reconcile_by_email`): Valomnia documents no search. `GET api/{version}/contacts` with `max` /
  `offset` paging (Grails' convention) and, when `lookup_filters`, `email` and `customerId` filters; whatever the
  server does with the filters, a contact is adopted only when its e-mail (case-insensitive) AND its customer
  match (a numeric customer id compared as the Long it is: `03229` is 3229; with `use_external_id`, the customer's
  reference, never its id, which a numeric reference could equal), so an ignored filter costs pages (at
  most `lookup_max_pages` of `lookup_page_size`, read until an empty page: a server may cap `max`), never a wrong
  adoption. The listing may be `{"data": [...]}` or a bare array. When the pages run out before an empty one, the
  create that follows is one a repeat might not find: its lost answer is reported as possibly written, not repeated.
- `use_external_id`: `useExternalId=true` is read as "customerId is the customer's reference, not its numeric id".
- `strict_email`: Valomnia's e-mail check is taken to be Grails' `email` constraint, applied before sending; off,
  Valomnia alone judges an address.
- `max_text_length` (255): GORM's default string column; longer text is refused before sending (Valomnia would
  answer `save_failed`, naming no field).
- `max_image_name_length` (255): the longest photo file name Valomnia keeps (its storage is not documented);
  a longer one is refused before sending, on `vendorOptions.valomnia.imageFileName`.
- `clear_absent_on_update`: an update sends the optional fields the contact no longer has as "" (Valomnia is
  assumed to keep a parameter that is not sent); a photo cannot be removed this way, a warning says so.
- A 404 `not_found` naming anything but a customer on an update means the contact was deleted at Valomnia.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace
from http.cookies import CookieError, SimpleCookie
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, Field, SecretStr, ValidationError, field_validator, model_validator

from resolvers.errors import AuthFailed, VendorError, VendorProtocolError
from resolvers.results import ErrorCode, FieldError, Vendor, VendorStatus
from resolvers.transport import FilePart, Transport, VendorResponse, path_segment, status_error
from resolvers.vendors.base import (
    Capabilities,
    Connector,
    CrossReference,
    Delivered,
    FieldCoverage,
    Prepared,
    VendorSettings,
    lost_create_payload,
    sending_create,
)
from resolvers.vendors.valomnia.mapping import (
    CUSTOMER_ID_PATH,
    DEFAULT_ADDRESS_SEPARATOR,
    DETAIL_FIELDS,
    IMAGE_DATA_PATH,
    IMAGE_NAME_PATH,
    OPTIONAL_FIELDS,
    to_wire,
)
from resolvers.vendors.valomnia.wire import (
    COUNTRY_ERROR,
    EMAIL_VALIDATION_ERROR,
    EXCEEDED_FILE_SIZE,
    INVALID_PARAM_TYPE,
    MAX_FILE_NAME_LENGTH,
    MISSING_PARAM,
    NO_CREDENTIALS,
    NOT_FOUND,
    UNSUPPORTED_FILE_TYPE,
    ContactPage,
    ContactReply,
    LoginReply,
    ValomniaContact,
    ValomniaError,
    decode_base64,
)


def _no_limit(value: Any) -> Any:
    # TOML has no null: a limit of 0 is how a config file turns a length check off.
    return None if value == 0 and not isinstance(value, bool) else value


def _text_id(value: Any) -> Any:
    # TOML may hold the customer id as a number; Valomnia's parameter is text either way.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class ValomniaSettings(VendorSettings):
    """`[vendors.valomnia]`: where Valomnia is, how the gateway logs in, and the default customer."""

    #: ASSUMED: the API version path segment.
    api_version: str = Field(default="v1.0", pattern=r"^v[0-9]+(\.[0-9]+)*$")
    username: str | None = Field(default=None, min_length=1)
    password: SecretStr | None = None
    #: A bearer token to use instead of (or before) a form login.
    token: SecretStr | None = None
    #: The customer contacts belong to unless `vendorOptions.valomnia.customerId` says otherwise.
    customer_id: Annotated[str | None, BeforeValidator(_text_id)] = Field(default=None, min_length=1)
    #: ASSUMED meaning of useExternalId=true: customerId is the customer's reference.
    use_external_id: bool = False
    #: How address lines are joined into Valomnia's one `address` field.
    address_separator: str = Field(default=DEFAULT_ADDRESS_SEPARATOR, min_length=1)
    #: ASSUMED: the longest text Valomnia stores (GORM's default varchar); 0 (or None) turns the check off.
    max_text_length: Annotated[int | None, BeforeValidator(_no_limit)] = Field(default=255, ge=1)
    #: ASSUMED: the longest photo file name Valomnia keeps (`vendorOptions.valomnia.imageFileName`); 0 (or None),
    #: no limit.
    max_image_name_length: Annotated[int | None, BeforeValidator(_no_limit)] = Field(default=MAX_FILE_NAME_LENGTH, ge=1)
    #: ASSUMED: Valomnia checks an e-mail as Grails' `email` constraint does (a dotted domain ending in a TLD of two or
    #: more letters), so one it would refuse is refused before sending. False sends any address the canonical model
    #: takes and lets Valomnia judge it (its email_validation_error names the detail).
    strict_email: bool = True
    #: Look for a contact of the same customer with the same e-mail before creating one.
    reconcile_by_email: bool = True
    #: ASSUMED: send `email` and `customerId` as filters of the contact listing.
    lookup_filters: bool = True
    lookup_page_size: int = Field(default=100, ge=1, le=1000)
    lookup_max_pages: int = Field(default=10, ge=1, le=1000)
    #: ASSUMED: send optional fields the contact no longer has as "" on updates, so Valomnia clears them.
    clear_absent_on_update: bool = True
    login_path: str = "j_spring_security_check"
    token_path: str = "login/ajaxSuccess"
    session_cookie: str = Field(default="JSESSIONID", pattern=r"^[A-Za-z0-9_.-]+$")

    @field_validator("login_path", "token_path")
    @classmethod
    def _relative(cls, value: str) -> str:
        value = value.lstrip("/")
        if not value:
            raise ValueError("must name a path relative to base_url")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> ValomniaSettings:
        if self.token is None and (self.username is None or self.password is None):
            raise ValueError("set username and password (form login), or token")
        return self

    @property
    def can_login(self) -> bool:
        """True when a form login is configured (and so an expired token can be renewed)."""
        return self.username is not None and self.password is not None


#: Wire field -> canonical path, for payloads prepared elsewhere (details are then only known as `details`).
_FALLBACK_SOURCES: dict[str, str] = {
    "firstName": "firstName",
    "lastName": "lastName",
    "customerId": CUSTOMER_ID_PATH,
    "useExternalId": "",
    "fonction": "jobTitle",
    "country": "address.country",
    "city": "address.city",
    "postalCode": "address.postCode",
    "address": "address.lines",
    **{name: "details" for name in DETAIL_FIELDS},
    "imageFile": IMAGE_DATA_PATH,
}
# Which parameter an error_description names: "customerId parameter is missing", "The type of parameter
# customerId you provided is not valid for this request."
_PARAMETER = re.compile(r"\bparameter\s+(\w+)|^(\w+)\s+parameter\b")
# Where a refused form login redirects (Spring Security's failure URLs).
_LOGIN_REFUSED = re.compile(r"authfail|login_error|denied", re.IGNORECASE)
_FIELD_CODES: dict[str, ErrorCode] = {
    MISSING_PARAM: ErrorCode.REQUIRED,
    INVALID_PARAM_TYPE: ErrorCode.INVALID_FORMAT,
    EMAIL_VALIDATION_ERROR: ErrorCode.INVALID_FORMAT,
    COUNTRY_ERROR: ErrorCode.INVALID_FORMAT,
    EXCEEDED_FILE_SIZE: ErrorCode.TOO_LONG,
    UNSUPPORTED_FILE_TYPE: ErrorCode.INVALID_FORMAT,
}


class ValomniaConnector(Connector[ValomniaSettings]):
    """Valomnia: creates and updates by remote id, reconciles by e-mail within the customer, cannot delete."""

    vendor: ClassVar[Vendor] = Vendor.VALOMNIA
    settings_type: ClassVar[type[VendorSettings]] = ValomniaSettings
    wire_model: ClassVar[type[BaseModel]] = ValomniaContact
    capabilities: ClassVar[Capabilities] = Capabilities(
        create=True, update=True, delete=False, read=True, shared_lookup=True
    )
    to_wire = staticmethod(to_wire)

    def __init__(self, settings: ValomniaSettings, transport: Transport) -> None:
        super().__init__(settings, transport)
        self.wire_context = {"max_image_name_length": settings.max_image_name_length}
        self._token: str | None = settings.token.get_secret_value() if settings.token else None
        # One login for many concurrent calls: whoever holds the lock logs in, the others reuse its token.
        self._login_lock = asyncio.Lock()

    @property
    def contacts_url(self) -> str:
        """The contacts collection: create (POST) and listing (GET)."""
        return f"{self.settings.base}api/{self.settings.api_version}/contacts"

    def contact_url(self, remote_id: str) -> str:
        """One contact: update (POST) and show (GET); the id Valomnia issued, encoded as one path segment."""
        return f"{self.contacts_url}/{path_segment(remote_id)}"

    @property
    def login_url(self) -> str:
        """Spring Security's form login."""
        return f"{self.settings.base}{self.settings.login_path}"

    @property
    def token_url(self) -> str:
        """Where a logged-in session picks up its bearer token."""
        return f"{self.settings.base}{self.settings.token_path}"

    def reconciles(self, prepared: Prepared) -> bool:
        """True when the contact has an e-mail: a create is then preceded by a lookup that adopts a lost one."""
        return self.settings.reconcile_by_email and bool(prepared.payload.get("email"))

    def coverage(self) -> list[FieldCoverage]:
        """The base's table, reading `<field>#...` sources as `<field>`, the detail rows naming every slot."""
        slots = ", ".join(DETAIL_FIELDS)
        note = "by kind: first EMAIL, first two PHONEs, first MOBILE, first FAX; other details are not sent"
        rows = []
        for row in super().coverage():
            if row.canonical in ("details[].value", "details[].kind"):
                row = replace(row, vendor_field=slots, note=note)
            elif row.vendor_field:
                names = dict.fromkeys(name.split("#")[0] for name in row.vendor_field.split(", "))
                row = replace(row, vendor_field=", ".join(names))
            rows.append(row)
        return rows

    async def upsert(self, prepared: Prepared, link: CrossReference | None) -> Delivered:
        """Update the linked contact; else adopt the customer's contact with the same e-mail; else create one."""
        payload = prepared.payload
        sources = prepared.sources or _FALLBACK_SOURCES
        warnings: list[str] = []
        if link is not None and link.payload and "imageFile" in link.payload and "imageFile" not in payload:
            warnings.append("vendorOptions.valomnia.imageBase64: Valomnia cannot remove a photo; the old one stays")
        gone: str | None = None
        if link is not None and link.remote_id and not link.deleted:
            response = await self._save(payload, link.remote_id)
            if not _contact_gone(response):
                self._accepted(response, sources)
                return Delivered(VendorStatus.UPDATED, link.remote_id, response.status, tuple(warnings))
            gone = link.remote_id
        lookup = await self._lookup(payload, sources, prepared.contact_id) if self.reconciles(prepared) else None
        earlier = lost_create_payload(link)
        if (lookup is None or lookup.remote_id is None) and _keyed_otherwise(earlier, payload):
            # A create whose answer was lost may have made the record from what it sent (its e-mail or customer
            # since changed): looked up by that too.
            again = await self._lookup(earlier or {}, sources, prepared.contact_id)
            if again.remote_id is not None:  # otherwise findability is the new payload's lookup's, as before
                lookup = again
        found = lookup.remote_id if lookup else None
        if found is not None:
            response = await self._save(payload, found)
            self._accepted(response, sources)
            if gone is not None:
                warnings.append(f"Valomnia no longer has contact {gone}; adopted contact {found}, found by e-mail")
            return Delivered(VendorStatus.UPDATED, found, response.status, tuple(warnings), matched_by="email")
        # A listing cut off by `lookup_max_pages` proves nothing: a repeat of this create could miss what it made.
        sending_create(findable=lookup is not None and lookup.complete)
        response = await self._save(payload, None)
        remote_id = str(self._accepted(response, sources).id)
        if gone is not None:
            warnings.append(f"Valomnia no longer has contact {gone} (deleted there); created it anew as {remote_id}")
        return Delivered(VendorStatus.CREATED, remote_id, response.status, tuple(warnings))

    async def find(self, email: str, customer: str, contact_id: str = "") -> Lookup:
        """The id of the customer's contact with this e-mail that no other gateway contact is linked to, if Valomnia
        lists one (see ASSUMED above); `complete` is False when `lookup_max_pages` ran out before the listing's end,
        so "not found" is not known."""
        size = self.settings.lookup_page_size
        offset = 0
        seen: set[str] = set()
        for _ in range(self.settings.lookup_max_pages):
            params = {"max": str(size), "offset": str(offset)}
            if self.settings.lookup_filters:
                params |= {"email": email, "customerId": customer}
                if self.settings.use_external_id:
                    params["useExternalId"] = "true"
            # Docs: none (ASSUMED listing); the collection is https://BASE_URL/api/VERSION/contacts (seed 004).
            response = await self._api("GET", self.contacts_url, params=params)
            if response.status != 200:
                raise self._error(response, _FALLBACK_SOURCES)
            items = _contact_list(response)
            for item in items:
                if self._same(item, email, customer) and await self.owned_by(str(item.id), contact_id):
                    return Lookup(str(item.id))
            # Only an empty page ends the listing: a server may cap `max` below the size asked for, so a short page
            # is not the last. The next page starts after what came (not at page * size, which would skip what the
            # cap left out); a page of ids already seen means the server ignores `offset`.
            ids = {str(item.id) for item in items}
            if not items or ids <= seen:
                return Lookup(None)
            seen |= ids
            offset += len(items)
        return Lookup(None, complete=False)

    async def aclose(self) -> None:
        """Forget the login's token (Valomnia's sessions expire on their own)."""
        self._token = self.settings.token.get_secret_value() if self.settings.token else None

    # -- calls ----------------------------------------------------------------------------------------------------

    async def _lookup(self, payload: dict[str, Any], sources: dict[str, str], contact_id: str) -> Lookup:
        try:
            return await self.find(str(payload["email"]), str(payload.get("customerId", "")), contact_id)
        except VendorError as exc:
            # A failed lookup created nothing: repeating the whole upsert cannot duplicate.
            exc.sent = False
            if exc.field_errors:
                exc.field_errors = [_resourced(e, sources) for e in exc.field_errors]
            raise

    async def _save(self, payload: dict[str, Any], remote_id: str | None) -> VendorResponse:
        form, files = self._body(payload, update=remote_id is not None)
        if remote_id is None:
            # Docs: shared/seeds/004 (create: POST https://BASE_URL/api/VERSION/contacts, 201)
            return await self._api("POST", self.contacts_url, form=form, files=files)
        # Docs: shared/seeds/004 (Update a contact: POST https://BASE_URL/api/VERSION/contacts/{id}, 200)
        return await self._api("POST", self.contact_url(remote_id), form=form, files=files)

    def _body(self, payload: dict[str, Any], *, update: bool) -> tuple[dict[str, str], dict[str, FilePart]]:
        form = {name: str(value) for name, value in payload.items() if name != "imageFile"}
        if update and self.settings.clear_absent_on_update:
            for name in OPTIONAL_FIELDS:
                form.setdefault(name, "")
        files: dict[str, FilePart] = {}
        image = payload.get("imageFile")
        if isinstance(image, dict):
            files["imageFile"] = FilePart(
                filename=str(image["filename"]),
                content=decode_base64(str(image["content"])),
                content_type=str(image["contentType"]),
            )
        return form, files

    async def _api(
        self,
        method: str,
        url: str,
        *,
        form: dict[str, str] | None = None,
        files: dict[str, FilePart] | None = None,
        params: dict[str, str] | None = None,
    ) -> VendorResponse:
        """One API call with the bearer token; a refused token is renewed by one login and the call repeated once."""
        token = await self._bearer()
        response = await self._call(method, url, token, form, files, params)
        if _wants_login(response):
            if not self.settings.can_login:
                raise _auth_failed(response, "Valomnia refused the configured token")
            # The token expired or was revoked: Valomnia did not act, so one fresh login and one repeat are safe.
            token = await self._bearer(stale=token)
            response = await self._call(method, url, token, form, files, params)
            if _wants_login(response):
                raise _auth_failed(response, "Valomnia refused a freshly issued token")
        return response

    async def _call(
        self,
        method: str,
        url: str,
        token: str,
        form: dict[str, str] | None,
        files: dict[str, FilePart] | None,
        params: dict[str, str] | None,
    ) -> VendorResponse:
        return await self.transport.request(
            method,
            url,
            form=form,
            files=files or None,
            params=params,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )

    async def _bearer(self, stale: str | None = None) -> str:
        """The cached token, logging in when there is none or when `stale` is the one that was just refused."""
        async with self._login_lock:
            if self._token is None or self._token == stale:
                try:
                    self._token = await self._login()
                except VendorError as exc:
                    # No contact was sent: a later attempt cannot duplicate anything.
                    exc.sent = False
                    raise
            return self._token

    async def _login(self) -> str:
        assert self.settings.username is not None and self.settings.password is not None  # can_login checked
        headers = {"Accept": "application/json", "X-Requested-With": "XMLHttpRequest"}
        # Docs: none public; Spring Security's form login, as Valomnia's own client code calls it
        # (https://github.com/aicha-mkr/valomnia2 app/Models/User.php: j_spring_security_check, then ajaxSuccess).
        response = await self.transport.request(
            "POST",
            self.login_url,
            form={
                "j_username": self.settings.username,
                "j_password": self.settings.password.get_secret_value(),
                "ajax": "true",
            },
            headers=headers,
        )
        location = _header(response, "Location") or ""
        if response.status in (401, 403) or _LOGIN_REFUSED.search(location):
            raise AuthFailed("Valomnia refused the configured username or password", http_status=response.status)
        if not 200 <= response.status < 400:
            raise status_error(response, f"Valomnia login failed with HTTP {response.status}: {response.excerpt()}")
        session = _cookie(response, self.settings.session_cookie)
        if session is None:
            raise VendorProtocolError(
                f"Valomnia's login answered HTTP {response.status} without a {self.settings.session_cookie} cookie",
                http_status=response.status,
            )
        # The session cookie is sent by hand: the shared client session's cookie jar is every vendor's, and
        # aiohttp's jar ignores cookies from IP-address hosts anyway.
        # Docs: as above (GET login/ajaxSuccess answers {"token": ...}).
        answer = await self.transport.request(
            "GET", self.token_url, headers={**headers, "Cookie": f"{self.settings.session_cookie}={session}"}
        )
        if answer.status in (401, 403) or 300 <= answer.status < 400:
            raise _auth_failed(answer, "Valomnia did not accept the login session")
        if answer.status != 200:
            raise status_error(answer, f"Valomnia's token answer was HTTP {answer.status}: {answer.excerpt()}")
        reply = answer.parse(LoginReply, "Valomnia's token answer has an unexpected shape")
        if not reply.token:
            # Logged in, but no token: the user has no API access, a setup problem no retry fixes.
            raise AuthFailed("Valomnia's login answered without a token", http_status=answer.status)
        return reply.token

    # -- answers --------------------------------------------------------------------------------------------------

    def _accepted(self, response: VendorResponse, sources: dict[str, str]) -> ContactReply:
        """The contact Valomnia answers on success; every other answer becomes a `VendorError`."""
        if not 200 <= response.status < 300:
            raise self._error(response, sources)
        return response.parse(ContactReply, f"Valomnia answered HTTP {response.status} without a contact")

    def _error(self, response: VendorResponse, sources: dict[str, str]) -> VendorError:
        """Valomnia's error body, by the status table, with a field error where the body names a field."""
        body = _error_body(response)
        if body is None:
            return status_error(response, f"Valomnia answered HTTP {response.status}: {response.excerpt()}")
        message = f"Valomnia answered {body.error}: {body.error_description}".rstrip(": ")
        error = status_error(response, message, vendor_code=body.error)
        found = self._field_error(body, sources)
        if found is not None:
            error.field_errors = [found]
        return error

    def _field_error(self, body: ValomniaError, sources: dict[str, str]) -> FieldError | None:
        text = body.error_description or body.error
        named = _PARAMETER.search(body.error_description)
        parameter = (named.group(1) or named.group(2)) if named else None
        wire_field: str | None
        code = _FIELD_CODES.get(body.error)
        if body.error in (MISSING_PARAM, INVALID_PARAM_TYPE):
            wire_field = parameter
        elif body.error == EMAIL_VALIDATION_ERROR:
            wire_field = "email"
        elif body.error == COUNTRY_ERROR:
            wire_field = "country"
        elif body.error in (EXCEEDED_FILE_SIZE, UNSUPPORTED_FILE_TYPE):
            path = IMAGE_DATA_PATH if body.error == EXCEEDED_FILE_SIZE else IMAGE_NAME_PATH
            return FieldError(path, _FIELD_CODES[body.error], text, vendor_field="imageFile", vendor_code=body.error)
        elif body.error == NOT_FOUND and "customer" in text.lower():
            origin = "" if self.settings.customer_id is None else f" (default: customer_id {self.settings.customer_id})"
            return FieldError(
                CUSTOMER_ID_PATH,
                ErrorCode.NOT_FOUND,
                text + origin,
                vendor_field="customerId",
                vendor_code=body.error,
            )
        else:
            return None
        if wire_field is None:
            return None
        return FieldError(
            field=sources.get(wire_field, _FALLBACK_SOURCES.get(wire_field, "")),
            code=code or ErrorCode.VENDOR_REJECTED,
            message=text,
            vendor_field=wire_field,
            vendor_code=body.error,
        )

    def _same(self, item: ContactReply, email: str, customer: str) -> bool:
        """True when a listed contact has this e-mail and belongs to this customer."""
        if (item.email or "").strip().casefold() != email.strip().casefold():
            return False
        link = item.customer
        if self.settings.use_external_id:
            # `customer` is a reference here: a numeric one may well be another customer's id.
            return customer in {item.customerReference, link.reference if link else None}
        return link is not None and link.id is not None and _same_number(str(link.id), customer)


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a reconciliation lookup found: the contact to adopt, if any, and whether the listing was read to its end
    (only then does "none" mean none: a create after a cut-off listing is one a repeat could not find again)."""

    remote_id: str | None
    complete: bool = True


def _same_number(listed: str, sent: str) -> bool:
    """A customer id as Valomnia lists it against the one sent: a Long, so "03229" is customer 3229."""
    if listed.isascii() and listed.isdigit() and sent.isascii() and sent.isdigit():
        return int(listed) == int(sent)
    return listed == sent


def _error_body(response: VendorResponse) -> ValomniaError | None:
    data = response.json_or_none()
    if not isinstance(data, dict):
        return None
    try:
        return ValomniaError.model_validate(data)
    except ValidationError:
        return None


def _wants_login(response: VendorResponse) -> bool:
    if response.status == 401:
        return True
    body = _error_body(response)
    return body is not None and body.error == NO_CREDENTIALS


def _contact_gone(response: VendorResponse) -> bool:
    """True when an update answers that the contact itself (not its customer) does not exist."""
    if response.status != 404:
        return False
    body = _error_body(response)
    return body is not None and body.error == NOT_FOUND and "customer" not in body.error_description.lower()


def _contact_list(response: VendorResponse) -> list[ContactReply]:
    # A bare array or `{"data": [...]}` (the envelope is assumed).
    return response.parse(
        ContactPage,
        "Valomnia's contact listing has an unexpected shape",
        keys=lambda data: {"data": data} if isinstance(data, list) else data,
    ).data


def _auth_failed(response: VendorResponse, fallback: str) -> AuthFailed:
    body = _error_body(response)
    message = f"{fallback}: {body.error_description}" if body and body.error_description else fallback
    return AuthFailed(message, http_status=response.status, vendor_code=body.error if body else None)


def _resourced(error: FieldError, sources: dict[str, str]) -> FieldError:
    """A lookup's field error re-pointed with the contact's own sources (the lookup only knew generic ones)."""
    if error.vendor_field and error.vendor_field in sources:
        return replace(error, field=sources[error.vendor_field])
    return error


def _header(response: VendorResponse, name: str) -> str | None:
    return response.headers.get(name)


def _cookie(response: VendorResponse, name: str) -> str | None:
    # Every Set-Cookie header is read: the session cookie need not be the last one the server sets.
    for header in response.header_values("Set-Cookie"):
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(header)
        except CookieError:
            continue
        morsel = cookies.get(name)
        if morsel is not None and morsel.value:
            return morsel.value
    return None


def _keyed_otherwise(earlier: dict[str, Any] | None, payload: dict[str, Any]) -> bool:
    """Whether a lost create's payload (`lost_create_payload`) is found by another e-mail or customer than `payload`."""
    if earlier is None or not earlier.get("email"):
        return False
    return (earlier.get("email"), earlier.get("customerId")) != (payload.get("email"), payload.get("customerId"))
