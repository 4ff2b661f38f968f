"""A faithful fake of Eros' subscription API: ServiceStack credentials login, bearer tokens, SaveContact upserts.

KNOWN behaviour imitated (seed 001, VENDORS.md): login at `auth/credentials` (and `api/auth`) answering
BearerToken / RefreshToken / SessionId; SaveContact upserts on (SuiteDataSourceInstanceId, AlternateKey) or ObjectId,
skips an unchanged contact unless IgnoreHash, deletes on MarkAsDeleted; ContactType, ContactRoles (RoleId each),
ContactDetails and an address' Latitude/Longitude are required; errors as ValidationErrors or ResponseStatus.

ASSUMED (constructor settings where it matters):
- `validation_status`: HTTP status of a ValidationErrors answer (default 200).
- `bare_status` (default False): a ResponseStatus comes at the top level of the answer, as seed 001's sample reply
  shows it (`{ErrorCode, Message, StackTrace, Errors, Meta}`), instead of ServiceStack's `{"ResponseStatus": ...}`.
- `rule_failures` ("validation_errors", the default, or "response_status"): broken business rules come back as
  `ValidationErrors` (RuleCode, Key, Message) or as a ResponseStatus `ValidationException` whose `Errors` name each
  field (ErrorCode, FieldName, Message), at `validation_status`.
- `return_object_id`: whether the success answer carries the contact's ObjectId (default True).
- `details_required`: whether an empty ContactDetails list is refused like a missing one (default False).
- `keeps_omitted` (default False): an update replaces the stored Contact with the one sent; True keeps every Contact
  field the body leaves out (those sent, "" included, replace theirs).
- `token_lifetime_s`: how long a bearer token (and a session) lives; `expire_tokens()` (or `POST
  _admin/expire-tokens`) ends them.
- `auth_carrier` ("bearer", the default; "ss-tok"; "session"): where a call must carry its login, as the
  connector's setting of that name says: `Authorization: Bearer <BearerToken>`, the BearerToken as the `ss-tok`
  cookie, or the SessionId in the `X-ss-id` header. A login carried anywhere else is not seen: 401.
- `jwt_provider` (default True): False is a ServiceStack without its JWT provider, whose login answers a SessionId
  and no BearerToken.
- RuleCode / ErrorCode values (`Required`, `UnknownContactType`, ...) and `Key` as a dotted wire path.
- Malformed bodies (not JSON, a non-GUID where a Guid goes, ...) get ServiceStack's 400 `SerializationException`
  with one `Errors[]` entry per field; unknown JSON fields are ignored and names are case-insensitive, as in
  ServiceStack.
- Deleting an unknown contact succeeds and changes nothing; a later save of a deleted contact revives it.
- `state.records` is keyed `<SuiteDataSourceInstanceId>/<AlternateKey>` (`record_key`): each data source has its
  own key space, as the known upsert key (SuiteDataSourceInstanceId, AlternateKey) says.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from http import HTTPStatus
from typing import Any, ClassVar
from uuid import UUID, uuid4

from aiohttp import web

from resolvers.simulation import Simulator
from resolvers.vendors.eros.wire import pascal_keys

DEMO_USERNAME = "gateway"
DEMO_PASSWORD = "eros-demo-password"
DEMO_DATA_SOURCE = UUID("3f6b1c2a-5d4e-4f70-9a1b-2c3d4e5f6a70")
DEMO_CONTACT_TYPE = UUID("8a2e4c6b-1f3d-4e5a-8b7c-9d0e1f2a3b4c")
DEMO_ROLE = UUID("c41d2e3f-6a7b-4c8d-9e0f-1a2b3c4d5e6f")


def record_key(data_source: str | UUID, alternate_key: str) -> str:
    """Where a contact is kept in `state.records`: its data source (canonical GUID form) and AlternateKey."""
    return f"{UUID(str(data_source))}/{alternate_key}"


def _is_guid(value: Any) -> bool:
    try:
        UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def _is_date(value: Any) -> bool:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "guid": _is_guid,
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "date": _is_date,
}
_COORDINATES = {
    f: "number"
    for f in ("Latitude", "Longitude", "Altitude", "Accuracy", "AltitudeAccuracy", "Heading", "Speed", "VerticalSpeed")
}
_ADDRESS = {
    "DistanceAway": "number",
    "Latitude": "number",
    "Longitude": "number",
    "AddressFormatId": "guid",
    "SuburbId": "guid",
    "CountryId": "guid",
    "IsPhysical": "bool",
    "AutoMapCoordinates": "bool",
    "LocationCoordinates": _COORDINATES,
}
_DETAIL = {
    "ContactMethodId": "guid",
    "CountryId": "guid",
    "OrderContactMethod": "int",
    "IsPrimaryContactMethod": "bool",
    "IsAddress": "bool",
    "ContactAddress": {
        "Address": _ADDRESS,
        "IsPostal": "bool",
        "IsPrimaryLocation": "bool",
        "IsRegisteredLocation": "bool",
    },
    "ContactPhone": {},
}
#: The typed (non-string) fields of SaveContact: a value of the wrong type cannot be deserialised (400).
_SCHEMA: dict[str, Any] = {
    "SuiteDataSourceInstanceId": "guid",
    "ObjectId": "guid",
    "LicenseeId": "guid",
    "SessionId": "guid",
    "IgnoreHash": "bool",
    "IgnoreValidation": "bool",
    "MarkAsDeleted": "bool",
    "Contact": {
        "ContactId": "guid",
        "ContactType": "guid",
        "MaritalStatus": "guid",
        "Gender": "guid",
        "BirthDate": "date",
        "GstRegistered": "bool",
        "ContactRoles": [{"RoleId": "guid"}],
        "ContactDetails": [_DETAIL],
    },
}


def _type_errors(value: Any, schema: Any, path: str) -> list[dict[str, str]]:
    """ServiceStack `Errors[]` entries for every value that does not fit its declared type."""
    if value is None:
        return []
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [_serialization_error(path, value)]
        return [
            error
            for key, sub in schema.items()
            for error in _type_errors(value.get(key), sub, f"{path}.{key}" if path else key)
        ]
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [_serialization_error(path, value)]
        return [error for i, item in enumerate(value) for error in _type_errors(item, schema[0], f"{path}[{i}]")]
    return [] if _CHECKS[schema](value) else [_serialization_error(path, value)]


def _serialization_error(path: str, value: Any) -> dict[str, str]:
    name = path.rsplit(".", 1)[-1]
    return {
        "ErrorCode": "SerializationException",
        "FieldName": path,
        "Message": f"'{value}' is an Invalid value for '{name}'",
    }


def _rule(key: str, rule_code: str, message: str, error_code: str = "Invalid") -> dict[str, str]:
    return {"RuleCode": rule_code, "Message": message, "Key": key, "Tag": "", "ErrorCode": error_code}


def _required(key: str) -> dict[str, str]:
    return _rule(key, "Required", f"'{key.rsplit('.', 1)[-1]}' is required", "NotEmpty")


class ErosSimulator(Simulator):
    """Eros' subscription API as the connector sees it (see the module docstring for what is assumed)."""

    name: ClassVar[str] = "eros"
    auth_paths: ClassVar[tuple[str, ...]] = ("/auth/credentials", "/api/auth")

    def __init__(
        self,
        *,
        username: str = DEMO_USERNAME,
        password: str = DEMO_PASSWORD,
        data_source_instance_ids: Iterable[UUID] = (DEMO_DATA_SOURCE,),
        contact_types: Iterable[UUID] = (DEMO_CONTACT_TYPE,),
        role_ids: Iterable[UUID] = (DEMO_ROLE,),
        token_lifetime_s: float = 3600.0,
        validation_status: int = 200,
        return_object_id: bool = True,
        details_required: bool = False,
        keeps_omitted: bool = False,
        bare_status: bool = False,
        rule_failures: str = "validation_errors",
        auth_carrier: str = "bearer",
        jwt_provider: bool = True,
    ) -> None:
        super().__init__()
        self.username = username
        self.password = password
        self.data_source_instance_ids = frozenset(data_source_instance_ids)
        self.contact_types = frozenset(contact_types)
        self.role_ids = frozenset(role_ids)
        self.token_lifetime_s = token_lifetime_s
        self.validation_status = validation_status
        self.return_object_id = return_object_id
        self.details_required = details_required
        self.keeps_omitted = keeps_omitted
        self.bare_status = bare_status
        self.rule_failures = rule_failures
        if auth_carrier not in ("bearer", "ss-tok", "session"):
            raise ValueError(f"auth_carrier must be bearer, ss-tok or session, not {auth_carrier!r}")
        self.auth_carrier = auth_carrier
        self.jwt_provider = jwt_provider
        #: Issued bearer tokens -> monotonic expiry time.
        self.tokens: dict[str, float] = {}
        #: Issued session ids -> monotonic expiry time.
        self.sessions: dict[str, float] = {}

    def add_routes(self, app: web.Application) -> None:
        """Login (ServiceStack's routes and the `api/` alias), SaveContact, and a token-expiry admin call."""
        for path in ("/auth", "/auth/credentials", "/api/auth", "/api/auth/credentials"):
            app.router.add_post(path, self._authenticate)
        for path in ("/json/reply/SaveContact", "/api/json/reply/SaveContact"):
            app.router.add_post(path, self._save_contact)
        app.router.add_post("/_admin/expire-tokens", self._admin_expire_tokens)

    def error_response(self, status: int, message: str) -> web.Response:
        """ServiceStack's error shape: `{"ResponseStatus": {"ErrorCode", "Message", "Errors"}}`."""
        try:
            code = HTTPStatus(status).phrase.replace(" ", "")  # 503 -> "ServiceUnavailable"
        except ValueError:
            code = "Exception"
        return self._status(status, code, message)

    def reset(self) -> None:
        """Forget records, calls, faults and issued tokens and sessions."""
        super().reset()
        self.tokens.clear()
        self.sessions.clear()

    def expire_tokens(self) -> int:
        """End every issued bearer token and session now (the next call gets 401); returns how many logins (each
        login issues one session, and a token with the JWT provider)."""
        for issued in (self.tokens, self.sessions):
            for key in issued:
                issued[key] = 0.0
        return len(self.sessions)

    def _status(self, status: int, code: str, message: str, errors: Iterable[dict[str, str]] = ()) -> web.Response:
        answer = {"ErrorCode": code, "Message": message, "Errors": list(errors)}
        return web.json_response(answer if self.bare_status else {"ResponseStatus": answer}, status=status)

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any] | None:
        try:
            data = await request.json()
        except ValueError:
            return None
        # ServiceStack binds JSON properties case-insensitively.
        return pascal_keys(data) if isinstance(data, dict) else None

    async def _authenticate(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if body is None:
            return self._status(400, "SerializationException", "Could not deserialize the Authenticate request")
        provider = "credentials" if request.path.endswith("/credentials") else body.get("Provider") or "credentials"
        if provider != "credentials":
            return self._status(404, "NotFound", f"No configuration was added for OAuth provider '{provider}'")
        if body.get("UserName") != self.username or body.get("Password") != self.password:
            return self._status(401, "Unauthorized", "Invalid UserName or Password")
        expires = time.monotonic() + self.token_lifetime_s
        session = secrets.token_urlsafe(12)
        self.sessions[session] = expires
        self.state.count("logins")
        answer = {"UserId": "1", "SessionId": session, "UserName": self.username, "DisplayName": self.username}
        if self.jwt_provider:
            token = secrets.token_urlsafe(24)
            self.tokens[token] = expires
            answer |= {"BearerToken": token, "RefreshToken": secrets.token_urlsafe(24)}
        return web.json_response(answer)

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if self.auth_carrier == "session":
            # A session that is unknown or over is no session: ServiceStack answers as if none was sent.
            session = request.headers.get("X-ss-id", "")
            if self.sessions.get(session, 0.0) <= time.monotonic():
                return self._status(401, "Unauthorized", "Not Authenticated")
            return None
        if self.auth_carrier == "ss-tok":
            token = request.cookies.get("ss-tok", "")
        else:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            token = token if scheme.lower() == "bearer" else ""
        if not token:
            return self._status(401, "Unauthorized", "Not Authenticated")
        expires = self.tokens.get(token)
        if expires is None:
            return self._status(401, "TokenException", "Invalid token")
        if expires <= time.monotonic():
            return self._status(401, "TokenException", "Token has expired")
        return None

    async def _save_contact(self, request: web.Request) -> web.Response:
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        body = await self._body(request)
        if body is None:
            return self._status(400, "SerializationException", "Could not deserialize the SaveContact request")
        malformed = _type_errors(body, _SCHEMA, "")
        if malformed:
            return self._status(400, "SerializationException", malformed[0]["Message"], malformed)
        violations = self._violations(body)
        if violations and self.rule_failures == "response_status":
            errors = [{"ErrorCode": v["RuleCode"], "FieldName": v["Key"], "Message": v["Message"]} for v in violations]
            return self._status(self.validation_status, "ValidationException", errors[0]["Message"], errors)
        if violations:
            return web.json_response({"ValidationErrors": violations}, status=self.validation_status)
        return self._apply(body)

    def _violations(self, body: dict[str, Any]) -> list[dict[str, str]]:
        """Every business rule the request breaks, all at once (as Eros' rule engine reports them)."""
        out: list[dict[str, str]] = []
        data_source = body.get("SuiteDataSourceInstanceId")
        if data_source is None:
            out.append(_required("SuiteDataSourceInstanceId"))
        elif UUID(data_source) not in self.data_source_instance_ids:
            out.append(
                _rule("SuiteDataSourceInstanceId", "UnknownDataSource", "Unknown SuiteDataSourceInstanceId", "NotFound")
            )
        if not body.get("AlternateKey"):
            if body.get("ObjectId") is None:
                out.append(_required("AlternateKey"))
            elif self._by_object_id(body["ObjectId"]) is None:
                out.append(_rule("ObjectId", "ObjectNotFound", "No contact has this ObjectId", "NotFound"))
        contact = body.get("Contact")
        if contact is None:
            out.append(_required("Contact"))
            return out
        contact_type = contact.get("ContactType")
        if contact_type is None:
            out.append(_required("Contact.ContactType"))
        elif UUID(contact_type) not in self.contact_types:
            out.append(_rule("Contact.ContactType", "UnknownContactType", "Unknown Contact Type list item", "NotFound"))
        roles = contact.get("ContactRoles")
        if not roles:
            out.append(_required("Contact.ContactRoles"))
        for i, role in enumerate(roles or []):
            key = f"Contact.ContactRoles[{i}].RoleId"
            role_id = (role or {}).get("RoleId")
            if role_id is None:
                out.append(_required(key))
            elif UUID(role_id) not in self.role_ids:
                out.append(_rule(key, "UnknownRole", "Unknown Role list item", "NotFound"))
        details = contact.get("ContactDetails")
        if details is None or (self.details_required and not details):
            out.append(_required("Contact.ContactDetails"))
        for i, detail in enumerate(details or []):
            out.extend(self._detail_violations(f"Contact.ContactDetails[{i}]", detail or {}))
        return out

    @staticmethod
    def _detail_violations(at: str, detail: dict[str, Any]) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        address = (detail.get("ContactAddress") or {}).get("Address")
        if detail.get("IsAddress") and address is None:
            out.append(_required(f"{at}.ContactAddress.Address"))
        if address is not None:
            out.extend(
                _required(f"{at}.ContactAddress.Address.{f}")
                for f in ("Latitude", "Longitude")
                if address.get(f) is None
            )
            coordinates = address.get("LocationCoordinates")
            if coordinates is not None:
                out.extend(
                    _required(f"{at}.ContactAddress.Address.LocationCoordinates.{f}")
                    for f in ("Latitude", "Longitude")
                    if coordinates.get(f) is None
                )
        return out

    def _by_object_id(self, object_id: str) -> dict[str, Any] | None:
        wanted = UUID(object_id)
        return next((r for r in self.state.records.values() if UUID(r["ObjectId"]) == wanted), None)

    def _apply(self, body: dict[str, Any]) -> web.Response:
        """The native upsert: create, update, skip when unchanged, or delete."""
        key = body.get("AlternateKey")
        stored_as = record_key(body["SuiteDataSourceInstanceId"], key) if key else None
        record = self.state.records.get(stored_as) if stored_as else self._by_object_id(body["ObjectId"])
        contact = body["Contact"]
        if body.get("MarkAsDeleted"):
            if record is not None and not record["Deleted"]:
                record["Deleted"] = True
                self.state.count("deletes")
        elif record is None:
            record = {
                "SuiteDataSourceInstanceId": body["SuiteDataSourceInstanceId"],
                "AlternateKey": key,
                "ObjectId": str(uuid4()),
                "Contact": contact,
                "Deleted": False,
            }
            self.state.records[str(stored_as)] = record
            self.state.count("creates")
        elif not body.get("IgnoreHash") and not record["Deleted"] and record["Contact"] == contact:
            # IgnoreHash=false: the contact hashes the same as the stored one, so nothing is saved.
            self.state.count("unchanged")
        else:
            record["Contact"] = {**record["Contact"], **contact} if self.keeps_omitted else contact
            record["Deleted"] = False
            self.state.count("updates")
        reply: dict[str, Any] = {"ValidationErrors": []}
        if self.return_object_id and record is not None:
            reply["ObjectId"] = record["ObjectId"]
        return web.json_response(reply)

    async def _admin_expire_tokens(self, request: web.Request) -> web.Response:
        return web.json_response({"expired": self.expire_tokens()})
