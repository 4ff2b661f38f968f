"""A faithful fake of SuperOffice's WebAPI contact endpoints: ContactEntity create, read, replace, delete, search.

KNOWN behaviour imitated (seed 003, VENDORS.md, SuperOffice's REST reference): `POST api/v1/Contact` answers 200
with the saved ContactEntity and its new ContactId; `GET`/`PUT`/`DELETE api/v1/Contact/{id}` (PUT replaces the
whole entity and answers 412 when the record changed after `If-Unmodified-Since`; DELETE answers 204); `GET
api/v1/Contact?$select=&$filter=&$top=` answers OData `{"odata.metadata", "value": [{"PrimaryKey", "EntityName",
...}]}`; SOTicket + SO-AppToken, Bearer and Basic auth; errors as `{"Error", "ErrorType", "ErrorMessage",
"ErrorSource"}`; the column limits of `wire.py`, checked against its own table here, counted as SQL Server counts
nvarchar (UTF-16 code units; ASSUMED, SuperOffice Online runs on SQL Server).

ASSUMED (constructor settings where it matters):
- `dbi_key_column`: the search archive's DbiKey column is `dbiKey`; string `eq` ignores case (SQL Server's default
  collation), so the connector must check the hits itself.
- `stores_persons`: the `Persons` given in a ContactEntity are saved (PersonId kept when it is one of this contact's
  persons, a new one otherwise; persons left out of a PUT are removed: PUT replaces the whole entity).
- `category_ids` / `business_ids` / `countries`: the tenant's list items; an unknown id is a 400 naming the field.
  CountryId is the ISO 3166-1 numeric code (as in SuperOffice's shipped list); a country given only by its
  TwoLetterISOCountry is found by that.
- Error types: `ArgumentException` for a value SuperOffice refuses (the message names the field in single quotes),
  `SoNotFoundException` for an unknown id, `UnauthorizedAccessException` for refused credentials (401), and the
  status phrase (`ServiceUnavailable`, `TooManyRequests`) for injected faults. Validation stops at the first fault.
- A Name is required; a missing or non-object body is 400 "Entity to save is not in request body"; unknown body
  fields are ignored (ASP.NET model binding).
- `PATCH api/v1/Contact/{id}` (KNOWN: JSON Merge Patch or JSON Patch) takes an RFC 7396 merge patch (an object:
  null clears a field, arrays are replaced whole) or an RFC 6902 JSON Patch (an array of `add` / `replace` /
  `remove` operations; `test`, `move` and `copy` are 400), applies it to the record as a PUT of the result would
  (same rules, same `If-Unmodified-Since` check) and answers the record. `$select` (KNOWN: trims the answer) keeps
  the top-level fields it names, compared without case, on GET, PUT and PATCH of one record.
- `Deleted` (seed 003: nonzero means "deleted" and "should generally not be shown") is 0 on a new record and not
  changed by a PUT or PATCH; a test sets it to imitate a record deleted in SuperOffice's client. Such a record is
  still read and found by the search (whether SuperOffice's search leaves it out is not known: the worse case).
- `POST _admin/touch/{id}` (or `touch()`) marks a record changed now; `{"races": n}` also makes the next n PUTs of
  it find it changed again just before they apply (a concurrent writer), so they answer 412.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, ClassVar, Literal

import pycountry
from aiohttp import web

from resolvers.simulation import Simulator

DEMO_TICKET = "7T:c3VwZXJvZmZpY2UtZGVtby10aWNrZXQ="
DEMO_APP_TOKEN = "superoffice-demo-app-token"
DEMO_TOKEN = "superoffice-demo-bearer-token"
DEMO_USERNAME = "gateway"
DEMO_PASSWORD = "superoffice-demo-password"
#: Category and Business list item ids the demo tenant has.
DEMO_CATEGORY_IDS = frozenset({1, 2, 3, 4})
DEMO_BUSINESS_IDS = frozenset({1, 2, 3})
#: Every ISO 3166-1 country, by its numeric code (SuperOffice's shipped CountryIds): id -> (alpha-2, name).
ISO_COUNTRIES: Mapping[int, tuple[str, str]] = {int(c.numeric): (c.alpha_2, c.name) for c in pycountry.countries}

_ERROR_SOURCE = "SuperOffice.CRM.Services.Implementation.ContactAgent"
_NOT_IN_BODY = "Bad request. Entity to save is not in request body."
#: Text columns and their lengths (the contact table).
_TEXT_COLUMNS: Mapping[str, int | None] = {
    "Name": 219,
    "Department": 219,
    "OrgNr": 49,
    "Number1": 49,
    "Number2": 49,
    "Description": None,
    "DbiKey": 255,
}
_ELEMENT_LISTS = ("Emails", "Phones", "Faxes", "Urls")
_EMAIL_LENGTH = 239
_PERSON_NAME_LENGTH = 99
_PERSON_TEXT = ("Firstname", "MiddleName", "Lastname", "Mrmrs", "Title", "Position", "MobilePhone", "Email")
_STRUCTURED_TEXT = ("AtypeIdx", "Address1", "Address2", "Address3", "City", "County", "State", "Zipcode", "Formatted")
#: Fields a PUT replaces (absent ones get these empty values) and a POST sets.
_WRITABLE: Mapping[str, Any] = {
    "Name": "",
    "Department": "",
    "OrgNr": "",
    "Number1": "",
    "Number2": "",
    "Emails": [],
    "Phones": [],
    "Faxes": [],
    "Urls": [],
    "Description": "",
    "Category": None,
    "Business": None,
    "Country": None,
    "Persons": [],
    "Address": None,
    "DbiKey": "",
    "Associate": None,
    "Interests": [],
    "NoMailing": False,
    "Xstop": False,
    "CustomFields": {},
}
_FILTER = re.compile(
    r"^\s*(?P<column>[A-Za-z][A-Za-z0-9_/]*)\s+(?:eq|is|=)\s+(?:'(?P<text>(?:[^']|'')*)'|(?P<number>-?\d+))\s*$"
)


def _now() -> datetime:
    return datetime.now(UTC)


def _error(status: int, error_type: str, message: str) -> web.Response:
    body = {"Error": True, "ErrorType": error_type, "ErrorMessage": message, "ErrorSource": _ERROR_SOURCE}
    return web.json_response(body, status=status)


def _stripped(list_name: str, value: str) -> str:
    if list_name in ("Phones", "Faxes"):
        return "".join(ch for ch in value if ch.isdigit())
    return value.strip().lower() if list_name == "Emails" else value.strip()


class SuperOfficeSimulator(Simulator):
    """SuperOffice's ContactEntity REST endpoints as the connector sees them (see the module docstring)."""

    name: ClassVar[str] = "superoffice"

    def __init__(
        self,
        *,
        ticket: str = DEMO_TICKET,
        app_token: str = DEMO_APP_TOKEN,
        token: str = DEMO_TOKEN,
        username: str = DEMO_USERNAME,
        password: str = DEMO_PASSWORD,
        category_ids: Iterable[int] = DEMO_CATEGORY_IDS,
        business_ids: Iterable[int] = DEMO_BUSINESS_IDS,
        countries: Mapping[int, tuple[str, str]] = ISO_COUNTRIES,
        dbi_key_column: str = "dbiKey",
        stores_persons: bool = True,
        length_unit: Literal["utf16", "characters"] = "utf16",
    ) -> None:
        super().__init__()
        self.ticket = ticket
        self.app_token = app_token
        self.token = token
        self.username = username
        self.password = password
        self.category_ids = frozenset(category_ids)
        self.business_ids = frozenset(business_ids)
        self.countries = dict(countries)
        self.dbi_key_column = dbi_key_column
        self.stores_persons = stores_persons
        #: How a column's length is counted: UTF-16 code units (SQL Server's nvarchar), or characters.
        self._length: Callable[[str], int] = _nvarchar_length if length_unit == "utf16" else len
        self._next_contact = 100
        self._next_person = 1000
        #: ContactId -> how many coming PUTs find the record changed just before they apply.
        self.races: dict[str, int] = {}
        #: Case-folded DbiKey -> contact ids (the DbiKey lookup stays fast with many contacts).
        self._by_dbi_key: dict[str, set[str]] = {}
        self._indexed = 0

    def add_routes(self, app: web.Application) -> None:
        """The ContactEntity collection (search, create), one record (read, replace, delete), and `touch`."""
        app.router.add_route("*", "/api/v1/Contact", self._collection)
        app.router.add_route("*", "/api/v1/Contact/{id}", self._record)
        app.router.add_post("/_admin/touch/{id}", self._admin_touch)

    def error_response(self, status: int, message: str) -> web.Response:
        """SuperOffice's error body; the ErrorType of an injected fault is its status phrase."""
        try:
            error_type = HTTPStatus(status).phrase.replace(" ", "")
        except ValueError:
            error_type = "Exception"
        return _error(status, error_type, message)

    def reset(self) -> None:
        """Forget records, calls, faults and pending races."""
        super().reset()
        self._next_contact = 100
        self._next_person = 1000
        self.races.clear()
        self._by_dbi_key.clear()
        self._indexed = 0

    def touch(self, contact_id: str, races: int = 0) -> str:
        """Mark a record changed now (and the next `races` PUTs of it changed again); returns its UpdatedDate."""
        record = self.state.records[contact_id]
        self._bump(record)
        self.races[contact_id] = races
        return str(record["UpdatedDate"])

    # -- routes ---------------------------------------------------------------------------------------------------

    async def _collection(self, request: web.Request) -> web.Response:
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        if request.method == "GET":
            return self._search(request)
        if request.method == "POST":
            return await self._create(request)
        return self._not_allowed(request, "GET, POST")

    async def _record(self, request: web.Request) -> web.Response:
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        contact_id = request.match_info["id"]
        if request.method not in ("GET", "PUT", "PATCH", "DELETE"):
            return self._not_allowed(request, "GET, PUT, PATCH, DELETE")
        record = self.state.records.get(contact_id)
        if record is None:
            return _error(404, "SoNotFoundException", f"ContactEntity with id {contact_id} does not exist")
        if request.method == "GET":
            return self._answer(request, record)
        if request.method == "DELETE":
            self._index(contact_id, record, remove=True)
            del self.state.records[contact_id]
            self.races.pop(contact_id, None)
            self.state.count("deletes")
            return web.Response(status=204)
        return await self._replace(request, record)

    def _candidates(self, where: str | None) -> list[dict[str, Any]]:
        """Rows a `$filter` may match: by the DbiKey index when it filters on DbiKey text, else every row."""
        match = _FILTER.match(where or "")
        if match is not None and match["text"] is not None and self._columns().get(match["column"]) == "DbiKey":
            wanted = match["text"].replace("''", "'").casefold()
            if self._indexed != len(self.state.records):
                # Records put in place directly (tests do): index them all again.
                self._by_dbi_key.clear()
                self._indexed = 0
                for contact_id, record in self.state.records.items():
                    self._index(contact_id, record)
            ids = sorted(self._by_dbi_key.get(wanted, ()), key=int)
            return [self.state.records[i] for i in ids if i in self.state.records]
        return list(self.state.records.values())

    def _index(self, contact_id: str, record: dict[str, Any] | None, *, remove: bool = False) -> None:
        key = str((record or {}).get("DbiKey") or "").casefold()
        ids = self._by_dbi_key.setdefault(key, set())
        if remove and contact_id in ids:
            ids.discard(contact_id)
            self._indexed -= 1
        elif not remove and contact_id not in ids:
            ids.add(contact_id)
            self._indexed += 1

    async def _admin_touch(self, request: web.Request) -> web.Response:
        contact_id = request.match_info["id"]
        if contact_id not in self.state.records:
            return _error(404, "SoNotFoundException", f"ContactEntity with id {contact_id} does not exist")
        options = await request.json() if request.can_read_body else {}
        updated = self.touch(contact_id, int((options or {}).get("races", 0)))
        return web.json_response({"ContactId": int(contact_id), "UpdatedDate": updated})

    # -- auth -----------------------------------------------------------------------------------------------------

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        scheme = scheme.lower()
        if scheme == "soticket" and credentials == self.ticket:
            if request.headers.get("SO-AppToken") == self.app_token:
                return None
            return _error(401, "UnauthorizedAccessException", "SO-AppToken is missing or not valid for this tenant")
        if scheme == "bearer" and credentials == self.token:
            return None
        if scheme == "basic" and self._basic_ok(credentials):
            return None
        return _error(401, "UnauthorizedAccessException", "Authentication failed: the credentials were not accepted")

    def _basic_ok(self, credentials: str) -> bool:
        try:
            pair = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return pair == f"{self.username}:{self.password}"

    # -- search ---------------------------------------------------------------------------------------------------

    def _columns(self) -> dict[str, str]:
        """Search archive column -> ContactEntity field."""
        return {
            "contactId": "ContactId",
            "name": "Name",
            "department": "Department",
            "orgnr": "OrgNr",
            self.dbi_key_column: "DbiKey",
        }

    def _search(self, request: web.Request) -> web.Response:
        self.state.count("lookups")
        columns = self._columns()
        where = request.query.get("$filter")
        rows = self._candidates(where)
        if where:
            match = _FILTER.match(where)
            if match is None:
                return _error(400, "ArgumentException", f"Cannot parse $filter {where!r}")
            if match["column"] not in columns:
                return _error(400, "ArgumentException", f"Unknown column {match['column']!r} in SimpleContact")
            wanted_field = columns[match["column"]]
            if match["text"] is not None:
                # String comparison ignores case, as SQL Server's default collation does.
                text = match["text"].replace("''", "'").casefold()
                rows = [r for r in rows if str(r.get(wanted_field) or "").casefold() == text]
            else:
                rows = [r for r in rows if r.get(wanted_field) == int(match["number"])]
        selected = [c.strip() for c in request.query.get("$select", "contactId").split(",") if c.strip()]
        unknown = [c for c in selected if c not in columns]
        if unknown:
            return _error(400, "ArgumentException", f"Unknown column {unknown[0]!r} in SimpleContact")
        top = request.query.get("$top")
        if top is not None:
            if not top.isdigit():
                return _error(400, "ArgumentException", f"$top must be a number, got {top!r}")
            rows = rows[: int(top)]
        value = [
            {"PrimaryKey": r["ContactId"], "EntityName": "contact", **{c: r.get(columns[c]) for c in selected}}
            for r in rows
        ]
        metadata = f"{request.url.origin()}{request.path.rsplit('/Contact', 1)[0]}/archive$metadata"
        return web.json_response({"odata.metadata": metadata, "value": value})

    # -- writes ---------------------------------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        fault = self._check(body, None)
        if fault is not None:
            return _error(400, "ArgumentException", fault)
        contact_id = str(self._next_contact)
        self._next_contact += 1
        now = _now().isoformat()
        record: dict[str, Any] = {"ContactId": int(contact_id), "CreatedDate": now, "UpdatedDate": now, "Deleted": 0}
        self._apply(record, body)
        self.state.records[contact_id] = record
        self._index(contact_id, record)
        self.state.count("creates")
        return self._answer(request, record)

    async def _patched(self, request: web.Request, record: Mapping[str, Any]) -> dict[str, Any] | web.Response:
        """The whole entity a PATCH makes of `record`, or the answer refusing the patch."""
        if request.content_type not in _PATCH_TYPES:
            return _error(415, "NotSupportedException", f"Content type {request.content_type!r} is not supported")
        try:
            patch = await request.json()
        except ValueError:
            return _error(400, "SerializationException", "The patch is not JSON")
        entity = {k: copy.deepcopy(v) for k, v in record.items() if k in _WRITABLE}
        if isinstance(patch, dict):
            merged: dict[str, Any] = _merge_patch(entity, patch)
            return merged
        if isinstance(patch, list):
            try:
                for operation in patch:
                    _apply_operation(entity, operation)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                return _error(400, "ArgumentException", f"The JSON Patch cannot be applied: {exc}")
            return entity
        return _error(400, "SerializationException", "A patch is a JSON object (merge patch) or array (JSON Patch)")

    async def _replace(self, request: web.Request, record: dict[str, Any]) -> web.Response:
        """PUT (the body is the whole entity) or PATCH (the body changes the record into it)."""
        contact_id = str(record["ContactId"])
        body = await (self._patched(request, record) if request.method == "PATCH" else self._body(request))
        if isinstance(body, web.Response):
            return body
        if self.races.get(contact_id, 0) > 0:
            # A concurrent writer saves the record just before this PUT is applied.
            self.races[contact_id] -= 1
            self._bump(record)
        since = _http_date(request.headers.get("If-Unmodified-Since"))
        updated = datetime.fromisoformat(record["UpdatedDate"]).replace(microsecond=0)
        if since is not None and updated > since:
            self.state.count("conflicts")
            return _error(
                412,
                "PreconditionFailed",
                f"Update stopped because ContactEntity {contact_id} has changed since {since.isoformat()}",
            )
        fault = self._check(body, record)
        if fault is not None:
            return _error(400, "ArgumentException", fault)
        self._index(str(record["ContactId"]), record, remove=True)
        self._apply(record, body)
        self._index(str(record["ContactId"]), record)
        record["UpdatedDate"] = max(_now(), datetime.fromisoformat(record["UpdatedDate"])).isoformat()
        self.state.count("updates")
        return self._answer(request, record)

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any] | web.Response:
        if request.content_type not in ("application/json", "text/json"):
            return _error(415, "NotSupportedException", f"Content type {request.content_type!r} is not supported")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "SerializationException", _NOT_IN_BODY)
        if not isinstance(body, dict):
            return _error(400, "SerializationException", _NOT_IN_BODY)
        return body

    def _check(self, body: Mapping[str, Any], record: Mapping[str, Any] | None) -> str | None:
        """The message of the first rule the entity breaks (naming the field in quotes), or None."""
        name = body.get("Name")
        if not isinstance(name, str) or not name.strip():
            return "'Name' is required: a company must have a name"
        for column, length in _TEXT_COLUMNS.items():
            fault = _text(body.get(column), column, length, self._length)
            if fault:
                return fault
        for list_name in _ELEMENT_LISTS:
            fault = _elements(body.get(list_name), list_name, self._length)
            if fault:
                return fault
        fault = self._list_item(body.get("Category"), "Category", self.category_ids)
        fault = fault or self._list_item(body.get("Business"), "Business", self.business_ids)
        fault = fault or self._country(body.get("Country"))
        fault = fault or _address(body.get("Address"))
        return fault or self._persons(body.get("Persons"), record)

    @staticmethod
    def _list_item(item: Any, field: str, known: frozenset[int]) -> str | None:
        if item is None:
            return None
        if not isinstance(item, dict) or not _is_int(item.get("Id", 0)):
            return f"'{field}' must be a list item with an integer Id"
        if item.get("Id", 0) and item["Id"] not in known:
            return f"Unknown list item {item['Id']} for '{field}'"
        return None

    def _country(self, country: Any) -> str | None:
        if country is None:
            return None
        if not isinstance(country, dict) or not _is_int(country.get("CountryId", 0)):
            return "'Country' must be a country with an integer CountryId"
        country_id = country.get("CountryId")
        if country_id:
            return None if country_id in self.countries else f"Unknown country {country_id} for 'Country'"
        iso = country.get("TwoLetterISOCountry")
        if iso and not any(alpha == iso for alpha, _ in self.countries.values()):
            return f"Unknown country {iso!r} for 'Country'"
        return None

    def _persons(self, persons: Any, record: Mapping[str, Any] | None) -> str | None:
        if persons is None:
            return None
        if not isinstance(persons, list):
            return "'Persons' must be a list"
        own = {p["PersonId"] for p in (record or {}).get("Persons") or []}
        for i, person in enumerate(persons):
            at = f"Persons[{i}]"
            if not isinstance(person, dict):
                return f"'{at}' must be a Person"
            for key in _PERSON_TEXT:
                limit = _PERSON_NAME_LENGTH if key in ("Firstname", "MiddleName", "Lastname") else None
                fault = _text(person.get(key), f"{at}.{key}", limit, self._length)
                if fault:
                    return fault
            person_id = person.get("PersonId") or 0
            if not _is_int(person_id):
                return f"'{at}.PersonId' must be an integer"
            if person_id and person_id not in own:
                return f"'{at}.PersonId' {person_id} is not a person of this company"
        return None

    def _apply(self, record: dict[str, Any], body: Mapping[str, Any]) -> None:
        """Save the writable fields of `body` into `record` (absent ones emptied: the whole entity is replaced)."""
        contact_id = record["ContactId"]
        for key, empty in _WRITABLE.items():
            value = body.get(key)
            # Stored as a copy: the record must not share structure with the request it came from.
            record[key] = copy.deepcopy(empty if value is None else value)
        for list_name in _ELEMENT_LISTS:
            record[list_name] = [
                {
                    "Value": e["Value"],
                    "StrippedValue": _stripped(list_name, e["Value"]),
                    "Description": e.get("Description") or "",
                }
                for e in record[list_name]
            ]
        record["Category"] = _item(record["Category"], "Category")
        record["Business"] = _item(record["Business"], "Business")
        record["Country"] = self._country_carrier(record["Country"])
        record["Persons"] = self._stored_persons(contact_id, record["Persons"]) if self.stores_persons else []

    def _stored_persons(self, contact_id: int, persons: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for person in persons:
            person_id = person.get("PersonId") or 0
            if not person_id:
                person_id = self._next_person
                self._next_person += 1
            stored = {key: person.get(key) or "" for key in _PERSON_TEXT}
            names = (stored["Firstname"], stored["MiddleName"], stored["Lastname"])
            stored.update(PersonId=person_id, ContactId=contact_id, FullName=" ".join(n for n in names if n))
            out.append(stored)
        return out

    def _country_carrier(self, country: Any) -> dict[str, Any] | None:
        if not country:
            return None
        country_id = country.get("CountryId") or next(
            (cid for cid, (alpha, _) in self.countries.items() if alpha == country.get("TwoLetterISOCountry")), 0
        )
        if not country_id:
            return None
        alpha, name = self.countries[country_id]
        return {"CountryId": country_id, "Name": name, "EnglishName": name, "TwoLetterISOCountry": alpha}

    @staticmethod
    def _bump(record: dict[str, Any]) -> None:
        # At least one second later than the last change: If-Unmodified-Since only has whole seconds.
        before = datetime.fromisoformat(record["UpdatedDate"]).replace(microsecond=0)
        record["UpdatedDate"] = max(_now(), before + timedelta(seconds=1)).isoformat()

    @staticmethod
    def _answer(request: web.Request, record: Mapping[str, Any]) -> web.Response:
        """ContactEntityWithLinks: the record plus the carrier decorations SuperOffice adds."""
        collection = f"{request.url.origin()}{request.path.rsplit('/Contact', 1)[0]}/Contact"
        body = {
            **record,
            "TableRight": {"Mask": "Delete", "Reason": ""},
            "FieldProperties": {},
            "_Links": {"Self": f"{collection}/{record['ContactId']}", "Archive": collection},
        }
        if "$select" in request.query:
            wanted = {name.strip().casefold() for name in request.query["$select"].split(",") if name.strip()}
            body = {k: v for k, v in body.items() if k.casefold() in wanted}
        return web.json_response(body)

    @staticmethod
    def _not_allowed(request: web.Request, allow: str) -> web.Response:
        response = _error(405, "NotSupportedException", f"The requested resource does not support {request.method}")
        response.headers["Allow"] = allow
        return response


_PATCH_TYPES = frozenset(
    {"application/json", "text/json", "application/merge-patch+json", "application/json-patch+json"}
)


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: an object patches an object member by member (null removes one); anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch(out.get(key), value)
    return out


def _apply_operation(entity: dict[str, Any], operation: Any) -> None:
    """One RFC 6902 `add`, `replace` or `remove` on `entity`, in place (ValueError for anything else)."""
    if not isinstance(operation, dict) or not isinstance(operation.get("path"), str):
        raise ValueError("an operation is an object with an op and a path")
    op, path = operation.get("op"), operation["path"]
    if op not in ("add", "replace", "remove"):
        raise ValueError(f"op {op!r} is not supported")
    if not path.startswith("/"):
        raise ValueError(f"path {path!r} is not a JSON Pointer")
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
    parent: Any = entity
    for part in parents:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "remove":
            del parent[index]
        elif op == "add":
            parent.insert(index, copy.deepcopy(operation["value"]))
        else:
            parent[index] = copy.deepcopy(operation["value"])
    elif op == "remove":
        del parent[last]
    elif op == "replace" and last not in parent:
        raise KeyError(last)
    else:
        parent[last] = copy.deepcopy(operation["value"])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _nvarchar_length(value: str) -> int:
    """The length SQL Server gives an nvarchar value: UTF-16 code units (a character beyond U+FFFF is two)."""
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in value)


