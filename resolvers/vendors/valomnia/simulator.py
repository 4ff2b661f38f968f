"""A faithful fake of Valomnia: Spring Security form login, bearer tokens, contacts created and updated by POST.

KNOWN behaviour imitated (seed 004, VENDORS.md): `POST j_spring_security_check` (j_username, j_password) then
`GET login/ajaxSuccess` with the session cookie answers `{"token": ...}`; `POST api/{version}/contacts` creates (201),
`POST api/{version}/contacts/{id}` updates (200), `GET api/{version}/contacts/{id}` shows; form-urlencoded or
multipart bodies; firstName, lastName and customerId required (missing_param), a numeric customerId that fits a Long
(invalid_param_type), an existing customer (404 not_found "The customer with the id ... doesn't exist."), e-mail
format (email_validation_error), ISO country codes (country_error), jpg/gif/png/bmp images of at most 2 Mo
(unsupported_file_type, exceeded_file_size); answers are the contact in the seed's shape.

ASSUMED (constructor settings where it matters):
- A refused login redirects to `login/authfail?ajax=true` (Spring Security's failure URL); API calls without a
  valid token answer 401 `{"error": "no_credentials", ...}`; `token_lifetime_s` and `expire_tokens()` (or
  `POST _admin/expire-tokens`) end tokens. Configured tokens (`api_tokens`) never expire.
- `GET api/{version}/contacts` lists contacts by id with `max` (at most `max_page_size`) and `offset`; with
  `list_filters` it honours `email` (case-insensitive) and `customerId`; `list_envelope` answers `{"data": [...]}`
  rather than a bare array.
- `useExternalId=true`: customerId is the customer's reference. An unknown contact id answers 404 not_found
  "The contact with the id ... doesn't exist.".
- `partial_updates`: an update keeps the fields it is not sent; "" clears one (and skips its format check).
- `max_text_length` (255; None, no limit): longer text fails with save_failed "Failed to save instance." (GORM's
  varchar(255)).
  `max_image_name_length` (255; None, no limit): so does a longer photo file name.
- `strict_email` (default True): the e-mail check is Grails' `email` constraint (`EMAIL_PATTERN`); False is a
  Valomnia that takes any address with one `@` between other characters, for the connector's `strict_email = false`.
- `max_image_bytes`: 2 Mo read as 2 MiB here (the connector checks the stricter 2,000,000 bytes).
- Query parameters count as parameters too (Grails merges them); a body that is no form yields no parameters.
- `POST _admin/next-ids` (the shared admin endpoint) gives the next created contacts the queued (text) ids instead
  of Valomnia's numbers; such ids are shown and updated like the numbers.

Multipart bodies carry binary images the shared call recorder cannot read as UTF-8, and aiohttp refuses bodies
over 1 MiB: a middleware lets this simulator read them (latin-1, 16 MiB), and each multipart call is recorded with
its non-file fields urlencoded, like a form call, so tests can read either the same way.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.parser import HeaderParser
from typing import Any, ClassVar
from urllib.parse import urlencode

import pycountry
from aiohttp import hdrs, web
from multidict import CIMultiDict

from resolvers.simulation import Handler, Simulator
from resolvers.vendors.valomnia.wire import (
    COUNTRY_ERROR,
    EMAIL_PATTERN,
    EMAIL_VALIDATION_ERROR,
    EXCEEDED_FILE_SIZE,
    INVALID_PARAM_TYPE,
    MAX_FILE_NAME_LENGTH,
    MAX_LONG,
    MISSING_PARAM,
    NO_CREDENTIALS,
    NOT_FOUND,
    SAVE_FAILED,
    SERVER_ERROR,
    UNSUPPORTED_FILE_TYPE,
    sniff_image,
)

DEMO_USERNAME = "gateway@acme.example"
DEMO_PASSWORD = "valomnia-demo-password"
#: A bearer token the simulator accepts without a login (the `token` setting).
DEMO_API_TOKEN = "valomnia-demo-api-token"
#: The customer of Valomnia's own example (seed 004).
DEMO_CUSTOMER_ID = "3229"
#: A well-formed customer id the simulator does not have (the one in Valomnia's own not_found example).
UNKNOWN_CUSTOMER_ID = "31888"
ORGANIZATION = "entity1"
SESSION_COOKIE = "JSESSIONID"
#: The largest request body this simulator reads (aiohttp's default is 1 MiB, less than one allowed photo).
MAX_REQUEST_BYTES = 16 * 1024 * 1024

_REQUIRED = ("firstName", "lastName", "customerId")
_TEXT_FIELDS = (
    "firstName",
    "lastName",
    "fonction",
    "country",
    "city",
    "postalCode",
    "address",
    "email",
    "phone",
    "phone2",
    "mobile",
    "fax",
)
_IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "gif", "png", "bmp"})
_COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries)
_NOT_AUTHENTICATED = "Full authentication is required to access this resource"


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer contacts belong to."""

    id: int
    reference: str
    name: str


