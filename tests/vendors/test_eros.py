"""Eros quirks: details and address as ContactDetails, ContactType/roles from vendorOptions, Latitude/Longitude
required, credentials login with a cached bearer token, ValidationErrors whatever the status, MarkAsDeleted.

The generic contract (round trips, 5xx, 429, timeouts for every vendor) lives in the contract suite.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

import aiohttp
import orjson
import pytest
from pydantic import ValidationError

from resolvers.errors import AuthFailed, RateLimited, VendorRejected, VendorUnavailable
from resolvers.model import Contact
from resolvers.results import ErrorCode, FieldError, Vendor, VendorStatus
from resolvers.transport import Transport
from resolvers.vendors.base import CrossReference, Delivered, Prepared
from resolvers.vendors.eros import PLUGIN, ErosConnector, ErosSettings, ErosSimulator, demo_config
from resolvers.vendors.eros.connector import canonical_path
from resolvers.vendors.eros.mapping import from_wire, to_wire
from resolvers.vendors.eros.simulator import DEMO_CONTACT_TYPE, DEMO_DATA_SOURCE, DEMO_ROLE, record_key
from tests.vendors.kit import Served, cross_reference, simulator_server, unchecked

#: Where the simulator keeps contact c-1 of the demo data source.
C1 = record_key(DEMO_DATA_SOURCE, "c-1")
OTHER_TYPE = "5d0c8f3e-2b1a-4c9d-8e7f-6a5b4c3d2e1f"
OTHER_ROLES = ["11111111-2222-4333-8444-555555555555", "66666666-7777-4888-9999-aaaaaaaaaaaa"]


def make_contact(**overrides: Any) -> Contact:
    """A person with a phone, an e-mail and a full address; overrides replace whole top-level fields."""
    data: dict[str, Any] = {
        "id": "c-1",
        "title": "Ms",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "birthDate": "1815-12-10",
        "details": [
            {"kind": "PHONE", "value": "+61 3 9000 0000", "label": "work"},
            {"kind": "EMAIL", "value": "ada@example.com", "preferred": True},
        ],
        "address": {
            "lines": ["1 Analytical Way", "Level 2"],
            "city": "Carlton",
            "region": "VIC",
            "postCode": "3053",
            "country": "AU",
            "latitude": -37.8,
            "longitude": 144.97,
        },
    }
    data.update(overrides)
    return Contact.model_validate(data)


def settings(base_url: str = "http://127.0.0.1:9/eros/", **overrides: Any) -> ErosSettings:
    return ErosSettings.model_validate({**demo_config(base_url), **overrides})


def offline(**overrides: Any) -> ErosConnector:
    """A connector for pre-flight only: `prepare` never touches the transport, so it gets an empty one."""
    return ErosConnector(settings(**overrides), Transport.__new__(Transport))


def link(contact_id: str, remote_id: str | None) -> CrossReference:
    return cross_reference(Vendor.EROS, remote_id, contact_id=contact_id)


def raw(payload: dict[str, Any]) -> Prepared:
    return unchecked(Vendor.EROS, payload)


def by_field(errors: list[FieldError]) -> dict[str, FieldError]:
    return {e.field: e for e in errors}


# --- mapping -------------------------------------------------------------------------------------------------


def test_details_and_address_become_contact_details() -> None:
    contact = make_contact()
    payload = to_wire(contact, settings(), {}).payload
    assert payload["Contact"]["ContactDetails"] == [
        {
            "ContactMethodName": "Phone",
            "ContactDetails": "+61 3 9000 0000",
            "Notes": "work",
            "IsPrimaryContactMethod": False,
            "IsAddress": False,
            "OrderContactMethod": 0,
        },
        {
            "ContactMethodName": "Email",
            "ContactDetails": "ada@example.com",
            "IsPrimaryContactMethod": True,
            "IsAddress": False,
            "OrderContactMethod": 1,
        },
        {
            "ContactMethodName": "Address",
            "IsAddress": True,
            "OrderContactMethod": 2,
            "ContactAddress": {
                "Address": {
                    "AddressLineOne": "1 Analytical Way",
                    "AddressLineTwo": "Level 2",
                    "SuburbName": "Carlton",
                    "StateShortName": "VIC",
                    "PostCode": "3053",
                    "ISOCountryCode": "AU",
                    "Latitude": -37.8,
                    "Longitude": 144.97,
                }
            },
        },
    ]
    assert payload["AlternateKey"] == "c-1"
    assert payload["IgnoreHash"] is False
    assert payload["Contact"]["Surname"] == "Lovelace"
    assert payload["Contact"]["BirthDate"] == "1815-12-10"


def test_method_names_come_from_settings() -> None:
    payload = to_wire(make_contact(), settings(method_names={"phone": "Telephone"}), {}).payload
    names = [d["ContactMethodName"] for d in payload["Contact"]["ContactDetails"]]
    assert names == ["Telephone", "Email", "Address"]


def test_primary_email_is_the_preferred_one_and_primary_mobile_the_first() -> None:
    contact = make_contact(
        details=[
            {"kind": "EMAIL", "value": "first@example.com"},
            {"kind": "MOBILE", "value": "0400 000 001"},
            {"kind": "EMAIL", "value": "chosen@example.com", "preferred": True},
            {"kind": "MOBILE", "value": "0400 000 002"},
        ]
    )
    mapped = to_wire(contact, settings(), {})
    assert mapped.payload["Contact"]["PrimaryEmail"] == "chosen@example.com"
    assert mapped.payload["Contact"]["PrimaryMobile"] == "0400 000 001"
    assert mapped.sources["Contact.PrimaryEmail"] == "details[2].value"
    assert mapped.sources["Contact.PrimaryMobile"] == "details[1].value"

    none = to_wire(make_contact(details=[{"kind": "PHONE", "value": "1"}]), settings(), {}).payload
    assert "PrimaryEmail" not in none["Contact"]
    assert "PrimaryMobile" not in none["Contact"]


def test_contact_type_and_roles_from_vendor_options_over_settings() -> None:
    options = {"contactTypeId": OTHER_TYPE, "roleIds": OTHER_ROLES}
    chosen = to_wire(make_contact(vendorOptions={"eros": options}), settings(), options)
    assert chosen.payload["Contact"]["ContactType"] == OTHER_TYPE
    assert chosen.payload["Contact"]["ContactRoles"] == [{"RoleId": r} for r in OTHER_ROLES]
    assert chosen.sources["Contact.ContactType"] == "vendorOptions.eros.contactTypeId"
    assert chosen.sources["Contact.ContactRoles[1].RoleId"] == "vendorOptions.eros.roleIds[1]"

    default = to_wire(make_contact(), settings(), {}).payload
    assert default["Contact"]["ContactType"] == str(DEMO_CONTACT_TYPE)
    assert default["Contact"]["ContactRoles"] == [{"RoleId": str(DEMO_ROLE)}]


def test_organisation_goes_to_the_company_field_the_setting_names() -> None:
    """Eros has TradingName and LegalName (known); which one a contact's organisation is, is not: a setting."""
    contact = make_contact(organisation="Analytical Engines Ltd")
    default = offline().prepare(contact)
    assert default.payload["Contact"]["TradingName"] == "Analytical Engines Ltd"
    assert default.sources["Contact.TradingName"] == "organisation"
    assert not any(w.startswith("organisation:") for w in default.warnings)
    legal = offline(organisation_field="LegalName").prepare(contact).payload["Contact"]
    assert (legal["LegalName"], "TradingName" in legal) == ("Analytical Engines Ltd", False)
    nowhere = offline(organisation_field="").prepare(contact)
    assert "organisation: not supported by EROS, not sent" in nowhere.warnings
    assert from_wire(default.payload)["organisation"] == "Analytical Engines Ltd"