def _text(value: Any, field: str, limit: int | None, length: Callable[[str], int] = _nvarchar_length) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return f"'{field}' must be text"
    if limit is not None and length(value) > limit:
        return f"Value of '{field}' is too long: {length(value)} characters, at most {limit}"
    return None


def _elements(items: Any, list_name: str, length: Callable[[str], int] = _nvarchar_length) -> str | None:
    if items is None:
        return None
    if not isinstance(items, list):
        return f"'{list_name}' must be a list"
    for i, item in enumerate(items):
        at = f"{list_name}[{i}]"
        if not isinstance(item, dict):
            return f"'{at}' must be an EntityElement"
        value = item.get("Value")
        if not isinstance(value, str) or not value.strip():
            return f"'{at}.Value' is required"
        if list_name == "Emails" and length(value) > _EMAIL_LENGTH:
            return f"Value of '{at}.Value' is too long: {length(value)} characters, at most {_EMAIL_LENGTH}"
        fault = _text(item.get("Description"), f"{at}.Description", None)
        if fault:
            return fault
    return None


def _address(address: Any) -> str | None:
    if address is None:
        return None
    if not isinstance(address, dict):
        return "'Address' must be an Address"
    for key in ("Wgs84Latitude", "Wgs84Longitude"):
        value = address.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"'Address.{key}' must be a number"
    for part in ("Street", "Postal"):
        structured = address.get(part)
        if structured is None:
            continue
        if not isinstance(structured, dict):
            return f"'Address.{part}' must be a StructuredAddress"
        for key in _STRUCTURED_TEXT:
            fault = _text(structured.get(key), f"Address.{part}.{key}", None)
            if fault:
                return fault
    return None


def _item(item: Any, list_name: str) -> dict[str, Any] | None:
    if not item or not item.get("Id"):
        return None
    return {"Id": item["Id"], "Value": f"{list_name} {item['Id']}", "Tooltip": ""}


def _http_date(value: str | None) -> datetime | None:
    """An If-Unmodified-Since value; an unreadable one is ignored, as HTTP says."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
