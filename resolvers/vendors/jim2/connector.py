"""Jim2 (Happen Business) Web API: OAuth 2 client credentials, then JSON:API card file contacts.

KNOWN (seed 002, VENDORS.md, Jim2's token page):
- `api/v1/cardfiles/{cardno}/contacts` is JSON:API: resource type `CardFileContact`, id `{cardno}-{contno}` assigned
  by Jim2; GET (all, no paging), POST (create; the answer carries the id), PATCH `.../contacts/{id}` with a partial
  `{"data": {"id", "type", "attributes"}}`, DELETE. Attributes: contNo and isPrimary (read-only), title,
  firstName, middleName, lastName, displayName, jobTitle, department, dob, details [{type, value, comments}],
  webAccount. No address and no external key: the gateway's cross-reference is the only link.
- Being JSON:API, a create answers 201, a delete 204, and errors are `{"errors": [...]}`.
- Auth is OAuth 2 client credentials only: `POST {base}token`, form `grant_type=client_credentials`, the client id
  and secret as HTTP Basic or as form fields. Scope `view` is read-only and takes no licence; the default scope
  holds a user licence while the token lives (20 minutes) or until logoff. No free licence: the token is refused.

ASSUMED (each one a setting, or tolerated both ways):
- `client_auth`: `basic` (RFC 6749's preferred way; the example in Jim2's docs) or `form`.
- `scope`: None asks for Jim2's default scope (a licence); `view` cannot write (refused in the config).
- The token answer has the standard `access_token` and `expires_in` (missing: the documented 20 minutes); its
  `token_type` is read (RFC 6749 7.1): "bearer" in any case, or none, is sent as `Authorization: Bearer`; any
  other type cannot be, and is AUTH_FAILED naming it. A 401 means the token ended: one new token, one repeat.
  Concurrent calls share one token request. `token_refresh_margin_s`: a token is renewed this long before it runs
  out.
- `logoff_path` / `logoff_method`: the logoff endpoint Jim2's docs mention without naming (`POST logoff`); called by
  `aclose()` so the licence is released at shutdown ("" disables it).
- `media_type`: `application/vnd.api+json` for Content-Type and Accept (Jim2 may take `application/json` too).
- Errors are JSON:API `errors[]` with `status`, `code`, `title`, `detail` and `source.pointer` into the request
  document (`/data/attributes/details/1/value`), mapped back to canonical paths; an unknown card is a 404 naming
  the `cardno` parameter (or any 404 on the card's collection). Error codes are Jim2's, kept as `vendorCode`.
  A "no licence" refusal of the token request (`temporarily_unavailable`) is transient, not an auth failure.
- `detail_types`: Jim2's detail type per kind; OTHER is left out with a warning unless given one.
- `card_no_pattern`: what a card number looks like (digits, as the seed's card `10`); checked before sending. A
  card that matches but does not exist (too large a number, say) is Jim2's 404, reported on the card's field.
- `dob_format`: ISO `%Y-%m-%d`. `name_required`: Jim2 refuses a contact with neither lastName nor displayName.
- PATCH replaces each attribute it names; a cleared field is sent as null. What it does with `details` is ASSUMED,
  so a setting (`details_patch`): "replace" (the default, JSON:API semantics: the list sent is the whole list) or
  "merge" (seed 002's PATCH sends only an EMail entry and its answer still holds the Phone entry, with an empty
  value that contradicts the seed's own GET: read as Jim2 matching entries by type and keeping the others). Under
  "merge" an entry is matched by its type, in order, and every entry of the record the new list leaves unmatched
  is sent with an empty value and comments, clearing it, as that answer shows a cleared entry. The record's entries
  are those of the payload Jim2 last accepted, or, when that is unknown (an adopted record, a link written before),
  read with a GET first.

Decisions:
- Updates send only the attributes that changed since the payload Jim2 last accepted (`link.payload`); all of them
  when that is unknown or was for another card. When nothing changed at attribute level (a forced repeat, or a
  change only in fields Jim2 does not hold) the PATCH is still sent with empty attributes: valid JSON:API, and it
  proves the record still exists (a 404 recreates it).
- Reconciliation: with no remote id, the card's contacts are listed and one with the same e-mail (EMail detail,
  case-insensitive) is adopted (`matched_by="email"`) and updated with every attribute, before any create. The
  listing asks for that e-mail with the ASSUMED JSON:API filter `lookup_filter` (`filter[email]`), so a first write
  does not read the whole card; every returned contact is checked here too, so a server ignoring it stays correct.
  VENDORS.md assumes the listing is not paged; should Jim2 answer with a JSON:API `links.next`, it is followed (on
  Jim2's own origin) for up to `lookup_max_pages` pages. A listing that goes on past them, or points elsewhere,
  proves nothing: the create that follows is one a lost answer must not repeat (as with no e-mail).
- A changed card number creates the contact on the new card (Jim2 ids belong to one card) and leaves the old record
  in place, with a warning naming it.
- Deleting a record Jim2 no longer has reports DELETED with a warning (the end state holds).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode, urljoin, urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator

from resolvers.errors import AuthFailed, VendorError, VendorNotFound, VendorUnavailable
from resolvers.model import DetailKind
from resolvers.results import FieldError, Vendor, VendorStatus
from resolvers.transport import Transport, VendorResponse, path_segment, status_error
from resolvers.vendors.base import (
    Capabilities,
    Connector,
    CrossReference,
    Delivered,
    Mapped,
    Prepared,
    VendorSettings,
    lost_create_payload,
    sending_create,
)
from resolvers.vendors.jim2.mapping import (
    CARD_NO,
    DEFAULT_DETAIL_TYPES,
    DEFAULT_DOB_FORMAT,
    card_number,
    to_wire,
)
from resolvers.vendors.jim2.wire import (
    CARD_NO_PATTERN,
    RESOURCE_TYPE,
    AttributesWrite,
    CollectionDocument,
    ContactWrite,
    ErrorDocument,
    ErrorObject,
    OAuthError,
    ResourceDocument,
    ResourceRead,
    TokenResponse,
)

log = logging.getLogger(__name__)

#: Jim2's documented token lifetime ("the refresh token has an expiry time of 20 minutes").
DOCUMENTED_TOKEN_LIFETIME_S = 1200.0
DEFAULT_MEDIA_TYPE = "application/vnd.api+json"
#: OAuth error codes meaning "try again later" rather than "wrong credentials" (a licence shortage).
_TRANSIENT_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
#: Statuses whose JSON:API errors name fields of the request.
_FIELD_STATUSES = frozenset({400, 404, 409, 422})
_DETAIL_KINDS = frozenset(kind.value.lower() for kind in DetailKind)


class Jim2Settings(VendorSettings):
    """`[vendors.jim2]`: where Jim2 is, the OAuth client, the default card file and the tenant's detail types."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    #: The card file contacts go to unless a contact's `vendorOptions.jim2.cardNo` says otherwise.
    card_no: str | None = Field(default=None, min_length=1)
    #: ASSUMED: what a card number looks like (a regular expression a whole card number matches; digits by default:
    #: the seed's only card is `10`). Checked before sending, on `card_no` and on `vendorOptions.jim2.cardNo`.
    card_no_pattern: str = CARD_NO_PATTERN
    #: ASSUMED: how the client authenticates at the token endpoint (Jim2 takes both).
    client_auth: Literal["basic", "form"] = "basic"
    #: ASSUMED: None asks for the default scope (writes, one user licence); "view" is read-only.
    scope: str | None = Field(default=None, min_length=1)
    #: The token endpoint, relative to base_url (known: `token`).
    token_path: str = "token"
    #: ASSUMED: the logoff endpoint, relative to base_url; "" skips logoff at shutdown.
    logoff_path: str = "logoff"
    #: ASSUMED: the HTTP method of the logoff endpoint.
    logoff_method: Literal["POST", "GET", "DELETE"] = "POST"
    #: Renew a token this long before Jim2's `expires_in` runs out (at most half its lifetime).
    token_refresh_margin_s: float = Field(default=30.0, ge=0)
    #: ASSUMED: the JSON:API media type sent as Content-Type and Accept.
    media_type: str = Field(default=DEFAULT_MEDIA_TYPE, pattern=r"^[\w.+-]+/[\w.+-]+$")
    #: ASSUMED: Jim2 detail type per detail kind; a kind left out (by default `other`) is not sent, with a warning.
    detail_types: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_DETAIL_TYPES))
    #: ASSUMED: `dob` format, strftime notation.
    dob_format: str = Field(default=DEFAULT_DOB_FORMAT, min_length=2)
    #: ASSUMED: a contact needs a lastName or a displayName.
    name_required: bool = True
    #: ASSUMED: the JSON:API filter parameter that narrows the card's contacts to one e-mail address (None: list the
    #: whole card). Every contact returned is checked here anyway, so a server that ignores it only sends more.
    lookup_filter: str | None = "filter[email]"
    #: ASSUMED: what a PATCH does with `details`: "replace" the record's list with the one sent (JSON:API), or
    #: "merge" it by type, keeping entries the list leaves out; then removed entries are sent empty to clear them.
    details_patch: Literal["replace", "merge"] = "replace"
    #: ASSUMED (VENDORS.md: no paging): the most pages of a card's listing a lookup reads, following `links.next`.
    lookup_max_pages: int = Field(default=10, ge=1, le=1000)

    @field_validator("token_path", "logoff_path")
    @classmethod
    def _relative(cls, value: str) -> str:
        # Joined as f"{base}{path}": no leading slash.
        return value.lstrip("/")

    @field_validator("scope")
    @classmethod
    def _writable(cls, value: str | None) -> str | None:
        # VENDORS.md (known): scope `view` is read-only. The gateway only writes: such a token fails every call.
        if value is not None and set(value.split()) == {"view"}:
            raise ValueError("'view' is Jim2's read-only scope and the gateway writes; leave scope out for the default")
        return value

    @field_validator("card_no_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _card_matches(self) -> Jim2Settings:
        # Checked as it is sent: "010" goes as card 10 (`card_number`).
        if self.card_no is not None and re.fullmatch(self.card_no_pattern, card_number(self.card_no)) is None:
            raise ValueError(f"card_no {self.card_no!r} does not match card_no_pattern {self.card_no_pattern!r}")
        return self

    @field_validator("detail_types")
    @classmethod
    def _known_kinds(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - _DETAIL_KINDS)
        if unknown:
            raise ValueError(f"unknown detail kinds {unknown}; use {sorted(_DETAIL_KINDS)}")
        if any(not name for name in value.values()):
            raise ValueError("a detail type must not be empty")
        return value


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    #: Monotonic time after which the token is renewed before use.
    renew_at: float


class Jim2Connector(Connector[Jim2Settings]):
    """Jim2: POST creates, PATCH updates what changed, DELETE deletes; reconciles by e-mail before creating."""

    vendor: ClassVar[Vendor] = Vendor.JIM2
    settings_type: ClassVar[type[VendorSettings]] = Jim2Settings
    wire_model: ClassVar[type[BaseModel]] = ContactWrite
    capabilities: ClassVar[Capabilities] = Capabilities(delete=True, read=True, native_upsert=False, shared_lookup=True)
    to_wire = staticmethod(to_wire)

    def __init__(self, settings: Jim2Settings, transport: Transport) -> None:
        super().__init__(settings, transport)
        self.wire_context = {"card_no_pattern": settings.card_no_pattern}
        self._token: _Token | None = None
        # One token request for many concurrent calls: whoever holds the lock fetches, the others reuse its token.
        self._token_lock = asyncio.Lock()

    # -- endpoints ------------------------------------------------------------------------------------------------

    def contacts_url(self, card_no: str) -> str:
        """A card file's contacts collection (the card number encoded as one path segment)."""
        return f"{self.settings.base}api/v1/cardfiles/{path_segment(card_no)}/contacts"

    def contact_url(self, remote_id: str) -> str:
        """One contact, by its `{cardno}-{contno}` id: Jim2 issues the id, and it is encoded as one path segment
        whatever it holds (a `/`, `?`, `#` or `..` in it must not address another resource)."""
        return f"{self.contacts_url(card_of(remote_id))}/{path_segment(remote_id)}"

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint."""
        return f"{self.settings.base}{self.settings.token_path}"

    @property
    def logoff_url(self) -> str:
        """The logoff endpoint (ASSUMED path)."""
        return f"{self.settings.base}{self.settings.logoff_path}"

    # -- the engine's interface -----------------------------------------------------------------------------------

    def reconciles(self, prepared: Prepared) -> bool:
        """True when the contact has an e-mail detail: the card's contacts are searched for it before creating."""
        return bool(_emails(prepared.payload, self._email_type))

    async def upsert(self, prepared: Prepared, link: CrossReference | None) -> Delivered:
        """Update the linked record with what changed, else adopt the card's contact with the same e-mail, else
        create; a linked record Jim2 no longer has is adopted or created anew."""
        payload = prepared.payload
        card_no = str(payload[CARD_NO])
        warnings: list[str] = []
        if link is not None and link.remote_id:
            if card_of(link.remote_id) == card_no:
                updated = await self._update(link.remote_id, payload, _last_accepted(link, card_no))
                if updated is not None:
                    return updated
                warnings.append(f"Jim2 no longer has contact {link.remote_id}; it was written again")
            else:
                warnings.append(
                    f"cardNo changed to {card_no}: written to that card; contact {link.remote_id} on card "
                    f"{card_of(link.remote_id)} was left in place"
                )
        found, complete = (
            await self._reconcile(card_no, payload, warnings, prepared.contact_id)
            if self.reconciles(prepared)
            else (None, False)
        )
        earlier = lost_create_payload(link)
        if found is None and earlier is not None and self._keyed_otherwise(earlier, payload, card_no):
            # A create whose answer was lost may have made the record from what it sent (an e-mail since changed).
            found, listed = await self._reconcile(card_no, earlier, warnings, prepared.contact_id)
            complete = complete and listed
        if found is not None:
            adopted = await self._update(found, payload, None)
            if adopted is not None:
                return Delivered(
                    status=VendorStatus.UPDATED,
                    remote_id=adopted.remote_id,
                    http_status=adopted.http_status,
                    warnings=tuple(warnings),
                    matched_by="email",
                )
        # A listing cut off by `lookup_max_pages` proves nothing: a repeat of this create could miss what it made.
        sending_create(findable=complete)
        return await self._create(card_no, payload, warnings)

    def _keyed_otherwise(self, earlier: Mapping[str, Any], payload: Mapping[str, Any], card_no: str) -> bool:
        """Whether a lost create's payload is found on this card by e-mails `payload` does not have."""
        emails = _emails(earlier, self._email_type)
        return str(earlier.get(CARD_NO)) == card_no and bool(emails) and emails != _emails(payload, self._email_type)

    async def delete(self, contact_id: str, link: CrossReference | None) -> Delivered:
        """DELETE the linked record; without a remote id, the one the last accepted payload's e-mail finds."""
        remote_id = link.remote_id if link is not None else None
        warnings: list[str] = []
        if not remote_id and link is not None and link.payload and _emails(link.payload, self._email_type):
            remote_id, _ = await self._reconcile(str(link.payload.get(CARD_NO)), link.payload, warnings, contact_id)
        if not remote_id:
            return Delivered(
                status=VendorStatus.SKIPPED,
                remote_id=None,
                warnings=(f"no Jim2 contact is known for {contact_id!r}; nothing deleted",),
            )
        # Docs: shared/seeds/002 (DELETE api/v1/cardfiles/{cardno}/contacts/{id}); JSON:API answers 204.
        response = await self._call("DELETE", self.contact_url(remote_id))
        if response.status == 404:
            warnings.append(f"Jim2 no longer had contact {remote_id}; nothing left to delete")
        elif not 200 <= response.status < 300:
            raise self._error(response, link.payload if link is not None and link.payload else {})
        return Delivered(
            status=VendorStatus.DELETED, remote_id=remote_id, http_status=response.status, warnings=tuple(warnings)
        )

    async def aclose(self) -> None:
        """Log off, so the user licence the token holds is released now rather than when the token expires."""
        async with self._token_lock:
            token, self._token = self._token, None
        if token is None or not self.settings.logoff_path:
            return
        try:
            # Docs: https://jim2help.happen.biz/jim2webapi/9148/token.html ("the caller will need to logoff";
            # the endpoint's path and method are ASSUMED settings).
            response = await self.transport.request(
                self.settings.logoff_method,
                self.logoff_url,
                headers={"Authorization": f"Bearer {token.value}", "Accept": self.settings.media_type},
            )
        except VendorError as exc:
            log.warning("Jim2 logoff failed: %s; the licence is held until the token expires", exc.message)
            return
        # 401: the token had already ended, and with it the session: nothing is held.
        if not (200 <= response.status < 300 or response.status == 401):
            log.warning("Jim2 logoff answered HTTP %s: %s", response.status, response.excerpt())

    # -- writes ---------------------------------------------------------------------------------------------------

    async def _create(self, card_no: str, payload: Mapping[str, Any], warnings: list[str]) -> Delivered:
        # Docs: shared/seeds/002 (POST api/v1/cardfiles/{cardno}/contacts, the answer carries the new id).
        response = await self._call("POST", self.contacts_url(card_no), body={"data": payload["data"]})
        if not 200 <= response.status < 300:
            raise self._error(response, payload, collection=True)
        resource = _resource(response)
        return Delivered(
            status=VendorStatus.CREATED, remote_id=resource.id, http_status=response.status, warnings=tuple(warnings)
        )

    async def _update(
        self, remote_id: str, payload: Mapping[str, Any], previous: Mapping[str, Any] | None
    ) -> Delivered | None:
        """PATCH what changed since `previous` (everything when None); None when Jim2 no longer has the record."""
        attributes = changed_attributes(previous, payload["data"]["attributes"])
        if self.settings.details_patch == "merge" and "details" in attributes:
            held = _details_of(previous) if previous is not None else await self._held_details(remote_id, payload)
            if held is None:
                return None
            attributes["details"] = merge_clearing(held, attributes["details"] or [])
        body = {"data": {"type": RESOURCE_TYPE, "id": remote_id, "attributes": attributes}}
        # Docs: shared/seeds/002 (PATCH api/v1/cardfiles/{cardno}/contacts/{id} with data.id and partial attributes).
        response = await self._call("PATCH", self.contact_url(remote_id), body=body)
        if response.status == 404:
            return None
        if not 200 <= response.status < 300:
            raise self._error(response, payload)
        if response.body:
            # Read to be sure Jim2 answered what it should; 204 (allowed by JSON:API) has no body.
            _resource(response)
        return Delivered(status=VendorStatus.UPDATED, remote_id=remote_id, http_status=response.status)

    async def _held_details(self, remote_id: str, payload: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
        """The record's `details` as Jim2 holds them now; None when it no longer has the record."""
        # Docs: shared/seeds/002 (GET api/v1/cardfiles/{cardno}/contacts/{id}).
        response = await self._call("GET", self.contact_url(remote_id))
        if response.status == 404:
            return None
        if not 200 <= response.status < 300:
            raise self._error(response, payload)
        return [d.model_dump() for d in _resource(response).attributes.details or []]

    async def _reconcile(
        self, card_no: str, payload: Mapping[str, Any], warnings: list[str], contact_id: str
    ) -> tuple[str | None, bool]:
        """The id of the card's contact that has one of the payload's e-mail addresses, if any, and that no other
        contact of the gateway is linked to; and whether every listing was read to its end (else a miss proves
        nothing)."""
        email_type = (self._email_type or "").casefold()
        complete = True
        for sent in _emails(payload, self._email_type):
            # The filter gets the address as this payload spells it (a lost create of it stored that spelling, which
            # even a filter that minds case finds); the match ignores case.
            email = sent.casefold()
            contacts, listed_all = await self._list_card(card_no, payload, sent)
            complete = complete and listed_all
            matches = [
                c.id
                for c in contacts
                if email in _contact_emails(c, email_type) and await self.owned_by(c.id, contact_id)
            ]
            if matches:
                if len(matches) > 1:
                    warnings.append(
                        f"{len(matches)} contacts on card {card_no} have the e-mail address {email}; "
                        f"adopted {matches[0]} (also {', '.join(matches[1:])})"
                    )
                return matches[0], True
            if not listed_all:
                warnings.append(
                    f"card {card_no}'s contacts matching {email} were not all listed (more than lookup_max_pages = "
                    f"{self.settings.lookup_max_pages} pages, or a next page off Jim2's address): not found in what was"
                )
        return None, complete

    async def _list_card(self, card_no: str, payload: Mapping[str, Any], email: str) -> tuple[list[ResourceRead], bool]:
        """The card's contacts, narrowed to `email` when the (ASSUMED) filter is configured, and whether the listing
        was read to its end: pages are followed by `links.next` on Jim2's own origin, `lookup_max_pages` at most."""
        url = self.contacts_url(card_no)
        if self.settings.lookup_filter:
            url += f"?{urlencode({self.settings.lookup_filter: email})}"
        found: list[ResourceRead] = []
        for _ in range(self.settings.lookup_max_pages):
            # Docs: shared/seeds/002 (GET api/v1/cardfiles/{cardno}/contacts; VENDORS.md assumes no paging).
            response = await self._call("GET", url)
            if not 200 <= response.status < 300:
                raise self._error(response, payload, collection=True)
            document = response.parse(
                CollectionDocument, f"Jim2 listed card {card_no}'s contacts in an unexpected shape"
            )
            found += document.data
            following = document.links.next if document.links is not None else None
            if not following:
                return found, True
            url = urljoin(url, following)
            if not _same_origin(url, self.settings.base):
                return found, False  # the bearer token goes to Jim2 only
        return found, False

    # -- HTTP and auth --------------------------------------------------------------------------------------------

    async def _call(self, method: str, url: str, body: Any = None) -> VendorResponse:
        """One API call with the bearer token; on 401 one new token and one repeat (Jim2 did not act on it)."""
        token = await self._bearer()
        response = await self._send(method, url, token, body)
        if response.status == 401:
            token = await self._bearer(stale=token)
            response = await self._send(method, url, token, body)
            if response.status == 401:
                raise self._error(
                    response, {}, message=f"Jim2 refused a freshly issued bearer token: {_summary(response)}"
                )
        return response

    async def _send(self, method: str, url: str, token: str, body: Any) -> VendorResponse:
        headers = {"Authorization": f"Bearer {token}", "Accept": self.settings.media_type}
        return await self.transport.request(
            method, url, json=body, headers=headers, content_type=self.settings.media_type
        )

    async def _bearer(self, stale: str | None = None) -> str:
        """The cached token; a new one when there is none, it is due for renewal, or `stale` just failed."""
        async with self._token_lock:
            token = self._token
            if token is None or token.value == stale or time.monotonic() >= token.renew_at:
                try:
                    token = self._token = await self._fetch_token()
                except VendorError as exc:
                    # No contact call was sent: a proxy's 502/504 at the token endpoint leaves no create in doubt.
                    exc.sent = False
                    raise
            return token.value

    async def _fetch_token(self) -> _Token:
        form = {"grant_type": "client_credentials"}
        headers = {"Accept": "application/json"}
        secret = self.settings.client_secret.get_secret_value()
        if self.settings.client_auth == "basic":
            # As in Jim2's own example: base64 of "client_id:secret", without RFC 6749's form-encoding first.
            pair = f"{self.settings.client_id}:{secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            form |= {"client_id": self.settings.client_id, "client_secret": secret}
        if self.settings.scope:
            form["scope"] = self.settings.scope
        # Docs: https://jim2help.happen.biz/jim2webapi/9148/token.html (POST token, client credentials grant).
        response = await self.transport.request("POST", self.token_url, form=form, headers=headers)
        if not 200 <= response.status < 300:
            raise self._token_error(response)
        answer = response.parse(TokenResponse, "Jim2's token endpoint answered an unexpected shape")
        if answer.token_type.lower() != "bearer":
            raise AuthFailed(
                f"Jim2 issued a token of type {answer.token_type!r}; "
                "the gateway can only send a token of type bearer (RFC 6750)",
                http_status=response.status,
            )
        lifetime = DOCUMENTED_TOKEN_LIFETIME_S if answer.expires_in is None else answer.expires_in
        margin = min(self.settings.token_refresh_margin_s, lifetime / 2)
        return _Token(value=answer.access_token, renew_at=time.monotonic() + lifetime - margin)

    def _token_error(self, response: VendorResponse) -> VendorError:
        data = response.json_or_none()
        oauth: OAuthError | None = None
        try:
            oauth = OAuthError.model_validate(data) if isinstance(data, dict) and "error" in data else None
        except ValidationError:
            oauth = None
        if oauth is None:
            # Not an OAuth answer (a proxy, or an injected failure in the JSON:API shape): the status decides.
            if response.status in (400, 401, 403):
                return AuthFailed(
                    f"Jim2 refused the token request: {_summary(response)}",
                    http_status=response.status,
                    vendor_code=next((e.code for e in _error_objects(response) if e.code), None),
                )
            return self._error(response, {})
        message = f"Jim2 refused the token request: {oauth.error}" + (
            f" ({oauth.error_description})" if oauth.error_description else ""
        )
        if oauth.error in _TRANSIENT_OAUTH_ERRORS or response.status >= 500 or response.status == 429:
            error = status_error(response, message, vendor_code=oauth.error)
            if not error.transient:
                error = VendorUnavailable(
                    message, http_status=response.status, vendor_code=oauth.error, retry_after=response.retry_after()
                )
            return error
        return AuthFailed(message, http_status=response.status, vendor_code=oauth.error)

    # -- errors ---------------------------------------------------------------------------------------------------

    def _error(
        self,
        response: VendorResponse,
        payload: Mapping[str, Any],
        *,
        collection: bool = False,
        message: str | None = None,
    ) -> VendorError:
        """The error a non-success answer means, with JSON:API errors mapped back to canonical fields."""
        errors = _error_objects(response)
        text = message or f"Jim2 answered HTTP {response.status}: {_summary(response, errors)}"
        error = status_error(response, text, vendor_code=next((e.code for e in errors if e.code), None))
        if response.status not in _FIELD_STATUSES:
            return error
        sources: Mapping[str, str] = payload.get("sources") or {}
        mapped = Mapped(sources=dict(sources))
        field_errors = [_field_error(e, mapped, error, response.status) for e in errors]
        if collection and response.status == 404 and not any(f.vendor_field == CARD_NO for f in field_errors):
            # A 404 on the card's own collection can only mean the card file does not exist.
            field_errors.append(
                FieldError(
                    field=mapped.sources.get(CARD_NO, ""),
                    code=error.code,
                    message=f"Jim2 has no card file {payload.get(CARD_NO)}",
                    vendor_field=CARD_NO,
                )
            )
        error.field_errors = field_errors
        if isinstance(error, VendorNotFound) and collection:
            error.message = f"Jim2 has no card file {payload.get(CARD_NO)}: {_summary(response, errors)}"
        return error

    @property
    def _email_type(self) -> str | None:
        return self.settings.detail_types.get("email")


def card_of(remote_id: str) -> str:
    """The card number in a `{cardno}-{contno}` id."""
    return remote_id.rsplit("-", 1)[0]


def changed_attributes(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes of a PATCH: those that differ from `previous`; a dropped one becomes null. Without `previous`
    (a record adopted, or one whose accepted payload is unknown) every writable attribute, the ones the contact does
    not have as null: what the record holds is unknown, and an attribute left out would keep a stale value."""
    if previous is None:
        return {name: current.get(name) for name in AttributesWrite.model_fields} | dict(current)
    out = {key: value for key, value in current.items() if previous.get(key) != value}
    for key in previous:
        if key not in current:
            # `details` is always sent (possibly empty); any other attribute the contact no longer has is cleared.
            out[key] = None
    return out


def merge_clearing(held: Sequence[Mapping[str, Any]], sent: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`details` for a Jim2 that merges them by type (`details_patch = "merge"`): the entries sent, then an empty
    one for each entry of `held` that no entry of its type matches (the n-th of a type matches the n-th), so that
    entry is cleared rather than kept."""
    out = [dict(d) for d in sent]
    sent_per_type = Counter(d.get("type") for d in sent)
    for detail in held:
        kind = detail.get("type")
        if sent_per_type[kind] > 0:
            sent_per_type[kind] -= 1
        elif isinstance(kind, str) and (detail.get("value") or detail.get("comments")):
            out.append({"type": kind, "value": "", "comments": ""})
    return out


def _details_of(attributes: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    details = attributes.get("details")
    return [d for d in details if isinstance(d, Mapping)] if isinstance(details, list) else []


def _last_accepted(link: CrossReference, card_no: str) -> Mapping[str, Any] | None:
    payload = link.payload
    if not payload or payload.get(CARD_NO) != card_no:
        return None
    attributes = (payload.get("data") or {}).get("attributes")
    return attributes if isinstance(attributes, Mapping) else None


def _emails(payload: Mapping[str, Any], email_type: str | None) -> list[str]:
    """The payload's e-mail addresses, in order."""
    if email_type is None:
        return []
    details = ((payload.get("data") or {}).get("attributes") or {}).get("details") or []
    return [
        d["value"].strip()
        for d in details
        if isinstance(d, Mapping) and d.get("type") == email_type and isinstance(d.get("value"), str)
    ]


def _contact_emails(contact: ResourceRead, email_type: str) -> set[str]:
    return {
        d.value.strip().casefold()
        for d in contact.attributes.details or []
        if d.value and (d.type or "").casefold() == email_type
    }


def _resource(response: VendorResponse) -> ResourceRead:
    return response.parse(ResourceDocument, f"Jim2 answered HTTP {response.status} without a CardFileContact").data


def _error_objects(response: VendorResponse) -> list[ErrorObject]:
    data = response.json_or_none()
    if not isinstance(data, dict):
        return []
    try:
        return ErrorDocument.model_validate(data).errors
    except ValidationError:
        return []


def _summary(response: VendorResponse, errors: list[ErrorObject] | None = None) -> str:
    errors = _error_objects(response) if errors is None else errors
    texts = [e.detail or e.title or e.code or "" for e in errors]
    return "; ".join(t for t in texts if t) or response.excerpt() or "(no body)"


def _field_error(e: ErrorObject, mapped: Mapped, error: VendorError, status: int) -> FieldError:
    message = e.detail or e.title or f"Jim2 answered HTTP {status}"
    source = e.source
    if source is not None and source.pointer:
        wire_path = pointer_path(source.pointer)
        return FieldError(
            field=mapped.source(wire_path),
            code=error.code,
            message=message,
            vendor_field=wire_path or None,
            vendor_code=e.code,
        )
    if source is not None and source.parameter and source.parameter.lower() == CARD_NO:
        return FieldError(
            field=mapped.sources.get(CARD_NO, ""),
            code=error.code,
            message=message,
            vendor_field=CARD_NO,
            vendor_code=e.code,
        )
    return FieldError(field="", code=error.code, message=message, vendor_code=e.code)


def pointer_path(pointer: str) -> str:
    """A JSON Pointer into the request document as a wire path: `/data/attributes/details/1/value` ->
    `data.attributes.details[1].value` (RFC 6901 escapes undone)."""
    out = ""
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if token.isdigit():
            out += f"[{token}]"
        else:
            out += f".{token}" if out else token
    return out


def _same_origin(url: str, base: str) -> bool:
    """Whether `url` is on `base`'s scheme, host and port (a scheme's default port written or not)."""

    def origin(text: str) -> tuple[str, str | None, int | None]:
        parts = urlsplit(text)
        return parts.scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(parts.scheme)

    return origin(url) == origin(base)