def test_guids_from_vendor_options_are_sent_in_their_standard_form() -> None:
    """Python's UUID reads braces, `urn:uuid:`, upper case and no hyphens; Eros' Guid fields get the standard form,
    never the caller's spelling (which ServiceStack may not parse)."""
    options = {"contactTypeId": f"urn:uuid:{OTHER_TYPE}", "roleIds": ["{" + OTHER_ROLES[0].upper() + "}"]}
    prepared = offline().prepare(make_contact(vendorOptions={"eros": options}))
    assert prepared.valid, prepared.errors
    assert prepared.payload["Contact"]["ContactType"] == OTHER_TYPE
    assert prepared.payload["Contact"]["ContactRoles"] == [{"RoleId": OTHER_ROLES[0]}]


def test_address_without_latitude_is_invalid_at_address_latitude() -> None:
    contact = make_contact(address={"lines": ["1 Analytical Way"], "longitude": 144.97})
    prepared = offline().prepare(contact)
    assert not prepared.valid
    assert prepared.errors == [
        FieldError(
            field="address.latitude",
            code=ErrorCode.REQUIRED,
            message="required",
            vendor_field="Contact.ContactDetails[2].ContactAddress.Address.Latitude",
        )
    ]


def test_every_violated_rule_is_reported_at_once() -> None:
    contact = make_contact(
        address={"lines": ["1 Analytical Way"], "country": "AU"},
        vendorOptions={"eros": {"contactTypeId": "not-a-guid", "roleIds": [], "colour": "blue"}},
    )
    prepared = offline().prepare(contact)
    found = {(e.field, e.code, e.vendor_field) for e in prepared.errors}
    assert found == {
        ("vendorOptions.eros.colour", ErrorCode.NOT_SUPPORTED, None),
        ("vendorOptions.eros.contactTypeId", ErrorCode.INVALID_FORMAT, "Contact.ContactType"),
        ("vendorOptions.eros.roleIds", ErrorCode.REQUIRED, "Contact.ContactRoles"),
        ("address.latitude", ErrorCode.REQUIRED, "Contact.ContactDetails[2].ContactAddress.Address.Latitude"),
        ("address.longitude", ErrorCode.REQUIRED, "Contact.ContactDetails[2].ContactAddress.Address.Longitude"),
    }