@dataclass(frozen=True, slots=True)
class Upload:
    """A file part of a multipart body."""

    filename: str
    content: bytes
    content_type: str


DEMO_CUSTOMERS = (
    Customer(3229, "C0959", "Marie's Jewelry"),
    Customer(3230, "C0960", "Schrader & Sons"),
)


class Rejection(Exception):
    """A Valomnia error answer, raised by the checks."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


class ValomniaSimulator(Simulator):
    """Valomnia's login and contact endpoints: its rules, its answers, its error bodies."""

    name = "valomnia"
    #: The form login is a POST that writes no record (logins, token pick-ups and lookups are not writes).
    auth_paths: ClassVar[tuple[str, ...]] = ("/j_spring_security_check",)

    def __init__(
        self,
        *,
        username: str = DEMO_USERNAME,
        password: str = DEMO_PASSWORD,
        api_tokens: Iterable[str] = (DEMO_API_TOKEN,),
        customers: Iterable[Customer] = DEMO_CUSTOMERS,
        api_versions: Iterable[str] = ("v1.0", "v2.1"),
        token_lifetime_s: float = 3600.0,
        list_filters: bool = True,
        list_envelope: bool = True,
        max_page_size: int = 100,
        partial_updates: bool = True,
        max_text_length: int | None = 255,
        max_image_bytes: int = 2 * 1024 * 1024,
        max_image_name_length: int | None = MAX_FILE_NAME_LENGTH,
        strict_email: bool = True,
    ) -> None:
        super().__init__()
        self.username = username
        self.password = password
        self.api_tokens = frozenset(api_tokens)
        self.customers = tuple(customers)
        self.api_versions = frozenset(api_versions)
        self.token_lifetime_s = token_lifetime_s
        self.list_filters = list_filters
        self.list_envelope = list_envelope
        self.max_page_size = max_page_size
        self.partial_updates = partial_updates
        self.max_text_length = max_text_length
        self.max_image_bytes = max_image_bytes
        self.max_image_name_length = max_image_name_length
        self.strict_email = strict_email
        self._forget()

    def _forget(self) -> None:
        #: Session cookie -> user, for logins between the form post and ajaxSuccess.
        self.sessions: dict[str, str] = {}
        #: Bearer token -> when it expires (time.monotonic()).
        self.tokens: dict[str, float] = {}
        #: Contact id -> the photo bytes last uploaded.
        self.photos: dict[str, bytes] = {}
        self._next_id = 1
        #: Case-folded e-mail -> contact ids (the e-mail filter stays fast with many contacts).
        self.by_email: dict[str, set[str]] = {}

    def reset(self) -> None:
        """Forget records, calls, faults, sessions, tokens and photos."""
        super().reset()
        self._forget()

    def expire_tokens(self) -> int:
        """End every token issued by a login now (the next call gets 401 no_credentials); returns how many."""
        now = time.monotonic()
        live = [token for token, expires in self.tokens.items() if expires > now]
        for token in live:
            self.tokens[token] = now
        return len(live)

    def app(self) -> web.Application:
        """The base application, with multipart bodies made readable before the call recorder reads them."""
        app = super().app()
        app.middlewares.insert(0, self._readable_bodies)
        return app

    def add_routes(self, app: web.Application) -> None:
        """Login, token, and the contact endpoints of every API version."""
        app.router.add_route("*", "/j_spring_security_check", self._login)
        app.router.add_get("/login/ajaxSuccess", self._ajax_success)
        app.router.add_get("/login/authfail", self._auth_fail)
        app.router.add_post("/api/{version}/contacts", self._create)
        app.router.add_get("/api/{version}/contacts", self._list)
        app.router.add_post("/api/{version}/contacts/{id}", self._update)
        app.router.add_get("/api/{version}/contacts/{id}", self._show)
        app.router.add_post("/_admin/expire-tokens", self._admin_expire_tokens)

    def error_response(self, status: int, message: str) -> web.Response:
        """Valomnia's error body for an injected fault."""
        error = {401: NO_CREDENTIALS, 404: NOT_FOUND, 429: "too_many_requests"}.get(status)
        if error is None:
            error = SERVER_ERROR if status >= 500 else "bad_request"
        return self._error(status, error, message)

    @staticmethod
    def _error(status: int, error: str, description: str) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=status)

    # -- plumbing -------------------------------------------------------------------------------------------------

    @web.middleware
    async def _readable_bodies(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.content_type == "multipart/form-data":
            headers = CIMultiDict(request.headers)
            headers[hdrs.CONTENT_TYPE] = f"{request.headers[hdrs.CONTENT_TYPE]}; charset=latin-1"
            request = request.clone(headers=headers, client_max_size=MAX_REQUEST_BYTES)
        return await handler(request)

    async def _parameters(self, request: web.Request) -> tuple[dict[str, str], dict[str, Upload]]:
        """Grails' `params`: query parameters, then the form's fields (which win), and the uploaded files."""
        fields: dict[str, str] = {}
        files: dict[str, Upload] = {}
        if request.content_type == "multipart/form-data":
            fields, files = parse_multipart(request.headers[hdrs.CONTENT_TYPE], await request.read())
            self._record_fields(request, fields)
        elif request.content_type == "application/x-www-form-urlencoded":
            posted = await request.post()
            for key, value in posted.items():
                if isinstance(value, str):
                    fields.setdefault(key, value)
        return {**{k: v for k, v in request.query.items()}, **fields}, files

    def _record_fields(self, request: web.Request, fields: Mapping[str, str]) -> None:
        # The boundary makes the Content-Type of this call unique among the recorded ones.
        marker = request.headers.get(hdrs.CONTENT_TYPE)
        for call in reversed(self.state.calls):
            if call.headers.get(hdrs.CONTENT_TYPE) == marker:
                call.body = urlencode(fields)
                return

    def _authorized(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Rejection(401, NO_CREDENTIALS, _NOT_AUTHENTICATED)
        if token in self.api_tokens:
            return
        expires = self.tokens.get(token)
        if expires is None or expires <= time.monotonic():
            raise Rejection(401, NO_CREDENTIALS, "The access token is invalid or has expired")

    def _version(self, request: web.Request) -> str:
        version = request.match_info["version"]
        if version not in self.api_versions:
            raise Rejection(404, NOT_FOUND, f"No API version {version}")
        return version

    # -- login ----------------------------------------------------------------------------------------------------

    async def _login(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "POST"):
            return self._error(405, "method_not_allowed", f"Request method '{request.method}' not supported")
        fields, _ = await self._parameters(request)
        mount = f"/{self.name}/"
        if fields.get("j_username") != self.username or fields.get("j_password") != self.password:
            return web.Response(status=302, headers={hdrs.LOCATION: f"{mount}login/authfail?ajax=true"})
        session = secrets.token_hex(16).upper()
        self.sessions[session] = self.username
        self.state.count("logins")
        response = web.Response(status=302, headers={hdrs.LOCATION: f"{mount}login/ajaxSuccess"})
        response.set_cookie(SESSION_COOKIE, session, path="/", httponly=True)
        return response

    async def _ajax_success(self, request: web.Request) -> web.Response:
        user = self.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        if user is None:
            return self._error(401, NO_CREDENTIALS, _NOT_AUTHENTICATED)
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.monotonic() + self.token_lifetime_s
        return web.json_response(
            {
                "success": True,
                "username": user,
                "token": token,
                "user": {"email": user, "firstName": "Gateway", "lastName": "Connector", "role": ["ROLE_ADMIN"]},
            }
        )

    async def _auth_fail(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"error": "Sorry, we were not able to find a user with that username and password."}, status=401
        )

    async def _admin_expire_tokens(self, request: web.Request) -> web.Response:
        return web.json_response({"expired": self.expire_tokens()})

    # -- contacts -------------------------------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        return await self._answer(request, None)

    async def _update(self, request: web.Request) -> web.Response:
        return await self._answer(request, request.match_info["id"])

    async def _answer(self, request: web.Request, contact_id: str | None) -> web.Response:
        try:
            self._authorized(request)
            version = self._version(request)
            record = None if contact_id is None else self._record(contact_id)
            fields, files = await self._parameters(request)
            customer = self._check(fields, files, "create" if record is None else "update")
        except Rejection as rejection:
            return self._error(rejection.status, rejection.error, rejection.description)
        created = record is None
        record = self._save(record, fields, files, customer, version, request)
        self.state.count("creates" if created else "updates")
        return web.json_response(record, status=201 if created else 200)

    async def _show(self, request: web.Request) -> web.Response:
        try:
            self._authorized(request)
            self._version(request)
            return web.json_response(self._record(request.match_info["id"]))
        except Rejection as rejection:
            return self._error(rejection.status, rejection.error, rejection.description)

    async def _list(self, request: web.Request) -> web.Response:
        try:
            self._authorized(request)
            self._version(request)
            query = request.query
            size = min(self._number("max", query.get("max", "10")), self.max_page_size)
            offset = self._number("offset", query.get("offset", "0"))
            if self.list_filters and query.get("email"):
                ids = self.by_email.get(query["email"].casefold(), set())
                candidates = [self.state.records[i] for i in ids if i in self.state.records]
            else:
                candidates = list(self.state.records.values())
            # Valomnia's numbers in order, then ids queued through `_admin/next-ids`.
            items = sorted(candidates, key=lambda r: (1, 0, r["id"]) if isinstance(r["id"], str) else (0, r["id"], ""))
            if self.list_filters and query.get("customerId"):
                customer = self._customer(query["customerId"], _truthy(query.get("useExternalId")))
                items = [r for r in items if r["customer"]["id"] == customer.id]
            if self.list_filters and query.get("email"):
                wanted = query["email"].casefold()
                items = [r for r in items if r["email"].casefold() == wanted]
        except Rejection as rejection:
            return self._error(rejection.status, rejection.error, rejection.description)
        self.state.count("lookups")
        page = items[offset : offset + max(size, 1)]
        return web.json_response({"data": page} if self.list_envelope else page)

    def _record(self, contact_id: str) -> dict[str, Any]:
        issued = self.state.records.get(contact_id)
        if issued is not None and isinstance(issued["id"], str):
            return issued  # an id queued through `_admin/next-ids`, not one of Valomnia's numbers
        if not contact_id.isdigit():
            raise Rejection(
                400, INVALID_PARAM_TYPE, "The type of parameter id you provided is not valid for this request."
            )
        record = self.state.records.get(str(int(contact_id)))
        if record is None:
            raise Rejection(404, NOT_FOUND, f"The contact with the id {contact_id} doesn't exist.")
        return record

    @staticmethod
    def _number(name: str, value: str) -> int:
        if not value.isdigit():
            raise Rejection(
                400, INVALID_PARAM_TYPE, f"The type of parameter {name} you provided is not valid for this request."
            )
        return int(value)

    def _customer(self, value: str, external: bool) -> Customer:
        if external:
            found = next((c for c in self.customers if c.reference == value), None)
        else:
            if not (value.isascii() and value.isdigit()) or int(value) > MAX_LONG:
                raise Rejection(
                    400,
                    INVALID_PARAM_TYPE,
                    "The type of parameter customerId you provided is not valid for this request.",
                )
            found = next((c for c in self.customers if c.id == int(value)), None)
        if found is None:
            raise Rejection(404, NOT_FOUND, f"The customer with the id {value} doesn't exist.")
        return found

    def _check(self, fields: Mapping[str, str], files: Mapping[str, Upload], operation: str) -> Customer:
        """The customer the contact belongs to, after every rule Valomnia checks, in the order it checks them."""
        for name in _REQUIRED:
            if not fields.get(name, "").strip():
                raise Rejection(400, MISSING_PARAM, f"{name} parameter is missing")
        external = fields.get("useExternalId", "false").lower()
        if external not in ("true", "false"):
            raise Rejection(
                400,
                INVALID_PARAM_TYPE,
                "The type of parameter useExternalId you provided is not valid for this request.",
            )
        customer = self._customer(fields["customerId"], external == "true")
        if fields.get("email") and not self._email_taken(fields["email"]):
            raise Rejection(400, EMAIL_VALIDATION_ERROR, f"Failed to {operation} the contact : incorrect Email format")
        if fields.get("country") and fields["country"] not in _COUNTRIES:
            raise Rejection(400, COUNTRY_ERROR, f"Failed to {operation} the contact : incorrect country code")
        image = files.get("imageFile")
        if image is not None:
            if len(image.content) > self.max_image_bytes:
                raise Rejection(400, EXCEEDED_FILE_SIZE, "image size should not exceed 2Mo")
            extension = image.filename.rsplit(".", 1)[-1].lower() if "." in image.filename else ""
            if extension not in _IMAGE_EXTENSIONS or sniff_image(image.content) is None:
                raise Rejection(400, UNSUPPORTED_FILE_TYPE, "image format not supported.")
        name_limit = self.max_image_name_length
        text_limit = self.max_text_length
        too_long = text_limit is not None and any(len(fields.get(name, "")) > text_limit for name in _TEXT_FIELDS)
        if too_long or (image is not None and name_limit is not None and len(image.filename) > name_limit):
            raise Rejection(400, SAVE_FAILED, "Failed to save instance.")
        return customer

    def _email_taken(self, email: str) -> bool:
        if self.strict_email:
            return EMAIL_PATTERN.fullmatch(email) is not None
        local, at, domain = email.partition("@")
        return bool(local and at and domain and "@" not in domain)

    def _save(
        self,
        record: dict[str, Any] | None,
        fields: Mapping[str, str],
        files: Mapping[str, Upload],
        customer: Customer,
        version: str,
        request: web.Request,
    ) -> dict[str, Any]:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if record is None:
            # An id queued through `_admin/next-ids` (tests of ids holding `/`, `?`, `..`) replaces Valomnia's own.
            contact_id: int | str = self.issued_id() or self._next_id
            if isinstance(contact_id, int):
                self._next_id += 1
            record = {"id": contact_id, **dict.fromkeys(_TEXT_FIELDS, ""), "comment": ""}
            record |= {"isDecisionMaker": False, "photo": "", "organization": ORGANIZATION, "dateCreated": now}
            record["user"] = {"id": 4, "reference": "emp-00", "href": f"/api/{version}/users/4"}
        for name in _TEXT_FIELDS:
            if name in fields or not self.partial_updates:
                record[name] = fields.get(name, "")
        record["customerReference"] = customer.reference
        record["customer"] = {
            "id": customer.id,
            "reference": customer.reference,
            "name": customer.name,
            "href": f"/api/{version}/customers/{customer.id}",
        }
        image = files.get("imageFile")
        if image is not None:
            key = str(record["id"])
            self.photos[key] = image.content
            stamp = int(time.time() * 1000)
            record["photo"] = (
                f"{request.url.origin()}/{self.name}/{ORGANIZATION}/photoContact/{stamp}_{key}_{image.filename}"
            )
        record["lastUpdated"] = now
        key = str(record["id"])
        old = self.state.records.get(key)
        if old is not None:
            self.by_email.get(str(old.get("email", "")).casefold(), set()).discard(key)
        self.state.records[key] = record
        self.by_email.setdefault(str(record.get("email", "")).casefold(), set()).add(key)
        return record


def _truthy(value: str | None) -> bool:
    return (value or "").lower() == "true"


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, Upload]]:
    """The text fields and files of a multipart/form-data body (binary-safe: split on the boundary)."""
    header = Message()
    header[hdrs.CONTENT_TYPE] = content_type
    boundary = header.get_param("boundary")
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    if not isinstance(boundary, str):
        return fields, files
    for chunk in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if chunk.startswith(b"--"):
            break
        head, separator, content = chunk.partition(b"\r\n\r\n")
        if not separator:
            continue
        content = content.removesuffix(b"\r\n")
        # Part headers are read as UTF-8, as Spring's multipart resolver does: a file name may be sent so (RFC 7578).
        part = HeaderParser().parsestr((head.lstrip(b"\r\n") + b"\r\n\r\n").decode("utf-8", "replace"))
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        filename = part.get_filename()
        if filename is not None:
            files.setdefault(name, Upload(filename, content, part.get_content_type()))
        else:
            fields.setdefault(name, content.decode(part.get_content_charset() or "utf-8", "replace"))
    return fields, files
