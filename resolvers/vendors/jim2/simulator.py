"""A faithful fake of Jim2's Web API: OAuth 2 client credentials with user licences, JSON:API card file contacts.

KNOWN behaviour imitated (seed 002, VENDORS.md, Jim2's token page): `POST token` with
`grant_type=client_credentials` and the client id and secret as HTTP Basic or form fields; scope `view` is read-only
and takes no licence, the default scope holds a user licence while the session lives (20 minutes) or until logoff,
and no free licence means no token. `api/v1/cardfiles/{cardno}/contacts`: GET (all), POST (201 with the new
`{cardno}-{contno}` id), GET/PATCH/DELETE `.../contacts/{id}` (DELETE answers 204); attributes as in the seed, with
contNo and isPrimary read-only and webAccount.logonId unique.

ASSUMED (constructor settings where it matters):
- Licences are per user (client id): a new token for a client whose session is live extends that session; logoff
  (`logoff_path`, `logoff_method`) ends it, revokes the client's tokens and frees the licence; so does its expiry.
  No free licence: `no_licence_status` (400) with OAuth error `temporarily_unavailable`.
- OAuth errors as RFC 6749 5.2 (`invalid_client` is 401 when HTTP Basic was used, else 400). The token answer has
  `access_token`, `token_type`, `expires_in` (`token_lifetime_s`), `refresh_token` and `scope`.
- Errors are JSON:API `errors[]` with `status`, `code`, `title`, `detail` and `source.pointer`; codes such as
  `Required`, `UnknownDetailType`, `InvalidDate`, `CardFileNotFound` are this fake's own. An unknown card names the
  `cardno` parameter in `source`.
- Malformed documents: not JSON or no `data` object is 400; a wrong `type` or a PATCH whose `data.id` is not the
  URL's is 409 (as JSON:API requires); unknown or read-only attributes and wrong value types are 422, like
  business rules (`name_required`: a lastName or a displayName; `detail_types`; `dob_format`). Every violation of
  a request is reported at once. Media types `application/vnd.api+json` and `application/json` are accepted, others
  get 415.
- PATCH replaces each attribute it names; null clears. `details_patch` says what it does with `details`:
  "replace" (the whole list, JSON:API) or "merge" (an entry sent replaces the record's next entry of its type, in
  order, or is added; entries of the record no entry sent matched are kept, as seed 002's PATCH answer can be
  read). The first contact on a card is its primary one. Records start empty; `cards` are the card files that exist.
- `filter[email]` on the card's listing ignores case unless `filter_case_sensitive`.
- `page_size`: listings in pages of that many contacts, each naming the next in JSON:API `links.next` (`page[number]`);
  None (the default) answers a listing whole, as VENDORS.md assumes.
- `token_type` ("bearer"): the token answer's `token_type`, for a Jim2 that spells it otherwise or issues another.
- `POST _admin/next-ids` (the shared admin endpoint) gives the next created contacts the queued ids instead of
  `{cardno}-{contno}`; such an id should start with `{cardno}-` so its card is found.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from resolvers.simulation import Simulator
from resolvers.vendors.jim2.mapping import DEFAULT_DETAIL_TYPES, DEFAULT_DOB_FORMAT
from resolvers.vendors.jim2.wire import RESOURCE_TYPE

DEMO_CLIENT_ID = "contact-gateway"
DEMO_CLIENT_SECRET = "jim2-demo-secret"
DEMO_CARD_NO = "10"
MEDIA_TYPE = "application/vnd.api+json"
_ACCEPTED_MEDIA_TYPES = frozenset({MEDIA_TYPE, "application/json"})
_TEXT_ATTRIBUTES = ("title", "firstName", "middleName", "lastName", "displayName", "jobTitle", "department", "dob")
_READ_ONLY = ("contNo", "isPrimary")
_DETAIL_MEMBERS = frozenset({"type", "value", "comments"})
_WEB_ACCOUNT_MEMBERS = frozenset({"enabled", "logonId", "password"})


@dataclass(slots=True)
class IssuedToken:
    """A bearer token the fake issued."""

    client_id: str
    read_only: bool
    expires: float


def _error(
    status: int, code: str, detail: str, *, pointer: str | None = None, parameter: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"status": str(status), "code": code, "title": _phrase(status), "detail": detail}
    if pointer is not None:
        error["source"] = {"pointer": pointer}
    elif parameter is not None:
        error["source"] = {"parameter": parameter}
    return error


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class Jim2Simulator(Simulator):
    """Jim2's Web API as the connector sees it (see the module docstring for what is assumed)."""

    name: ClassVar[str] = "jim2"

    def __init__(
        self,
        *,
        clients: Mapping[str, str] | None = None,
        cards: Iterable[str] = (DEMO_CARD_NO,),
        licences: int = 5,
        token_lifetime_s: float = 1200.0,
        no_licence_status: int = 400,
        logoff_path: str = "logoff",
        logoff_method: str = "POST",
        detail_types: Iterable[str] = tuple(DEFAULT_DETAIL_TYPES.values()),
        dob_format: str = DEFAULT_DOB_FORMAT,
        name_required: bool = True,
        details_patch: str = "replace",
        filter_case_sensitive: bool = False,
        page_size: int | None = None,
        token_type: str = "bearer",
    ) -> None:
        super().__init__()
        #: Client id -> secret (the secret is the user card file's password in Jim2).
        self.clients = dict(clients if clients is not None else {DEMO_CLIENT_ID: DEMO_CLIENT_SECRET})
        self.cards = frozenset(cards)
        self.licences = licences
        self.token_lifetime_s = token_lifetime_s
        self.no_licence_status = no_licence_status
        self.logoff_path = "/" + logoff_path.lstrip("/")
        self.logoff_method = logoff_method
        self.detail_types = frozenset(detail_types)
        self.filter_case_sensitive = filter_case_sensitive
        #: None: a listing is one answer (VENDORS.md assumes no paging); n: n contacts a page, JSON:API `links.next`
        #: (`page[number]`) naming the following one.
        self.page_size = page_size
        self.token_type = token_type
        self.dob_format = dob_format
        self.name_required = name_required
        self.details_patch = details_patch
        self.tokens: dict[str, IssuedToken] = {}
        #: Licensed user sessions: client id -> monotonic expiry.
        self.sessions: dict[str, float] = {}
        #: The last contact number given out per card (numbers are never reused).
        self.last_cont_no: dict[str, int] = {}
        #: E-mail address -> ids of the records holding it (the e-mail filter stays fast on big cards).
        self.by_email: dict[str, set[str]] = {}

    def is_write(self, request: web.Request) -> bool:
        """Only the contact endpoints write records; token and logoff calls do not."""
        return request.method in {"POST", "PATCH", "DELETE"} and "/api/" in request.path

    def add_routes(self, app: web.Application) -> None:
        """Token, logoff, the contacts collection and one contact; a token-expiry admin call."""
        app.router.add_post("/token", self._token)
        app.router.add_route(self.logoff_method, self.logoff_path, self._logoff)
        app.router.add_get("/api/v1/cardfiles/{cardno}/contacts", self._list)
        app.router.add_post("/api/v1/cardfiles/{cardno}/contacts", self._create)
        app.router.add_get("/api/v1/cardfiles/{cardno}/contacts/{id}", self._read)
        app.router.add_patch("/api/v1/cardfiles/{cardno}/contacts/{id}", self._patch)
        app.router.add_delete("/api/v1/cardfiles/{cardno}/contacts/{id}", self._delete)
        app.router.add_post("/_admin/expire-tokens", self._admin_expire_tokens)

    def error_response(self, status: int, message: str) -> web.Response:
        """A JSON:API error document with one error."""
        return self._errors(status, [_error(status, _phrase(status).replace(" ", ""), message)])

    def reset(self) -> None:
        """Forget records, calls, faults, tokens, sessions and contact numbers."""
        super().reset()
        self.tokens.clear()
        self.sessions.clear()
        self.last_cont_no.clear()
        self.by_email.clear()

    def _index(self, record: dict[str, Any], *, remove: bool = False) -> None:
        for email in _record_emails(record):
            ids = self.by_email.setdefault(email, set())
            if remove:
                ids.discard(record["id"])
            else:
                ids.add(record["id"])

    def licences_in_use(self) -> int:
        """Licensed sessions alive now."""
        now = time.monotonic()
        for client_id in [c for c, expires in self.sessions.items() if expires <= now]:
            del self.sessions[client_id]
        return len(self.sessions)

    def expire_tokens(self) -> int:
        """End every issued token now (the next call gets 401); sessions stay. Returns how many."""
        for token in self.tokens.values():
            token.expires = 0.0
        return len(self.tokens)

    # -- responses ------------------------------------------------------------------------------------------------

    @staticmethod
    def _document(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.Response(body=orjson.dumps({"data": data}), status=status, content_type=MEDIA_TYPE, headers=headers)

    @staticmethod
    def _errors(status: int, errors: list[dict[str, Any]]) -> web.Response:
        return web.Response(body=orjson.dumps({"errors": errors}), status=status, content_type=MEDIA_TYPE)

    @staticmethod
    def _oauth_error(status: int, error: str, description: str, basic: bool = False) -> web.Response:
        headers = {"WWW-Authenticate": 'Basic realm="Jim2"'} if basic and status == 401 else None
        return web.json_response({"error": error, "error_description": description}, status=status, headers=headers)

    # -- OAuth ----------------------------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-www-form-urlencoded":
            return self._oauth_error(400, "invalid_request", "the token request must be form encoded")
        form = dict(parse_qsl(await request.text(), keep_blank_values=True))
        if form.get("grant_type") != "client_credentials":
            return self._oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
        basic = _basic(request.headers.get("Authorization", ""))
        client_id, secret = basic or (form.get("client_id"), form.get("client_secret"))
        if not client_id or self.clients.get(client_id) != secret:
            return self._oauth_error(
                401 if basic else 400, "invalid_client", "unknown client or wrong secret", basic=basic is not None
            )
        scopes = set((form.get("scope") or "all").split())
        if not scopes or not scopes <= {"all", "view"}:
            return self._oauth_error(400, "invalid_scope", f"unknown scope {form.get('scope')!r}")
        read_only = scopes == {"view"}
        now = time.monotonic()
        if not read_only:
            if client_id not in self.sessions and self.licences_in_use() >= self.licences:
                return self._oauth_error(
                    self.no_licence_status, "temporarily_unavailable", "There are no available licences"
                )
            # A new token extends the client's licensed session (Jim2's docs: "can be extended").
            self.sessions[client_id] = now + self.token_lifetime_s
        token = secrets.token_urlsafe(24)
        self.tokens[token] = IssuedToken(client_id=client_id, read_only=read_only, expires=now + self.token_lifetime_s)
        self.state.count("tokens")
        return web.json_response(
            {
                "access_token": token,
                "token_type": self.token_type,
                "expires_in": int(self.token_lifetime_s),
                "refresh_token": secrets.token_urlsafe(24),
                "scope": " ".join(sorted(scopes)),
            }
        )

    async def _logoff(self, request: web.Request) -> web.Response:
        issued = self._authorize(request)
        if isinstance(issued, web.Response):
            return issued
        self.sessions.pop(issued.client_id, None)
        for token in [t for t, i in self.tokens.items() if i.client_id == issued.client_id]:
            del self.tokens[token]
        self.state.count("logoffs")
        return web.Response(status=204)

    def _authorize(self, request: web.Request, write: bool = False) -> IssuedToken | web.Response:
        """The caller's token, or the 401/403 answer."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        issued = self.tokens.get(value) if scheme.lower() == "bearer" else None
        if issued is None:
            return self._unauthorized("Authorization has been denied for this request")
        if issued.expires <= time.monotonic():
            return self._unauthorized("The access token has expired")
        if not issued.read_only and issued.client_id not in self.sessions:
            return self._unauthorized("The session has ended")
        if write and issued.read_only:
            return self._errors(403, [_error(403, "Forbidden", "Scope view is read-only")])
        return issued

    def _unauthorized(self, detail: str) -> web.Response:
        response = self._errors(401, [_error(401, "Unauthorized", detail)])
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response

    # -- contacts -------------------------------------------------------------------------------------------------

    def _card(self, request: web.Request) -> str | None:
        card = request.match_info["cardno"]
        return card if card in self.cards else None

    def _unknown_card(self, request: web.Request) -> web.Response:
        card = request.match_info["cardno"]
        return self._errors(
            404, [_error(404, "CardFileNotFound", f"Card file {card} was not found", parameter="cardno")]
        )

    def _unknown_contact(self, contact_id: str) -> web.Response:
        return self._errors(404, [_error(404, "NotFound", f"CardFileContact {contact_id} was not found")])

    def _resource(self, record: dict[str, Any]) -> dict[str, Any]:
        card = record["id"].rsplit("-", 1)[0]
        return {**record, "links": {"self": f"/api/v1/cardfiles/{card}/contacts/{record['id']}"}}

    async def _list(self, request: web.Request) -> web.Response:
        issued = self._authorize(request)
        if isinstance(issued, web.Response):
            return issued
        card = self._card(request)
        if card is None:
            return self._unknown_card(request)
        prefix = f"{card}-"
        email = request.query.get("filter[email]")
        if email is not None:  # the JSON:API filter the connector's reconciliation asks for (ASSUMED)
            ids = sorted(self.by_email.get(email.strip().casefold(), ()))
            found = [self.state.records[i] for i in ids if i.startswith(prefix) and i in self.state.records]
            if self.filter_case_sensitive:
                found = [r for r in found if email.strip() in _record_emails(r, fold=False)]
        else:
            found = [r for k, r in self.state.records.items() if k.startswith(prefix)]
        if self.page_size is None:
            return self._document([self._resource(r) for r in found])
        page = int(request.query.get("page[number]", "1"))
        start = (page - 1) * self.page_size
        body: dict[str, Any] = {"data": [self._resource(r) for r in found[start : start + self.page_size]]}
        if start + self.page_size < len(found):
            body["links"] = {"next": str(request.url.update_query({"page[number]": str(page + 1)}))}
        return web.Response(body=orjson.dumps(body), content_type=MEDIA_TYPE)

    async def _read(self, request: web.Request) -> web.Response:
        issued = self._authorize(request)
        if isinstance(issued, web.Response):
            return issued
        if self._card(request) is None:
            return self._unknown_card(request)
        record = self._record(request)
        if record is None:
            return self._unknown_contact(request.match_info["id"])
        return self._document(self._resource(record))

    def _record(self, request: web.Request) -> dict[str, Any] | None:
        contact_id = request.match_info["id"]
        if contact_id.rsplit("-", 1)[0] != request.match_info["cardno"]:
            return None
        return self.state.records.get(contact_id)

    async def _create(self, request: web.Request) -> web.Response:
        issued = self._authorize(request, write=True)
        if isinstance(issued, web.Response):
            return issued
        card = self._card(request)
        if card is None:
            return self._unknown_card(request)
        resource = await self._resource_object(request)
        if isinstance(resource, web.Response):
            return resource
        if "id" in resource:
            # JSON:API: a server that assigns ids answers 403 to a client-generated one.
            return self._errors(
                403, [_error(403, "ClientIdNotSupported", "Jim2 assigns contact ids", pointer="/data/id")]
            )
        attributes = resource.get("attributes") or {}
        errors = self._violations(attributes, None)
        if errors:
            return self._errors(422, errors)
        cont_no = self.last_cont_no.get(card, 0) + 1
        self.last_cont_no[card] = cont_no
        record: dict[str, Any] = {
            # An id queued through `_admin/next-ids` (tests of ids holding `/`, `?`, `..`) replaces Jim2's own.
            "id": self.issued_id() or f"{card}-{cont_no}",
            "type": RESOURCE_TYPE,
            "attributes": {
                "contNo": cont_no,
                **{name: attributes.get(name) for name in _TEXT_ATTRIBUTES},
                "isPrimary": cont_no == 1,  # the card's first contact
                "details": [_detail(d) for d in attributes.get("details") or []],
                "webAccount": attributes.get("webAccount"),
            },
        }
        self.state.records[record["id"]] = record
        self._index(record)
        self.state.count("creates")
        body = self._resource(record)
        return self._document(body, status=201, headers={"Location": body["links"]["self"]})

    async def _patch(self, request: web.Request) -> web.Response:
        issued = self._authorize(request, write=True)
        if isinstance(issued, web.Response):
            return issued
        if self._card(request) is None:
            return self._unknown_card(request)
        record = self._record(request)
        if record is None:
            return self._unknown_contact(request.match_info["id"])
        resource = await self._resource_object(request)
        if isinstance(resource, web.Response):
            return resource
        if "id" not in resource:
            return self._errors(400, [_error(400, "Required", "data.id is required", pointer="/data/id")])
        if resource["id"] != record["id"]:
            return self._errors(409, [_error(409, "IdMismatch", f"data.id must be {record['id']}", pointer="/data/id")])
        attributes = resource.get("attributes") or {}
        errors = self._violations(attributes, record)
        if errors:
            return self._errors(422, errors)
        self._index(record, remove=True)
        stored = record["attributes"]
        for name in _TEXT_ATTRIBUTES:
            if name in attributes:
                stored[name] = attributes[name]
        if "details" in attributes:
            sent = [_detail(d) for d in attributes["details"] or []]
            stored["details"] = _merged(stored.get("details") or [], sent) if self.details_patch == "merge" else sent
        if "webAccount" in attributes:
            stored["webAccount"] = attributes["webAccount"]
        self._index(record)
        self.state.count("updates")
        return self._document(self._resource(record))

    async def _delete(self, request: web.Request) -> web.Response:
        issued = self._authorize(request, write=True)
        if isinstance(issued, web.Response):
            return issued
        if self._card(request) is None:
            return self._unknown_card(request)
        record = self._record(request)
        if record is None:
            return self._unknown_contact(request.match_info["id"])
        del self.state.records[record["id"]]
        self._index(record, remove=True)
        self.state.count("deletes")
        return web.Response(status=204)

    async def _resource_object(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The request's `data` resource object, or the JSON:API answer refusing the document."""
        if request.content_type not in _ACCEPTED_MEDIA_TYPES:
            return self._errors(415, [_error(415, "UnsupportedMediaType", f"Content-Type must be {MEDIA_TYPE}")])
        try:
            document = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return self._errors(400, [_error(400, "InvalidDocument", "The request body is not JSON")])
        if not isinstance(document, dict) or not isinstance(document.get("data"), dict):
            return self._errors(
                400, [_error(400, "InvalidDocument", "A resource object is required in data", pointer="/data")]
            )
        resource: dict[str, Any] = document["data"]
        if resource.get("type") != RESOURCE_TYPE:
            return self._errors(
                409,
                [_error(409, "TypeMismatch", f"data.type must be {RESOURCE_TYPE}", pointer="/data/type")],
            )
        if "attributes" in resource and not isinstance(resource["attributes"], dict):
            return self._errors(
                400, [_error(400, "InvalidDocument", "attributes must be an object", pointer="/data/attributes")]
            )
        return resource

    def _violations(self, attributes: Mapping[str, Any], record: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        """Every rule the attributes break, all at once; `record` is the contact a PATCH changes."""
        at = "/data/attributes"
        out: list[dict[str, Any]] = []
        known = {*_TEXT_ATTRIBUTES, "details", "webAccount"}
        for name in attributes:
            if name in _READ_ONLY:
                out.append(_error(422, "ReadOnly", f"{name} is read-only", pointer=f"{at}/{name}"))
            elif name not in known:
                out.append(_error(422, "UnknownAttribute", f"{name} is not an attribute", pointer=f"{at}/{name}"))
        for name in _TEXT_ATTRIBUTES:
            value = attributes.get(name)
            if value is not None and not isinstance(value, str):
                out.append(_error(422, "InvalidType", f"{name} must be a string", pointer=f"{at}/{name}"))
        dob = attributes.get("dob")
        if isinstance(dob, str) and dob and not _parses(dob, self.dob_format):
            out.append(_error(422, "InvalidDate", f"dob {dob!r} is not a valid date", pointer=f"{at}/dob"))
        out.extend(self._detail_violations(attributes.get("details"), f"{at}/details"))
        out.extend(self._web_account_violations(attributes.get("webAccount"), record, f"{at}/webAccount"))
        if self.name_required:
            merged = {**(record["attributes"] if record else {}), **attributes}
            if not (_text(merged.get("lastName")) or _text(merged.get("displayName"))):
                out.append(
                    _error(422, "Required", "A contact needs a lastName or a displayName", pointer=f"{at}/lastName")
                )
        return out

    def _detail_violations(self, details: Any, at: str) -> list[dict[str, Any]]:
        if details is None:
            return []
        if not isinstance(details, list):
            return [_error(422, "InvalidType", "details must be an array", pointer=at)]
        out: list[dict[str, Any]] = []
        for i, detail in enumerate(details):
            if not isinstance(detail, dict):
                out.append(_error(422, "InvalidType", "a detail must be an object", pointer=f"{at}/{i}"))
                continue
            out.extend(
                _error(422, "UnknownAttribute", f"{member} is not a detail member", pointer=f"{at}/{i}/{member}")
                for member in detail
                if member not in _DETAIL_MEMBERS
            )
            kind = detail.get("type")
            if not _text(kind):
                out.append(_error(422, "Required", "a detail needs a type", pointer=f"{at}/{i}/type"))
            elif kind not in self.detail_types:
                out.append(_error(422, "UnknownDetailType", f"{kind!r} is not a detail type", pointer=f"{at}/{i}/type"))
            for member in ("value", "comments"):
                value = detail.get(member)
                if value is not None and not isinstance(value, str):
                    out.append(_error(422, "InvalidType", f"{member} must be a string", pointer=f"{at}/{i}/{member}"))
        return out

    def _web_account_violations(self, account: Any, record: Mapping[str, Any] | None, at: str) -> list[dict[str, Any]]:
        if account is None:
            return []
        if not isinstance(account, dict):
            return [_error(422, "InvalidType", "webAccount must be an object", pointer=at)]
        out = [
            _error(422, "UnknownAttribute", f"{member} is not a webAccount member", pointer=f"{at}/{member}")
            for member in account
            if member not in _WEB_ACCOUNT_MEMBERS
        ]
        logon_id = account.get("logonId")
        taken = any(
            ((r["attributes"].get("webAccount") or {}).get("logonId") == logon_id)
            for r in self.state.records.values()
            if record is None or r["id"] != record["id"]
        )
        if logon_id and taken:
            out.append(_error(422, "NotUnique", f"logonId {logon_id!r} is in use", pointer=f"{at}/logonId"))
        return out

    async def _admin_expire_tokens(self, request: web.Request) -> web.Response:
        return web.json_response({"expired": self.expire_tokens()})


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        client_id, _, secret = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return client_id, secret


def _detail(detail: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": detail.get("type"), "value": detail.get("value"), "comments": detail.get("comments")}


def _merged(held: list[dict[str, Any]], sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A merging PATCH of `details`: each entry sent replaces the next held entry of its type, or is added."""
    out = list(held)
    taken: set[int] = set()
    for detail in sent:
        at = next((i for i, d in enumerate(out) if i not in taken and d.get("type") == detail.get("type")), None)
        if at is None:
            out.append(detail)
            taken.add(len(out) - 1)
        else:
            out[at] = detail
            taken.add(at)
    return out


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _parses(value: str, fmt: str) -> bool:
    try:
        datetime.strptime(value, fmt)
    except ValueError:
        return False
    return True


def _record_emails(record: dict[str, Any], *, fold: bool = True) -> set[str]:
    """The e-mail addresses of a stored record (EMail details), case-folded unless not `fold`."""
    details = (record.get("attributes") or {}).get("details") or []
    return {
        (str(d.get("value", "")).strip().casefold() if fold else str(d.get("value", "")).strip())
        for d in details
        if isinstance(d, dict) and str(d.get("type", "")).casefold() == "email" and d.get("value")
    }