def test_a_malformed_guid_is_named_in_words() -> None:
    contact = make_contact(vendorOptions={"eros": {"contactTypeId": "not-a-guid", "roleIds": [OTHER_ROLES[0], "x"]}})
    found = {(e.field, e.message) for e in offline().prepare(contact).errors}
    assert found == {
        ("vendorOptions.eros.contactTypeId", "must be a UUID (32 hexadecimal digits, as 8-4-4-4-12)"),
        ("vendorOptions.eros.roleIds[1]", "must be a UUID (32 hexadecimal digits, as 8-4-4-4-12)"),
    }


def test_third_address_line_is_joined_into_line_two_with_a_warning() -> None:
    contact = make_contact(
        address={"lines": ["Flat 2", "1 Analytical Way", "Carlton North"], "latitude": 1.0, "longitude": 2.0}
    )
    mapped = to_wire(contact, settings(), {})
    address = mapped.payload["Contact"]["ContactDetails"][2]["ContactAddress"]["Address"]
    assert address["AddressLineOne"] == "Flat 2"
    assert address["AddressLineTwo"] == "1 Analytical Way, Carlton North"
    assert any(w.startswith("address.lines[2:]") for w in mapped.warnings)
    assert not to_wire(make_contact(), settings(), {}).warnings


def test_round_trip_through_the_wire() -> None:
    contact = make_contact(middleName="King", displayName="Ada Lovelace", notes="Prefers mornings", jobTitle="Analyst")
    back = from_wire(to_wire(contact, settings(), {}).payload)
    assert back == contact.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def test_settings_normalise_routes_and_check_method_names() -> None:
    connector = offline(route_prefix="/api", auth_path="/api/auth")
    assert connector.save_url == "http://127.0.0.1:9/eros/api/json/reply/SaveContact"
    assert connector.auth_url == "http://127.0.0.1:9/eros/api/auth"
    assert settings().method_names["web"] == "Website"
    with pytest.raises(ValidationError, match="pager"):
        settings(method_names={"pager": "Pager"})
    with pytest.raises(ValidationError, match="role_ids"):
        settings(role_ids=[])


def test_error_keys_map_back_to_canonical_paths() -> None:
    payload = to_wire(make_contact(), settings(), {}).payload
    assert canonical_path("Contact.ContactDetails[2].ContactAddress.Address.Latitude", payload) == "address.latitude"
    assert canonical_path("Contact.ContactDetails[1].ContactDetails", payload) == "details[1].value"
    assert canonical_path("Contact.ContactRoles[0].RoleId", payload) == "vendorOptions.eros.roleIds[0]"
    assert canonical_path("ContactType", payload) == "vendorOptions.eros.contactTypeId"
    assert canonical_path("Surname", payload) == "lastName"
    assert canonical_path("Longitude", payload) == "address.longitude"
    assert canonical_path("LicenseeId", payload) == ""
    assert canonical_path(None, payload) == ""


