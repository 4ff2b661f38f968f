"""A faithful fake of Oneserve's contact API: `POST /{site}/rest/contact/contact`, answering `result` bodies.

It keeps its own column table (not the gateway's wire model), so a limit the gateway gets wrong shows up as a
vendor failure in tests. What the vendor's page does not say is assumed here, and each assumption is a
constructor argument:
- `failure_http_status` (default 400): the HTTP status of every `{"result": "fail"}` answer.
- A missing mandatory field fails like a NOT NULL column would (`MISSING_REQUIRED`); an empty string counts as
  present, since Oneserve's own example sends an empty mandatory `contact1`.
- A contact type id or usage type id the tenant does not have answers `Transaction rolled back ...`; a
  preferredContact outside 1-4 or an unreadable date answers the `could not execute statement` failure.
- Unknown keys in the body are ignored; a text field sent as a number is mistyped.
- Sites other than `sites` answer 404; a body that is not valid JSON after its `{` answers REST0002 too.
- `keeps_omitted` (default False): an update replaces the stored contact with the body; True keeps every field the
  body leaves out (the body's fields, "" included, replace theirs), and checks the contact that results.
- `length_unit` ("characters", the default, or "utf16"): what a "Text (n)" limit counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from resolvers.simulation import Simulator
from resolvers.vendors.base import utf16_units
from resolvers.vendors.oneserve.connector import DEFAULT_TOKEN_HEADER
from resolvers.vendors.oneserve.mapping import DEFAULT_DETAIL_TYPES
from resolvers.vendors.oneserve.wire import (
    DATE_FORMAT,
    NOT_AN_OBJECT,
    ROLLED_BACK,
    STATEMENT_FAILED,
    UNKNOWN_CLIENT_REF,
)

#: The JWT the demo configuration sends and the simulator accepts by default.
DEMO_TOKEN = "oneserve-demo-jwt"
#: The client the demo configuration sends contacts to (the client ref of Oneserve's own example).
DEMO_CLIENT_REF = "29"
#: The site path segment of the demo tenant (`https://app.oneserve.co.uk/{siteUrl}/`).
DEMO_SITE = "acme"
#: Usage type ids the demo tenant has.
DEMO_USAGE_TYPE_IDS = frozenset({1, 2, 3})

#: Assumed answer for a missing mandatory field: what Hibernate says when a NOT NULL column gets a null.
MISSING_REQUIRED = (
    "could not execute statement; SQL [n/a]; constraint [null]; nested exception is "
    "org.hibernate.exception.ConstraintViolationException: could not execute statement"
)
#: Text columns and their lengths, from the vendor's field table.
_TEXT_COLUMNS: Mapping[str, int] = {
    "clientRef": 50,
    "contactRef": 50,
    "salutation": 50,
    "forename": 80,
    "surname": 80,
    "contact1": 80,
    "contact2": 50,
    "contact3": 80,
    "contact4": 80,
    "address1": 200,
    "address2": 200,
    "address3": 200,
    "address4": 200,
    "postCode": 50,
    "notes": 2000,
    "considerations": 4000,
}
_TYPE_COLUMNS = ("contact1Type", "contact2Type", "contact3Type", "contact4Type")
_REQUIRED = (
    "clientRef",
    "contactRef",
    "salutation",
    "forename",
    "surname",
    "contact1",
    "contact1Type",
    "preferredContact",
    "address1",
    "address2",
    "postCode",
)
_LOCATION_REF_LENGTH = 50


class OneserveSimulator(Simulator):
    """Oneserve's contact endpoint: JWT header, upsert by clientRef + contactRef, its limits, its messages."""

    name = "oneserve"

    def __init__(
        self,
        *,
        tokens: Iterable[str] = (DEMO_TOKEN,),
        client_refs: Iterable[str] = (DEMO_CLIENT_REF,),
        sites: Iterable[str] = (DEMO_SITE,),
        contact_type_ids: Iterable[int] = DEFAULT_DETAIL_TYPES.values(),
        usage_type_ids: Iterable[int] = DEMO_USAGE_TYPE_IDS,
        token_header: str = DEFAULT_TOKEN_HEADER,
        failure_http_status: int = 400,
        keeps_omitted: bool = False,
        length_unit: str = "characters",
    ) -> None:
        super().__init__()
        self.tokens = frozenset(tokens)
        self.client_refs = frozenset(client_refs)
        self.sites = frozenset(sites)
        self.contact_type_ids = frozenset(contact_type_ids)
        self.usage_type_ids = frozenset(usage_type_ids)
        self.token_header = token_header
        self.failure_http_status = failure_http_status
        self.keeps_omitted = keeps_omitted
        #: ASSUMED: what a "Text (n)" limit counts ("characters", or "utf16" code units).
        self.length = utf16_units if length_unit == "utf16" else len

    def add_routes(self, app: web.Application) -> None:
        """The one contact endpoint, for every method (the wrong ones answer 405 as Oneserve does)."""
        app.router.add_route("*", "/{site}/rest/contact/contact", self._contact)

    def error_response(self, status: int, message: str) -> web.Response:
        """Oneserve's failure body with the given HTTP status."""
        return web.json_response({"result": "fail", "result_msg": message}, status=status)

    async def _contact(self, request: web.Request) -> web.Response:
        if request.match_info["site"] not in self.sites:
            return self.error_response(404, "Address Not Found")
        # The token is checked in front of the endpoint, so a bad token wins over a bad method or body.
        if request.headers.get(self.token_header) not in self.tokens:
            return self.error_response(
                401,
                f"{self.token_header} has not been provided, has expired, or does not exist in the system",
            )
        if request.method != "POST":
            response = self.error_response(405, f"Request method '{request.method}' not supported")
            response.headers["Allow"] = "POST"
            return response
        if request.content_type != "application/json":
            return self.error_response(415, f"Content type '{request.content_type}' not supported")
        text = await request.text()
        if not text.lstrip().startswith("{"):
            return self._fail(NOT_AN_OBJECT, "A JSONObject text must begin with '{' at character 1")
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            return self._fail(NOT_AN_OBJECT, f"{exc.msg} at character {exc.pos + 1}")
        key = f"{body.get('clientRef')}/{body.get('contactRef')}"
        if self.keeps_omitted and key in self.state.records:
            body = {**self.state.records[key], **body}
        failure = self._check(body)
        if failure is not None:
            return self._fail(failure)
        self.state.count("updates" if key in self.state.records else "creates")
        self.state.records[key] = body
        return web.json_response({"result": "success", "result_msg": ""})

    def _fail(self, message: str, error_message: str | None = None) -> web.Response:
        body = {"result": "fail", "result_msg": message}
        if error_message is not None:
            body["result_error_msg"] = error_message
        return web.json_response(body, status=self.failure_http_status)

    def _check(self, body: dict[str, Any]) -> str | None:
        """The `result_msg` Oneserve would fail with, in the order it finds faults; None when valid."""
        if body.get("clientRef") not in self.client_refs:
            return UNKNOWN_CLIENT_REF
        if any(body.get(name) is None for name in _REQUIRED):
            return MISSING_REQUIRED
        for name, length in _TEXT_COLUMNS.items():
            value = body.get(name)
            if value is not None and (not isinstance(value, str) or self.length(value) > length):
                return STATEMENT_FAILED
        types = [body.get(name) for name in _TYPE_COLUMNS if body.get(name) is not None]
        preferred = _integer(body["preferredContact"])
        if preferred is None or not 1 <= preferred <= 4 or any(_integer(t) is None for t in types):
            return STATEMENT_FAILED
        if any(_integer(t) not in self.contact_type_ids for t in types):
            return ROLLED_BACK
        locations = body.get("locations")
        if locations is None:
            return None
        if not isinstance(locations, list):
            return STATEMENT_FAILED
        for location in locations:
            failure = self._check_location(location)
            if failure is not None:
                return failure
        return None

    def _check_location(self, location: Any) -> str | None:
        if not isinstance(location, dict):
            return STATEMENT_FAILED
        ref = location.get("locationRef")
        if ref is None or location.get("isPreferred") is None:
            return MISSING_REQUIRED
        if not isinstance(ref, str) or self.length(ref) > _LOCATION_REF_LENGTH:
            return STATEMENT_FAILED
        if _boolean(location["isPreferred"]) is None:
            return STATEMENT_FAILED
        if not all(_is_date(location.get(name)) for name in ("startDate", "endDate")):
            return STATEMENT_FAILED
        usage = location.get("usageTypeId")
        if usage is not None and _integer(usage) is None:
            return STATEMENT_FAILED
        if usage is not None and _integer(usage) not in self.usage_type_ids:
            return ROLLED_BACK
        return None


def _integer(value: Any) -> int | None:
    # Oneserve's own example sends integers as strings ("10"); JSON numbers are accepted too.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _boolean(value: Any) -> bool | None:
    # Oneserve's own example sends booleans as strings ("True").
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    return None


def _is_date(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, str):
        return False
    try:
        datetime.strptime(value, DATE_FORMAT)
    except ValueError:
        return False
    return True