@pytest.mark.parametrize("organisation_field", ["TradingName", "LegalName"])
def test_every_field_the_mapping_fills_maps_back_to_where_it_came_from(organisation_field: str) -> None:
    """An Eros error naming any field the gateway sent names the caller's input it came from."""
    contact = make_contact(organisation="Acme", salutation="Dear", middleName="M", displayName="A M L", notes="n")
    mapped = to_wire(contact, settings(organisation_field=organisation_field), {})
    pairs = {wire: source for wire, source in mapped.sources.items() if source}
    assert {f"Contact.{organisation_field}", "Contact.PrimaryEmail", "Contact.FullName"} <= set(pairs)
    assert {wire: canonical_path(wire, mapped.payload) for wire in pairs} == pairs
    # The primary e-mail is the preferred one, wherever it is in the list.
    assert canonical_path("PrimaryEmail", mapped.payload) == pairs["Contact.PrimaryEmail"]


# --- connector against the simulator, over a real socket -----------------------------------------------------


@dataclass
class Eros(Served):
    """One running simulator and a way to build connectors pointed at it."""

    simulator: ErosSimulator

    def connector(self, **overrides: Any) -> ErosConnector:
        return ErosConnector(settings(self.base_url, **overrides), Transport(self.session))

    def calls(self, suffix: str) -> list[Any]:
        return [c for c in self.simulator.state.calls if c.path.endswith(suffix)]

    @property
    def logins(self) -> int:
        return len(self.calls("/auth/credentials"))


Serve = Callable[..., Awaitable[Eros]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    async with aiohttp.ClientSession() as session, simulator_server() as serve_one:

        async def start(**simulator_args: Any) -> Eros:
            simulator = ErosSimulator(**simulator_args)
            return Eros(simulator, await serve_one(simulator), session)

        yield start


@pytest.fixture
async def eros(serve: Serve) -> Eros:
    return await serve()


async def send(connector: ErosConnector, contact: Contact, previous: CrossReference | None = None) -> Delivered:
    prepared = connector.prepare(contact)
    assert prepared.valid, prepared.errors
    return await connector.upsert(prepared, previous)


async def test_each_data_source_has_its_own_key_space(serve: Serve) -> None:
    """SaveContact upserts on (SuiteDataSourceInstanceId, AlternateKey): the same key from two data sources is
    two contacts, neither overwriting the other."""
    other = UUID("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")
    eros = await serve(data_source_instance_ids=(DEMO_DATA_SOURCE, other))
    first = await send(eros.connector(), make_contact(firstName="FromSourceA"))
    second = await send(eros.connector(data_source_instance_id=str(other)), make_contact(firstName="FromSourceB"))
    assert (first.status, second.status) == (VendorStatus.CREATED, VendorStatus.CREATED)
    assert first.remote_id != second.remote_id
    records = eros.simulator.state.records
    assert records[C1]["Contact"]["FirstName"] == "FromSourceA"
    assert records[record_key(other, "c-1")]["Contact"]["FirstName"] == "FromSourceB"


async def test_a_changed_data_source_is_a_new_record_and_says_so(serve: Serve) -> None:
    """The upsert key is (data source, AlternateKey): after `data_source_instance_id` changes, a write is a new
    record under the new one, answered CREATED with a warning naming the old record (left in place), as a changed
    clientRef is at Oneserve; not an UPDATED of the old one."""
    other = UUID("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")
    eros = await serve(data_source_instance_ids=(DEMO_DATA_SOURCE, other))
    connector = eros.connector()
    prepared = connector.prepare(make_contact())
    first = await connector.upsert(prepared, None)
    previous = cross_reference(Vendor.EROS, first.remote_id, payload=prepared.payload)
    moved = await send(eros.connector(data_source_instance_id=str(other)), make_contact(), previous)
    assert (moved.status, moved.remote_id != first.remote_id) == (VendorStatus.CREATED, True)
    assert moved.warnings == (
        f"data source changed to {other}: written as a new record there; Eros contact {first.remote_id} under data "
        f"source {DEMO_DATA_SOURCE} was left in place",
    )
    assert len(eros.simulator.state.records) == 2
    # The same data source: an update, keeping the record's id when a reply leaves ObjectId out (an optional extra).
    eros.simulator.return_object_id = False
    again = await send(connector, make_contact(firstName="Augusta"), previous)
    assert (again.status, again.remote_id, again.warnings) == (VendorStatus.UPDATED, first.remote_id, ())


async def test_concurrent_upserts_log_in_once(eros: Eros) -> None:
    connector = eros.connector()
    contacts = [make_contact(id=f"c-{i}") for i in range(6)]
    results = await asyncio.gather(*(send(connector, c) for c in contacts))
    assert [r.status for r in results] == [VendorStatus.CREATED] * 6
    assert eros.logins == 1
    assert sorted(eros.simulator.state.records) == sorted(record_key(DEMO_DATA_SOURCE, c.id) for c in contacts)
    (token,) = eros.simulator.tokens
    assert {c.headers["Authorization"] for c in eros.calls("/SaveContact")} == {f"Bearer {token}"}


@pytest.mark.parametrize("carrier", ["bearer", "ss-tok", "session"])
async def test_the_login_is_carried_where_auth_carrier_says(serve: Serve, carrier: str) -> None:
    """VENDORS.md assumes `Authorization: Bearer`; ServiceStack also takes the JWT as the `ss-tok` cookie, or the
    session id in `X-ss-id`. Each setting works against an Eros that expects it, renews an expired login the same
    way, and carries nothing of the other two."""
    eros = await serve(auth_carrier=carrier)
    connector = eros.connector(auth_carrier=carrier)
    assert (await send(connector, make_contact())).status is VendorStatus.CREATED
    eros.simulator.expire_tokens()
    assert (await send(connector, make_contact(firstName="Augusta"), link("c-1", "x"))).status is VendorStatus.UPDATED
    assert eros.logins == 2
    assert [c.outcome for c in eros.calls("/SaveContact")] == [200, 401, 200]
    (token, _), (session, _) = list(eros.simulator.tokens.items())[-1], list(eros.simulator.sessions.items())[-1]
    last = eros.calls("/SaveContact")[-1].headers
    carried = {"Authorization": last.get("Authorization"), "Cookie": last.get("Cookie"), "X-ss-id": last.get("X-ss-id")}
    assert (
        carried
        == {
            "bearer": {"Authorization": f"Bearer {token}", "Cookie": None, "X-ss-id": None},
            "ss-tok": {"Authorization": None, "Cookie": f"ss-tok={token}", "X-ss-id": None},
            "session": {"Authorization": None, "Cookie": None, "X-ss-id": session},
        }[carrier]
    )


@pytest.mark.parametrize(("expected", "sent"), [("bearer", "session"), ("session", "bearer"), ("ss-tok", "bearer")])
async def test_a_login_carried_where_eros_does_not_look_is_auth_failed(serve: Serve, expected: str, sent: str) -> None:
    """A tenant whose Eros reads the login elsewhere than the setting says answers 401 to a fresh login too: that
    is AUTH_FAILED (a setting to fix), after one renewal, and nothing is written."""
    eros = await serve(auth_carrier=expected)
    with pytest.raises(AuthFailed) as caught:
        await send(eros.connector(auth_carrier=sent), make_contact())
    assert caught.value.http_status == 401
    assert eros.logins == 2
    assert eros.simulator.state.records == {}


async def test_an_eros_without_the_jwt_provider_needs_the_session_carrier(serve: Serve) -> None:
    """A ServiceStack without its JWT provider answers a login with a SessionId and no BearerToken: the bearer
    settings stop at the login with a message naming the setting that fits; "session" writes."""
    eros = await serve(jwt_provider=False, auth_carrier="session")
    for carrier in ("bearer", "ss-tok"):
        with pytest.raises(AuthFailed, match='without a BearerToken \\(auth_carrier = "session" uses its SessionId\\)'):
            await send(eros.connector(auth_carrier=carrier), make_contact())
    assert eros.calls("/SaveContact") == []
    assert (await send(eros.connector(auth_carrier="session"), make_contact())).status is VendorStatus.CREATED


def test_auth_carrier_is_one_of_three() -> None:
    with pytest.raises(ValidationError, match="auth_carrier"):
        settings(auth_carrier="cookie")


async def test_create_then_update_keeps_one_record(eros: Eros) -> None:
    connector = eros.connector()
    created = await send(connector, make_contact())
    record = eros.simulator.state.records[C1]
    assert created.status is VendorStatus.CREATED
    assert created.remote_id == record["ObjectId"]

    updated = await send(connector, make_contact(firstName="Augusta"), link("c-1", created.remote_id))
    assert updated.status is VendorStatus.UPDATED
    assert updated.remote_id == created.remote_id
    assert list(eros.simulator.state.records) == [C1]
    assert eros.simulator.state.records[C1]["Contact"]["FirstName"] == "Augusta"
    assert eros.simulator.state.counters == {"logins": 1, "creates": 1, "updates": 1}


async def test_link_without_remote_id_still_reports_created(eros: Eros) -> None:
    # A cross-reference row may exist from an earlier failed attempt that never learnt a remote id.
    delivered = await send(eros.connector(), make_contact(id="c-2"), link("c-2", None))
    assert delivered.status is VendorStatus.CREATED


async def test_identical_repeat_is_skipped_by_the_hash(eros: Eros) -> None:
    connector = eros.connector()
    first = await send(connector, make_contact())
    again = await send(connector, make_contact(), link("c-1", first.remote_id))
    assert again.status is VendorStatus.UPDATED
    assert eros.simulator.state.counters.get("unchanged") == 1
    assert "updates" not in eros.simulator.state.counters


async def test_a_forced_write_tells_eros_to_ignore_its_hash(eros: Eros) -> None:
    """Seed 001: IgnoreHash=true "the object will be updated/refreshed". `force: true` exists to resync a record
    (say one edited in Eros): without it Eros would skip the contact by its hash and save nothing."""
    connector = eros.connector()
    first = await send(connector, make_contact())
    prepared = connector.prepare(make_contact())
    forced = await connector.upsert(replace(prepared, force=True), link("c-1", first.remote_id))
    assert forced.status is VendorStatus.UPDATED
    assert eros.simulator.state.counters.get("updates") == 1
    assert "unchanged" not in eros.simulator.state.counters
    assert orjson.loads(eros.calls("/SaveContact")[-1].body)["IgnoreHash"] is True


async def test_remote_id_falls_back_to_alternate_key(serve: Serve) -> None:
    eros = await serve(return_object_id=False)
    delivered = await send(eros.connector(), make_contact())
    assert delivered.remote_id == "c-1"


async def test_expired_token_logs_in_again_once(eros: Eros) -> None:
    connector = eros.connector()
    await send(connector, make_contact())
    assert eros.simulator.expire_tokens() == 1
    delivered = await send(connector, make_contact(firstName="Augusta"), link("c-1", "x"))
    assert delivered.status is VendorStatus.UPDATED
    assert eros.logins == 2
    assert [c.outcome for c in eros.calls("/SaveContact")] == [200, 401, 200]


async def test_token_refused_right_after_login_is_auth_failed(serve: Serve) -> None:
    eros = await serve(token_lifetime_s=0)
    with pytest.raises(AuthFailed) as caught:
        await send(eros.connector(), make_contact())
    assert caught.value.http_status == 401
    assert caught.value.vendor_code == "TokenException"
    assert eros.logins == 2  # one fresh login, one retry, then give up
    assert eros.simulator.state.records == {}


async def test_wrong_password_is_auth_failed(eros: Eros) -> None:
    connector = eros.connector(**PLUGIN.bad_credentials)
    with pytest.raises(AuthFailed) as caught:
        await send(connector, make_contact())
    assert caught.value.http_status == 401
    assert caught.value.message == "Invalid UserName or Password"
    assert eros.calls("/SaveContact") == []


async def test_unknown_contact_type_in_vendor_options_is_rejected(eros: Eros) -> None:
    connector = eros.connector()
    contact = make_contact(vendorOptions={"eros": PLUGIN.rejecting_options})
    prepared = connector.prepare(contact)
    assert prepared.valid  # well-formed: only Eros knows the list item does not exist
    with pytest.raises(VendorRejected) as caught:
        await connector.upsert(prepared, None)
    assert caught.value.field_errors == [
        FieldError(
            field="vendorOptions.eros.contactTypeId",
            code=ErrorCode.VENDOR_REJECTED,
            message="Unknown Contact Type list item",
            vendor_field="Contact.ContactType",
            vendor_code="UnknownContactType",
        )
    ]
    assert eros.simulator.state.records == {}


@pytest.mark.parametrize(
    ("rule_failures", "bare_status"),
    [("validation_errors", False), ("response_status", False), ("response_status", True)],
    ids=["ValidationErrors", "ResponseStatus", "bare-ResponseStatus"],
)
@pytest.mark.parametrize("validation_status", [200, 400, 422])
async def test_validation_errors_reject_whatever_the_status(
    serve: Serve, validation_status: int, rule_failures: str, bare_status: bool
) -> None:
    """Broken rules reject whatever the HTTP status and whichever shape carries them: ValidationErrors, or a
    ResponseStatus wrapped as ServiceStack does or bare at the top level, as seed 001's sample reply shows it (a
    200 in that shape was read as a success: the write reported saved was not)."""
    eros = await serve(validation_status=validation_status, rule_failures=rule_failures, bare_status=bare_status)
    connector = eros.connector()
    payload = copy.deepcopy(connector.prepare(make_contact()).payload)
    address = payload["Contact"]["ContactDetails"][2]["ContactAddress"]["Address"]
    del address["Latitude"], address["Longitude"]
    payload["Contact"]["ContactRoles"].append({"RoleId": OTHER_ROLES[0]})
    with pytest.raises(VendorRejected) as caught:
        await connector.upsert(raw(payload), None)
    assert caught.value.http_status == validation_status
    errors = by_field(caught.value.field_errors)
    assert set(errors) == {"address.latitude", "address.longitude", "vendorOptions.eros.roleIds[1]"}
    assert errors["address.latitude"].vendor_field == "Contact.ContactDetails[2].ContactAddress.Address.Latitude"
    assert errors["vendorOptions.eros.roleIds[1]"].vendor_code == "UnknownRole"


async def test_malformed_body_is_rejected_with_servicestack_field_errors(eros: Eros) -> None:
    connector = eros.connector()
    payload = copy.deepcopy(connector.prepare(make_contact()).payload)
    payload["Contact"]["ContactType"] = "not-a-guid"
    with pytest.raises(VendorRejected) as caught:
        await connector.upsert(raw(payload), None)
    assert caught.value.http_status == 400
    assert caught.value.vendor_code == "SerializationException"
    (error,) = caught.value.field_errors
    assert error.field == "vendorOptions.eros.contactTypeId"
    assert error.vendor_field == "Contact.ContactType"


async def test_delete_marks_the_record_deleted(eros: Eros) -> None:
    connector = eros.connector()
    created = await send(connector, make_contact())
    deleted = await connector.delete("c-1", link("c-1", created.remote_id))
    assert deleted.status is VendorStatus.DELETED
    assert deleted.remote_id == created.remote_id
    assert eros.simulator.state.records[C1]["Deleted"] is True
    assert eros.simulator.state.counters["deletes"] == 1
    body = eros.calls("/SaveContact")[-1].body
    assert '"MarkAsDeleted":true' in body and '"AlternateKey":"c-1"' in body


def test_a_contact_with_nothing_to_reach_it_by_is_refused_only_when_details_are_required() -> None:
    bare = make_contact(details=[], address=None)
    assert offline().prepare(bare).valid
    assert offline().prepare(bare).payload["Contact"]["ContactDetails"] == []
    refused = offline(details_required=True).prepare(bare)
    assert [(e.field, e.code, e.vendor_field) for e in refused.errors] == [
        ("details", ErrorCode.REQUIRED, "Contact.ContactDetails")
    ]
    # An address is a ContactDetails entry of its own; so is any detail.
    assert offline(details_required=True).prepare(make_contact(details=[])).valid
    assert offline(details_required=True).prepare(make_contact(address=None)).valid


@pytest.mark.parametrize("details_required", [False, True])
async def test_an_eros_refusing_empty_details_is_met_by_the_setting(serve: Serve, details_required: bool) -> None:
    """An Eros that refuses an empty ContactDetails list: with the setting the gateway says so before sending and
    a delete carries the details last accepted; without it the contact goes out and Eros refuses it."""
    eros = await serve(details_required=True)
    connector = eros.connector(details_required=details_required)
    bare = connector.prepare(make_contact(details=[], address=None))
    assert bare.valid is not details_required
    if not details_required:
        with pytest.raises(VendorRejected) as refused:
            await connector.upsert(bare, None)
        assert [e.field for e in refused.value.field_errors] == ["details"]
    created = connector.prepare(make_contact())
    await connector.upsert(created, None)
    known = cross_reference(Vendor.EROS, "c-1", contact_id="c-1", payload=created.payload)
    if details_required:
        deleted = await connector.delete("c-1", known)
        assert deleted.status is VendorStatus.DELETED
        assert eros.simulator.state.records[C1]["Deleted"] is True
        sent = orjson.loads(eros.calls("/SaveContact")[-1].body)["Contact"]["ContactDetails"]
        assert sent == created.payload["Contact"]["ContactDetails"]
    else:
        with pytest.raises(VendorRejected):
            await connector.delete("c-1", known)


@pytest.mark.parametrize("removed_fields", ["omit", "blank"])
async def test_a_removed_field_is_cleared_at_an_eros_that_keeps_what_is_left_out_only_by_blanking(
    serve: Serve, removed_fields: str
) -> None:
    """Against an Eros whose SaveContact keeps the Contact fields a body leaves out, "omit" leaves removed notes and
    a job title there (why the setting exists); "blank" sends them as "" and they are gone. A removed BirthDate is a
    date Eros parses, which "" cannot clear: said in a warning."""
    eros = await serve(keeps_omitted=True)
    connector = eros.connector(removed_fields=removed_fields)
    first = connector.prepare(make_contact(notes="call first", jobTitle="Analyst"))
    await connector.upsert(first, None)
    previous = cross_reference(Vendor.EROS, "c-1", contact_id="c-1", payload=first.payload)
    updated = await connector.upsert(connector.prepare(make_contact(birthDate=None)), previous)
    stored = eros.simulator.state.records[C1]["Contact"]
    if removed_fields == "omit":
        assert (stored["Notes"], stored["EmploymentRole"], stored["BirthDate"]) == (
            "call first",
            "Analyst",
            "1815-12-10",
        )
        assert updated.warnings == ()
    else:
        assert (stored["Notes"], stored["EmploymentRole"], stored["BirthDate"]) == ("", "", "1815-12-10")
        assert updated.warnings == ("Contact.BirthDate: removed, but it cannot be blanked; Eros may keep it",)


async def test_injected_503_is_vendor_unavailable(eros: Eros) -> None:
    connector = eros.connector()
    await send(connector, make_contact())  # logged in: the fault must hit SaveContact itself
    async with eros.session.post(
        f"{eros.base_url}_admin/faults", json={"fail_next": 1, "fail_status": 503}
    ) as response:
        assert response.status == 200
    with pytest.raises(VendorUnavailable) as caught:
        await send(connector, make_contact(firstName="Augusta"))
    assert type(caught.value) is VendorUnavailable
    assert caught.value.http_status == 503
    assert caught.value.vendor_code == "ServiceUnavailable"
    assert eros.calls("/SaveContact")[-1].outcome == 503


async def test_throttled_call_is_rate_limited_with_retry_after(eros: Eros) -> None:
    connector = eros.connector()
    await send(connector, make_contact())
    async with eros.session.post(
        f"{eros.base_url}_admin/faults", json={"throttle_next": 1, "retry_after": 7}
    ) as response:
        assert response.status == 200
    with pytest.raises(RateLimited) as caught:
        await send(connector, make_contact())
    assert caught.value.retry_after == 7


async def test_api_prefixed_routes(eros: Eros) -> None:
    connector = eros.connector(route_prefix="api", auth_path="api/auth")
    delivered = await send(connector, make_contact())
    assert delivered.status is VendorStatus.CREATED
    assert [c.path for c in eros.simulator.state.calls] == ["/eros/api/auth", "/eros/api/json/reply/SaveContact"]
